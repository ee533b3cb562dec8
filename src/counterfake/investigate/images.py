"""What an investigation needs of one image file: its hashes, its local features, and its
matches against the given banks. One function of plain, picklable inputs and outputs, so that
it runs the same in this process or on Dask workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..errors import CounterfakeError
from ..hashing import hash_bytes, read_input
from ..matching import Match, Matcher
from ..media import Limits, decode_gray
from ..signals.keypoints import WORK_SIDE, gray_features
from ..store import Store

__all__ = ["BankSpec", "ImageRecord", "analyse_image"]

#: Side of the grey thumbnail kept per image: what clustering compares aligned pixels on.
THUMB_SIDE: Final = 128


@dataclasses.dataclass(frozen=True)
class BankSpec:
    """Which banks to match against, by database URL: a worker opens its own store."""

    database_url: str
    banks: tuple[str, ...]
    min_quality: int = 50


@dataclasses.dataclass(frozen=True, eq=False)
class ImageRecord:
    """One distinct image file of the archive, analysed. `error` is a media error code."""

    pdq: str | None = None
    quality: int = 0
    features: bytes = b""  # the grid-spread signature (signals.keypoints, binary v1)
    thumb: bytes = b""  # THUMB_SIDE^2 uint8 grey levels of the whole image
    matches: tuple[Match, ...] = ()
    error: str | None = None
    error_message: str = ""


_matchers: dict[BankSpec, Matcher] = {}


def _matcher(spec: BankSpec) -> Matcher:
    """One matcher per process and bank set (a Dask worker keeps it between tasks)."""
    if spec not in _matchers:
        store = Store.open(spec.database_url)
        _matchers[spec] = Matcher(store, list(spec.banks), min_quality=spec.min_quality)
    return _matchers[spec]


def _thumb(gray: np.ndarray) -> bytes:
    small = cv2.resize(gray, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small, np.uint8).tobytes()


def analyse_image(path: Path, spec: BankSpec | None, limits: Limits | None = None) -> ImageRecord:
    """Hash one file, compute its signature and match it; a bad file is an error code, not an
    exception, so one image never stops an investigation."""
    limits = limits or Limits()
    try:
        data = read_input(path, limits=limits)
        hashes = hash_bytes(data, limits=limits)
        gray = decode_gray(data, max_side=WORK_SIDE, limits=limits)
        features = gray_features(gray, query=False)
        matches: tuple[Match, ...] = ()
        if spec is not None and spec.banks:
            result = _matcher(spec).match(hashes, features=lambda: gray_features(gray, query=True))
            matches = tuple(result.matches)
        return ImageRecord(
            pdq=hashes.signals["pdq"],
            quality=hashes.quality,
            features=features.to_bytes(),
            thumb=_thumb(gray),
            matches=matches,
        )
    except CounterfakeError as exc:
        return ImageRecord(error=exc.code, error_message=exc.message)
