"""The shortlist for derivative matching: which protected photos share descriptors with an
upload, without comparing the upload to every photo.

Locality-sensitive hashing on ORB descriptors: each descriptor is filed under four 20-bit keys
(bits of four disjoint byte ranges). A true correspondence (typically under 40 bits apart)
shares at least one key often enough; every descriptor found under a shared key is then
compared in full, and only those within 40 bits vote, once per query descriptor and photo.
Random collisions, which drown true ones in the buckets of common texture, are thrown out
there: at 64 bits the true source of a derivative with 40% replaced was among a 100-photo
bank's first 8 candidates 89% of the time, at 40 bits 96%. The photos with most votes are
verified geometrically (derivatives.verify).

The shortlist holds the descriptors themselves (one array for all photos, which verification
reads back with `descriptors`), a 4-byte row number and a check byte (the byte after the key's)
per descriptor and table, and per table 2^20 bucket offsets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np

__all__ = ["KeypointShortlist"]

_TABLES: Final = 4
#: Query descriptors looked up: ORB lists them level by level, finest first. The first 1,000
#: serve derivatives at about the photo's scale; a third of the rest (coarser levels) serve
#: crops, which enlarge the photo. Verification uses all of them.
_ASKED: Final = 1000
_KEY_BITS: Final = 20
_CLOSE: Final = 40  # bits: a descriptor this close is a vote
#: Most bits a bucket row's check byte may differ by before the full comparison: a descriptor
#: 40 bits of 256 away passes 97% of the time, 25 bits away 99.6%, a random one 36%.
_CHECK_BITS: Final = 3
#: One descriptor in common is chance: at 100,000 photos, leaving out single-vote photos cut
#: verifications per query from 25 to 7 and lost 1% of derivatives (the scale benchmark).
_MIN_VOTES: Final = 2
#: Buckets fuller than this (the keys of common texture) are not read: they cost most of the
#: time and hold few true correspondences.
_CROWDED: Final = 256


def _check_byte(table: int) -> int:
    """The descriptor byte a table keeps beside each row: the one after its key's bytes."""
    return 8 * table + 3


