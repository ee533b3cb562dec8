"""What a channel stamps on many unrelated images: a bot's watermark, a logo, a caption bar.

Every free output of the 2020 bot carried the same stamp, and two fakes of different people
that share it share dozens of keypoints: enough, before this module, to link them. An overlay
is found per archive as keypoints that recur, nearly identical and at the same image-relative
place, in many photos that are otherwise different:

1. Each keypoint is filed under keys made of its place (a 32x32 grid over the image, and the
   same grid shifted by half a cell) and some bits of its descriptor. A key that photos of at
   least `MIN_CARRIERS` different PDQ groups share is a candidate.
2. A candidate's keypoints are compared in full: the one with most neighbours within
   `_CLOSE` bits stands for it, and its neighbours are the *feature*. Random texture rarely
   comes within 40 bits of anything; the same stamp over different photos does.
3. Features seen in largely the same photos are one overlay; the photos with at least two of
   its keypoints carry it.
4. A photo posted many times (its copies share everything) is not an overlay: pairs of
   carriers are aligned without the overlay's cells, and when most still align, the features
   were the photo's own.

Clustering leaves a carrier's keypoints in the overlay's cells out of every link, so two
images that share only a stamp are never linked. The report lists each overlay with the posts
that carry it: who stamps what is evidence of who made it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np

from ..signals.keypoints import Features

__all__ = ["GRID", "Overlay", "find_overlays", "without_overlays"]

#: Cells per side of the image-relative grid an overlay's place is kept on.
GRID: Final = 32
#: Fewest different photos (PDQ groups) a feature must recur in to be an overlay's.
MIN_CARRIERS: Final = 6
#: Fewest features an overlay has: a stamp has many corners; a coincidence has one.
_MIN_FEATURES: Final = 4
_CLOSE: Final = 40  # bits: a keypoint this close to the feature's is the feature
_MEDOID_SAMPLE: Final = 384
#: Photos sharing a key that make it worth a full look at its place.
_SEED: Final = 3
#: Expected keypoints per key by chance, at most.
_CHANCE: Final = 1 / 16
#: Two features are one overlay's when this share of the rarer one's photos carry both.
_SAME_OVERLAY: Final = 0.3
_PAIRS_CHECKED: Final = 8


@dataclasses.dataclass(frozen=True, eq=False)
class Overlay:
    """One overlay: the images that carry it, and where it lies on each."""

    images: tuple[int, ...]  # image numbers, ascending
    masks: dict[int, np.ndarray]  # image -> (GRID, GRID) bool over the image, row = y
    box: tuple[float, float, float, float]  # left, top, right, bottom: fractions of the image
    features: int  # how many recurring features make it up


def _relative(features: Features) -> np.ndarray:
    return features.points / np.array([features.width, features.height], np.float32)


#: Where a stamp keeps its place as images change shape: relative to the whole image; to a
#: corner or the centre, in units of the shorter side; to the centre, in units of the width
#: or of the height.
_FRAMES: Final = (
    ("image", "image"),
    ("top left", "short"),
    ("top right", "short"),
    ("bottom left", "short"),
    ("bottom right", "short"),
    ("centre", "short"),
    ("centre", "width"),
    ("centre", "height"),
)


def _places(
    points: np.ndarray, size: np.ndarray, frame: tuple[str, str], shift: float
) -> np.ndarray:
    """Each keypoint's cell in one frame (cells of 1/GRID of the unit)."""
    anchor, unit = frame
    if anchor == "image":
        where = points / size
    else:
        side = {"short": size.min(axis=1), "width": size[:, 0], "height": size[:, 1]}[unit]
        if anchor == "centre":
            where = (points - size / 2) / side[:, None] + 1.0
        else:
            x = size[:, 0] - points[:, 0] if "right" in anchor else points[:, 0]
            y = size[:, 1] - points[:, 1] if "bottom" in anchor else points[:, 1]
            where = np.stack([x, y], axis=1) / side[:, None]
    cells = np.clip(np.floor(where * GRID + shift), 0, 2 * GRID).astype(np.int64)
    places: np.ndarray = cells[:, 0] * (2 * GRID + 1) + cells[:, 1]
    return places


