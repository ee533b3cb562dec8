"""Local features (ORB) of a photo: what finds a derivative when a global hash cannot.

A protected photo's *signature* is a grid-spread set of ORB keypoints (positions on a
480-pixel working image and 256-bit descriptors). Spread over an 8x8 grid, so that whatever
region of the photo survives in a derivative still carries keypoints; listed rank by rank (the
strongest of every cell, then the second of every cell...), so that its first keypoints are
an evenly spread signature of their own (what the shortlist holds). A query image gets three
times as many, spread the same way: they are not stored. No pixels are kept; see the README
for what a signature can and cannot reveal.

Smaller images are enlarged to the working size first: ORB finds few keypoints on a 300-pixel
photo, and a derivative is often smaller than its source. A nearly square query is also seen
*unsquashed* (stretched to 1.4:1 either way): nudifying tools squash photos to a square, and
ORB's descriptors do not survive that anisotropy.

A signature also names the photo's *subject*: the heads that OpenCV's bundled face detector
finds on it (each face box grown to take in hair), so that a match can say whether the person
survived in an upload or only the background did (two portraits against one studio backdrop).

Binary layout (little-endian): b"CFK2", u16 width, u16 height, u16 n, then n (u16 x*64,
u16 y*64) positions in working pixels, then n 32-byte descriptors, then u8 k and k subject
boxes (u16 left, top, right, bottom in working pixels). Version 1 (b"CFK1") ends after the
descriptors: it has no subject, and is still read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import threading
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..errors import SignalError
from ..media import Limits, decode_gray

__all__ = [
    "QUERY_FEATURES",
    "SHORTLISTED",
    "SOURCE_FEATURES",
    "WORK_SIDE",
    "Features",
    "View",
    "gray_features",
    "image_features",
    "query_features",
    "source_features",
    "working_gray",
]

WORK_SIDE: Final = 480
SOURCE_FEATURES: Final = 2048
#: The first keypoints of a signature (8 per grid cell) are what a shortlist indexes.
SHORTLISTED: Final = 512
QUERY_FEATURES: Final = 3000
#: A query whose sides differ by less than this ratio is also seen unsquashed ...
_SQUARE: Final = 1.1
#: ... to this aspect ratio (between 4:3 and 3:2, the common photo shapes), both ways.
_UNSQUASH: Final = 1.4
_GRID: Final = 8
_MAGIC: Final = b"CFK2"
_MAGIC_V1: Final = b"CFK1"
_MAX_SUBJECTS: Final = 4
_HEADER: Final = struct.Struct("<4sHHH")
_POSITION_SCALE: Final = 64.0


def _orb(count: int) -> cv2.ORB:
    return cv2.ORB.create(
        nfeatures=count,
        scaleFactor=1.2,
        nlevels=8,
        edgeThreshold=15,
        patchSize=31,
        fastThreshold=5,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Features:
    """Keypoints of one image on its working image (`width` x `height` pixels)."""

    width: int
    height: int
    points: np.ndarray  # (n, 2) float32, x then y
    descriptors: np.ndarray  # (n, 32) uint8
    #: A protected photo's subject: head boxes (left, top, right, bottom) in working pixels.
    subjects: tuple[tuple[int, int, int, int], ...] = ()
    #: A query's other views: its mirror image (ORB is not invariant to flips, uploads are)
    #: and, for a nearly square one, its unsquashed versions.
    others: tuple[View, ...] = ()

    @property
    def views(self) -> tuple[View, ...]:
        """This image as it is, then its other views (a query's); verification tries them in
        this order."""
        return (View("as is", self, _IDENTITY), *self.others)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_bytes(self) -> bytes:
        """The versioned binary signature (positions rounded to 1/64 pixel)."""
        n = len(self)
        positions = np.clip(np.rint(self.points * _POSITION_SCALE), 0, 65535).astype("<u2")
        boxes = np.array(self.subjects[:_MAX_SUBJECTS], "<u2").reshape(-1, 4)
        return (
            _HEADER.pack(_MAGIC, self.width, self.height, n)
            + positions.tobytes()
            + np.ascontiguousarray(self.descriptors, dtype=np.uint8).tobytes()
            + bytes([boxes.shape[0]])
            + boxes.tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        if len(data) < _HEADER.size:
            raise SignalError("a signature is too short", code="invalid_signature")
        magic, width, height, n = _HEADER.unpack_from(data)
        if magic not in (_MAGIC, _MAGIC_V1):
            raise SignalError("not a version 1 or 2 signature", code="invalid_signature")
        start = _HEADER.size
        end = start + n * 36
        boxes = 0
        if magic == _MAGIC:  # then a count of head boxes, and the boxes
            boxes = data[end] if len(data) > end else 0
            end += 1 + 8 * boxes
        if len(data) != end or not (0 < width <= 4 * WORK_SIDE and height > 0):
            raise SignalError(
                f"a signature of {n} keypoints is {end} bytes, not {len(data)}",
                code="invalid_signature",
            )
        positions = np.frombuffer(data, "<u2", count=2 * n, offset=start).reshape(n, 2)
        descriptors = np.frombuffer(data, np.uint8, count=32 * n, offset=start + 4 * n)
        subjects: list[tuple[int, int, int, int]] = []
        if boxes:
            values = np.frombuffer(data, "<u2", count=4 * boxes, offset=start + 36 * n + 1)
            subjects = [(int(a), int(b), int(c), int(d)) for a, b, c, d in values.reshape(-1, 4)]
        return cls(
            width,
            height,
            positions.astype(np.float32) / _POSITION_SCALE,
            descriptors.reshape(n, 32).copy(),
            tuple(subjects),
        )

    @property
    def id(self) -> str:
        """SHA-256 of the binary signature: the entry value that stands for it in a bank."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


_IDENTITY: Final = np.eye(3)


@dataclasses.dataclass(frozen=True, eq=False)
class View:
    """One way of looking at a query: its features, and the 3x3 matrix that takes this
    view's working pixels back to the query's."""

    name: str  # "as is", "mirror", "unsquashed"
    features: Features
    to_query: np.ndarray


_faces = threading.local()  # a cascade classifier per thread: detection is not thread-safe


def _subjects(gray: np.ndarray) -> tuple[tuple[int, int, int, int], ...]:
    """Head boxes on a working image, largest first: each frontal face OpenCV's bundled
    detector finds, grown by a third each way (hair, chin) and clipped to the image."""
    detector = getattr(_faces, "detector", None)
    if detector is None:
        detector = cv2.CascadeClassifier(
            str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
        )
        _faces.detector = detector
    height, width = gray.shape[:2]
    found = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(24, 24))
    boxes = sorted((tuple(int(v) for v in f) for f in found), key=lambda b: -b[2] * b[3])
    out = []
    for x, y, w, h in boxes[:_MAX_SUBJECTS]:
        grow_x, grow_y = w // 3, h // 3
        out.append(
            (
                max(0, x - grow_x),
                max(0, y - grow_y),
                min(width, x + w + grow_x),
                min(height, y + h + grow_y),
            )
        )
    return tuple(out)


