"""Group an archive's images into one cluster per source photo.

Built on the matching the rest of Counterfake uses:
0. *Overlays* (overlays.py): a stamp that many unrelated images carry at the same place (a
   bot's watermark, a logo, a caption bar). A carrier's keypoints on it take part in no link,
   so two images that share only a stamp are never linked. Its letters have the strongest
   corners: a carrier with a quarter of its keypoints on it is signed again off it (from its
   file), so that it keeps a full signature of its own photo to link by.
1. *Versions*: images within PDQ distance 31 of each other, or of each other's mirror image
   (copies, re-encodes, resizes, flipped reposts), split where an image is a derivative of
   the group's first one (step 3): blurring or smoothing a third of a photo can leave PDQ
   within 31.
2. *Links* between versions: the keypoint shortlist proposes, derivative verification fits
   the transform (16 inliers at least, none of them on an overlay its image carries). A link
   is kept only when the similarity is near 1:1 (both are 480-pixel working images, so a
   resized or cropped copy stays near scale 1, while a whole photo pasted small into another
   does not) and at least a quarter of the other image is unchanged.
3. *What changed* along a link: the two 128-pixel grey thumbnails, aligned by the fitted
   transform, compared cell by cell (8x8) on their fine detail (high-pass correlation). Between
   two archive images this is far steadier than re-finding 512 signature keypoints: a fill,
   inpainting or heavy blur removes detail, pasted content does not correlate, re-encoding and
   resizing keep it. A link that, on each of its two images, agrees mostly where that image
   was changed from its own earlier one (and hardly on what it kept) rests on content pasted
   into both, not on one photo: it is dropped.

Images that match the same bank entry are one photo's: their clusters are joined (the report
says so: that join rests on the bank, not on the images' own links).

A cluster holds a manipulated derivative, and is a *target*, when a link in it changed >= 25%
of the overlap (with >= 20 inliers), when an image in it matches a protected photo as a
derivative, or when a bot posted an image in it (`via_bot`: in the channels this is for, the
bot is what makes the fakes; its output counts even when the original never appears).
Within a target, the *original* is the version that matches a protected photo by PDQ or
digest, or else the earliest version, unless a bot posted it; the rest are derivatives.
Two derivatives (or two images of one version) linked by a smaller change (5-25%) are the same
derivative with and without something stamped on it, when one side has clearly more fine detail
in the changed cells: that one is *watermarked*.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import cv2
import numpy as np

from ..derivatives import MIN_INLIERS, Alignment, align
from ..index import LinearHammingIndex, MultiIndexHammingIndex, codes_from_hex
from ..index.keypoints import KeypointShortlist
from ..media import Limits
from ..signals import PDQ_THRESHOLD
from ..signals.keypoints import Features
from .engines import Calls, Runner, in_order, run_here, signatures_around
from .images import THUMB_SIDE
from .overlays import (
    Overlay,
    carried,
    find_overlays,
    on_area,
    stamped_area,
    with_bot_output,
    without_overlays,
)
from .sets import DisjointSets
from .table import SignatureTable, opened

__all__ = ["Clustering", "ImageFacts", "Link", "cluster_images"]

PDQ_SAME: Final = PDQ_THRESHOLD
PDQ_MIN_QUALITY: Final = 50
#: A link whose changed fraction reaches this makes its cluster a target.
DERIVATIVE_CHANGE: Final = 0.25
#: Fewest inliers for a link that makes a target (12 suffice to join copies).
DERIVATIVE_INLIERS: Final = 20
#: Fewest inliers to join two images that PDQ does not already call copies. A stamp shared
#: by unrelated photos gave 14-61 inliers before overlays were left out of links (24 was the
#: threshold then); without them, 16 joined more of a channel's heavily changed derivatives
#: and no unrelated pair (benchmarks/investigate.py, tune half and a 3,000-post channel).
_LINK_INLIERS: Final = 16
#: From this to DERIVATIVE_CHANGE between two derivatives: the same one, stamped or not.
STAMP_CHANGE: Final = 0.05
#: A stamp (text, logo) adds fine detail: the stamped side has this much more in the changed cells.
_STAMP_DETAIL: Final = 1.3
_SCALE_RANGE: Final = (0.6, 1.7)
_MIN_UNCHANGED: Final = 0.25
#: A link rests on pasted content when, on both images, this share of the cells it agrees on
#: were changed from the image's own earlier one...
_PASTED_SHARE: Final = 0.5
#: ...and it agrees on under this share of what the image kept of its earlier one.
_KEPT_SHARE: Final = 0.2
#: A carrier with this share of its keypoints on its stamps is signed again off them.
_SIGN_AGAIN: Final = 0.25
_CELLS: Final = 8
_CHANGED_CELL: Final = 0.5  # 1 - correlation of a cell's fine detail
_FLAT: Final = 2.0  # grey levels: a cell this flat in both images has no detail to compare
_SHORTLIST: Final = 6
#: Rows per shortlist bucket read (a bank reads 256): a channel's plain and drawn pictures
#: fill buckets that cost most of the candidate search and propose pairs that do not verify.
#: On a 25,000-post channel, 128 found as many links (1,380 against 1,387, from 2,000 images
#: asking) from half the pairs, in 0.54x the time.
_CROWDED: Final = 128
_MIN_VOTES: Final = 4.0
_TABLES_FROM: Final = 20_000
_GROUPS_PER_TASK: Final = 256
_ASKING_PER_TASK: Final = 1_000
_PAIRS_PER_TASK: Final = 2_000
_SHORTLIST_FOLDER: Final = "shortlist"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What clustering needs of one distinct image besides its signature (None pdq: the image
    could not be read)."""

    pdq: str | None
    quality: int
    first_seen: int  # Unix seconds of its first post
    bots: tuple[str, ...]  # the bots whose output any post of it was (via_bot)
    protected_copy: bool  # matches a protected or known photo by PDQ or digest
    protected_derivative: bool  # matches a protected photo as a derivative
    mirror_pdq: str | None = None  # PDQ of its mirror image
    entries: tuple[str, ...] = ()  # the bank entries it matches, as "bank:entry id"

    @property
    def by_bot(self) -> bool:
        return bool(self.bots)


