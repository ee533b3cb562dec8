"""Request rates: a token bucket per API key, and per client address on the keyless routes, so
that one noisy client cannot starve the others.

The buckets live in a fixed table in shared memory, so that the workers of one `serve` share
them: a client whose connections reach every worker still gets `rate`, not `workers x rate`.
A bucket is taken under a lock of its group of slots only (`fcntl` byte-range locks, which the
kernel drops when a worker dies, so a killed worker never leaves the others waiting), and no
request waits on the database. Names are stored as salted 8-byte digests, not as keys' ids or
addresses.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import secrets
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["BucketTable", "RateLimiter"]

_SALT: Final = 16
_SLOT: Final = struct.Struct("<Qdd")  # digest of the name (0: free), tokens, when
_WAYS: Final = 8  # slots in a group: a name's bucket is one of its group's
_GROUPS: Final = 8192  # 65,536 clients at once; past that the least recent in a group goes
_GROUP_BYTES: Final = _WAYS * _SLOT.size
_SIZE: Final = _SALT + _GROUPS * _GROUP_BYTES


class BucketTable:
    """Token buckets by name in shared memory: `BucketTable.create()` in the parent, then
    `BucketTable(path)` in each worker; `BucketTable()` alone is private to one process."""

    def __init__(self, path: Path | None = None) -> None:
        self._fd: int | None = None
        if path is None:
            self._map = mmap.mmap(-1, _SIZE)
            self._map[:_SALT] = secrets.token_bytes(_SALT)
        else:
            self._fd = os.open(path, os.O_RDWR)
            self._map = mmap.mmap(self._fd, _SIZE)
        self._salt = bytes(self._map[:_SALT])
        self._lock = threading.Lock()  # fcntl locks are per process, not per thread

    @staticmethod
    @contextmanager
    def shared() -> Iterator[Path]:
        """A new, empty table for the workers of one run, at the path they open it by, while
        the block runs. On Linux it is a file with no name (`memfd`) that the workers open
        through this process's /proc entry, so nothing is left behind even when every
        process is killed; elsewhere, a temporary file removed at the end."""
        if hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd"):
            fd = os.memfd_create("counterfake-rates")
            path = None
        else:
            fd, name = tempfile.mkstemp(prefix="counterfake-rates-")
            path = Path(name)
        try:
            os.ftruncate(fd, _SIZE)
            os.pwrite(fd, secrets.token_bytes(_SALT), 0)
            yield path or Path(f"/proc/{os.getpid()}/fd/{fd}")
        finally:
            os.close(fd)
            if path is not None:
                path.unlink(missing_ok=True)

    def take(self, name: str, rate: float, burst: float) -> int:
        """Takes one token from `name`'s bucket: 0 if there was one, else the whole seconds
        until there will be (and nothing is taken)."""
        digest = hashlib.blake2b(name.encode(), key=self._salt, digest_size=8).digest()
        tag = int.from_bytes(digest, "little") or 1
        start = _SALT + (tag % _GROUPS) * _GROUP_BYTES
        now = time.monotonic()  # one clock for every process of the machine
        with self._held(start):
            slots = [_SLOT.unpack_from(self._map, start + i * _SLOT.size) for i in range(_WAYS)]
            mine = next((i for i, slot in enumerate(slots) if slot[0] == tag), None)
            if mine is None:
                mine = min(range(_WAYS), key=lambda i: (slots[i][0] != 0, slots[i][2]))
                tokens = burst
            else:
                _, tokens, at = slots[mine]
                tokens = min(burst, tokens + max(0.0, now - at) * rate)
            wait = 0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = max(1, math.ceil((1.0 - tokens) / rate))
            _SLOT.pack_into(self._map, start + mine * _SLOT.size, tag, tokens, now)
        return wait

    @contextmanager
    def _held(self, start: int) -> Iterator[None]:
        with self._lock:
            if self._fd is None:
                yield
                return
            fcntl.lockf(self._fd, fcntl.LOCK_EX, _GROUP_BYTES, start)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, _GROUP_BYTES, start)


class RateLimiter:
    """`rate` requests a second on average and `burst` at once (0: one second's worth), per
    name, in `table`."""

    def __init__(self, rate: float, burst: int, table: BucketTable, kind: str) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._table = table
        self._kind = kind  # keys and addresses never share a bucket

    def take(self, name: str, rate: float | None = None) -> int:
        """0 when `name` may send this request now; otherwise the whole seconds until it may
        (for `Retry-After`), and nothing is taken. `rate` replaces the default for this name
        (a key's own limit); 0 is no limit."""
        rate = self.rate if rate is None else rate
        if rate <= 0:
            return 0
        burst = self.burst or math.ceil(rate)
        return self._table.take(f"{self._kind}:{name}", rate, burst)
