"""Signatures: compact, versioned, exact to 1/64 pixel, and refused when damaged."""

from __future__ import annotations

from pathlib import Path

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
    assert len(data) <= 32 * 1024
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


def test_a_signature_spreads_its_keypoints_over_the_photo(corpus_dir: Path) -> None:
    """So that whatever part survives a manipulation still carries keypoints."""

    def cells(features: Features) -> int:
        size = (features.width / 8, features.height / 8)
        return len(set(map(tuple, (features.points // size).astype(int))))

    spread_cells = strongest_cells = 0
    for path in sorted(corpus_dir.glob("*.jpg"))[:8]:
        gray = decode_gray(path.read_bytes(), max_side=WORK_SIDE)
        spread = source_features(gray)
        strongest = query_features(gray, count=len(spread))  # the same number, unspread
        assert cells(spread) >= cells(strongest)
        spread_cells += cells(spread)
        strongest_cells += cells(strongest)
    assert spread_cells >= 1.3 * strongest_cells


def test_the_core_decodes_at_the_features_working_side() -> None:
    from counterfake import core
    from counterfake.signals.keypoints import WORK_SIDE

    assert core._WORK_SIDE == WORK_SIDE
