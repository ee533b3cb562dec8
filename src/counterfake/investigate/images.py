"""What an investigation needs of one image file: its hashes, its local features, and its
matches against the given banks. One function of plain, picklable inputs and outputs, so that
it runs the same in this process or on Dask workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..core import Counterfake
from ..errors import CounterfakeError
from ..hashing import hash_decoded, read_input
from ..matching import Match
from ..media import Limits, decode
from ..settings import Settings
from ..signals import pdq_dihedral
from ..signals.keypoints import SHORTLISTED, WORK_SIDE, source_features, working_gray

__all__ = ["BankSpec", "ImageRecord", "analyse_image", "signature_around"]

#: Side of the grey thumbnail kept per image: what clustering compares aligned pixels on.
THUMB_SIDE: Final = 128


@dataclasses.dataclass(frozen=True)
class BankSpec:
    """Which banks to match against, and the settings (the database's URL among them) with
    which a worker opens its own core object."""

    settings: Settings
    banks: tuple[str, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class ImageRecord:
    """One distinct image file of the archive, analysed. `error` is a media error code."""

    pdq: str | None = None
    mirror_pdq: str | None = None  # PDQ of the mirror image: a flipped repost is a copy
    quality: int = 0
    features: bytes = b""  # the grid-spread signature (signals.keypoints, binary)
    thumb: bytes = b""  # THUMB_SIDE^2 uint8 grey levels of the whole image
    matches: tuple[Match, ...] = ()
    error: str | None = None
    error_message: str = ""


_cores: dict[BankSpec, Counterfake] = {}


def _core(spec: BankSpec) -> Counterfake:
    """One core object per process and bank set (a Dask worker keeps it between tasks)."""
    if spec not in _cores:
        _cores[spec] = Counterfake(spec.settings, banks=spec.banks)
    return _cores[spec]


def _thumb(gray: np.ndarray) -> bytes:
    small = cv2.resize(gray, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small, np.uint8).tobytes()


def analyse_image(path: Path, spec: BankSpec | None, limits: Limits | None = None) -> ImageRecord:
    """Hash one file, compute its signature and match it; a bad file is an error code, not an
    exception, so one image never stops an investigation."""
    limits = limits or Limits()
    try:
        data = read_input(path, limits=limits)
        image = decode(data, limits=limits, gray_side=WORK_SIDE)  # once, for all of it
        assert image.gray is not None
        gray = image.gray
        # Investigations compare every image with its neighbours: the shorter signature keeps
        # that affordable. A small image is enlarged first (ORB finds few keypoints on it).
        features = source_features(working_gray(gray), SHORTLISTED)
        matches: tuple[Match, ...] = ()
        if spec is not None and spec.banks:
            found = _core(spec).lookup(data, image=image)
            hashes, matches = found.hashes, tuple(found.matches)
        else:
            hashes = hash_decoded(data, image)
        return ImageRecord(
            pdq=hashes.signals["pdq"],
            mirror_pdq=pdq_dihedral(image)["flipy"].hex,
            quality=hashes.quality,
            features=features.to_bytes(),
            thumb=_thumb(gray),
            matches=matches,
        )
    except CounterfakeError as exc:
        return ImageRecord(error=exc.code, error_message=exc.message)


def signature_around(path: Path, stamped: np.ndarray, limits: Limits | None = None) -> bytes:
    """The image's signature again, its keypoints taken only off `stamped` (bool over the
    working image, at any resolution): a stamp's text has the strongest corners, and left
    out afterwards it leaves an image few keypoints of its own to link by. Empty when the
    file can no longer be read."""
    limits = limits or Limits()
    try:
        data = read_input(path, limits=limits)
        gray = decode(data, limits=limits, gray_side=WORK_SIDE).gray
    except CounterfakeError:
        return b""
    assert gray is not None
    gray = working_gray(gray)
    height, width = gray.shape
    outside = cv2.resize(
        (~stamped).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    return source_features(gray, SHORTLISTED, mask=outside).to_bytes()
