"""The shortlist for derivative matching: which protected photos share descriptors with an
upload, without comparing the upload to every photo.

Locality-sensitive hashing on ORB descriptors: each descriptor is filed under four 20-bit keys
(bits of four disjoint byte ranges). A true correspondence (typically under 40 bits apart)
shares at least one key often enough; every descriptor found under a shared key is then
compared in full, and only those within 64 bits vote, once per query descriptor and photo.
Random collisions, which drown true ones in the buckets of common texture, are thrown out
there. The photos with most votes are verified geometrically (derivatives.verify).

The shortlist holds the descriptors themselves (one array for all photos, which verification
reads back with `descriptors`), a 4-byte row number per descriptor and table, and per table
2^20 bucket offsets.
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
_CLOSE: Final = 64  # bits: a descriptor this close is a vote
#: Buckets fuller than this (the keys of common texture) are not read: they cost most of the
#: time and hold few true correspondences.
_CROWDED: Final = 256


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
        self._row_photo = np.zeros(0, np.uint32)
        self._photo_rows: list[tuple[int, int]] = []  # photo number -> (first row, count)
        # Per table: row numbers grouped by key, and where each key's group starts.
        self._offsets = np.zeros((_TABLES, 2), np.uint32)  # full size at the first merge
        self._rows = np.zeros((_TABLES, 0), np.uint32)
        self._merged_rows = 0

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
        first, count = self._photo_rows[self._number[entry_id]]
        return self._descriptors[first : first + count].view(np.uint8)

    def _merge(self) -> None:
        if not self._pending:
            return
        first_row = self._descriptors.shape[0]
        added = np.concatenate(self._pending)
        number = len(self._photo_rows)
        row = first_row
        photo_of_row = []
        for descriptors in self._pending:
            self._photo_rows.append((row, descriptors.shape[0]))
            photo_of_row.append(np.full(descriptors.shape[0], number, np.uint32))
            row += descriptors.shape[0]
            number += 1
        self._descriptors = np.concatenate([self._descriptors, added.view(np.uint64)])
        self._row_photo = np.concatenate([self._row_photo, *photo_of_row])
        new_keys = _keys(added)
        new_rows = np.arange(first_row, row, dtype=np.uint32)
        buckets = np.arange(1 << _KEY_BITS, dtype=np.uint32)
        offsets = np.empty((_TABLES, (1 << _KEY_BITS) + 1), np.uint32)
        rows = np.empty((_TABLES, row), np.uint32)
        for t in range(_TABLES):
            held = np.repeat(buckets[: self._offsets.shape[1] - 1], np.diff(self._offsets[t]))
            keys = np.concatenate([held, new_keys[t]])
            order = np.argsort(keys, kind="stable")
            rows[t] = np.concatenate([self._rows[t], new_rows])[order]
            offsets[t] = np.searchsorted(keys[order], np.arange((1 << _KEY_BITS) + 1))
        self._offsets, self._rows = offsets, rows
        self._pending.clear()

    def candidates(self, descriptors: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """Up to `limit` (entry id, votes), most first; photos without votes are left out."""
        self._merge()
        if descriptors.shape[0] > _ASKED:
            descriptors = np.concatenate([descriptors[:_ASKED], descriptors[_ASKED::3]])
        if not self._number or descriptors.shape[0] == 0:
            return []
        query = np.ascontiguousarray(descriptors, dtype=np.uint8).view(np.uint64)
        keys = _keys(descriptors)
        pairs = []
        for t in range(_TABLES):
            start = self._offsets[t][keys[t]].astype(np.int64)
            lengths = self._offsets[t][keys[t] + 1].astype(np.int64) - start
            lengths[lengths > _CROWDED] = 0
            total = int(lengths.sum())
            if total == 0:
                continue
            at = np.repeat(start - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
            rows = self._rows[t][at]
            asking = np.repeat(np.arange(descriptors.shape[0], dtype=np.int64), lengths)
            distance = np.bitwise_count(self._descriptors[rows] ^ query[asking]).sum(axis=1)
            close = distance <= _CLOSE
            photos = self._row_photo[rows[close]].astype(np.int64)
            pairs.append(asking[close] * len(self._entries) + photos)
        if not pairs:
            return []
        voters = np.unique(np.concatenate(pairs)) % len(self._entries)  # one per descriptor
        votes = np.bincount(voters, minlength=len(self._entries)).astype(float)
        votes[np.frombuffer(bytes(self._removed), np.uint8).astype(bool)] = 0
        best = np.argsort(-votes, kind="stable")[:limit]
        return [(self._entries[n], float(votes[n])) for n in best if votes[n] > 0]
