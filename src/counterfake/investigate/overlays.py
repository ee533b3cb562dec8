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
   its keypoints carry it. A stamp's carriers show many of its corners (at the median at least
   `_PER_CARRIER`); generic corners that chance puts at the same places in many pictures (a
   channel of drawn graphics) give each two or three, and are no overlay.
4. A photo posted many times (its copies share everything) is not an overlay: pairs of
   carriers are aligned without the overlay's cells, and when most still align, the features
   were the photo's own.

The search runs on a sample of a large archive's keypoints that holds each bot's output
(a bot stamps all it makes, and its output can be a small part of the channel); what it finds
is then looked for in every image.

Only some of a stamp's keypoints recur well enough to be found (thin text over changing photos
gives different corners on each), so an overlay's *footprint* is the convex hull of the places
a share of its carriers have it at, in the frame its features keep their place in: the whole
diagonal text, not only its steadiest letters. A photo of another shape puts the stamp at
another scale, off its features' places: an image with a few of its features anywhere on the
footprint carries it too, and a bot's output where it was still not seen is taken to carry it
when that bot posted most of its carriers.

Clustering leaves a carrier's keypoints on the footprint and in the overlay's own cells out of
every link, so two images that share only a stamp are never linked; a carrier that had many
there is signed again off them. The report lists each
overlay with the posts that carry it: who stamps what is evidence of who made it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..signals.keypoints import Features
from .engines import Runner, in_order, run_here
from .sets import DisjointSets
from .table import SignatureTable

__all__ = [
    "GRID",
    "Overlay",
    "carried",
    "find_overlays",
    "frame_features",
    "on_area",
    "stamped_area",
    "with_bot_output",
    "without_overlays",
]

#: Cells per side of the image-relative grid an overlay's place is kept on.
GRID: Final = 32
#: Fewest different photos (PDQ groups) a feature must recur in to be an overlay's.
MIN_CARRIERS: Final = 6
#: Fewest features an overlay has: a stamp has many corners; a coincidence has one.
_MIN_FEATURES: Final = 4
#: A stamp's carriers show many of its corners, at the median at least this many. Generic
#: corners that chance puts at the same places in many pictures give each of them two or three.
_PER_CARRIER: Final = 4
_CLOSE: Final = 40  # bits: a keypoint this close to the feature's is the feature
_MEDOID_SAMPLE: Final = 384
#: Photos sharing a key that make it worth a full look at its place.
_SEED: Final = 3
#: Places a seeded descriptor may recur at before it counts as generic texture.
_GENERIC: Final = 4
#: Expected keypoints per key by chance, at most.
_CHANCE: Final = 1 / 16
#: Two features are one overlay's when this share of the rarer one's photos carry both.
_SAME_OVERLAY: Final = 0.3
_PAIRS_CHECKED: Final = 8
#: Keypoints on a footprint, of its overlay's features, that make an image a carrier ...
_SEEN_AGAIN: Final = 3
#: ... looking for this many of its features, those seen most.
_LOOKED_FOR: Final = 64
_COMPARED: Final = 20_000  # keypoint rows compared with them at once
#: ... counting only features met this many times more often (per keypoint) on the footprint
#: than off it, measured on _OFF_SAMPLE to twice as many keypoints off it per piece of the
#: table (all of them when it has fewer).
_MET_ON_FOOTPRINT: Final = 4.0
_OFF_SAMPLE: Final = 200_000
#: A place is in the footprint when this share of the carriers (and two at least) have it.
_FOOTPRINT_SHARE: Final = 0.1
#: A footprint that would cover more of an image than this is not applied to it.
_FOOTPRINT_MOST: Final = 0.4
#: Points spread over an image (as fractions of it), to measure a footprint's area on it.
_AREA_SAMPLE: Final = (
    np.stack(np.meshgrid(np.arange(16), np.arange(16)), -1).reshape(-1, 2) + 0.5
) / 16
#: Working pixels per side of a cell of a stamped area.
_AREA_STEP: Final = 4
#: A bot that posted this share of an overlay's carriers is taken to stamp all its output.
_BOT_SHARE: Final = 0.5
#: Keypoint rows searched at once (memory: about 100 bytes each).
_PIECE: Final = 4_000_000
#: Keypoint rows overlays are looked for in (images spread over the archive); what is found
#: is then looked for in every image. A stamp on fewer than about MIN_CARRIERS of this many
#: rows' images goes unseen in a larger archive.
_SAMPLED_ROWS: Final = 2_000_000
#: Images of each bot's output put in the sample first, at most ...
_PER_BOT: Final = 600
#: ... and of the sample's rows, this share at most for all bots together.
_BOTS_SHARE: Final = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class Overlay:
    """One overlay: the images that carry it, and where it lies on each."""

    images: tuple[int, ...]  # image numbers, ascending
    masks: dict[int, np.ndarray]  # image -> (GRID, GRID) bool over the image, row = y
    box: tuple[float, float, float, float]  # left, top, right, bottom: fractions of the image
    features: int  # how many recurring features make it up
    frame: int = 0  # the frame (in _FRAMES) of its features that gives the tightest footprint
    #: (2 * GRID + 1, 2 * GRID + 1) bool over the frame's places (x, y): where the stamp lies
    footprint: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((2 * GRID + 1, 2 * GRID + 1), bool), repr=False
    )
    #: Images its main bot posted where it was not seen: taken to carry it all the same.
    unseen: tuple[int, ...] = ()


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