def _key_bits(keypoints: int) -> int:
    """Descriptor bits in a key: few enough that a stamp's keypoints often share one, enough
    that chance seldom puts _SEED photos' keypoints under one."""
    per_place = keypoints / GRID**2
    return int(np.clip(np.ceil(np.log2(max(1.0, per_place / _CHANCE))), 8, 24))


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 32) x (m, 32) uint8 -> (n, m) bit distances."""
    x = a.view(np.uint64).reshape(-1, 1, 4)
    y = b.view(np.uint64).reshape(1, -1, 4)
    distances: np.ndarray = np.bitwise_count(x ^ y).sum(axis=2)
    return distances


class _Sets:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _recurring(
    group: np.ndarray, points: np.ndarray, size: np.ndarray, descriptors: np.ndarray
) -> list[np.ndarray]:
    """Features: arrays of keypoint rows, each nearly one descriptor at one place (in some
    frame), seen in at least MIN_CARRIERS groups; no two share most of their rows."""
    bits = _key_bits(len(group))
    found: list[np.ndarray] = []
    taken = np.zeros(len(group), bool)
    for frame in _FRAMES:
        for shift in (0.0, 0.5):
            place = _places(points, size, frame, shift)
            by_place = np.argsort(place, kind="stable")
            sorted_places = place[by_place]
            for byte in (0, 16):
                value = (
                    (descriptors[:, byte].astype(np.int64) << 16)
                    | (descriptors[:, byte + 1].astype(np.int64) << 8)
                    | descriptors[:, byte + 2]
                )
                keys = (place << bits) | (value >> (24 - bits))
                order = np.lexsort((group, keys))
                k, g = keys[order], group[order]
                # Distinct groups per key: the rows that start a new (key, group) pair.
                new_pair = np.ones(len(k), bool)
                new_pair[1:] = (k[1:] != k[:-1]) | (g[1:] != g[:-1])
                starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
                ends = np.r_[starts[1:], len(k)]
                seeds = np.add.reduceat(new_pair.astype(np.int64), starts) >= _SEED
                for start, end in zip(starts[seeds], ends[seeds], strict=True):
                    rows = order[start:end]
                    if taken[rows].all():
                        continue
                    sample = rows[:: max(1, len(rows) // _MEDOID_SAMPLE)]
                    near = _hamming(descriptors[sample], descriptors[sample]) <= _CLOSE
                    medoid = sample[int(near.sum(axis=1).argmax())]
                    lo = np.searchsorted(sorted_places, place[medoid], side="left")
                    hi = np.searchsorted(sorted_places, place[medoid], side="right")
                    here = by_place[lo:hi]
                    distance = _hamming(descriptors[medoid : medoid + 1], descriptors[here])[0]
                    close = here[distance <= _CLOSE]
                    if len(np.unique(group[close])) < MIN_CARRIERS or taken[close].mean() > 0.5:
                        continue
                    taken[close] = True
                    found.append(np.sort(close))
    return found


def find_overlays(
    features: Sequence[Features | None],
    group: Sequence[int],
    still_aligned: Callable[[int, int, np.ndarray, np.ndarray], bool],
) -> list[Overlay]:
    """The archive's overlays. `group[i]` is image i's PDQ group (copies do not count as
    different photos); `still_aligned(a, b, mask_a, mask_b)` says whether two images align
    with their keypoints in the masks' cells left out."""
    owners, points, sizes, descriptors = [], [], [], []
    for i, f in enumerate(features):
        if f is not None and len(f):
            owners.append(np.full(len(f), i, np.int64))
            points.append(f.points)
            sizes.append(np.tile(np.array([[f.width, f.height]], np.float32), (len(f), 1)))
            descriptors.append(f.descriptors)
    if not owners:
        return []
    owner = np.concatenate(owners)
    point = np.concatenate(points)
    size = np.concatenate(sizes)
    described = np.ascontiguousarray(np.concatenate(descriptors))
    groups = np.asarray(group, np.int64)[owner]
    found = _recurring(groups, point, size, described)
    if len(found) < _MIN_FEATURES:
        return []

    # Features seen in largely the same photos are one overlay's.
    carriers = [set(np.unique(groups[f]).tolist()) for f in found]
    by_group: dict[int, list[int]] = {}
    for n, gs in enumerate(carriers):
        for g in gs:
            by_group.setdefault(g, []).append(n)
    shared: dict[tuple[int, int], int] = {}
    for members in by_group.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pair = (members[a], members[b])
                shared[pair] = shared.get(pair, 0) + 1
    sets = _Sets(len(found))
    for (a, b), count in shared.items():
        if count >= 3 and count >= _SAME_OVERLAY * min(len(carriers[a]), len(carriers[b])):
            sets.union(a, b)
    parts: dict[int, list[int]] = {}
    for n in range(len(found)):
        parts.setdefault(sets.find(n), []).append(n)

    overlays = []
    relative = point / size
    for members in parts.values():
        if len(members) < _MIN_FEATURES:
            continue
        rows = np.unique(np.concatenate([found[n] for n in members]))
        images, counts = np.unique(owner[rows], return_counts=True)
        holders = images[counts >= 2]
        if len(np.unique(np.asarray(group)[holders])) < MIN_CARRIERS:
            continue
        rows = rows[np.isin(owner[rows], holders)]
        masks: dict[int, np.ndarray] = {}
        cells = np.clip((relative[rows] * GRID).astype(np.int64), 0, GRID - 1)
        for i in holders.tolist():
            mine = owner[rows] == i
            mask = np.zeros((GRID, GRID), bool)
            mask[cells[mine, 1], cells[mine, 0]] = True
            masks[i] = _grown(mask)
        if _one_photo(holders, masks, still_aligned):
            continue
        low = np.percentile(relative[rows], 2, axis=0)
        high = np.percentile(relative[rows], 98, axis=0)
        box = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
        overlays.append(Overlay(tuple(int(i) for i in holders), masks, box, len(members)))
    overlays.sort(key=lambda o: -len(o.images))
    return overlays


