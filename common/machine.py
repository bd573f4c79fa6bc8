"""The CPU a figure was measured on: int8 kernels (hence speed and int8 fidelity) differ by
instruction set, so every published figure carries the features it was measured with."""
from __future__ import annotations

import platform
from functools import lru_cache

# The x86 features that pick onnxruntime's int8 kernels (and torch's), in /proc/cpuinfo's spelling.
INT8_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """{"model": ..., "features": [...], "cores": n} of this machine (features: those of INT8_FEATURES it has)."""
    import os

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "features": [f for f in INT8_FEATURES if f in flags], "cores": os.cpu_count() or 0}


def describe(info: dict) -> str:
    """'AMD EPYC (avx2; 2 cores)': one line for a report."""
    features = ", ".join(info.get("features") or []) or "no AVX2"
    return f"{info.get('model', '?')} ({features}; {info.get('cores', '?')} cores)"
