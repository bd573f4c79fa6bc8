"""bench/cpuid: a child process that sees this CPU without AVX-512/VNNI, so onnxruntime runs the AVX2
kernels here at native speed; reports name the features it hid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpuid import avx2_env, shim, unavailable_reason
from common.machine import HIDDEN_BY_SHIM, SHIM_FLAG, cpu_info

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"cpuid shim: {unavailable_reason()}")

PROBE = (
    "import json; from numpy._core._multiarray_umath import __cpu_features__ as f; "
    "from common.machine import cpu_info, describe; "
    "print(json.dumps({'numpy': {k: f[k] for k in ('AVX2', 'FMA3', 'AVX512F', 'AVX512VNNI')}, "
    "'info': cpu_info(), 'line': describe(cpu_info())}))"
)


def _child(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_child_sees_avx2_and_no_avx512_and_says_so():
    done = _child(PROBE, avx2_env())
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    host = cpu_info()["features"]
    assert out["numpy"]["AVX512F"] is False and out["numpy"]["AVX512VNNI"] is False
    assert out["numpy"]["AVX2"] == ("avx2" in host) and out["numpy"]["FMA3"] is True
    assert out["info"]["hidden"] == [f for f in host if f in HIDDEN_BY_SHIM]
    assert not set(out["info"]["features"]) & set(HIDDEN_BY_SHIM)
    if out["info"]["hidden"]:
        assert "hidden from cpuid" in out["line"]


def test_an_inherited_flag_without_the_shim_hides_nothing():
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {SHIM_FLAG: "1"}
    out = json.loads(_child(PROBE, env).stdout)
    assert "hidden" not in out["info"] and out["info"]["features"] == cpu_info()["features"]


def test_a_real_segfault_still_kills_the_process():
    """The handler answers cpuid only; any other fault must crash as it would without it (no hang)."""
    done = _child("import ctypes; ctypes.string_at(0)", avx2_env())
    assert done.returncode == -signal.SIGSEGV


def test_the_library_is_built_once_into_the_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = shim()
    assert first.is_file() and first.parent == tmp_path / "embed-bench"
    mtime = first.stat().st_mtime_ns
    assert shim() == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no build leftovers