def _keys(descriptors: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 -> (tables, n) uint32 keys."""
    d = descriptors.astype(np.uint32)
    keys = np.empty((_TABLES, d.shape[0]), np.uint32)
    for t in range(_TABLES):
        b = 8 * t
        value = (d[:, b] << 16) | (d[:, b + 1] << 8) | d[:, b + 2]
        keys[t] = value >> (24 - _KEY_BITS)
    return keys


class KeypointShortlist:
    """Photos (by entry id) and their descriptors; `candidates` ranks them for a query."""

    def __init__(self) -> None:
        self._entries: list[int] = []  # photo number -> entry id
        self._number: dict[int, int] = {}
        self._removed = bytearray()
        self._pending: list[np.ndarray] = []  # descriptors of photos added since the merge
        self._descriptors = np.zeros((0, 4), np.uint64)  # all rows, 256 bits each
        self._first_rows = np.zeros(0, np.int64)  # photo number -> its first row (ascending)
        # Per table: row numbers grouped by key, and where each key's group starts; beside
        # each row number, the descriptor's check byte.
        self._offsets = np.zeros((_TABLES, 2), np.uint32)  # full size at the first merge
        self._rows = np.zeros((_TABLES, 0), np.uint32)
        self._checks = np.zeros((_TABLES, 0), np.uint8)

    def __len__(self) -> int:
        return len(self._number)

    def add(self, entry_id: int, descriptors: np.ndarray) -> None:
        if entry_id in self._number:
            return
        self._number[entry_id] = len(self._entries)
        self._entries.append(entry_id)
        self._removed.append(0)
        self._pending.append(np.ascontiguousarray(descriptors, dtype=np.uint8))

    def remove(self, entry_ids: Iterable[int]) -> None:
        for entry_id in entry_ids:
            number = self._number.pop(entry_id, None)
            if number is not None:
                self._removed[number] = 1

    def descriptors(self, entry_id: int) -> np.ndarray:
        """A photo's descriptors as (n, 32) uint8 (a view: do not modify)."""
        self._merge()
        number = self._number[entry_id]
        first = int(self._first_rows[number])
        end = (
            int(self._first_rows[number + 1])
            if number + 1 < self._first_rows.size
            else self._descriptors.shape[0]
        )
        return self._descriptors[first:end].view(np.uint8)

    def _merge(self) -> None:
        if not self._pending:
            return
        first_row = self._descriptors.shape[0]
        added = np.concatenate(self._pending)
        counts = np.array([d.shape[0] for d in self._pending], np.int64)
        firsts = first_row + np.cumsum(counts) - counts
        self._first_rows = np.concatenate([self._first_rows, firsts])
        row = first_row + int(counts.sum())
        self._descriptors = np.concatenate([self._descriptors, added.view(np.uint64)])
        new_keys = _keys(added)
        new_rows = np.arange(first_row, row, dtype=np.uint32)
        buckets = np.arange(1 << _KEY_BITS, dtype=np.uint32)
        offsets = np.empty((_TABLES, (1 << _KEY_BITS) + 1), np.uint32)
        rows = np.empty((_TABLES, row), np.uint32)
        checks = np.empty((_TABLES, row), np.uint8)
        for t in range(_TABLES):
            held = np.repeat(buckets[: self._offsets.shape[1] - 1], np.diff(self._offsets[t]))
            keys = np.concatenate([held, new_keys[t]])
            order = np.argsort(keys, kind="stable")
            rows[t] = np.concatenate([self._rows[t], new_rows])[order]
            checks[t] = np.concatenate([self._checks[t], added[:, _check_byte(t)]])[order]
            offsets[t] = np.searchsorted(keys[order], np.arange((1 << _KEY_BITS) + 1))
        self._offsets, self._rows, self._checks = offsets, rows, checks
        self._pending.clear()

    def candidates(self, descriptors: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """Up to `limit` (entry id, votes), most first; photos with fewer than 2 votes are left
        out."""
        self._merge()
        if descriptors.shape[0] > _ASKED:
            descriptors = np.concatenate([descriptors[:_ASKED], descriptors[_ASKED::3]])
        if not self._number or descriptors.shape[0] == 0:
            return []
        query = np.ascontiguousarray(descriptors, dtype=np.uint8).view(np.uint64)
        keys = _keys(descriptors)
        checks = [descriptors[:, _check_byte(t)] for t in range(_TABLES)]
        pairs = []
        for t in range(_TABLES):
            start = self._offsets[t][keys[t]].astype(np.int64)
            lengths = self._offsets[t][keys[t] + 1].astype(np.int64) - start
            lengths[lengths > _CROWDED] = 0
            total = int(lengths.sum())
            if total == 0:
                continue
            at = np.repeat(start - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
            asking = np.repeat(np.arange(descriptors.shape[0], dtype=np.int64), lengths)
            # The check byte, read in bucket order, spares most full comparisons (each a
            # random read from the descriptor array: the cost of this method).
            mismatch = np.bitwise_count(self._checks[t][at] ^ checks[t][asking])
            plausible = mismatch <= _CHECK_BITS
            rows, asking = self._rows[t][at[plausible]], asking[plausible]
            distance = np.bitwise_count(self._descriptors[rows] ^ query[asking]).sum(axis=1)
            close = distance <= _CLOSE
            photos = np.searchsorted(self._first_rows, rows[close], side="right") - 1
            pairs.append(asking[close] * len(self._entries) + photos)
        if not pairs:
            return []
        voters = np.unique(np.concatenate(pairs)) % len(self._entries)  # one per descriptor
        votes = np.bincount(voters, minlength=len(self._entries)).astype(float)
        votes[np.frombuffer(bytes(self._removed), np.uint8).astype(bool)] = 0
        voted = np.flatnonzero(votes >= _MIN_VOTES)
        if voted.size > limit:  # only the best `limit` are ordered, not every photo
            voted = voted[np.argpartition(-votes[voted], limit - 1)[:limit]]
        best = voted[np.lexsort((voted, -votes[voted]))]
        return [(self._entries[n], float(votes[n])) for n in best]