@dataclasses.dataclass(frozen=True, eq=False)
class _Feature:
    """Nearly one descriptor at one place of one frame, and the sampled rows that have it."""

    rows: np.ndarray
    frame: int
    shift: float
    place: int
    descriptor: np.ndarray  # (1, 32) uint8: the medoid's


def _frame_rows(table: SignatureTable, rows: np.ndarray, frame: int, shift: float) -> np.ndarray:
    owner = table.owners()[rows]
    sizes = table.sizes[owner].astype(np.float32)
    return _places(np.asarray(table.points[rows]), sizes, _FRAMES[frame], shift)


def frame_features(
    folder: Path, group: np.ndarray, frame: int, sampled: np.ndarray
) -> list[_Feature]:
    """A task (each frame is one, on any worker): the features of one frame among the sampled
    keypoint rows, each seen in at least MIN_CARRIERS groups. `group` is each image's PDQ
    group."""
    table = SignatureTable(folder)
    groups_of_row = group[table.owners()[sampled]]
    bits = _key_bits(len(sampled))
    found: list[_Feature] = []
    taken = np.zeros(len(table.excluded), bool)
    for shift in (0.0, 0.5):
        place = _frame_rows(table, sampled, frame, shift)
        by_place = np.argsort(place, kind="stable")
        sorted_places = place[by_place]
        # Places a few million rows at a time: a place's rows are all in one piece.
        cuts = np.searchsorted(sorted_places, sorted_places[::_PIECE], side="left")
        cuts = np.unique(np.r_[cuts, len(by_place)])
        for lo, hi in itertools.pairwise(cuts):
            at = by_place[lo:hi]
            for rows, where, descriptor in _seeded(
                sampled[at], place[at], groups_of_row[at], table.descriptors, bits, taken
            ):
                found.append(_Feature(rows, frame, shift, where, descriptor))
    return found


