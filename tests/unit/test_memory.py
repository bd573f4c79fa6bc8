"""release_free_heap hands freed heap pages back: resident memory falls after a large free."""

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from common.memory import fix_mmap_threshold, release_free_heap


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


# A fresh interpreter, so that free space other tests left on this heap cannot serve the blocks.
FREED_AFTER_PEAK = """
import sys, psutil
from common.memory import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(128 * 1024)
big = bytearray(8 * 2**20)
del big  # glibc now raises its threshold to 8 MB, unless it is fixed
blocks, survivors = [], []
for _ in range(40):  # 40 x 4 MB, each touched, with small blocks between them
    b = bytearray(4 * 2**20)
    b[::4096] = b"\\x01" * len(b[::4096])
    blocks.append(b)
    survivors.append(bytearray(1000))
del b
before = psutil.Process().memory_info().rss
del blocks
print(before - psutil.Process().memory_info().rss)
"""


def _freed(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FREED_AFTER_PEAK, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_fixed_mmap_threshold_returns_large_blocks_on_free():
    """After a large free glibc keeps later blocks of that size on the heap, resident after they
    are freed; with the threshold fixed they are mappings, gone from RSS on free."""
    assert _freed("fixed") > 140 * 2**20
    assert _freed("default") < 40 * 2**20


def test_fix_mmap_threshold_zero_is_a_no_op():
    assert fix_mmap_threshold(0) is False
