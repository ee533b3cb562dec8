"""Multi-index hashing: exact Hamming range search over millions of 256-bit codes.

The code is cut into m disjoint substrings of b bits (m * b <= 256), each with a table from
substring value to the codes holding it. If two codes are within r, their substrings' distances
add up to at most r, so for any rho_t with sum(rho_t + 1) >= r + 1 some substring t is within
rho_t: probing every key within rho_t of the query's, in every table, finds every code within r
(pigeonhole). For r = 31 at 10M codes: 12 tables of 21 bits, rho 2 in eight and 1 in four.

Tables are counting-sorted arrays of 3-byte slot numbers (4 above 16M codes), with a 4-byte
offset per block of 16 keys and a 2-byte end per key within its block; ids are kept as 4-byte
offsets from the smallest id when they fit, and tombstones as a bitmap. At 10M codes: 32 bytes
of code, 4 of id, 36 of tables and under 6 of offsets, about 78 bytes a code.
Which bits form a substring is chosen from the data: PDQ bits are correlated and unbalanced,
and substrings of correlated bits pile codes into a few buckets.

New codes go to a delta: a tail scanned linearly and, once the tail holds `MAX_SCANNED` codes,
tables of the delta's own (the *sealed* delta, a small index rebuilt with the tail); removals
are tombstones that searches skip at once. Scanning the delta cost a lookup at 10M codes as
much as the tables did (0.88 against 0.37 ms at p50 with 262,144 codes in it); searching the
sealed delta's tables costs it about 0.1 ms. When the delta outgrows an eighth of the main
part, or `MAX_DELTA` codes, both are merged into new tables (unless `merge=False`: then the
owner seals and rebuilds with `rebuilder()` when it chooses, off its lock, by the same
bounds). A merge appends the delta to copies of the tables, one sequential pass each, while
the substrings' bits and the tables' shape still suit the codes; otherwise, and to drop
tombstones past an eighth, it builds afresh.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import numpy as np

from .._memory import release_freed_memory
from ..errors import UsageError
from . import _kernels, hamming

__all__ = ["MultiIndexHammingIndex"]

_MIN_DELTA: Final = 65_536
_INITIAL_HITS: Final = 64
_BLOCK: Final = _kernels.BLOCK  # keys per stored offset
_PARALLEL_FROM: Final = 8  # queries per call before threads pay for their start-up
_SPLIT_FROM: Final = 500_000  # codes before one query's tables are worth spreading over cores


def _choose_shape(n: int) -> tuple[int, int]:
    """(tables, bits per table): about 2-5 codes per bucket, at most 21 bits (8 MB offsets)."""
    bits = max(8, min(21, math.ceil(math.log2(max(n, 2))) - 2))
    return 256 // bits, bits


def _ball(bits: int, rho: int) -> int:
    return sum(math.comb(bits, k) for k in range(rho + 1)) if rho >= 0 else 0


def _rhos(tables: int, radius: int) -> np.ndarray:
    q, rem = divmod(radius + 1, tables)
    return np.array([q if t < rem else q - 1 for t in range(tables)], dtype=np.int64)


def _choose_bits(sample: np.ndarray, tables: int, bits: int) -> np.ndarray:
    """Deal bits to substrings so each holds balanced, weakly correlated bits."""
    if sample.shape[0] < 64:
        order = np.arange(256)
        return order[: tables * bits].reshape(bits, tables).T.copy()
    unpacked = np.unpackbits(sample.view(np.uint8), axis=1, bitorder="little").astype(np.float32)
    mean = unpacked.mean(axis=0)
    centred = unpacked - mean
    std = np.sqrt((centred**2).mean(axis=0)) + 1e-6
    corr = np.abs((centred.T @ centred) / sample.shape[0] / np.outer(std, std))
    np.fill_diagonal(corr, 0.0)
    imbalance = np.abs(mean - 0.5)
    remaining = np.ones(256, dtype=bool)
    chosen: list[list[int]] = [[] for _ in range(tables)]
    for _ in range(bits):
        for t in range(tables):
            cost = imbalance * 2.0
            if chosen[t]:
                cost = cost + corr[:, chosen[t]].sum(axis=1)
            cost = np.where(remaining, cost, np.inf)
            best = int(np.argmin(cost))
            chosen[t].append(best)
            remaining[best] = False
    return np.array(chosen, dtype=np.int64)


def _bitmap(n: int, value: bool) -> np.ndarray:
    return np.full((n + 7) // 8, 0xFF if value else 0, dtype=np.uint8)


def _alive(bitmap: np.ndarray, slots: np.ndarray) -> np.ndarray:
    bits = (bitmap[slots >> 3] >> (slots & 7).astype(np.uint8)) & 1
    return np.asarray(bits, dtype=bool)


def _clear(bitmap: np.ndarray, slots: np.ndarray) -> None:
    np.bitwise_and.at(bitmap, slots >> 3, ~(np.uint8(1) << (slots & 7).astype(np.uint8)))


def _set(bitmap: np.ndarray, slots: np.ndarray) -> None:
    np.bitwise_or.at(bitmap, slots >> 3, np.uint8(1) << (slots & 7).astype(np.uint8))


class MultiIndexHammingIndex:
    """Exact range search; `add` and `remove` take effect for the next search, no rebuild."""

    def __init__(
        self,
        ids: Sequence[int] | np.ndarray = (),
        codes: np.ndarray | None = None,
        *,
        merge: bool = True,
    ):
        codes = np.zeros((0, 4), np.uint64) if codes is None else codes
        self._merge_on_add = merge
        self._build(np.asarray(ids, dtype=np.int64), np.asarray(codes, dtype=np.uint64))
        release_freed_memory()  # after _build's scratch arrays are gone

    @classmethod
    def warm_up(cls) -> None:
        """Compile (or load from Numba's cache) every search kernel a query can take: serial,
        batched, and one query spread over cores (used from _SPLIT_FROM codes). A long-running
        process calls this at start, so that no request waits for a compilation (seconds)
        when its bank grows past a threshold."""
        rng = np.random.default_rng(0)
        codes = rng.integers(0, 2**63, size=(4096, 4), dtype=np.int64).view(np.uint64)
        index = cls(np.arange(4096), codes)
        rhos = _rhos(index._tables, 31)
        index._run_split(codes[0], 31, rhos)
        for queries in (codes[:1], codes[:_PARALLEL_FROM]):
            index._run(queries, 31, rhos, True, index._codes, index._alive)

    # construction ------------------------------------------------------------------------------

    def _build(self, ids: np.ndarray, codes: np.ndarray) -> None:
        codes = codes.reshape(-1, 4)
        if ids.shape[0] != codes.shape[0]:
            raise UsageError("ids and codes differ in length")
        order = np.argsort(ids, kind="stable")
        ids, codes = ids[order], codes[order]
        if ids.size and np.any(ids[1:] == ids[:-1]):
            keep = np.ones(ids.size, dtype=bool)
            keep[:-1] = ids[1:] != ids[:-1]  # the last code given for an id wins
            ids, codes = ids[keep], codes[keep]
        codes = np.ascontiguousarray(codes)
        n = ids.shape[0]
        self._tables, self._bits = _choose_shape(n)
        rng = np.random.default_rng(0)
        sample = codes[rng.choice(n, size=min(n, 65_536), replace=False)] if n else codes
        self._bitpos = _choose_bits(np.ascontiguousarray(sample), self._tables, self._bits)
        buckets = 1 << self._bits
        # A slot is split into 16 low bits and the rest: 3 bytes a slot below 16M codes.
        self._low = np.zeros((self._tables, n), dtype=np.uint16)
        self._high = np.zeros((self._tables, n), dtype=np.uint8 if n <= 1 << 24 else np.uint16)
        self._starts = np.zeros((self._tables, buckets // _BLOCK + 1), dtype=np.uint32)
        counts_dtype: type[np.unsignedinteger[Any]] = np.uint16
        per_table = []
        for t in range(self._tables):
            keys = _kernels.substring_keys(codes, self._bitpos, t)
            counts = _kernels.key_counts(keys, buckets)
            first = np.zeros(buckets, dtype=np.int64)
            np.cumsum(counts[:-1], out=first[1:])
            self._starts[t, :-1] = first[::_BLOCK]
            self._starts[t, -1] = n
            _kernels.fill_members(keys, first, self._low[t], self._high[t])
            # Each key's end, counted from the start of its block of 16 keys.
            ends = np.cumsum(counts.reshape(-1, _BLOCK), axis=1).reshape(-1)
            if ends.max(initial=0) > np.iinfo(np.uint16).max:
                counts_dtype = np.uint32  # a block of keys shared by over 65,535 codes
            per_table.append(ends)
        self._counts = np.stack(per_table).astype(counts_dtype)
        self._id_base = int(ids[0]) if n else 0
        narrow = n == 0 or int(ids[-1]) - self._id_base < 2**32
        self._ids = (ids - self._id_base).astype(np.uint32) if narrow else ids
        self._codes = codes
        self._alive = _bitmap(n, True)
        self._live_main = n
        self._bits_chosen_at = n
        self._plans: dict[int, tuple[np.ndarray, bool]] = {}
        self._empty_delta()

    def _empty_delta(self) -> None:
        self._sealed: MultiIndexHammingIndex | None = None
        self._empty_tail()

    def _empty_tail(self) -> None:
        self._delta_ids = np.zeros(1024, dtype=np.int64)
        self._delta_codes = np.zeros((1024, 4), dtype=np.uint64)
        self._delta_alive = _bitmap(1024, False)
        self._delta_n = 0
        self._live_delta = 0

    def _main_ids(self, slots: np.ndarray) -> np.ndarray:
        return np.asarray(self._ids[slots], dtype=np.int64) + self._id_base

    def _merge(self, *, seal: bool = False) -> None:
        vars(self).update(vars(self.rebuilder(seal=seal)()))
        release_freed_memory()

    def rebuilder(self, *, seal: bool = False) -> Callable[[], MultiIndexHammingIndex]:
        """A new index of the live codes, in two steps like `snapshot()`: taken now, cheaply
        (under the owner's lock), and built later, off it. With `seal`, the tables are kept
        and the whole delta gets tables of its own (its tail is then empty). Else the delta is
        folded into copies of the tables, one sequential pass each (at 10M codes a fraction
        of a build, which scatters every slot), when a fresh build would shape the tables
        alike: new ids above the tables' ids, the same table shape, under an eighth of the
        slots tombstones, and at most twice the codes the substrings' bits were chosen from.
        Else it builds afresh."""
        taken = _Taken(self)

        def build() -> MultiIndexHammingIndex:
            if seal:
                return taken.index._with_delta_sealed(taken.alive, *taken.live_delta())
            folded = taken.index._folded(taken.alive, *taken.live_delta())
            if folded is not None:
                return folded
            return MultiIndexHammingIndex(*taken.arrays(), merge=taken.index._merge_on_add)

        return build

    def _with_delta_sealed(
        self, alive: np.ndarray, ids: np.ndarray, codes: np.ndarray
    ) -> MultiIndexHammingIndex:
        """This index's tables (with `alive`, a copy of their liveness as taken) and `codes`
        as its sealed delta, its tail empty."""
        sealed = copy.copy(self)
        sealed._alive = alive
        sealed._plans = {}
        sealed._empty_tail()
        sealed._sealed = MultiIndexHammingIndex(ids, codes, merge=False) if ids.size else None
        return sealed

    def _folded(
        self, alive: np.ndarray, ids: np.ndarray, codes: np.ndarray
    ) -> MultiIndexHammingIndex | None:
        """This index with `codes` appended to its tables (None where a build is due)."""
        order = np.argsort(ids, kind="stable")
        ids, codes = ids[order], np.ascontiguousarray(codes[order])
        old = self._ids.size
        slots, live = old + ids.size, self._live_main + ids.size
        if (
            not old
            or not ids.size
            or np.any(ids[1:] == ids[:-1])
            or int(ids[0]) <= int(self._ids[-1]) + self._id_base
            or int(ids[-1]) - self._id_base >= np.iinfo(self._ids.dtype).max
            or _choose_shape(live) != (self._tables, self._bits)
            or (self._high.dtype == np.uint8 and slots > 1 << 24)
            or slots - live > slots // 8
            or live > 2 * self._bits_chosen_at
        ):
            return None
        low = np.empty((self._tables, slots), dtype=self._low.dtype)
        high = np.empty((self._tables, slots), dtype=self._high.dtype)
        starts = np.empty_like(self._starts)
        ends = np.empty_like(self._counts)
        for t in range(self._tables):
            largest = _kernels.fold_table(
                self._starts[t],
                self._counts[t],
                self._low[t],
                self._high[t],
                _kernels.substring_keys(codes, self._bitpos, t),
                old,
                starts[t],
                ends[t],
                low[t],
                high[t],
            )
            if largest > np.iinfo(ends.dtype).max:
                return None  # a block of keys outgrew its ends' type: a build widens it
        folded = copy.copy(self)
        folded._low, folded._high, folded._starts, folded._counts = low, high, starts, ends
        folded._ids = np.concatenate([self._ids, (ids - self._id_base).astype(self._ids.dtype)])
        folded._codes = np.concatenate([self._codes, codes])
        folded._alive = _bitmap(slots, True)
        folded._alive[: alive.size] = alive
        _set(folded._alive, np.arange(old, slots))
        folded._live_main = live
        folded._plans = {}
        folded._empty_delta()
        return folded

    # the HammingIndex interface ------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._live_main + self.pending)

    @property
    def pending(self) -> int:
        """Live codes in the delta (its tail and its sealed part), not yet in the tables."""
        return int(self._live_delta) + (len(self._sealed) if self._sealed is not None else 0)

    @property
    def scanned(self) -> int:
        """Codes that every search scans linearly (the delta's tail, tombstones included)."""
        return int(self._delta_n)

    @property
    def tabled(self) -> int:
        """Live codes in the tables."""
        return int(self._live_main)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the live ids and codes, to build a fresh index from (reads only)."""
        return self.snapshot()()

    def snapshot(self) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        """`arrays()` in two steps: taken now, cheaply (under the owner's lock), and copied
        out later, off it. The tables' codes and ids never change once built (removals only
        clear liveness bits), so only the bitmap and the delta are copied now; copying 10M
        codes under the lock held lookups up for seconds."""
        taken = _Taken(self)
        return taken.arrays

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays (codes, ids, tables, delta), for memory reports."""
        arrays = (
            self._codes,
            self._ids,
            self._alive,
            self._starts,
            self._counts,
            self._low,
            self._high,
            self._delta_codes,
            self._delta_ids,
            self._delta_alive,
        )
        sealed = self._sealed.nbytes if self._sealed is not None else 0
        return int(sum(a.nbytes for a in arrays)) + sealed

    def add(self, ids: Sequence[int], codes: np.ndarray) -> None:
        new_ids = np.asarray(ids, dtype=np.int64)
        codes = np.asarray(codes, dtype=np.uint64).reshape(-1, 4)
        if new_ids.shape[0] != codes.shape[0]:
            raise UsageError("ids and codes differ in length")
        held = self._held_in_tables(new_ids, codes)
        if held.any():  # as a matcher's replay after a load does: kept in place, foldable
            new_ids, codes = new_ids[~held], codes[~held]
        self.remove(new_ids.tolist())
        needed = self._delta_n + new_ids.shape[0]
        if needed > self._delta_ids.shape[0]:
            capacity = max(needed, 2 * self._delta_ids.shape[0])
            self._delta_ids = np.resize(self._delta_ids, capacity)
            alive = _bitmap(capacity, False)
            alive[: self._delta_alive.size] = self._delta_alive
            self._delta_alive = alive
            grown = np.zeros((capacity, 4), dtype=np.uint64)
            grown[: self._delta_n] = self._delta_codes[: self._delta_n]
            self._delta_codes = grown
        end = self._delta_n + new_ids.shape[0]
        self._delta_ids[self._delta_n : end] = new_ids
        self._delta_codes[self._delta_n : end] = codes
        _set(self._delta_alive, np.arange(self._delta_n, end))
        self._delta_n = end
        self._live_delta += new_ids.shape[0]
        limit = max(_MIN_DELTA, min(hamming.MAX_DELTA, self._live_main // 8))
        if self._merge_on_add and self.pending > limit:
            self._merge()
        elif self._merge_on_add and self._delta_n >= hamming.MAX_SCANNED:
            self._merge(seal=True)

    def _held_in_tables(self, ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Which (id, code) pairs the tables hold already, alive: adding them again would
        only move them to the delta, and an id below the tables' last stops a fold."""
        held = np.zeros(ids.shape[0], dtype=bool)
        if not self._ids.size or not ids.size:
            return held
        relative = ids - self._id_base
        inside = np.flatnonzero((relative >= 0) & (relative <= int(self._ids[-1])))
        at = np.searchsorted(self._ids, relative[inside].astype(self._ids.dtype))
        at = np.minimum(at, self._ids.size - 1)
        same = (np.asarray(self._ids[at], dtype=np.int64) == relative[inside]) & _alive(
            self._alive, at
        )
        same &= np.all(self._codes[at] == codes[inside], axis=1)
        held[inside[same]] = True
        return held

    def remove(self, ids: Iterable[int]) -> None:
        gone = np.fromiter(ids, dtype=np.int64)
        if gone.size == 0:
            return
        if self._ids.size:
            relative = gone - self._id_base
            relative = relative[(relative >= 0) & (relative <= int(self._ids[-1]))]
            at = np.searchsorted(self._ids, relative.astype(self._ids.dtype))
            at = at[at < self._ids.size]
            hit = at[np.isin(self._ids[at], relative.astype(self._ids.dtype))]
            hit = np.unique(hit[_alive(self._alive, hit)])
            _clear(self._alive, hit)
            self._live_main -= int(hit.size)
        if self._sealed is not None:
            self._sealed.remove(gone.tolist())
        if self._delta_n:
            in_delta = np.flatnonzero(np.isin(self._delta_ids[: self._delta_n], gone))
            hit = in_delta[_alive(self._delta_alive, in_delta)]
            _clear(self._delta_alive, hit)
            self._live_delta -= int(hit.size)

    def search(self, codes: np.ndarray, radius: int) -> list[list[tuple[int, int]]]:
        """For each query row, every (id, distance) within `radius`, nearest first."""
        query_index, ids, distances = self.search_arrays(codes, radius)
        results: list[list[tuple[int, int]]] = [[] for _ in range(int(np.asarray(codes).size // 4))]
        order = np.lexsort((ids, distances, query_index))
        for q, entry, d in zip(
            query_index[order].tolist(), ids[order].tolist(), distances[order].tolist(), strict=True
        ):
            results[q].append((entry, d))
        return results

    def search_arrays(
        self, codes: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hits as three flat arrays (query row, id, distance), for callers that batch."""
        queries = np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).reshape(-1, 4))
        if not 0 <= radius <= 256:
            raise UsageError(f"radius must be 0-256, not {radius}")
        plan = self._plans.get(radius)
        if plan is None:
            rhos = _rhos(self._tables, radius)
            probes = sum(_ball(self._bits, int(r)) for r in rhos)
            expected = probes * (1 + self._ids.size / (1 << self._bits))
            # Past half the codes in expected work, a plain scan is cheaper and as exact.
            plan = (rhos, bool(self._ids.size) and expected < self._ids.size / 2)
            self._plans[radius] = plan
        rhos, use_tables = plan
        rows, slots, dists = self._run(queries, radius, rhos, use_tables, self._codes, self._alive)
        parts = [(rows, self._main_ids(slots), dists)]
        if self._sealed is not None:
            parts.append(self._sealed.search_arrays(queries, radius))
        if self._delta_n:
            rows, slots, dists = self._run(
                queries, radius, rhos, False, self._delta_codes[: self._delta_n], self._delta_alive
            )
            parts.append((rows, self._delta_ids[slots], dists))
        if len(parts) == 1:
            return parts[0]
        return (
            np.concatenate([part[0] for part in parts]),
            np.concatenate([part[1] for part in parts]),
            np.concatenate([part[2] for part in parts]),
        )

    def _tables_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._bitpos, self._starts, self._counts, self._low, self._high

    def _run_split(
        self, query: np.ndarray, radius: int, rhos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One query over a large index: its tables searched on all cores at once."""
        capacity = _INITIAL_HITS
        while True:
            slots = np.empty((self._tables, capacity), dtype=np.int64)
            dists = np.empty((self._tables, capacity), dtype=np.int64)
            counts = np.zeros(self._tables, dtype=np.int64)
            _kernels.search_split(
                query,
                radius,
                rhos,
                *self._tables_args(),
                self._codes,
                self._alive,
                slots,
                dists,
                counts,
            )
            if counts.max(initial=0) <= capacity:
                break
            capacity = int(counts.max())
        rows, cols = np.nonzero(np.arange(capacity)[None, :] < counts[:, None])
        unique, first = np.unique(slots[rows, cols], return_index=True)
        return np.zeros(unique.size, dtype=np.int64), unique, dists[rows, cols][first]

    def _run(
        self,
        queries: np.ndarray,
        radius: int,
        rhos: np.ndarray,
        use_tables: bool,
        codes: np.ndarray,
        alive: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query row, slot, distance) of every hit among `codes`."""
        n_queries = queries.shape[0]
        if codes.shape[0] == 0 or n_queries == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        if n_queries == 1 and use_tables and codes.shape[0] >= _SPLIT_FROM:
            return self._run_split(queries[0], radius, rhos)
        kernel = _kernels.search_serial if n_queries < _PARALLEL_FROM else _kernels.search_many
        tables = self._tables_args()

        def search(queries: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """Hits of each query, at most `room` kept, and each query's count of hits."""
            slots = np.empty((queries.shape[0], room), dtype=np.int64)
            dists = np.empty((queries.shape[0], room), dtype=np.int64)
            counts = np.zeros(queries.shape[0], dtype=np.int64)
            kernel(
                queries,
                radius,
                rhos,
                *tables,
                codes,
                alive,
                use_tables,
                codes.shape[0],
                slots,
                dists,
                counts,
            )
            return slots, dists, counts

        capacity = _INITIAL_HITS
        slots, dists, counts = search(queries, capacity)
        rows, cols = np.nonzero(np.arange(capacity)[None, :] < counts[:, None])
        overflow = np.flatnonzero(counts > capacity)
        if not overflow.size:
            return rows, slots[rows, cols], dists[rows, cols]
        # Rare: more hits than the buffer held. Search those queries again with room.
        keep = counts[rows] <= capacity
        rows, cols = rows[keep], cols[keep]
        room = int(counts[overflow].max())
        more_slots, more_dists, more_counts = search(queries[overflow], room)
        r2, c2 = np.nonzero(np.arange(room)[None, :] < more_counts[:, None])
        return (
            np.concatenate([rows, overflow[r2]]),
            np.concatenate([slots[rows, cols], more_slots[r2, c2]]),
            np.concatenate([dists[rows, cols], more_dists[r2, c2]]),
        )


class _Taken:
    """An index as it is now, for `snapshot()` and `rebuilder()`: a shallow copy (the tables'
    arrays never change once built), and copies of what does change (the liveness bitmap,
    the delta's tail, the sealed delta's liveness). Taken under the owner's lock; read off
    it."""

    def __init__(self, index: MultiIndexHammingIndex) -> None:
        n = index._delta_n
        self.index = copy.copy(index)
        self.alive = index._alive.copy()
        self._sealed = _Taken(index._sealed) if index._sealed is not None else None
        self._delta_ids, self._delta_codes = (
            index._delta_ids[:n].copy(),
            index._delta_codes[:n].copy(),
        )
        self._delta_alive = index._delta_alive.copy()

    def live_delta(self) -> tuple[np.ndarray, np.ndarray]:
        """The live ids and codes of the sealed delta, then of the tail."""
        keep = np.flatnonzero(_alive(self._delta_alive, np.arange(self._delta_ids.size)))
        if self._sealed is None:
            return self._delta_ids[keep], self._delta_codes[keep]
        sealed_ids, sealed_codes = self._sealed.arrays()
        return (
            np.concatenate([sealed_ids, self._delta_ids[keep]]),
            np.concatenate([sealed_codes, self._delta_codes[keep]]),
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        keep = np.flatnonzero(_alive(self.alive, np.arange(self.index._ids.size)))
        delta_ids, delta_codes = self.live_delta()
        ids = np.concatenate([self.index._main_ids(keep), delta_ids])
        return ids, np.concatenate([self.index._codes[keep], delta_codes])
