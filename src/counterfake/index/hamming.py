"""Exact Hamming range search over 256-bit codes, behind a small interface.

`LinearHammingIndex` scans every code (XOR and popcount over four uint64 words): simple and
exact, and the baseline a faster index must agree with. Anything with the same five methods
can replace it in matching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

import numpy as np

from ..errors import UsageError

__all__ = ["HammingIndex", "LinearHammingIndex", "codes_from_hex"]


#: Most codes a multi-index holds outside its tables (its delta, which every search scans)
#: before they are rebuilt with them, whatever the tables' size. At 10M codes a lookup took
#: 0.37 ms (p50) with no delta, 0.89 ms with 262,144 codes in it, and 2.76 ms (p99 5.72) with
#: 1,250,000, an eighth (benchmarks/index_delta.py). Folding 262,144 codes into 10M takes
#: 0.45 s alone (a build afresh 6.5 s), 3-6 s beside 2,000 adds a second.
MAX_DELTA: Final = 262_144
#: Most codes a multi-index scans linearly (its delta's tail) before its delta gets tables of
#: its own. At 10M codes, 65,536 scanned added 0.15 ms to a lookup's p50, and a delta of
#: 262,144 got its tables in 0.17 s alone (benchmarks/index_delta.py), 0.3-1.3 s in a
#: followed matcher beside 2,000 adds a second (benchmarks/index_stall.py).
MAX_SCANNED: Final = 32_768


def codes_from_hex(values: Sequence[str]) -> np.ndarray:
    """Many 64-digit hex hashes to the (n, 4) little-endian words an index holds, at once."""
    raw = np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32)
    return np.ascontiguousarray(raw[:, ::-1]).view("<u8")


class HammingIndex(Protocol):
    def add(self, ids: Sequence[int], codes: np.ndarray) -> None: ...

    def remove(self, ids: Iterable[int]) -> None: ...

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The live ids and (n, 4) codes, not to be changed later: what a rebuild starts from."""
        ...

    def snapshot(self) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        """`arrays()` as of now, to be copied out later, while the index goes on changing."""
        ...

    def search(self, codes: np.ndarray, radius: int) -> list[list[tuple[int, int]]]:
        """For each query row, every (id, distance) with distance <= radius, nearest first."""
        ...

    def __len__(self) -> int: ...


class LinearHammingIndex:
    """Brute force over a contiguous (n, 4) uint64 array."""

    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._codes = np.zeros((0, 4), dtype=np.uint64)

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def add(self, ids: Sequence[int], codes: np.ndarray) -> None:
        codes = np.asarray(codes, dtype=np.uint64).reshape(-1, 4)
        new_ids = np.asarray(ids, dtype=np.int64)
        if new_ids.shape[0] != codes.shape[0]:
            raise UsageError("ids and codes differ in length")
        # Re-adding an id replaces its code.
        self.remove(new_ids.tolist())
        self._ids = np.concatenate([self._ids, new_ids])
        self._codes = np.concatenate([self._codes, codes])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Its ids and (n, 4) codes, to build another index from."""
        return self._ids, self._codes

    def snapshot(self) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        """Changes replace the arrays rather than write into them: they are the snapshot."""
        ids, codes = self._ids, self._codes
        return lambda: (ids, codes)

    def remove(self, ids: Iterable[int]) -> None:
        gone = np.fromiter(ids, dtype=np.int64)
        if gone.size and self._ids.size:
            keep = ~np.isin(self._ids, gone)
            self._ids = self._ids[keep]
            self._codes = self._codes[keep]

    def search(self, codes: np.ndarray, radius: int) -> list[list[tuple[int, int]]]:
        queries = np.asarray(codes, dtype=np.uint64).reshape(-1, 4)
        results: list[list[tuple[int, int]]] = []
        for query in queries:
            distances = np.bitwise_count(self._codes ^ query).sum(axis=1, dtype=np.int64)
            hits = np.flatnonzero(distances <= radius)
            order = hits[np.argsort(distances[hits], kind="stable")]
            results.append([(int(self._ids[i]), int(distances[i])) for i in order])
        return results
