"""Give freed heap memory back to the operating system.

onnxruntime parses the whole model file and copies its weights into tensors;
glibc keeps the freed parse buffers (tens of MB for the fp32 baseline) in the
process's heap, so resident memory would count the model file twice. A
compressed model is sold on its memory, so every session load (make_session)
ends with one trim.

Under load the same happens to per-batch buffers: glibc serves a block above
its mmap threshold with its own mapping, returned on free — but after such a
block is freed it raises the threshold to that block's size (up to 32 MB), so
later batch buffers land on the heap and stay resident after they are freed
(tens of MB over the benchmark's load test, whatever the model). Fixing the threshold
(`fix_mmap_threshold`) keeps large buffers on mappings that go back on free.
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
    # musl has neither malloc_trim nor mallopt.
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def release_free_heap() -> bool:
    """malloc_trim(0) where glibc offers it; False elsewhere (then nothing happens)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def fix_mmap_threshold(nbytes: int) -> bool:
    """mallopt(M_MMAP_THRESHOLD, nbytes): blocks of at least nbytes get their own mapping, and the
    threshold no longer moves; False where glibc's mallopt is missing or refuses (nothing changes)."""
    libc = _libc()
    if libc is None or nbytes <= 0:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))