def _seeded(
    rows: np.ndarray,
    place: np.ndarray,
    groups: np.ndarray,
    descriptors: np.ndarray,
    bits: int,
    taken: np.ndarray,
) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Features among rows sorted by place: keys shared by _SEED groups are looked at in full
    (every row at the key's place within _CLOSE bits of its medoid). Each as its rows, place
    and medoid descriptor."""
    described = np.asarray(descriptors[rows])
    starts_of_place = np.flatnonzero(np.r_[True, place[1:] != place[:-1]])
    place_start = np.repeat(starts_of_place, np.diff(np.r_[starts_of_place, len(rows)]))
    found = []
    for byte in (0, 16):
        value = (
            (described[:, byte].astype(np.int64) << 16)
            | (described[:, byte + 1].astype(np.int64) << 8)
            | described[:, byte + 2]
        )
        keys = (place.astype(np.int64) << bits) | (value >> (24 - bits))
        order = np.lexsort((groups, keys))
        k, g = keys[order], groups[order]
        # Distinct groups per key: the rows that start a new (key, group) pair.
        new_pair = np.ones(len(k), bool)
        new_pair[1:] = (k[1:] != k[:-1]) | (g[1:] != g[:-1])
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        ends = np.r_[starts[1:], len(k)]
        seeds = np.add.reduceat(new_pair.astype(np.int64), starts) >= _SEED
        # A descriptor seeded at many places is generic (a plain corner, an edge), not a
        # stamp's: a stamp's is at one place, or a few where its text repeats a letter.
        values = k[starts[seeds]] & ((1 << bits) - 1)
        kinds, places_of_kind = np.unique(values, return_counts=True)
        seeds[seeds] = ~np.isin(values, kinds[places_of_kind > _GENERIC])
        for start, end in zip(starts[seeds], ends[seeds], strict=True):
            members = order[start:end]  # positions in `rows`
            if taken[rows[members]].all():
                continue
            sample = members[:: max(1, len(members) // _MEDOID_SAMPLE)]
            near = _hamming(described[sample], described[sample]) <= _CLOSE
            medoid = int(sample[int(near.sum(axis=1).argmax())])
            first = int(place_start[medoid])
            here = np.arange(
                first, first + int(np.searchsorted(place[first:], place[first], side="right"))
            )
            distance = _hamming(described[medoid : medoid + 1], described[here])[0]
            close = here[distance <= _CLOSE]
            if _distinct(groups[close]) < MIN_CARRIERS or taken[rows[close]].mean() > 0.5:
                continue
            taken[rows[close]] = True
            found.append((np.sort(rows[close]), int(place[medoid]), described[medoid : medoid + 1]))
    return found


def _distinct(values: np.ndarray) -> int:
    """How many different values (np.unique's hashing took 0.2 ms for a few dozen)."""
    if len(values) < 2:
        return len(values)
    ordered = np.sort(values)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _sampled_rows(table: SignatureTable, bots: Sequence[Sequence[str]]) -> np.ndarray:
    """Keypoint rows of up to _SAMPLED_ROWS: each bot's output first (up to _PER_BOT images of
    each, spread over its posts, and at most _BOTS_SHARE of the rows in all), then images spread
    evenly over the rest of the archive. A bot stamps all it makes, and its output can be a
    small part of a large channel: an even sample would hold too few of its images."""
    images = np.flatnonzero(table.counts)
    if table.counts.sum() <= _SAMPLED_ROWS:
        chosen = images
    else:
        by_bot: dict[str, list[int]] = {}
        for i in images.tolist():
            for bot in bots[i]:
                by_bot.setdefault(bot, []).append(i)
        picked = np.zeros(len(table.counts), bool)
        for members in by_bot.values():
            picked[members[:: max(1, int(np.ceil(len(members) / _PER_BOT)))]] = True
        room = _BOTS_SHARE * _SAMPLED_ROWS
        if table.counts[picked].sum() > room:  # many bots: each keeps an even share
            thinned = np.flatnonzero(picked)
            picked[:] = False
            picked[thinned[:: int(np.ceil(table.counts[thinned].sum() / room))]] = True
        rest = images[~picked[images]]
        left = _SAMPLED_ROWS - int(table.counts[picked].sum())
        if len(rest) and left > 0:
            picked[rest[:: max(1, int(np.ceil(table.counts[rest].sum() / left)))]] = True
        chosen = np.flatnonzero(picked)
    return np.concatenate([np.arange(table.rows(int(i)).start, table.rows(int(i)).stop)
                           for i in chosen])  # fmt: skip


def _everywhere(table: SignatureTable, parts: list[list[_Feature]]) -> list[np.ndarray]:
    """For each part's features, every keypoint row, in any image, that has one of them: at
    its place, within _CLOSE bits of its descriptor. The places of every row are worked out
    once per frame and shift for all parts (each is a pass over the whole table)."""
    total = len(table.excluded)
    found: list[list[np.ndarray]] = [[np.zeros(0, np.int64)] for _ in parts]
    combos: dict[tuple[int, float], list[tuple[int, _Feature]]] = {}
    for n, features in enumerate(parts):
        for feature in features:
            combos.setdefault((feature.frame, feature.shift), []).append((n, feature))
    for (frame, shift), here in combos.items():
        wanted = np.unique([f.place for _, f in here])
        hits: list[np.ndarray] = [np.zeros(0, np.int64)]
        places: list[np.ndarray] = [np.zeros(0, np.int64)]
        for start in range(0, total, _PIECE):  # the whole table at once: gigabytes at 100,000
            rows = np.arange(start, min(total, start + _PIECE))
            place = _frame_rows(table, rows, frame, shift)
            hit = np.isin(place, wanted)
            hits.append(rows[hit])
            places.append(place[hit])
        candidates, placed = np.concatenate(hits), np.concatenate(places)
        by_place = np.argsort(placed, kind="stable")
        candidates, placed = candidates[by_place], placed[by_place]
        for n, feature in here:
            lo, hi = (
                np.searchsorted(placed, feature.place, "left"),
                np.searchsorted(placed, feature.place, "right"),
            )
            at = candidates[lo:hi]
            close = _hamming(feature.descriptor, np.asarray(table.descriptors[at]))[0] <= _CLOSE
            found[n].append(at[close])
    return [np.unique(np.concatenate(f)) for f in found]


def find_overlays(
    table: SignatureTable,
    group: Sequence[int],
    still_aligned: Callable[[int, int, np.ndarray, np.ndarray], bool],
    run: Runner = run_here,
    bots: Sequence[Sequence[str]] | None = None,
) -> list[Overlay]:
    """The archive's overlays. `group[i]` is image i's PDQ group (copies do not count as
    different photos); `still_aligned(a, b, mask_a, mask_b)` says whether two images align
    with their keypoints in the masks' cells left out; `bots[i]` names the bots that posted
    image i. The frames are searched as tasks, on a sample of the archive that holds each
    bot's output; what they find is then looked for in every image."""
    _footprint_area.cache_clear()  # the last archive's overlays
    if not table.counts.any():
        return []
    groups_of_image = np.asarray(group, np.int64)
    sampled = _sampled_rows(table, bots or [()] * len(table.counts))
    per_frame = in_order(
        run,
        frame_features,
        [(table.folder, groups_of_image, f, sampled) for f in range(len(_FRAMES))],
        lambda n: None,
    )
    owner = table.owners()
    taken = np.zeros(len(owner), bool)
    found: list[_Feature] = []
    for feature in (f for frame in per_frame for f in frame):
        if taken[feature.rows].mean() <= 0.5:  # the same feature, found in another frame
            taken[feature.rows] = True
            found.append(feature)
    if len(found) < _MIN_FEATURES:
        return []

    # Features seen in largely the same photos are one overlay's.
    carriers = [set(np.unique(groups_of_image[owner[f.rows]]).tolist()) for f in found]
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
    sets = DisjointSets(len(found))
    for (a, b), count in shared.items():
        if count >= 3 and count >= _SAME_OVERLAY * min(len(carriers[a]), len(carriers[b])):
            sets.union(a, b)
    parts: dict[int, list[int]] = {}
    for n in range(len(found)):
        parts.setdefault(sets.find(n), []).append(n)

    overlays = []
    kept = [[found[n] for n in members] for members in parts.values()]
    kept = [features for features in kept if len(features) >= _MIN_FEATURES]
    if len(sampled) == len(owner):
        seen = [np.unique(np.concatenate([f.rows for f in features])) for features in kept]
    else:
        seen = _everywhere(table, kept)
    for features, rows in zip(kept, seen, strict=True):
        images, counts = np.unique(owner[rows], return_counts=True)
        holders = images[counts >= 2]
        if len(np.unique(groups_of_image[holders])) < MIN_CARRIERS:
            continue
        if np.median(counts[counts >= 2]) < _PER_CARRIER:
            continue
        rows = rows[np.isin(owner[rows], holders)]
        relative = np.asarray(table.points[rows]) / table.sizes[owner[rows]]
        masks = _masks(table, rows)
        if _one_photo(holders, masks, still_aligned):
            continue
        low = np.percentile(relative, 2, axis=0)
        high = np.percentile(relative, 98, axis=0)
        box = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
        # The frame the stamp keeps its place in gives the tightest footprint.
        frame, footprint = min(
            ((f, _footprint(table, rows, owner[rows], f, len(holders)))
             for f in sorted({f.frame for f in features})),
            key=lambda pair: int(pair[1].sum()),
        )  # fmt: skip
        masks.update(_masks(table, _seen_again(table, features, frame, footprint, holders)))
        overlays.append(Overlay(tuple(sorted(masks)), masks, box, len(features), frame, footprint))
    overlays.sort(key=lambda o: -len(o.images))
    return overlays


def _seen_again(
    table: SignatureTable,
    features: list[_Feature],
    frame: int,
    footprint: np.ndarray,
    holders: np.ndarray,
) -> np.ndarray:
    """Images besides the holders with _SEEN_AGAIN keypoints on the footprint that are one of
    the overlay's features, at any place of it: the same stamp at another scale (a caption
    sized to the height on a photo of another shape), missed at the features' own places.
    Only features met far more often on the footprint than off it count: a stamp's letters
    are met nowhere else, a plain corner of it anywhere. Those keypoint rows."""
    strongest = sorted(features, key=lambda f: -len(f.rows))[:_LOOKED_FOR]
    descriptors = np.concatenate([f.descriptor for f in strongest])
    owner = table.owners()
    others = (owner >= 0) & ~np.isin(owner, holders)
    on: list[np.ndarray] = []  # rows on the footprint, and their nearest feature
    nearest: list[np.ndarray] = []
    met_off = np.zeros(len(strongest), np.int64)
    looked_on = looked_off = 0
    for start in range(0, len(owner), _PIECE):
        rows = np.arange(start, min(len(owner), start + _PIECE))
        rows = rows[others[rows]]
        placed = footprint.ravel()[_frame_rows(table, rows, frame, 0.0)]
        off = rows[~placed][:: max(1, int((~placed).sum()) // _OFF_SAMPLE)]
        looked_off += len(off)
        for piece in range(0, len(off), _COMPARED):
            distance = _hamming(np.asarray(table.descriptors[off[piece : piece + _COMPARED]]),
                                descriptors)  # fmt: skip
            met_off += (distance <= _CLOSE).sum(axis=0)
        rows = rows[placed]
        looked_on += len(rows)
        for piece in range(0, len(rows), _COMPARED):
            here = rows[piece : piece + _COMPARED]
            distance = _hamming(np.asarray(table.descriptors[here]), descriptors)
            near = distance.min(axis=1) <= _CLOSE
            on.append(here[near])
            nearest.append(distance[near].argmin(axis=1))
    rows = np.concatenate(on) if on else np.zeros(0, np.int64)
    which = np.concatenate(nearest) if nearest else np.zeros(0, np.int64)
    on_rate = np.bincount(which, minlength=len(strongest)) / max(1, looked_on)
    off_rate = (met_off + 1) / max(1, looked_off)
    rows = rows[(on_rate / off_rate)[which] >= _MET_ON_FOOTPRINT]
    images, counts = np.unique(owner[rows], return_counts=True)
    kept: np.ndarray = rows[np.isin(owner[rows], images[counts >= _SEEN_AGAIN])]
    return kept


def _masks(table: SignatureTable, rows: np.ndarray) -> dict[int, np.ndarray]:
    """Each image's (GRID, GRID) cells, grown, that these keypoint rows of it lie in."""
    if not len(rows):
        return {}
    owner = table.owners()[rows]
    order = np.argsort(owner, kind="stable")
    rows, owner = rows[order], owner[order]
    relative = np.asarray(table.points[rows]) / table.sizes[owner]
    cells = np.clip((relative * GRID).astype(np.int64), 0, GRID - 1)
    images, starts = np.unique(owner, return_index=True)
    masks = {}
    for image, lo, hi in zip(images, starts, np.r_[starts[1:], len(rows)], strict=True):
        mask = np.zeros((GRID, GRID), bool)
        mask[cells[lo:hi, 1], cells[lo:hi, 0]] = True
        masks[int(image)] = _grown(mask)
    return masks


def _footprint(
    table: SignatureTable, rows: np.ndarray, owners: np.ndarray, frame: int, carriers: int
) -> np.ndarray:
    """The convex hull of the places (and their neighbours) that a share of the carriers
    have the overlay's keypoints at, in its frame."""
    side = 2 * GRID + 1
    place = _frame_rows(table, rows, frame, 0.0)
    x, y = place // side, place % side
    near = [
        (np.clip(x + dx, 0, side - 1) * side + np.clip(y + dy, 0, side - 1)) for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
    ]  # fmt: skip
    # Each (carrier, place) once: one number each, for a one-dimensional unique.
    pairs = np.unique(np.tile(owners.astype(np.int64), 9) * side**2 + np.concatenate(near))
    share = np.bincount(pairs % side**2, minlength=side * side) / carriers
    held = (share >= max(_FOOTPRINT_SHARE, 2 / carriers)).reshape(side, side)
    if held.sum() < 3:
        return held
    xs, ys = np.nonzero(held)
    hull = cv2.convexHull(np.stack([ys, xs], axis=1).astype(np.int32))
    filled = np.zeros((side, side), np.uint8)
    cv2.fillConvexPoly(filled, hull, 1)  # row = x, column = y, as `held`
    return filled.astype(bool) | held


def _on_footprint(overlay: Overlay, points: np.ndarray, size: np.ndarray) -> np.ndarray:
    sizes = np.broadcast_to(size, points.shape)
    on: np.ndarray = overlay.footprint.ravel()[_places(points, sizes, _FRAMES[overlay.frame], 0.0)]
    return on


def with_bot_output(overlays: Sequence[Overlay], bots: Sequence[Sequence[str]]) -> list[Overlay]:
    """The overlays, each with the images its main bot posted where it was not seen.
    `bots[i]` names the bots that posted image i."""
    out = []
    for overlay in overlays:
        posted = Counter(b for i in overlay.images for b in set(bots[i]))
        main = posted.most_common(1)
        if not main or main[0][1] < _BOT_SHARE * len(overlay.images):
            out.append(overlay)
            continue
        carried = set(overlay.images)
        unseen = tuple(i for i, b in enumerate(bots) if main[0][0] in b and i not in carried)
        out.append(dataclasses.replace(overlay, unseen=unseen))
    return out


def carried(overlays: Sequence[Overlay]) -> dict[int, list[Overlay]]:
    """Image -> the overlays it carries, or is taken to."""
    out: dict[int, list[Overlay]] = {}
    for overlay in overlays:
        for image in (*overlay.images, *overlay.unseen):
            out.setdefault(image, []).append(overlay)
    return out


def stamped_area(overlays: Sequence[Overlay], image: int, size: np.ndarray) -> np.ndarray:
    """Where the overlays an image carries lie on it, as bool cells of _AREA_STEP working
    pixels (row = y): in their own cells, or on their footprint unless that would cover
    most of the image. `size` is its working (width, height)."""
    width, height = (int(v) for v in size)
    columns, rows = -(-width // _AREA_STEP), -(-height // _AREA_STEP)
    cells = _area_cells(width, height)
    area = np.zeros(len(cells), bool)
    for overlay in overlays:
        mask = overlay.masks.get(image)
        if mask is not None:
            area |= mask[cells[:, 1], cells[:, 0]]
        area |= _footprint_area(overlay, width, height)
    return area.reshape(rows, columns)


@functools.lru_cache(maxsize=64)
def _area_points(width: int, height: int) -> np.ndarray:
    """The centres of an image's _AREA_STEP cells, in working pixels (row by row)."""
    columns, rows = -(-width // _AREA_STEP), -(-height // _AREA_STEP)
    x, y = np.meshgrid(np.arange(columns), np.arange(rows))
    return _frozen((np.stack([x.ravel(), y.ravel()], axis=1) + 0.5) * _AREA_STEP)


@functools.lru_cache(maxsize=64)
def _area_cells(width: int, height: int) -> np.ndarray:
    """Each _AREA_STEP cell's GRID cell (x, y): where an overlay's mask is read."""
    sizes = np.array([width, height], np.float32)
    return _frozen(
        np.clip((_area_points(width, height) / sizes * GRID).astype(np.int64), 0, GRID - 1)
    )


@functools.lru_cache(maxsize=256)
def _footprint_area(overlay: Overlay, width: int, height: int) -> np.ndarray:
    """The overlay's footprint on an image of this size, over its _AREA_STEP cells; none
    where it would cover most of the image. The same for every carrier of one size: worked
    out for each, it took most of the time that marking carriers took."""
    points = _area_points(width, height)
    sizes = np.array([width, height], np.float32)
    if _on_footprint(overlay, _AREA_SAMPLE * sizes, sizes).mean() > _FOOTPRINT_MOST:
        return _frozen(np.zeros(len(points), bool))
    return _frozen(_on_footprint(overlay, points.astype(np.float32), sizes))


def _frozen(array: np.ndarray) -> np.ndarray:
    """The array, read-only: one that a cache hands to every caller."""
    array.setflags(write=False)
    return array


def on_area(points: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Which points (working pixels) lie on a stamped area."""
    cells = (points // _AREA_STEP).astype(np.int64)
    on: np.ndarray = area[
        np.clip(cells[:, 1], 0, area.shape[0] - 1), np.clip(cells[:, 0], 0, area.shape[1] - 1)
    ]
    return on


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
