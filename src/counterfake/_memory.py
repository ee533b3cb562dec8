"""Keeping a long-running process's resident memory to what it uses (glibc's allocator)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from typing import Final

_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8
#: Blocks this large or larger are mapped on their own and unmapped when freed.
MMAP_THRESHOLD: Final = 256 * 1024
#: Heaps the allocator keeps for all threads together.
ARENAS: Final = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS: glibc otherwise keeps it resident after a build's
    scratch arrays are gone, which shows up as RSS the index does not use."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.malloc_trim(0)


def settle_allocator() -> None:
    """For a service that runs for weeks, as early as it can (before it serves: imports may
    have started threads, and heaps they already have stay): glibc gives each busy
    thread a heap of its own (up to 8 per core) and, once a large block has been freed, serves
    blocks up to 32 MB from those heaps too. A request's image buffers then leave holes in a
    dozen heaps, and the worker's memory creeps up for hours. Two heaps, and large blocks
    always mapped on their own, keep it level. Elsewhere than glibc, nothing changes."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.mallopt(_M_ARENA_MAX, ARENAS)
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
