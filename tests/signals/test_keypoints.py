"""Signatures: compact, versioned, exact to 1/64 pixel, and refused when damaged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from counterfake import SignalError
from counterfake.media import decode_gray
from counterfake.signals.keypoints import (
    SOURCE_FEATURES,
    WORK_SIDE,
    Features,
    image_features,
    query_features,
    source_features,
)
from tests.images import encode, photo_like


def test_a_signature_round_trips_and_stays_small() -> None:
    features = image_features(encode(photo_like(800, 600, seed=3)), query=False)
    assert 100 < len(features) <= SOURCE_FEATURES
    data = features.to_bytes()
    assert len(data) <= 10 + SOURCE_FEATURES * (4 + 32) + 1  # no head on this photo
    again = Features.from_bytes(data)
    assert (again.width, again.height) == (features.width, features.height) == (480, 360)
    assert np.abs(again.points - features.points).max() <= 1 / 64
    assert np.array_equal(again.descriptors, features.descriptors)
    assert again.id == features.id and len(features.id) == 64


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:-1], lambda b: b"XXXX" + b[4:], lambda b: b[:5], lambda b: b + b"\0"],
    ids=["truncated", "magic", "header", "trailing"],
)
def test_a_damaged_signature_is_refused(damage: object) -> None:
    data = image_features(encode(photo_like(400, 300, seed=4)), query=False).to_bytes()
    with pytest.raises(SignalError) as info:
        Features.from_bytes(damage(data))  # type: ignore[operator]
    assert info.value.code == "invalid_signature"


def _strongest(gray: np.ndarray, count: int) -> np.ndarray:
    """Positions of `count` ORB keypoints wherever they are strongest: not spread."""
    orb = cv2.ORB.create(nfeatures=count, edgeThreshold=15, patchSize=31, fastThreshold=5)
    return np.array(cv2.KeyPoint.convert(orb.detect(gray, None)), np.float32).reshape(-1, 2)


@pytest.mark.parametrize("features", [source_features, query_features], ids=["signature", "query"])
def test_keypoints_are_spread_over_the_photo(
    corpus_dir: Path, features: Callable[[np.ndarray], Features]
) -> None:
    """So that whatever part survives a manipulation still carries keypoints, in the
    signature and in the upload (where the strongest lie on what was pasted in)."""

    def fair_cells(points: np.ndarray, width: int, height: int) -> int:
        """Cells of an 8x8 grid holding at least half of their fair share of the keypoints."""
        cell = np.minimum((points // (width / 8, height / 8)).astype(int), 7)
        held = np.bincount(cell[:, 0] * 8 + cell[:, 1], minlength=64)
        return int((held >= len(points) / 64 / 2).sum())

    def cells(points: np.ndarray, width: int, height: int) -> int:
        return len(set(map(tuple, (points // (width / 8, height / 8)).astype(int))))

    spread_cells = strongest_cells = 0
    for path in sorted(corpus_dir.glob("*.jpg"))[:8]:
        gray = decode_gray(path.read_bytes(), max_side=WORK_SIDE)
        spread = features(gray)
        strongest = _strongest(gray, len(spread))  # the same number, unspread
        height, width = gray.shape
        assert cells(spread.points, width, height) >= cells(strongest, width, height)
        spread_cells += fair_cells(spread.points, width, height)
        strongest_cells += fair_cells(strongest, width, height)
    assert spread_cells >= 1.4 * strongest_cells


def test_the_core_decodes_at_the_features_working_side() -> None:
    from counterfake import core
    from counterfake.signals.keypoints import WORK_SIDE

    assert core._WORK_SIDE == WORK_SIDE
