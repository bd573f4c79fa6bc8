"""Give freed heap memory back to the operating system after a model loads.

onnxruntime parses the whole model file and copies its weights into tensors;
glibc keeps the freed parse buffers (tens of MB for the fp32 baseline) in the
process's heap, so resident memory would count the model file twice. A
compressed model is sold on its memory, so every session load (make_session)
ends with one trim.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # musl has no malloc_trim


def release_free_heap() -> bool:
    """malloc_trim(0) where glibc offers it; False elsewhere (then nothing happens)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
