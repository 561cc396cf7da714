"""Giving the system back memory the process freed: glibc keeps freed heap pages unless told otherwise."""
from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
_MMAP_FROM = 256 << 10  # bytes: larger allocations (a checkpoint's parts, a record list) get pages of their own
_trim = None
try:  # glibc only (FC's runtime, Debian); elsewhere a no-op
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    # A fixed threshold: glibc otherwise raises it to the largest block freed (up to 32 MiB), and later large
    # blocks then come from the heap, whose freed pages stay resident.
    _libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)
except (OSError, AttributeError):
    _trim = None


def release_freed() -> None:
    """Return freed heap pages to the system (malloc_trim): after a large transient allocation, such as a
    checkpoint read or written, freed pages otherwise stay in the process's resident set."""
    if _trim is not None:
        _trim(0)
