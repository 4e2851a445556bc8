"""trim_heap gives what the process freed back to the system (glibc's heap keeps it otherwise)."""

from __future__ import annotations

import sys

import psutil
import pytest

from tunesmith.models.pages import trim_heap


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap: Linux")
def test_freed_heap_blocks_go_back_to_the_system():
    # 1,600 blocks of 64 kB (under glibc's mmap threshold: they live in the heap), each followed
    # by a small block that stays: the freed ones are holes glibc cannot shrink the heap past.
    page = bytes(range(256)) * 256
    blocks, keepers = [], []
    for i in range(1600):
        blocks.append(bytes(page[:-1]) + bytes([i % 256]))  # a copy of its own, every page written
        keepers.append(bytes(1024) + bytes([i % 256]))
    start = _rss_mb()
    del blocks
    freed = _rss_mb()
    assert freed > start - 50  # the heap kept (nearly) all of the 100 MB
    assert trim_heap()
    assert _rss_mb() < freed - 75  # given back
    assert len(keepers) == 1600
