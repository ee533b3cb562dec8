"""A long-running service's memory stays at what it uses (glibc's allocator settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the settings are glibc's"
)

# Blocks of 512 KB, each followed by a small block that stays: the pattern of a request's
# image buffers among long-lived objects. Prints MB held after allocating, then after freeing.
_PROBE = """
import ctypes, sys
from counterfake._memory import settle_allocator

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "settled":
    settle_allocator()
libc.free(libc.malloc(1 << 20))  # by default, raises the size glibc maps on its own
before = rss()
big, kept = [], []
for _ in range(200):
    block = libc.malloc(1 << 19)
    ctypes.memset(block, 1, 1 << 19)
    big.append(block)
    kept.append(libc.malloc(2000))
    ctypes.memset(kept[-1], 1, 2000)
held = rss()
for block in big:
    libc.free(block)
print((held - before) // 2**20, (rss() - before) // 2**20)
"""


def _probe(mode: str) -> tuple[int, int]:
    src = str(Path(__file__).resolve().parent.parent / "src")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src},
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_freed_image_buffers_go_back_to_the_system_once_settled() -> None:
    held, after = _probe("settled")
    assert held >= 90  # the blocks were really there
    assert after <= 5


def test_without_the_settings_the_same_buffers_stay_resident() -> None:
    """What settle_allocator is for: glibc's defaults keep the freed blocks."""
    held, after = _probe("default")
    assert held >= 90
    assert after >= held - 10
