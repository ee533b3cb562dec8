"""Is this upload a manipulated derivative of a protected photo, and what was changed?

Verification of one candidate: descriptor matches (ratio test, one-to-one), then a 4-degree-
of-freedom similarity (rotation, uniform scale, translation) fitted with RANSAC: far more
accurate than a homography on these images, and the scale is checked for sanity. The match is
then refined to an affine map fitted to the same matches (within sanity limits: a squash to a
square is not a similarity). Then every source keypoint that lands inside the upload is looked
for near where that map puts it: found means that part of the photo survived, not found means
it was replaced, painted over or blurred. Those votes, each spread over its neighbourhood,
judge the cells of a 12x12 grid over the source photo: the changed-region mask.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .signals.keypoints import Features, View

__all__ = ["MIN_INLIERS", "Alignment", "Evidence", "Outline", "align", "overlay", "verify"]

#: Fewest RANSAC inliers for a match at any rotation. Unrelated photo pairs reached at most 7
#: here, different photos of one landmark more (benchmarks/robustness.py measures the
#: false-positive rate at this threshold).
MIN_INLIERS: Final = 12
#: A fit with fewer inliers, down to this many, is a match only when it is upright: nudifying
#: tools do not turn the photo, while chance fits between unrelated photos take any angle
#: (over 126,000 unrelated corpus pairs through the benchmark's chains, none reached 10
#: inliers upright that did not already reach 12; at 9, landmarks and shared graphics did).
_UPRIGHT_INLIERS: Final = 10
_UPRIGHT_DEGREES: Final = 10.0
#: A signature's first keypoints (rank-ordered, spread over its grid: a signature of their own)
#: are matched first, and all of a longer one only when those come near a fit. Matching all
#: 2,048 takes twice as long, and chance candidates seldom come near: on the tuning half 22 of
#: 2,400 unrelated pairs reached 5 inliers, while 260 of the 262 derivatives that all 2,048
#: found with 60% replaced did (230 reached a match with the first 1,024 alone).
_FIRST: Final = 1024
_NEAR_INLIERS: Final = 5
_RATIO: Final = 0.8
_RANSAC_PIXELS: Final = 4.0
_GRID: Final = 12
_NEAR_PIXELS: Final = 8.0
#: Query pixels from the edge where ORB finds no keypoint (its edgeThreshold is 15, more on
#: coarser levels): source keypoints landing there are not evidence either way.
_BORDER: Final = 18.0
#: Most Hamming bits between a source keypoint and a query keypoint near where it lands for
#: it to count as found again. At 64, with a query's keypoints spread into its plain parts,
#: another person's head in front of the protected photo's backdrop passed for its own.
_SAME_DESCRIPTOR: Final = 56
#: Fewest of a head's keypoints found again for the match to be on the photo's subject.
_SUBJECT_KEPT: Final = 3
#: ... and at least this share of the rate at which the photo's keypoints were found overall.
_SUBJECT_RATE: Final = 0.5
#: Largest ratio of the refined map's two scales (a squash to a square is up to 1.5x).
_ANISOTROPY: Final = 1.6
#: Each keypoint's vote is spread over the grid as a Gaussian of this many cells...
_SPREAD: Final = 0.5
#: ... and read on this many points per cell side.
_FINE: Final = 4
#: A cell is changed when more than this share of its points are (8 of 16: half), which judges
#: a cell the region crosses by where in it the votes fell.
_CHANGED_SHARE: Final = 0.45
#: Changed points survive only inside a disc of this many points (1.5 cells) that is all
#: changed (or unjudged): a morphological opening. A replaced body is a blob; a watermark's
#: stroke or a caption next to it is thinner, and no longer widens it (on the tuning half at
#: 20% replaced, 38% of the cells wrongly marked lay under the diagonal watermark that runs
#: along the region's top edge; the opening drops 38% of those and 15% of the rest).
_STROKE: Final = 6
_DISC: Final = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _STROKE + 1, 2 * _STROKE + 1))
#: Least summed vote weight at a point for it to be judged: about one keypoint close by.
_KNOWN_WEIGHT: Final = 1.0
#: A point is changed when the keypoints around it were found again at most at this share of
#: the rate of the best-surviving cells (their 75th percentile).
_CHANGED_RATE: Final = 0.3
#: Fewest changed neighbours (of 8) a changed cell needs to stay changed: a watermark's stroke
#: across the photo is a line of single cells, a replaced region is not.
_CHANGED_NEIGHBOURS: Final = 2
#: Fewest changed neighbours that make an unjudged cell (no keypoints: sky, a wall) changed:
#: such cells inside or at the edge of a replaced region join it, open areas stay unchanged.
_ENCLOSING_NEIGHBOURS: Final = 4
_matcher = cv2.BFMatcher(cv2.NORM_HAMMING)


@dataclasses.dataclass(frozen=True, eq=False)
class Alignment:
    """Where one image's keypoints land in another: the fitted similarity and its support."""

    transform: np.ndarray  # 2x3: source working pixels -> query working pixels
    inliers: int
    #: The matched keypoints' positions, source and query (n, 2 each): the fit's inliers and
    #: the rest, which the affine refinement is fitted to afresh.
    matched: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 2)), np.zeros((0, 2)))

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.transform[:, :2]))))


