"""The CPU a figure was measured on: int8 kernels (hence speed and int8 fidelity) differ by
instruction set, so every published figure carries the features it was measured with."""

from __future__ import annotations

import platform
from functools import lru_cache

# The x86 features that pick onnxruntime's int8 kernels (and torch's), in /proc/cpuinfo's spelling.
INT8_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
# bench/cpuid/hide_avx512.c, preloaded, answers cpuid without these (it sets EMBED_CPUID_HIDDEN=1 when it
# works); /proc/cpuinfo still lists them, so a process it runs in must not report them as its own.
CPUID_SHIM_LIBRARY = "libembed_hide_avx512"
SHIM_FLAG = "EMBED_CPUID_HIDDEN"
HIDDEN_BY_SHIM = ("avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def cpuid_shim_active() -> bool:
    """True when the shim is loaded into this process and hides features (not merely inherited env)."""
    import os

    if os.environ.get(SHIM_FLAG) != "1":
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            return any(CPUID_SHIM_LIBRARY in line for line in fh)
    except OSError:
        return False


@lru_cache(maxsize=1)
def _proc_cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo, as the kernel lists them (cpuid shim or not)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return model, flags


def cpu_flags() -> frozenset[str]:
    """Every flag /proc/cpuinfo lists for this CPU (e.g. cpuid_fault), hidden ones included."""
    return _proc_cpuinfo()[1]


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """{"model": ..., "features": [...], "cores": n} of this machine (features: those of INT8_FEATURES it has
    and shows this process; with "hidden": [...] those the cpuid shim keeps from it)."""
    import os

    model, flags = _proc_cpuinfo()
    info = {"model": model, "features": [f for f in INT8_FEATURES if f in flags], "cores": os.cpu_count() or 0}
    if cpuid_shim_active():
        info["hidden"] = [f for f in info["features"] if f in HIDDEN_BY_SHIM]
        info["features"] = [f for f in info["features"] if f not in HIDDEN_BY_SHIM]
    return info


def describe(info: dict) -> str:
    """'AMD EPYC (avx2; 2 cores)': one line for a report, naming any features hidden from this process."""
    features = ", ".join(info.get("features") or []) or "no AVX2"
    hidden = info.get("hidden")
    shown = f"; {', '.join(hidden)} hidden from cpuid by bench/cpuid" if hidden else ""
    return f"{info.get('model', '?')} ({features}{shown}; {info.get('cores', '?')} cores)"
