"""Run a benchmark as if on an AVX2-only CPU, on this one: `cpuid` answered without AVX-512/VNNI/AMX.

onnxruntime picks its kernels from `cpuid`, so a figure measured here says nothing about the AVX2
kernels most cloud hosts still run. `hide_avx512.c`, preloaded into a child process, makes Linux
fault on each `cpuid` (where the CPU supports faulting, flag `cpuid_fault`) and answers with those
bits cleared: MLAS then takes its AVX2 kernels and they run at native speed on this silicon. It is
this CPU running the AVX2 code path, not an AVX2 machine: cache, clocks and port layout stay this
CPU's, so each report says so (common/machine.py marks the features hidden).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common.machine import CPUID_SHIM_LIBRARY, SHIM_FLAG, cpu_flags, cpuid_shim_active

SOURCE = Path(__file__).with_name("hide_avx512.c")
REPO = Path(__file__).resolve().parents[2]


def unavailable_reason() -> str | None:
    """Why the shim cannot work here, or None."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return "needs Linux on x86-64"
    if "cpuid_fault" not in cpu_flags():
        return "this CPU or its hypervisor cannot make cpuid fault (no cpuid_fault in /proc/cpuinfo)"
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build the cpuid shim"
    return None


def shim() -> Path:
    """The compiled shim, built once per source version into the user's cache (never the repository)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embed-bench"
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = cache / f"{CPUID_SHIM_LIBRARY}-{digest}.so"
    if not out.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # compile aside, then rename: no half-written .so
            built = Path(tmp) / out.name
            done = subprocess.run(
                ["cc", "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"cc failed on {SOURCE.name}: {(done.stderr.strip().splitlines() or ['?'])[0]}")
            built.replace(out)
    return out


def avx2_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the shim preloaded."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"cannot hide AVX-512 from cpuid: {reason}")
    env = dict(os.environ if base is None else base)
    env.pop(SHIM_FLAG, None)  # only the shim, once it works, sets it in the child
    env["LD_PRELOAD"] = " ".join(filter(None, (str(shim()), env.get("LD_PRELOAD"))))
    return env


def run_as_avx2(module: str, argv: list[str] | None) -> int | None:
    """None in a process the shim already hides AVX-512 from (go on); else `python -m module argv`
    (default: this command line's arguments) in a child that sees an AVX2 CPU, and its exit status.
    Where the shim cannot work, SystemExit with the reason in one line."""
    if cpuid_shim_active():
        return None
    try:
        if SHIM_FLAG in os.environ:  # this is that child, and the shim could not hide anything
            raise RuntimeError("the cpuid shim loaded but this CPU would not fault on cpuid")
        env = avx2_env()
    except RuntimeError as exc:
        raise SystemExit(f"{module}: {exc}") from None
    args = sys.argv[1:] if argv is None else list(argv)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env).returncode
