"""Hand heap memory that a long run has freed back to the operating system (glibc only).

glibc keeps freed memory in its heap for reuse. A bulk run allocates a steady mix of sizes
(socket reads shrunk to the few KB that came, input blocks, blocks of result lines), and over
millions of rows the heap fragments while the live objects stay flat: peak RSS then grows with
the input. ``malloc_trim(0)`` once a second keeps it flat (docs/performance-notes.md).

Only the command line does this: it owns its process. A program that runs ``send_bulk`` in its
own process decides for itself (``MALLOC_MMAP_THRESHOLD_=131072`` in the environment has the
same effect).
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
