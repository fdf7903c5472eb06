"""keep_freed_memory: freed blocks under the threshold stay for reuse, larger ones go back to the system;
release_freed_memory gives the kept ones back."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, psutil
from turngym.agent.hardware import keep_freed_memory, release_freed_memory
assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def kept(size, count):
    before = psutil.Process().memory_info().rss
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        libc.memset(block, 1, size)  # resident
    for block in blocks:
        libc.free(block)
    return (psutil.Process().memory_info().rss - before) / 2**20

before = psutil.Process().memory_info().rss
print(kept(64 << 20, 4), kept(1 << 20, 256), end=" ")
release_freed_memory()
print((psutil.Process().memory_info().rss - before) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"), reason="glibc only")
def test_small_freed_blocks_are_kept_until_released_and_large_ones_returned() -> None:
    # In a fresh interpreter: the setting is process-wide. 4 x 64 MiB blocks (over the 32 MiB
    # threshold) are mapped and unmapped on free; 256 x 1 MiB stay in the heap after free (glibc's
    # defaults would map the first and trim the rest back: nothing kept) until released.
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    large, small, released = map(float, out.split())
    assert large < 16 and small > 200 and released < 16, (large, small, released)