@dataclasses.dataclass(frozen=True)
class Link:
    source: int  # image numbers
    other: int
    inliers: int
    changed_fraction: float  # of the cells both images cover
    alignment: Alignment = dataclasses.field(compare=False, repr=False)
    detail: tuple[float, float] = (0.0, 0.0)  # fine detail in the changed cells: source, other
    #: (_CELLS, _CELLS) bool over the other image's thumbnail: changed, and agreeing in detail
    changed: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((_CELLS, _CELLS), bool), compare=False, repr=False
    )
    agreeing: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((_CELLS, _CELLS), bool), compare=False, repr=False
    )


@dataclasses.dataclass
class Clustering:
    cluster: list[int]  # image number -> cluster number (-1: unreadable image)
    version: list[int]  # image number -> version number
    links: list[Link]
    targets: set[int]  # cluster numbers holding a derivative
    role: list[str]  # "original", "derivative", "copy" (not in a target) or "unreadable"
    stamp: list[str]  # "watermarked", "clean" or ""
    overlays: list[Overlay] = dataclasses.field(default_factory=list)
    #: Clusters that are one only because their images match the same bank entry.
    joined_by_bank: set[int] = dataclasses.field(default_factory=set)
    #: Seconds each stage took: where a large archive's time goes.
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def _versions(images: Sequence[ImageFacts]) -> DisjointSets:
    sets = DisjointSets(len(images))
    usable = [i for i, f in enumerate(images) if f.pdq and f.quality >= PDQ_MIN_QUALITY]
    if not usable:
        return sets
    codes = codes_from_hex([images[i].pdq or "" for i in usable])
    index = MultiIndexHammingIndex() if len(usable) >= _TABLES_FROM else LinearHammingIndex()
    index.add(usable, codes)
    for i, hits in zip(usable, index.search(codes, PDQ_SAME), strict=True):
        for j, _ in hits:
            sets.union(i, j)
    mirrored = [i for i in usable if images[i].mirror_pdq]
    if mirrored:
        flipped = codes_from_hex([images[i].mirror_pdq or "" for i in mirrored])
        for i, hits in zip(mirrored, index.search(flipped, PDQ_SAME), strict=True):
            for j, _ in hits:
                sets.union(i, j)
    return sets


def _scale_ok(alignment: Alignment) -> bool:
    low, high = _SCALE_RANGE
    return low <= alignment.scale <= high