def _grown(mask: np.ndarray) -> np.ndarray:
    """The mask and its neighbouring cells: a stamp's edge keypoints sit a cell away."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    out = grown.copy()
    out[:, 1:] |= grown[:, :-1]
    out[:, :-1] |= grown[:, 1:]
    return out


def _one_photo(
    holders: np.ndarray,
    masks: dict[int, np.ndarray],
    still_aligned: Callable[[int, int, np.ndarray, np.ndarray], bool],
) -> bool:
    """Whether the holders are mostly copies of one photo: pairs still align off the masks."""
    n = len(holders)
    pairs = [(int(holders[k]), int(holders[(k * 7 + n // 2) % n])) for k in range(n)]
    pairs = [(a, b) for a, b in pairs if a != b][:_PAIRS_CHECKED]
    aligned = sum(1 for a, b in pairs if still_aligned(a, b, masks[a], masks[b]))
    return aligned * 2 > len(pairs)


def without_overlays(features: Features, masks: Sequence[np.ndarray]) -> Features:
    """The image's keypoints outside the cells of the overlays it carries."""
    if not masks or not len(features):
        return features
    mask = np.logical_or.reduce(list(masks))
    cells = np.clip((_relative(features) * GRID).astype(np.int64), 0, GRID - 1)
    keep = ~mask[cells[:, 1], cells[:, 0]]
    return dataclasses.replace(
        features, points=features.points[keep], descriptors=features.descriptors[keep]
    )