def working_gray(gray: np.ndarray) -> np.ndarray:
    """Grey levels at the working size: a smaller image is enlarged to it."""
    height, width = gray.shape[:2]
    if max(height, width) >= WORK_SIDE:
        return gray
    ratio = WORK_SIDE / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC)


def _features(gray: np.ndarray, keypoints: list[cv2.KeyPoint], orb: cv2.ORB) -> Features:
    computed, descriptors = orb.compute(gray, keypoints)
    if descriptors is None or not computed:
        descriptors = np.zeros((0, 32), np.uint8)
        points = np.zeros((0, 2), np.float32)
    else:
        points = np.array([k.pt for k in computed], np.float32).reshape(-1, 2)
    return Features(int(gray.shape[1]), int(gray.shape[0]), points, descriptors)


def source_features(
    gray: np.ndarray, count: int = SOURCE_FEATURES, *, mask: np.ndarray | None = None
) -> Features:
    """A protected photo's keypoints (a query's too, more of them): the strongest per cell of
    an 8x8 grid, then the strongest of the rest, up to `count`; in rank order (every cell's
    first, then every cell's second...), so that any prefix is spread too. With a `mask`
    (bool, the image's shape), only where it is true: a stamp known to lie elsewhere takes
    none of them."""
    orb = _orb(count * 8)
    found = orb.detect(gray, None if mask is None else mask.astype(np.uint8) * 255)
    if not found:
        return _features(gray, [], orb)
    height, width = gray.shape
    points = np.asarray(cv2.KeyPoint.convert(found), np.float64).reshape(-1, 2)  # as k.pt
    strength = -np.array([k.response for k in found], np.float64)
    column = np.minimum(_GRID - 1, (points[:, 0] * _GRID / width).astype(np.int64))
    row = np.minimum(_GRID - 1, (points[:, 1] * _GRID / height).astype(np.int64))
    cell = column * _GRID + row
    # Ties keep detection order within a cell and cells the order they first appear in.
    _, first = np.unique(cell, return_index=True)
    appearance = np.empty(_GRID * _GRID, np.int64)
    appearance[cell[np.sort(first)]] = np.arange(len(first))
    cell_order = appearance[cell]
    within = np.lexsort((np.arange(len(found)), strength, cell_order))
    starts = np.flatnonzero(np.r_[True, np.diff(cell_order[within]) != 0])
    rank = np.empty(len(found), np.int64)
    rank[within] = np.arange(len(found)) - np.repeat(starts, np.diff(np.r_[starts, len(found)]))
    position = np.empty(len(found), np.int64)
    position[within] = np.arange(len(found))
    per_cell = max(1, count // (_GRID * _GRID))
    ranked = np.flatnonzero(rank < per_cell)
    ranked = ranked[np.lexsort((cell_order[ranked], strength[ranked], rank[ranked]))]
    rest = np.flatnonzero(rank >= per_cell)
    rest = rest[np.lexsort((position[rest], strength[rest]))]
    picked = np.r_[ranked, rest[: max(0, count - len(ranked))]]
    chosen = [found[int(i)] for i in picked]
    for n, keypoint in enumerate(chosen):
        keypoint.class_id = n  # compute() groups keypoints by pyramid level
    computed, descriptors = orb.compute(gray, chosen)
    if descriptors is None or not computed:
        return _features(gray, [], orb)
    order = np.argsort([k.class_id for k in computed], kind="stable")
    kept = np.asarray(cv2.KeyPoint.convert(computed), np.float32).reshape(-1, 2)[order]
    return Features(int(gray.shape[1]), int(gray.shape[0]), kept, descriptors[order])


def query_features(gray: np.ndarray, count: int = QUERY_FEATURES) -> Features:
    """An uploaded image's keypoints: three times a signature's, spread over the grid as a
    signature's are. Taken wherever they are strongest, most fell on the textured content
    pasted into a derivative and the watermark, and few on the part of the photo that
    survived (on the tuning half at 60% replaced, verification found 79% of derivatives
    unspread, 85% spread, 82% with twice as many unspread)."""
    return source_features(gray, count)


def image_features(data: bytes, *, query: bool, limits: Limits | None = None) -> Features:
    """An encoded image's features: a query's (`query=True`, with its other views) or a
    protected photo's."""
    return gray_features(decode_gray(data, max_side=WORK_SIDE, limits=limits), query=query)


def gray_features(gray: np.ndarray, *, query: bool) -> Features:
    """`image_features` of already decoded grey levels (at most `WORK_SIDE` on the long
    side), for callers that need both kinds, or the grey levels too, from one decode."""
    gray = working_gray(gray)
    if not query:
        return dataclasses.replace(source_features(gray), subjects=_subjects(gray))
    height, width = gray.shape
    others = [
        View(
            "mirror",
            query_features(np.ascontiguousarray(gray[:, ::-1])),
            np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        )
    ]
    if max(width, height) < _SQUARE * min(width, height):
        long, short = WORK_SIDE, round(WORK_SIDE / _UNSQUASH)
        for size in ((long, short), (short, long)):
            stretched = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
            back = np.diag([width / size[0], height / size[1], 1.0])
            others.append(View("unsquashed", query_features(stretched), back))
    return dataclasses.replace(query_features(gray), others=tuple(others))
