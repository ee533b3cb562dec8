"""Returning freed memory to the operating system after building large arrays."""

from __future__ import annotations

import contextlib
import ctypes


def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS: glibc otherwise keeps it resident after a build's
    scratch arrays are gone, which shows up as RSS the index does not use."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