def _to_thumb(width: int, height: int) -> np.ndarray:
    """Working-image pixels -> thumbnail pixels, as a 3x3 matrix."""
    t = THUMB_SIDE
    return np.array(
        [[t / width, 0, 0.5 * t / width - 0.5], [0, t / height, 0.5 * t / height - 0.5], [0, 0, 1]]
    )


def _compare(
    source: np.ndarray,
    other: np.ndarray,
    source_features: Features,
    other_features: Features,
    alignment: Alignment,
) -> tuple[float, tuple[float, float], np.ndarray, np.ndarray] | None:
    """Changed fraction, the fine detail of each side in the changed cells, the changed
    cells and the cells whose detail agrees, or None without enough overlap."""
    t = THUMB_SIDE
    forward = np.vstack([alignment.transform, [0.0, 0.0, 1.0]])
    # The other image's thumbnail pixels -> the source's thumbnail pixels.
    back = (
        _to_thumb(source_features.width, source_features.height)
        @ np.linalg.inv(forward)
        @ np.linalg.inv(_to_thumb(other_features.width, other_features.height))
    )[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(source.astype(np.float32), back, (t, t), flags=flags)
    covered = cv2.warpAffine(np.ones((t, t), np.float32), back, (t, t), flags=flags) > 0.99
    target = other.astype(np.float32)
    fine_source = warped - cv2.blur(warped, (5, 5))
    fine_other = target - cv2.blur(target, (5, 5))

    def cells(a: np.ndarray) -> np.ndarray:  # (t, t) -> (cells, cells, pixels per cell)
        side = t // _CELLS
        return (
            a.reshape(_CELLS, side, _CELLS, side).transpose(0, 2, 1, 3).reshape(_CELLS, _CELLS, -1)
        )

    weight = cells(covered.astype(np.float64))
    count = weight.sum(axis=2)
    valid = count >= 0.9 * weight.shape[2]
    n = np.maximum(count, 1)
    a, b = cells(fine_source.astype(np.float64)), cells(fine_other.astype(np.float64))
    mean_a, mean_b = (a * weight).sum(axis=2) / n, (b * weight).sum(axis=2) / n
    da, db = (a - mean_a[..., None]) * weight, (b - mean_b[..., None]) * weight
    var_a, var_b = (da * da).sum(axis=2) / n, (db * db).sum(axis=2) / n
    std_a, std_b = np.sqrt(var_a), np.sqrt(var_b)
    flat = (std_a < _FLAT) & (std_b < _FLAT)
    correlation = (da * db).sum(axis=2) / n / np.maximum(std_a * std_b, 1e-12)
    blank_one_side = (std_a < 1e-3) | (std_b < 1e-3)
    changed = valid & ~flat & (blank_one_side | (1.0 - correlation > _CHANGED_CELL))
    if (valid & ~changed).mean() < _MIN_UNCHANGED:
        return None
    fraction = float(changed.sum() / valid.sum())
    side = t // _CELLS
    mask = np.kron(changed, np.ones((side, side), bool)) & covered
    detail = (
        (float(np.abs(fine_source[mask]).mean()), float(np.abs(fine_other[mask]).mean()))
        if mask.any()
        else (0.0, 0.0)
    )
    return fraction, detail, changed, valid & ~flat & ~changed


def _is_derivative(link: Link) -> bool:
    return link.changed_fraction >= DERIVATIVE_CHANGE and link.inliers >= DERIVATIVE_INLIERS


def _link(
    table: SignatureTable, thumbs: Mapping[int, np.ndarray], source: int, other: int, least: int
) -> Link | None:
    """The link from an image to a later one, if they align (at least `least` inliers, near
    1:1) over enough unchanged cells."""
    features_source, features_other = table.features(source), table.features(other)
    aligned = align(features_source, features_other, min_inliers=least)
    if aligned is None or not _scale_ok(aligned):
        return None
    compared = _compare(thumbs[source], thumbs[other], features_source, features_other, aligned)
    if compared is None:
        return None
    fraction, detail, changed, agreeing = compared
    return Link(source, other, aligned.inliers, fraction, aligned, detail, changed, agreeing)


def _cells_to_other(link: Link, source: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Where each of the source thumbnail's cells lands on the other's, as (row, column)
    indices, -1 off it. `source` and `other` are the working images' (width, height)."""
    side = THUMB_SIDE // _CELLS
    centre = (np.arange(_CELLS) + 0.5) * side - 0.5
    x, y = np.meshgrid(centre, centre)
    points = np.stack([x.ravel(), y.ravel(), np.ones(x.size)])
    forward = np.vstack([link.alignment.transform, [0.0, 0.0, 1.0]])
    to_other = (
        _to_thumb(int(other[0]), int(other[1]))
        @ forward
        @ np.linalg.inv(_to_thumb(int(source[0]), int(source[1])))
    )
    landed = np.floor((to_other @ points)[:2] / side).astype(np.int64)
    off = ((landed < 0) | (landed >= _CELLS)).any(axis=0)
    landed[:, off] = -1
    cells: np.ndarray = landed[::-1].reshape(2, _CELLS, _CELLS)  # rows from y, columns from x
    return cells


def _on_pasted_content(links: Sequence[Link], table: SignatureTable, first: int) -> set[int]:
    """The links (by position, from `first` on) that rest on pasted content: each of the two
    images was changed from an earlier one of its own (another link into it says so), and the
    two agree mostly where that change lies and hardly where it still shows its earlier image.
    Two fakes that had the same content pasted in agree there, and only there; two derivatives
    of one photo agree on what neither changed, and an original was changed from nothing."""
    into: dict[int, list[int]] = {}
    for n, link in enumerate(links):
        if _is_derivative(link):
            into.setdefault(link.other, []).append(n)
    resting = set()
    for n, link in enumerate(links[first:], start=first):
        if link.source not in into or link.other not in into:
            continue
        rows, cols = _cells_to_other(link, table.sizes[link.source], table.sizes[link.other])
        on_source = np.zeros((_CELLS, _CELLS), bool)
        on_source[rows >= 0] = link.agreeing[rows[rows >= 0], cols[rows >= 0]]
        if all(
            _pasted_into(agreeing, [links[m] for m in into[image] if m != n], link)
            for image, agreeing in ((link.source, on_source), (link.other, link.agreeing))
        ):
            resting.add(n)
    return resting


def _pasted_into(agreeing: np.ndarray, earlier: list[Link], link: Link) -> bool:
    """Whether the cells of an image that a link agrees on lie in what one of the image's own
    earlier links says was changed, and hardly in what it says was kept."""
    if not agreeing.any():
        return False
    for one in earlier:
        if one.source in (link.source, link.other):
            continue
        on_changed = (agreeing & one.changed).sum() / agreeing.sum()
        on_kept = (agreeing & one.agreeing).sum() / max(1, one.agreeing.sum())
        if on_changed >= _PASTED_SHARE and on_kept < _KEPT_SHARE:
            return True
    return False


def split_versions(
    folder: Path, groups: list[list[int]], thumbs: dict[int, np.ndarray]
) -> tuple[list[tuple[int, int]], list[Link]]:
    """A task: PDQ groups (each in order of first post) split where an image is a derivative
    of the group's first image (a blurred-out or smoothed region can leave PDQ within 31).
    Returns (image, its version's head) for every image that joins an earlier one, and the
    links found."""
    table = opened(folder)
    versions, links = [], []
    for members in groups:
        heads = [members[0]]
        for member in members[1:]:
            unverified = None
            for head in heads:
                found = _link(table, thumbs, head, member, MIN_INLIERS)
                if found is None:
                    unverified = head if unverified is None else unverified
                    continue
                links.append(found)
                if not _is_derivative(found):
                    versions.append((member, head))
                    break
            else:
                if unverified is not None:  # PDQ says a copy; nothing says otherwise
                    versions.append((member, unverified))
                else:
                    heads.append(member)
    return versions, links


def _save_shortlist(table: SignatureTable, heads: Sequence[int]) -> None:
    """The versions' shortlist, written once beside the table: every process that searches
    it maps the one copy. In image order, not the table's (the order analysis finished in):
    ties between candidates go the same way in one process and on Dask."""
    photos = table.kept_descriptors(sorted(heads))
    # 20-bit keys whatever the archive's size: what investigations were measured with.
    KeypointShortlist.write(table.folder / _SHORTLIST_FOLDER, photos, crowded=_CROWDED, key_bits=20)


@functools.lru_cache(maxsize=1)
def _shortlist(folder: Path) -> KeypointShortlist:
    """The saved shortlist, opened once per process (a Dask worker keeps it between tasks)."""
    return KeypointShortlist.open(folder / _SHORTLIST_FOLDER)


def candidates(folder: Path, asking: list[int]) -> list[tuple[int, int]]:
    """A task: for some versions, the others the shortlist proposes (as pairs). Their
    descriptors are read from the table's file, not its mapping: every version asks, and the
    pages read through the mapping stayed counted against the workers to the end of the stage."""
    table, shortlist = opened(folder), _shortlist(folder)
    pairs = []
    for head, descriptors in table.kept_descriptors(asking):
        for other, votes in shortlist.candidates(descriptors, _SHORTLIST + 1):
            if other != head and votes >= _MIN_VOTES:
                pairs.append((head, other))
    return pairs


def verify_pairs(
    folder: Path, pairs: list[tuple[int, int]], thumbs: dict[int, np.ndarray]
) -> list[Link]:
    """A task: the links among proposed pairs (source first)."""
    _shortlist.cache_clear()  # the candidates are in: a worker lets go of its map of them
    table = opened(folder)
    return [
        found
        for source, other in pairs
        if (found := _link(table, thumbs, source, other, _LINK_INLIERS)) is not None
    ]


def _pieces(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def cluster_images(
    images: Sequence[ImageFacts],
    table: SignatureTable,
    *,
    run: Runner = run_here,
    progress: Callable[[int], None] | None = None,
    files: Sequence[Path] | None = None,
    limits: Limits | None = None,
) -> Clustering:
    """Overlays, versions, links, clusters, targets and roles for the distinct images of an
    archive, whose signatures and thumbnails `table` holds. Each stage's work runs as calls of
    `run` (in this process, or as Dask tasks); `progress` is told of every finished call.
    With the images' `files`, those with a quarter of their keypoints on an overlay they
    carry are signed again off it."""
    n = len(images)
    tasks_done = 0
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def timed(stage: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[stage] = now - started
        started = now

    def advance(k: int) -> None:
        nonlocal tasks_done
        tasks_done += k
        if progress is not None:
            progress(tasks_done)

    thumbs = table.thumbs if table.thumbs is not None else np.zeros((n, 1, 1), np.uint8)
    readable = [i for i in range(n) if table.readable(i)]
    pdq_groups = _versions(images)
    group = [pdq_groups.find(i) for i in range(n)]

    def still_aligned(a: int, b: int, mask_a: np.ndarray, mask_b: np.ndarray) -> bool:
        aligned = align(
            without_overlays(table.features(a), [mask_a]),
            without_overlays(table.features(b), [mask_b]),
            min_inliers=_LINK_INLIERS,
        )
        return aligned is not None and _scale_ok(aligned)

    bots = [f.bots for f in images]
    overlays = with_bot_output(find_overlays(table, group, still_aligned, run, bots), bots)
    timed("overlays")
    # A carrier's keypoints on its stamps take part in no link. A stamp's text takes the
    # strongest corners: where it took many, the image is signed again off it, or it has too
    # few keypoints of its own left to link by.
    on_stamps = np.zeros(len(table.excluded), bool)
    jobs = []
    for i, carrying in carried(overlays).items():
        rows = table.rows(i)
        if rows.stop == rows.start:
            continue
        area = stamped_area(carrying, i, table.sizes[i])
        on_stamps[rows] = on_area(np.asarray(table.points[rows]), area)
        if files is not None and on_stamps[rows].mean() >= _SIGN_AGAIN:
            jobs.append((i, files[i], area))
    if jobs:
        signed: dict[int, bytes] = {}
        signatures_around(jobs, limits or Limits(), run, signed.__setitem__)
        table.replace(signed)
        on_stamps = np.r_[on_stamps, np.zeros(len(table.excluded) - len(on_stamps), bool)]
        for i, _, area in jobs:
            rows = table.rows(i)
            on_stamps[rows] = on_area(np.asarray(table.points[rows]), area)
    table.exclude(on_stamps)
    timed("signed again")

    def order(i: int) -> tuple[int, int]:
        return (images[i].first_seen, i)

    # Versions: PDQ groups, split where an image is a derivative of the group's first image.
    version = list(range(n))
    sets = DisjointSets(n)
    links: list[Link] = []
    groups: dict[int, list[int]] = {}
    for i in readable:
        groups.setdefault(group[i], []).append(i)
    several = [sorted(m, key=order) for m in groups.values() if len(m) > 1]
    for members in several:
        for member in members[1:]:
            sets.union(members[0], member)
    calls: Sequence[tuple[Any, ...]] = Calls(
        _pieces(several, _GROUPS_PER_TASK),
        lambda piece: (table.folder, piece, {i: thumbs[i] for g in piece for i in g}),
    )
    for assigned, found in in_order(run, split_versions, calls, advance):
        for member, head in assigned:
            version[member] = head
        links += found
    heads = tuple(sorted({version[i] for i in readable}))
    timed("versions")

    # Links between versions: proposed by the shortlist, then verified; both as tasks.
    proposed: set[tuple[int, int]] = set()
    _save_shortlist(table, heads)
    calls = [(table.folder, piece) for piece in _pieces(heads, _ASKING_PER_TASK)]
    for pairs in in_order(run, candidates, calls, advance):
        proposed |= {(a, b) if order(a) < order(b) else (b, a) for a, b in pairs}
    _shortlist.cache_clear()
    timed("candidates")
    calls = Calls(
        _pieces(sorted(proposed), _PAIRS_PER_TASK),
        lambda piece: (table.folder, piece, {i: thumbs[i] for pair in piece for i in pair}),
    )
    first = len(links)
    for found in in_order(run, verify_pairs, calls, advance):
        links += found
    pasted = _on_pasted_content(links, table, first)
    links = [one for n, one in enumerate(links) if n not in pasted]
    for one in links:
        sets.union(one.source, one.other)
    timed("links")

    # Images that match one bank entry show one photo, linked or not.
    by_entry: dict[str, list[int]] = {}
    for i in readable:
        for entry in images[i].entries:
            by_entry.setdefault(entry, []).append(i)
    joined: set[int] = set()
    for members in by_entry.values():
        for other in members[1:]:
            if sets.find(members[0]) != sets.find(other):
                sets.union(members[0], other)
                joined.add(members[0])
    cluster = [sets.find(i) if table.readable(i) else -1 for i in range(n)]
    targets = {cluster[k.source] for k in links if _is_derivative(k)}
    targets |= {cluster[i] for i in readable if images[i].by_bot or images[i].protected_derivative}
    role = ["unreadable" if c < 0 else "copy" for c in cluster]
    stamp = [""] * n
    originals: dict[int, int] = {}  # target cluster -> its original version
    in_target: dict[int, list[int]] = {}
    for i in readable:
        if cluster[i] in targets:
            in_target.setdefault(cluster[i], []).append(i)
    bot_versions = {version[i] for i in readable if images[i].by_bot}  # never the original
    for c, images_in in in_target.items():
        protected = [
            version[i]
            for i in images_in
            if images[i].protected_copy and version[i] not in bot_versions
        ]
        first = min(images_in, key=lambda i: (images[i].first_seen, i))
        if protected:
            originals[c] = protected[0]
        elif version[first] not in bot_versions:
            originals[c] = version[first]
        for i in images_in:
            role[i] = "original" if originals.get(c) == version[i] else "derivative"

    for found in links:
        c = cluster[found.source]
        if c not in targets or not STAMP_CHANGE <= found.changed_fraction < DERIVATIVE_CHANGE:
            continue
        if originals.get(c) in (version[found.source], version[found.other]):
            continue
        source_detail, other_detail = found.detail
        if max(source_detail, other_detail) < _STAMP_DETAIL * min(source_detail, other_detail):
            continue  # two derivatives that differ, neither stamped
        marked, clean = (
            (found.source, found.other)
            if source_detail > other_detail
            else (found.other, found.source)
        )
        stamp[marked] = "watermarked"
        if not stamp[clean]:
            stamp[clean] = "clean"
    # Cluster and version numbers from 1, in order of first appearance.
    numbers: dict[int, int] = {}
    vnumbers: dict[int, int] = {}
    for i in sorted(range(n), key=order):
        if cluster[i] >= 0:
            numbers.setdefault(cluster[i], len(numbers) + 1)
        vnumbers.setdefault(version[i], len(vnumbers) + 1)
    return Clustering(
        cluster=[numbers.get(c, -1) for c in cluster],
        version=[vnumbers[v] for v in version],
        links=links,
        targets={numbers[c] for c in targets},
        role=role,
        stamp=stamp,
        overlays=overlays,
        joined_by_bank={numbers[cluster[i]] for i in joined},
        timings=timings,
    )
