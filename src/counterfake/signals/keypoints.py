"""Local features (ORB) of a photo: what finds a derivative when a global hash cannot.

A protected photo's *signature* is a grid-spread set of ORB keypoints (positions on a
480-pixel working image and 256-bit descriptors). Spread over an 8x8 grid, so that whatever
region of the photo survives in a derivative still carries keypoints. A query image gets more,
unspread, features: they are not stored. No pixels are kept; see the README for what a
signature can and cannot reveal.

Binary layout (version 1, little-endian): b"CFK1", u16 width, u16 height, u16 n, then n
(u16 x*64, u16 y*64) positions in working pixels, then n 32-byte descriptors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from typing import Final

import cv2
import numpy as np

from ..errors import SignalError
from ..media import Limits, decode_gray

__all__ = [
    "QUERY_FEATURES",
    "SOURCE_FEATURES",
    "WORK_SIDE",
    "Features",
    "gray_features",
    "image_features",
    "query_features",
    "source_features",
]

WORK_SIDE: Final = 480
SOURCE_FEATURES: Final = 512
QUERY_FEATURES: Final = 2000
_GRID: Final = 8
_MAGIC: Final = b"CFK1"
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
    #: A query's features of its mirror image: ORB is not invariant to flips, uploads are.
    mirror: Features | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_bytes(self) -> bytes:
        """The versioned binary signature (positions rounded to 1/64 pixel)."""
        n = len(self)
        positions = np.clip(np.rint(self.points * _POSITION_SCALE), 0, 65535).astype("<u2")
        return (
            _HEADER.pack(_MAGIC, self.width, self.height, n)
            + positions.tobytes()
            + np.ascontiguousarray(self.descriptors, dtype=np.uint8).tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        if len(data) < _HEADER.size:
            raise SignalError("a signature is too short", code="invalid_signature")
        magic, width, height, n = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise SignalError("not a version 1 signature", code="invalid_signature")
        expected = _HEADER.size + n * 4 + n * 32
        if len(data) != expected or not (0 < width <= 4 * WORK_SIDE and height > 0):
            raise SignalError(
                f"a signature of {n} keypoints is {expected} bytes, not {len(data)}",
                code="invalid_signature",
            )
        start = _HEADER.size
        positions = np.frombuffer(data, "<u2", count=2 * n, offset=start).reshape(n, 2)
        descriptors = np.frombuffer(data, np.uint8, count=32 * n, offset=start + 4 * n)
        return cls(
            width,
            height,
            positions.astype(np.float32) / _POSITION_SCALE,
            descriptors.reshape(n, 32).copy(),
        )

    @property
    def id(self) -> str:
        """SHA-256 of the binary signature: the entry value that stands for it in a bank."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def _features(gray: np.ndarray, keypoints: list[cv2.KeyPoint], orb: cv2.ORB) -> Features:
    computed, descriptors = orb.compute(gray, keypoints)
    if descriptors is None or not computed:
        descriptors = np.zeros((0, 32), np.uint8)
        points = np.zeros((0, 2), np.float32)
    else:
        points = np.array([k.pt for k in computed], np.float32).reshape(-1, 2)
    return Features(int(gray.shape[1]), int(gray.shape[0]), points, descriptors)


def source_features(gray: np.ndarray, count: int = SOURCE_FEATURES) -> Features:
    """A protected photo's keypoints: the strongest per cell of an 8x8 grid, then the
    strongest of the rest, up to `count`."""
    orb = _orb(count * 8)
    found = orb.detect(gray, None)
    height, width = gray.shape
    cells: dict[tuple[int, int], list[cv2.KeyPoint]] = {}
    for keypoint in found:
        x, y = keypoint.pt
        cell = (min(_GRID - 1, int(x * _GRID / width)), min(_GRID - 1, int(y * _GRID / height)))
        cells.setdefault(cell, []).append(keypoint)
    per_cell = max(1, count // (_GRID * _GRID))
    chosen: list[cv2.KeyPoint] = []
    rest: list[cv2.KeyPoint] = []
    for keypoints in cells.values():
        keypoints.sort(key=lambda k: -k.response)
        chosen += keypoints[:per_cell]
        rest += keypoints[per_cell:]
    rest.sort(key=lambda k: -k.response)
    chosen += rest[: max(0, count - len(chosen))]
    return _features(gray, chosen, orb)


def query_features(gray: np.ndarray, count: int = QUERY_FEATURES) -> Features:
    """An uploaded image's keypoints: more of them, wherever they are strongest."""
    orb = _orb(count)
    return _features(gray, list(orb.detect(gray, None)), orb)


def image_features(data: bytes, *, query: bool, limits: Limits | None = None) -> Features:
    """An encoded image's features: a query's (`query=True`, with its mirror image's) or a
    protected photo's."""
    return gray_features(decode_gray(data, max_side=WORK_SIDE, limits=limits), query=query)


def gray_features(gray: np.ndarray, *, query: bool) -> Features:
    """`image_features` of an already decoded working image (for callers that need both
    kinds, or the grey levels too, from one decode)."""
    if not query:
        return source_features(gray)
    mirror = query_features(np.ascontiguousarray(gray[:, ::-1]))
    return dataclasses.replace(query_features(gray), mirror=mirror)