@dataclasses.dataclass(frozen=True, eq=False)
class Outline:
    """Where the protected photo lies in an upload and which part of it was changed: all an
    overlay needs, small enough to keep with a review case (the photo itself is never held)."""

    transform: np.ndarray  # 2x3: source working pixels -> query working pixels
    changed_mask: np.ndarray  # (12, 12) bool over the source photo; True = changed
    source_size: tuple[int, int]
    query_size: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "matrix": [[round(float(v), 4) for v in row] for row in self.transform],
            "changed_mask": ["".join("#" if c else "." for c in row) for row in self.changed_mask],
            "source_size": list(self.source_size),
            "query_size": list(self.query_size),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outline:
        """The outline `to_dict` wrote; ValueError when it is not one."""
        transform = np.array(data["matrix"], dtype=np.float64)
        mask = np.array([[c == "#" for c in row] for row in data["changed_mask"]], dtype=bool)
        source = tuple(int(v) for v in data["source_size"])
        query = tuple(int(v) for v in data["query_size"])
        if transform.shape != (2, 3) or mask.shape != (_GRID, _GRID) or len(source) != 2:
            raise ValueError("not an outline")
        if len(query) != 2 or min(*source, *query) <= 0:
            raise ValueError("not an outline")
        return cls(transform, mask, (source[0], source[1]), (query[0], query[1]))


