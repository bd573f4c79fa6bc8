"""release_free_heap hands freed heap pages back: resident memory falls after a large free."""
import sys

import psutil
import pytest

from common.memory import release_free_heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trim_returns_freed_heap_to_the_os():
    proc = psutil.Process()
    # 60 kB blocks stay on the heap (under the mmap threshold); small survivors between them keep
    # glibc from trimming the heap top by itself on free, as the middle of a real heap looks.
    blocks, survivors = [], []
    for _ in range(2000):  # ~120 MB
        block = bytearray(60_000)
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page: calloc may hand out untouched zero pages
        blocks.append(block)
        survivors.append(bytearray(1000))
    del blocks
    before = proc.memory_info().rss
    assert release_free_heap()
    after = proc.memory_info().rss
    assert before - after > 60 * 2**20, (before, after)
