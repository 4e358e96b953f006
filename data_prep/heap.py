"""Large arrays given back to the system when they are freed (glibc's ``malloc``).

glibc serves an allocation below its mmap threshold from the heap, and raises the threshold to
the size of any mapped block that is freed (up to 32 MB on 64-bit systems). After the first few
large numpy temporaries, every later one up to that size comes from the heap, and freed heap
stays with the process: the heap only shrinks from its top. A loader worker featurising hourly
conus-0.1 steps (7 MB each) held 870 MB of heap beside its 128 MB step cache, and training's
process tree 5.3 GB in all (``benchmarks/bench_archive.py``).

:func:`return_large_blocks` fixes the threshold at ``MMAP_THRESHOLD`` (a fixed threshold no
longer grows), so every block above it is mapped on allocation and unmapped on free, and hands
back the free heap already held. Mapping costs a page fault per page touched, so it suits a
process that makes many large arrays of a few sizes once each (a loader worker featurising
steps), not one whose tensors of the same sizes come back every step (training's forward and
backward ran 60 % slower with it): there :func:`trim_heap` hands back what is free at a
moment of its choosing. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

MMAP_THRESHOLD = 1 << 20  # blocks of 1 MB and more are mapped: a conus-0.1 plane is 0.6 MB
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers of glibc's malloc.h
_M_TRIM_THRESHOLD = -1


@functools.cache
def _glibc():
    """glibc's ``mallopt`` and ``malloc_trim``, or None on another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None


def return_large_blocks() -> bool:
    """Map (and unmap on free) every block of ``MMAP_THRESHOLD`` bytes or more, trim the heap
    when its free top passes that size, and give back the free heap held now. Returns whether
    the settings took (glibc only)."""
    calls = _glibc()
    if calls is None:
        return False
    mallopt, malloc_trim = calls
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD) == 1 and ok
    malloc_trim(0)
    return ok


def trim_heap() -> None:
    """Give the free pages of the heap back to the system now (``malloc_trim``)."""
    calls = _glibc()
    if calls is not None:
        calls[1](0)