@dataclasses.dataclass(frozen=True, eq=False)
class Evidence:
    """Why an upload is taken for a derivative of a protected photo."""

    transform: np.ndarray  # 2x3: source working pixels -> query working pixels
    inliers: int
    score: float  # 0-1, grows with inliers from the fewest a match can have
    changed_mask: np.ndarray  # (12, 12) bool over the source photo; True = changed
    visible_mask: np.ndarray  # (12, 12) bool: the part of the source inside the upload
    changed_fraction: float  # of the visible part
    source_size: tuple[int, int]
    query_size: tuple[int, int]
    #: Which view of the upload matched: "as is", "mirror" (a mirror image of the photo) or
    #: "unsquashed" (the photo was squashed, as to a square, and the transform is affine).
    view: str = "as is"
    #: Which part of the protected photo survived: "subject" (its person's head), "background"
    #: (only what was around the person: a weaker signal, as two portraits shot against one
    #: backdrop share it), or "photo" (the signature names no subject: no face was found).
    matched_part: str = "photo"

    @property
    def mirrored(self) -> bool:
        return self.view == "mirror"

    @property
    def outline(self) -> Outline:
        return Outline(self.transform, self.changed_mask, self.source_size, self.query_size)

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.transform[:, :2]))))

    @property
    def rotation_degrees(self) -> float:
        a, b = self.transform[0, 0], self.transform[1, 0]
        if self.mirrored:  # the rotation of the mirror image, before it was flipped
            a = -a
        return float(np.degrees(np.arctan2(b, a)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "inliers": self.inliers,
            "score": round(self.score, 3),
            "changed_fraction": round(self.changed_fraction, 3),
            "transform": {
                "scale": round(self.scale, 4),
                "rotation_degrees": round(self.rotation_degrees, 2),
                "matrix": [[round(float(v), 4) for v in row] for row in self.transform],
            },
            "changed_mask": ["".join("#" if c else "." for c in row) for row in self.changed_mask],
            "mirrored": self.mirrored,
            "view": self.view,
            "matched_part": self.matched_part,
        }


def _score(inliers: int, part: str) -> float:
    score = float(np.clip((inliers - _UPRIGHT_INLIERS + 1) / 42.0, 0.0, 1.0))
    return score / 2 if part == "background" else score


def verify(
    source: Features,
    query: Features,
    *,
    min_inliers: int = MIN_INLIERS,
    views: Sequence[int] | None = None,
) -> Evidence | None:
    """The evidence that `query` derives from `source`, or None. The query's views
    (`query.views`: as it is, mirrored, unsquashed; or only those numbered in `views`) are
    tried in order; once one matches, only unsquashed views are still tried (a squashed
    upload can match as it is, with a worse fit), or all of them while the match is an
    upright fit under `min_inliers` (a mirror image's own view may fit better), and the
    view with most inliers wins. A
    fit with fewer than `min_inliers`, down to `_UPRIGHT_INLIERS`, still matches when it is
    upright. A lower `min_inliers` is for measuring (the evaluation sweeps it),
    not for deciding."""
    chosen = query.views if views is None else tuple(query.views[v] for v in views)
    fewest = min(min_inliers, _UPRIGHT_INLIERS)
    first = _first(source)
    best: tuple[Alignment, View] | None = None
    for seen in chosen:
        if best is not None and seen.name != "unsquashed" and best[0].inliers >= min_inliers:
            continue
        aligned = align(first, seen.features, min_inliers=min(fewest, _NEAR_INLIERS))
        if aligned is not None and first is not source and not _passes(aligned, min_inliers):
            aligned = align(source, seen.features, min_inliers=fewest)
        if aligned is None or (best is not None and aligned.inliers <= best[0].inliers):
            continue
        if _passes(aligned, min_inliers):
            best = (aligned, seen)
    if best is None:
        return None
    aligned, seen = best
    evidence = _evidence(source, seen.features, aligned)
    # Back to the upload's own working pixels (a flip, or the stretch undone).
    transform = (seen.to_query @ np.vstack([evidence.transform, [0.0, 0.0, 1.0]]))[:2]
    return dataclasses.replace(
        evidence, transform=transform, query_size=(query.width, query.height), view=seen.name
    )


def align(source: Features, query: Features, *, min_inliers: int = MIN_INLIERS) -> Alignment | None:
    """The similarity that maps `source` onto `query` (no mirror image), if at least
    `min_inliers` correspondences agree on it: the geometric half of `verify`, without the
    changed-region evidence (the investigation measures change its own way)."""
    if len(source) < min_inliers or len(query) < min_inliers:
        return None
    pairs = _matcher.knnMatch(query.descriptors, source.descriptors, k=2)
    best: dict[int, cv2.DMatch] = {}
    for pair in pairs:
        if len(pair) == 2 and pair[0].distance < _RATIO * pair[1].distance:
            match = pair[0]
            kept = best.get(match.trainIdx)
            if kept is None or match.distance < kept.distance:
                best[match.trainIdx] = match
    if len(best) < min_inliers:
        return None
    matches = list(best.values())
    src = source.points[[m.trainIdx for m in matches]]
    dst = query.points[[m.queryIdx for m in matches]]
    transform, mask = cv2.estimateAffinePartial2D(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=_RANSAC_PIXELS,
        maxIters=2000,
        confidence=0.995,
    )
    if transform is None or mask is None:
        return None
    inliers = int(mask.sum())
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if inliers < min_inliers or not 0.2 <= scale <= 5.0:
        return None
    return Alignment(transform, inliers, (src, dst))


def _first(source: Features) -> Features:
    """The first `_FIRST` keypoints of a signature (the signature itself when no longer)."""
    if len(source) <= _FIRST:
        return source
    return dataclasses.replace(
        source, points=source.points[:_FIRST], descriptors=source.descriptors[:_FIRST]
    )


def _passes(aligned: Alignment, min_inliers: int) -> bool:
    return aligned.inliers >= min_inliers or (
        aligned.inliers >= _UPRIGHT_INLIERS and _upright(aligned)
    )


def _upright(aligned: Alignment) -> bool:
    transform = aligned.transform
    return bool(abs(np.degrees(np.arctan2(transform[1, 0], transform[0, 0]))) <= _UPRIGHT_DEGREES)


def _evidence(source: Features, query: Features, aligned: Alignment) -> Evidence:
    transform = _refined(aligned)
    changed, visible, survived = _changed_region(source, query, transform)
    fraction = float(changed.sum() / visible.sum()) if visible.any() else 0.0
    part = _matched_part(source, survived)
    return Evidence(
        transform=transform,
        inliers=aligned.inliers,
        score=_score(aligned.inliers, part),
        changed_mask=changed,
        visible_mask=visible,
        changed_fraction=fraction,
        source_size=(source.width, source.height),
        query_size=(query.width, query.height),
        matched_part=part,
    )


def _matched_part(source: Features, survived: np.ndarray) -> str:
    """ "subject" when the keypoints on the photo's heads were found again in the upload about
    as often as the photo's keypoints overall, "background" when far less often (another
    person in front of the same backdrop), "photo" when the signature names no head."""
    if not source.subjects:
        return "photo"
    x, y = source.points[:, 0], source.points[:, 1]
    on_subject = np.zeros(len(source), bool)
    for left, top, right, bottom in source.subjects:
        on_subject |= (x >= left) & (x < right) & (y >= top) & (y < bottom)
    kept = int((survived & on_subject).sum())
    rate = kept / max(1, int(on_subject.sum()))
    overall = float(survived.mean()) if survived.size else 0.0
    return "subject" if kept >= _SUBJECT_KEPT and rate >= _SUBJECT_RATE * overall else "background"


def _refined(aligned: Alignment) -> np.ndarray:
    """The affine map fitted (RANSAC) to the same matched keypoints as the similarity, or the
    similarity when the fit has fewer inliers or is not a plausible squash."""
    if len(aligned.matched[0]) < aligned.inliers:  # no pairs kept with it
        return aligned.transform
    fitted, mask = cv2.estimateAffine2D(
        *aligned.matched,
        method=cv2.RANSAC,
        ransacReprojThreshold=_RANSAC_PIXELS,
        maxIters=2000,
        confidence=0.995,
    )
    if fitted is None or mask is None or int(mask.sum()) < aligned.inliers:
        return aligned.transform
    largest, smallest = np.linalg.svd(fitted[:, :2], compute_uv=False)
    if np.linalg.det(fitted[:, :2]) <= 0 or largest > _ANISOTROPY * smallest:
        return aligned.transform
    return np.asarray(fitted, np.float64)


def _same(source: Features, i: np.ndarray, query: Features, j: np.ndarray) -> np.ndarray:
    """Which pairs (source keypoint i, query keypoint j) have descriptors alike enough for the
    source keypoint to count as found again."""
    bits = np.bitwise_count(source.descriptors[i] ^ query.descriptors[j]).sum(axis=1)
    return np.asarray(bits <= _SAME_DESCRIPTOR)


def _changed_region(
    source: Features, query: Features, transform: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The changed and visible cells of the source's grid, and which source keypoints were
    found again in the query."""
    projected = source.points @ transform[:, :2].T + transform[:, 2]
    inside = (
        (projected[:, 0] >= _BORDER)
        & (projected[:, 0] < query.width - _BORDER)
        & (projected[:, 1] >= _BORDER)
        & (projected[:, 1] < query.height - _BORDER)
    )
    survived = np.zeros(len(source), bool)
    candidates = np.flatnonzero(inside)
    if len(query) and candidates.size:
        # For each projected source keypoint: any query keypoint near it with a similar
        # descriptor? Query keypoints are bucketed by position, so only near ones are read.
        near_source, near_query = _near_pairs(projected[candidates], query.points, _NEAR_PIXELS)
        same = _same(source, candidates[near_source], query, near_query)
        survived[candidates[near_source[same]]] = True

    # Which cells of the source lie inside the upload: their centres, projected.
    centres = (np.arange(_GRID) + 0.5) / _GRID
    cx, cy = np.meshgrid(centres * source.width, centres * source.height)
    grid = np.stack([cx.ravel(), cy.ravel()], axis=1) @ transform[:, :2].T + transform[:, 2]
    visible = (
        (grid[:, 0] >= 0)
        & (grid[:, 0] < query.width)
        & (grid[:, 1] >= 0)
        & (grid[:, 1] < query.height)
    ).reshape(_GRID, _GRID)

    # Each tested keypoint's vote (found again or not), spread as a Gaussian over a fine grid.
    fine = _GRID * _FINE
    centre = np.arange(fine) + 0.5
    spread = _SPREAD * _FINE
    across = np.exp(
        -0.5 * ((centre - source.points[inside, :1] * fine / source.width) / spread) ** 2
    )
    down = np.exp(
        -0.5 * ((centre - source.points[inside, 1:] * fine / source.height) / spread) ** 2
    )
    weight = down.T @ across
    kept = (down * survived[inside, None]).T @ across
    judged = weight >= _KNOWN_WEIGHT
    rate = np.where(judged, kept / np.maximum(weight, 1e-9), 0.0)

    def per_cell(points: np.ndarray) -> np.ndarray:
        return np.asarray(points.reshape(_GRID, _FINE, _GRID, _FINE).mean(axis=(1, 3)))

    known = per_cell(judged) >= 0.5
    # Re-encoding or smoothing the whole upload lowers every rate, and must not read as a
    # change: a point is changed against the cells that survived best.
    rates = per_cell(rate)[known]
    best = float(np.percentile(rates, 75)) if rates.size else 0.0
    points = _opened(judged & (rate <= _CHANGED_RATE * max(best, 0.05)), judged)
    changed = known & (per_cell(points) > _CHANGED_SHARE)
    changed &= _neighbours(changed) >= _CHANGED_NEIGHBOURS
    for _ in range(_GRID):
        joining = visible & ~known & ~changed & (_neighbours(changed) >= _ENCLOSING_NEIGHBOURS)
        if not joining.any():
            break
        changed |= joining
    return changed & visible, visible, survived


def _opened(points: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """`points` less the parts thinner than a disc of `_STROKE` points; unjudged points (no
    keypoint near) neither break a disc nor are added."""
    whole = cv2.erode(
        (points | ~judged).astype(np.uint8), _DISC, borderType=cv2.BORDER_CONSTANT, borderValue=1
    )
    return np.asarray(points & cv2.dilate(whole, _DISC).astype(bool))


def _neighbours(cells: np.ndarray) -> np.ndarray:
    """How many of each cell's 8 neighbours are set."""
    padded = np.pad(cells, 1).astype(np.int64)
    total = sum(
        padded[1 + dy : 1 + dy + _GRID, 1 + dx : 1 + dx + _GRID]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    return np.asarray(total - cells)


def _near_pairs(
    points: np.ndarray, others: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with points[i] within `radius` of others[j]: others sorted into square buckets
    of that side, and each point compared with the 3x3 buckets around its own."""
    wide = 1 << 16
    bucket = np.floor(others / radius).astype(np.int64)
    keys = (bucket[:, 0] + 1) * wide + bucket[:, 1] + 1
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    own = np.floor(points / radius).astype(np.int64)
    firsts, counts, owners = [], [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            wanted = (own[:, 0] + dx + 1) * wide + own[:, 1] + dy + 1
            start = np.searchsorted(keys, wanted, side="left")
            firsts.append(start)
            counts.append(np.searchsorted(keys, wanted, side="right") - start)
            owners.append(np.arange(len(points)))
    first, count, owner = np.concatenate(firsts), np.concatenate(counts), np.concatenate(owners)
    total = int(count.sum())
    if total == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    at = np.repeat(first - np.cumsum(count) + count, count) + np.arange(total)
    i, j = np.repeat(owner, count), order[at]
    gaps = points[i] - others[j]
    close = np.einsum("ij,ij->i", gaps, gaps) <= radius**2
    return i[close], j[close]


def overlay(query: Image.Image, outline: Outline) -> Image.Image:
    """The upload (or a render of it: any size of the same shape) with the protected photo's
    outline (green) and the changed region (red) drawn over it, for a reviewer."""
    base = query.convert("RGB")
    sx = base.width / outline.query_size[0]
    sy = base.height / outline.query_size[1]
    width, height = outline.source_size

    def to_query(x: float, y: float) -> tuple[float, float]:
        qx, qy = outline.transform @ np.array([x, y, 1.0])
        return float(qx * sx), float(qy * sy)

    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cell_w, cell_h = width / _GRID, height / _GRID
    line = max(2, round(min(base.size) / 150))
    for row, col in zip(*np.nonzero(outline.changed_mask), strict=True):
        x0, y0 = col * cell_w, row * cell_h
        corners = [(x0, y0), (x0 + cell_w, y0), (x0 + cell_w, y0 + cell_h), (x0, y0 + cell_h)]
        draw.polygon([to_query(x, y) for x, y in corners], fill=(255, 0, 0, 90))
        # A hatch as well as the colour: the region reads without telling red from green.
        draw.line([to_query(x0, y0 + cell_h), to_query(x0 + cell_w, y0)], fill=(255, 0, 0, 200))
    edge = [to_query(x, y) for x, y in [(0, 0), (width, 0), (width, height), (0, height)]]
    draw.line([*edge, edge[0]], fill=(0, 255, 0, 255), width=line)
    drawn = Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")
    outside = any(not (-1 <= x <= base.width + 1 and -1 <= y <= base.height + 1) for x, y in edge)
    return _with_legend(drawn, line, outside)


def _with_legend(image: Image.Image, line: int, outside: bool) -> Image.Image:
    """The overlay with a legend strip below it: what each mark means, and whether the
    protected photo's outline runs past this image's edges (the image is a crop of it)."""
    size = max(12, min(28, image.width // 40))
    font = ImageFont.load_default(size=size)
    notes = [
        "green line: where the protected photo lies in this image",
        "red, hatched: changed from the protected photo",
    ]
    if outside:
        notes.append("the protected photo extends past this image's edges (a crop of it)")
    row = size + size // 2
    out = Image.new("RGB", (image.width, image.height + row * len(notes) + size // 2), "white")
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    swatch = size * 2
    for i, note in enumerate(notes):
        y = image.height + size // 4 + i * row
        middle = y + size // 2
        if i == 0:
            draw.line([(size // 2, middle), (size // 2 + swatch, middle)], (0, 160, 0), line)
        elif i == 1:
            box = (size // 2, y, size // 2 + swatch, y + size)
            draw.rectangle(box, fill=(255, 170, 170), outline=(200, 0, 0))
            draw.line([(box[0], box[3]), (box[2], box[1])], fill=(200, 0, 0))
        draw.text((size + swatch, y), note, fill="black", font=font)
    return out
