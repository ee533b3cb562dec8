"""Group an archive's images into one cluster per source photo.

Built on the matching the rest of Counterfake uses:
0. *Overlays* (overlays.py): a stamp that many unrelated images carry at the same place (a
   bot's watermark, a logo, a caption bar). A carrier's keypoints on it take part in no link,
   so two images that share only a stamp are never linked.
1. *Versions*: images within PDQ distance 31 of each other, or of each other's mirror image
   (copies, re-encodes, resizes, flipped reposts), split where an image is a derivative of
   the group's first one (step 3): blurring or smoothing a third of a photo can leave PDQ
   within 31.
2. *Links* between versions: the keypoint shortlist proposes, derivative verification fits
   the transform (24 inliers at least: the same watermark stamped on two unrelated photos
   gave up to 21). A link is kept only when the similarity is near 1:1 (both are 480-pixel
   working images, so a resized or cropped copy stays near scale 1, while a whole photo pasted
   small into another does not) and at least a quarter of the other image is unchanged.
3. *What changed* along a link: the two 128-pixel grey thumbnails, aligned by the fitted
   transform, compared cell by cell (8x8) on their fine detail (high-pass correlation). Between
   two archive images this is far steadier than re-finding 512 signature keypoints: a fill,
   inpainting or heavy blur removes detail, pasted content does not correlate, re-encoding and
   resizing keep it.

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
from collections.abc import Callable, Sequence
from typing import Final

import cv2
import numpy as np

from ..derivatives import MIN_INLIERS, Alignment, align
from ..index import LinearHammingIndex, MultiIndexHammingIndex, codes_from_hex
from ..index.keypoints import KeypointShortlist
from ..signals import PDQ_THRESHOLD
from ..signals.keypoints import Features
from .images import THUMB_SIDE
from .overlays import Overlay, find_overlays, without_overlays

__all__ = ["Clustering", "ImageFacts", "Link", "cluster_images"]

PDQ_SAME: Final = PDQ_THRESHOLD
PDQ_MIN_QUALITY: Final = 50
#: A link whose changed fraction reaches this makes its cluster a target.
DERIVATIVE_CHANGE: Final = 0.25
#: Fewest inliers for a link that makes a target (12 suffice to join copies).
DERIVATIVE_INLIERS: Final = 20
#: Fewest inliers to join two images that PDQ does not already call copies. The same
#: watermark stamped on unrelated photos gave 14-21 inliers here; true links 27 and up.
_LINK_INLIERS: Final = 24
#: From this to DERIVATIVE_CHANGE between two derivatives: the same one, stamped or not.
STAMP_CHANGE: Final = 0.05
#: A stamp (text, logo) adds fine detail: the stamped side has this much more in the changed cells.
_STAMP_DETAIL: Final = 1.3
_SCALE_RANGE: Final = (0.6, 1.7)
_MIN_UNCHANGED: Final = 0.25
_CELLS: Final = 8
_CHANGED_CELL: Final = 0.5  # 1 - correlation of a cell's fine detail
_FLAT: Final = 2.0  # grey levels: a cell this flat in both images has no detail to compare
_SHORTLIST: Final = 6
_MIN_VOTES: Final = 4.0
_TABLES_FROM: Final = 20_000


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What clustering needs of one distinct image (None pdq: the image could not be read)."""

    pdq: str | None
    quality: int
    features: bytes
    thumb: bytes
    first_seen: int  # Unix seconds of its first post
    by_bot: bool  # any post of it was a bot's output
    protected_copy: bool  # matches a protected or known photo by PDQ or digest
    protected_derivative: bool  # matches a protected photo as a derivative
    mirror_pdq: str | None = None  # PDQ of its mirror image
    entries: tuple[str, ...] = ()  # the bank entries it matches, as "bank:entry id"


@dataclasses.dataclass(frozen=True)
class Link:
    source: int  # image numbers
    other: int
    inliers: int
    changed_fraction: float  # of the cells both images cover
    alignment: Alignment = dataclasses.field(compare=False, repr=False)
    detail: tuple[float, float] = (0.0, 0.0)  # fine detail in the changed cells: source, other


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


def _versions(images: Sequence[ImageFacts]) -> _Sets:
    sets = _Sets(len(images))
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


def _thumb(facts: ImageFacts) -> np.ndarray:
    return np.frombuffer(facts.thumb, np.uint8).reshape(THUMB_SIDE, THUMB_SIDE).astype(np.float32)


def _to_thumb(width: int, height: int) -> np.ndarray:
    """Working-image pixels -> thumbnail pixels, as a 3x3 matrix."""
    t = THUMB_SIDE
    return np.array(
        [[t / width, 0, 0.5 * t / width - 0.5], [0, t / height, 0.5 * t / height - 0.5], [0, 0, 1]]
    )


