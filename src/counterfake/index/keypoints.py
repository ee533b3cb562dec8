"""The shortlist for derivative matching: which protected photos share descriptors with an
upload, without comparing the upload to every photo.

Locality-sensitive hashing on ORB descriptors: each descriptor is filed under four 20-bit keys
(bits of four disjoint byte ranges). A true correspondence (typically under 40 bits apart)
shares at least one key often enough that a photo with a few dozen of them collects votes,
while an unrelated photo collects a handful; each vote counts 1/(descriptors under that key),
so that the keys of common texture do not drown the rest. Photos with the most votes are verified
geometrically (derivatives.verify). Per descriptor: one 4-byte photo number per table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np

__all__ = ["KeypointShortlist"]

_TABLES: Final = 4
_KEY_BITS: Final = 20


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
        self._pending_keys: list[np.ndarray] = []
        self._pending_photos: list[np.ndarray] = []
        self._sorted_keys = np.zeros((_TABLES, 0), np.uint32)
        self._sorted_photos = np.zeros((_TABLES, 0), np.uint32)
        self._removed = bytearray()

    def __len__(self) -> int:
        return len(self._number)

    def add(self, entry_id: int, descriptors: np.ndarray) -> None:
        if entry_id in self._number:
            return
        number = len(self._entries)
        self._entries.append(entry_id)
        self._number[entry_id] = number
        self._removed.append(0)
        self._pending_keys.append(_keys(descriptors))
        self._pending_photos.append(np.full(descriptors.shape[0], number, np.uint32))

    def remove(self, entry_ids: Iterable[int]) -> None:
        for entry_id in entry_ids:
            number = self._number.pop(entry_id, None)
            if number is not None:
                self._removed[number] = 1

    def _merge(self) -> None:
        keys = np.concatenate([self._sorted_keys, *self._pending_keys], axis=1)
        photos = np.concatenate(
            [
                self._sorted_photos,
                *(np.broadcast_to(p, (_TABLES, p.size)) for p in self._pending_photos),
            ],
            axis=1,
        )
        order = np.argsort(keys, axis=1, kind="stable")
        self._sorted_keys = np.take_along_axis(keys, order, axis=1)
        self._sorted_photos = np.take_along_axis(photos, order, axis=1)
        self._pending_keys.clear()
        self._pending_photos.clear()

    def candidates(self, descriptors: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """Up to `limit` (entry id, weighted votes), most first; photos without votes left out."""
        if self._pending_keys:
            self._merge()
        if not self._number or descriptors.shape[0] == 0:
            return []
        queried = _keys(descriptors)
        hits, weights = [], []
        for t in range(_TABLES):
            column = self._sorted_keys[t]
            start = np.searchsorted(column, queried[t], side="left")
            lengths = np.searchsorted(column, queried[t], side="right") - start
            total = int(lengths.sum())
            if total == 0:
                continue
            index = np.repeat(start - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
            hits.append(self._sorted_photos[t][index])
            # A key shared by many descriptors says little: weigh each hit by 1/bucket size.
            weights.append(np.repeat(1.0 / np.maximum(lengths, 1), lengths))
        if not hits:
            return []
        votes = np.bincount(
            np.concatenate(hits), weights=np.concatenate(weights), minlength=len(self._entries)
        )
        votes[np.frombuffer(bytes(self._removed), np.uint8).astype(bool)] = 0
        best = np.argsort(-votes, kind="stable")[:limit]
        return [(self._entries[n], float(votes[n])) for n in best if votes[n] > 0]
