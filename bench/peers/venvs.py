"""The peers' virtual environments: made once per set of pins under `.venv-peers/`, reused after."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from . import VENVS

ROOT = Path(__file__).resolve().parents[2] / ".venv-peers"


def python_of(name: str, root: Path = ROOT) -> Path:
    """The interpreter of environment `name`, creating and installing it first if needed. A pin change
    makes a new environment (the folder name carries a hash of the pins)."""
    steps = VENVS[name]
    tag = hashlib.sha256(repr(steps).encode()).hexdigest()[:8]
    venv = root / f"{name}-{tag}"
    python, done = venv / "bin" / "python", venv / ".installed"
    if done.is_file():
        return python
    print(f"peers: creating {venv.name} ({', '.join(r for s in steps for r in s)})", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip"], check=True
    )
    for requirements in steps:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements], check=True
        )
    done.write_text("\n".join(r for s in steps for r in s) + "\n")
    return python
