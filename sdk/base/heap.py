"""Keeping freed memory for reuse in processes that work on large arrays (the MPC servers).

Why: glibc serves every allocation above its mmap threshold (128 KiB, raised dynamically up to
32 MiB) with a fresh ``mmap`` and unmaps it on free. A server's protocols make and drop
megabyte arrays at every step (PRF streams, products, frames, ciphertexts), so each one paid
for its pages again: one page fault per 4 KiB on first touch, plus the kernel's zeroing. On
the 2-core machine that was about a third of a fixed-point multiplication of 10^6 elements
(docs/benchmarks.md, "MPC: the heap"). Serving large blocks from the heap, and returning the
heap's top to the system only above a high-water mark, lets a freed array's pages be reused
by the next one.

The cost is memory the process keeps after a peak: up to ``keep_bytes`` at the heap's top
(plus fragments). The servers bound what one computation may hold, so the peak is bounded.
Only glibc has ``mallopt``; elsewhere this does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# glibc caps the mmap threshold at HEAP_MAX / 2 (32 MiB on 64-bit): a larger value is refused
MMAP_THRESHOLD = 32 << 20
KEEP_BYTES = 1 << 30


def keep_freed_memory(keep_bytes: int = KEEP_BYTES, top_pad: int = 64 << 20) -> bool:
    """Serve allocations up to 32 MiB from the heap and keep up to ``keep_bytes`` of freed
    heap for reuse. Returns False where the C library has no ``mallopt`` (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("no mallopt in the C library (%s): large arrays keep their own pages", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, min(keep_bytes, (1 << 31) - 1)) == 1
        and mallopt(_M_TOP_PAD, top_pad) == 1
    )
    if not ok:
        log.info("mallopt refused the heap settings: large arrays keep their own pages")
    return ok