def _compare(
    source: ImageFacts,
    other: ImageFacts,
    source_features: Features,
    other_features: Features,
    alignment: Alignment,
) -> tuple[float, tuple[float, float]] | None:
    """Changed fraction and the fine detail of each side in the changed cells, or None
    without enough overlap."""
    t = THUMB_SIDE
    forward = np.vstack([alignment.transform, [0.0, 0.0, 1.0]])
    # The other image's thumbnail pixels -> the source's thumbnail pixels.
    back = (
        _to_thumb(source_features.width, source_features.height)
        @ np.linalg.inv(forward)
        @ np.linalg.inv(_to_thumb(other_features.width, other_features.height))
    )[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(_thumb(source), back, (t, t), flags=flags)
    covered = cv2.warpAffine(np.ones((t, t), np.float32), back, (t, t), flags=flags) > 0.99
    target = _thumb(other)
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
    return fraction, detail


def _is_derivative(link: Link) -> bool:
    return link.changed_fraction >= DERIVATIVE_CHANGE and link.inliers >= DERIVATIVE_INLIERS


def cluster_images(
    images: Sequence[ImageFacts], progress: Callable[[int], None] | None = None
) -> Clustering:
    """Versions, links, clusters, targets and roles for the distinct images of an archive.
    `progress` is called with the number of versions searched so far."""
    n = len(images)
    pdq_groups = _versions(images)
    readable = [i for i, f in enumerate(images) if f.features]
    features: dict[int, Features] = {i: Features.from_bytes(images[i].features) for i in readable}
    links: list[Link] = []

    def still_aligned(a: int, b: int, mask_a: np.ndarray, mask_b: np.ndarray) -> bool:
        aligned = align(
            without_overlays(features[a], [mask_a]),
            without_overlays(features[b], [mask_b]),
            min_inliers=_LINK_INLIERS,
        )
        return aligned is not None and _scale_ok(aligned)

    overlays = find_overlays(
        [features.get(i) for i in range(n)], [pdq_groups.find(i) for i in range(n)], still_aligned
    )
    masks: dict[int, list[np.ndarray]] = {}
    for overlay in overlays:
        for i in overlay.images:
            masks.setdefault(i, []).append(overlay.masks[i])
    for i, carried in masks.items():
        features[i] = without_overlays(features[i], carried)

    def features_of(i: int) -> Features:
        return features[i]

    def link(a: int, b: int, min_inliers: int = MIN_INLIERS) -> Link | None:
        # The earlier image is the source: an original is usually posted first.
        source, other = sorted((a, b), key=lambda v: (images[v].first_seen, v))
        aligned = align(features_of(source), features_of(other), min_inliers=min_inliers)
        if aligned is None or not _scale_ok(aligned):
            return None
        compared = _compare(
            images[source], images[other], features_of(source), features_of(other), aligned
        )
        if compared is None:
            return None
        fraction, detail = compared
        return Link(source, other, aligned.inliers, fraction, aligned, detail)

    # Versions: PDQ groups, split where an image is a derivative of the group's first image
    # (a blurred-out or smoothed region can leave PDQ within 31).
    version = list(range(n))
    sets = _Sets(n)
    groups: dict[int, list[int]] = {}
    for i in readable:
        groups.setdefault(pdq_groups.find(i), []).append(i)
    for members in groups.values():
        members.sort(key=lambda i: (images[i].first_seen, i))
        heads_here = [members[0]]
        for member in members[1:]:
            sets.union(members[0], member)
            unverified = None
            for head in heads_here:
                found = link(head, member)
                if found is None:
                    unverified = head if unverified is None else unverified
                    continue
                links.append(found)
                if not _is_derivative(found):
                    version[member] = head
                    break
            else:
                if unverified is not None:  # PDQ says a copy; nothing says otherwise
                    version[member] = unverified
                else:
                    heads_here.append(member)
    heads = sorted({version[i] for i in readable})

    shortlist = KeypointShortlist()
    for h in heads:
        shortlist.add(h, features_of(h).descriptors)
    tried: set[tuple[int, int]] = set()
    for done, h in enumerate(heads, start=1):
        for other, votes in shortlist.candidates(features_of(h).descriptors, _SHORTLIST + 1):
            pair = (min(h, other), max(h, other))
            if other == h or votes < _MIN_VOTES or pair in tried:
                continue
            if sets.find(h) == sets.find(other):
                continue  # joined already, through other links
            tried.add(pair)
            found = link(h, other, _LINK_INLIERS)
            if found is not None:
                links.append(found)
                sets.union(h, other)
        if progress is not None:
            progress(done)

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
    cluster = [sets.find(i) if images[i].features else -1 for i in range(n)]
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
    order = sorted(range(n), key=lambda i: (images[i].first_seen, i))
    numbers: dict[int, int] = {}
    vnumbers: dict[int, int] = {}
    for i in order:
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
    )
