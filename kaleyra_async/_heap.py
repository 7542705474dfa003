"""Hand heap memory that a long run has freed back to the operating system (glibc only).

glibc keeps freed memory in its heap for reuse. A bulk run allocates a steady mix of sizes
(socket reads of up to 256 KiB shrunk to the few KB that came, 64 KiB input blocks, blocks of
result lines), and over millions of rows the heap fragments: peak RSS rose from 55 MB at
1,000,000 rows to 60-63 MB at 5,000,000, a step at a time, while the number of live pymalloc
blocks stayed flat. With ``malloc_trim(0)`` once a second (0.35 ms a call on average, 3.8 ms at
most) the benchmark's three 5,000,000-row runs peaked at 56-60 MB against 55 at 1,000,000
(+7 %, from +14 %; benchmarks/README.md, "Heap fragmentation, found on the way").

Only the command line does this: it owns its process. A program that runs ``send_bulk`` in its
own process decides for itself (``MALLOC_MMAP_THRESHOLD_=131072`` in the environment had the
same effect in our measurements).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

import anyio

__all__ = ["malloc_trim", "return_free_heap"]


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


async def return_free_heap(period_s: float = 1.0) -> None:
    """Trim the heap every ``period_s`` until cancelled; returns at once without glibc."""
    trim = malloc_trim()
    if trim is None:
        return
    while True:
        await anyio.sleep(period_s)
        trim(0)
