"""`fusion.memory.release_free_memory`: freed heap pages go back to the OS."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fusion.memory import release_free_memory


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_freed_heap_below_a_live_block_is_handed_back() -> None:
    """64 MiB of 64 kB arrays (below glibc's mmap threshold: they live on the heap) freed under one
    that stays alive: glibc cannot shrink the heap past it, so the pages stay resident until trimmed."""
    release_free_memory()
    blocks = [np.ones(8192) for _ in range(1024)]  # 64 kB each, touched
    keep = np.ones(8192)  # allocated last: pins the top of the heap
    del blocks
    before = _rss_mib()
    release_free_memory()
    after = _rss_mib()
    assert before - after > 32, (before, after)
    assert keep.sum() == 8192
