"""Derivative matching: a protected photo is found behind a replaced region, re-encoding,
resizing and cropping; unrelated photos are not; the changed region is shown where it is."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from counterfake.derivatives import overlay, verify
from counterfake.signals.keypoints import Features, image_features
from tests.derivative_images import grid_truth, reencode, replace_region
from tests.images import encode


@pytest.fixture(scope="module")
def photos(corpus_dir: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(corpus_dir.glob("*.jpg"))[:12]]


def _source(photo: Image.Image) -> Features:
    return image_features(encode(photo, "JPEG", quality=95), query=False)


@pytest.mark.parametrize(("fraction", "min_found", "min_iou"), [(0.2, 11, 0.4), (0.4, 8, 0.6)])
def test_a_derivative_is_matched_to_its_source_with_the_changed_region(
    photos: list[Image.Image], fraction: float, min_found: int, min_iou: float
) -> None:
    """Of 12 corpus photos (the evaluation measures recall and IoU over the whole corpus)."""
    found, ious = 0, []
    for i, photo in enumerate(photos):
        fake, truth = replace_region(photo, photos[(i + 5) % len(photos)], fraction)
        evidence = verify(_source(photo), image_features(reencode(fake), query=True))
        if evidence is None:
            continue
        found += 1
        assert 1.1 < evidence.scale < 1.3  # working images: the 8% crop enlarges by 1.19
        expected = grid_truth(truth) & evidence.visible_mask
        union = (expected | evidence.changed_mask).sum()
        ious.append((expected & evidence.changed_mask).sum() / union)
    assert found >= min_found, found
    assert np.mean(ious) > min_iou, ious


def test_unrelated_photos_never_match(photos: list[Image.Image]) -> None:
    sources = [_source(p) for p in photos]
    queries = [image_features(encode(p, "JPEG", quality=80), query=True) for p in photos]
    for i, query in enumerate(queries):
        for j, source in enumerate(sources):
            evidence = verify(source, query)
            assert (evidence is not None) == (i == j), (i, j)


def test_the_overlay_marks_the_changed_region_in_red(photos: list[Image.Image]) -> None:
    for photo, other in zip(photos[2:6], photos[6:10], strict=True):  # any that matches
        fake, _ = replace_region(photo, other, 0.3)
        data = reencode(fake)
        evidence = verify(_source(photo), image_features(data, query=True))
        if evidence is not None:
            break
    assert evidence is not None and evidence.changed_mask.any()
    query = Image.open(io.BytesIO(data)).convert("RGB")
    image = overlay(query, evidence)
    assert image.width == query.width and image.height > query.height  # a legend below
    drawn = np.asarray(image.crop((0, 0, query.width, query.height))).astype(int)
    legend = np.asarray(image.crop((0, query.height, image.width, image.height)))
    assert (legend < 100).any() and (legend == 255).mean() > 0.5  # text on white
    plain = np.asarray(query).astype(int)
    redder = (drawn[..., 0] - plain[..., 0]) > 10
    assert 0.1 < redder.mean() < 0.6  # the changed part of the upload is tinted, not all of it
    rows = evidence.to_dict()["changed_mask"]
    assert sum(r.count("#") for r in rows[6:]) > sum(r.count("#") for r in rows[:6])  # lower


def test_the_legend_says_when_the_protected_photo_runs_past_the_image(
    photos: list[Image.Image],
) -> None:
    photo = photos[4]
    w, h = photo.size
    cropped = encode(photo.crop((int(w * 0.2), int(h * 0.2), w, h)), "JPEG", quality=85)
    evidence = verify(_source(photo), image_features(cropped, query=True))
    assert evidence is not None
    query = Image.open(io.BytesIO(cropped)).convert("RGB")
    whole = encode(photo, "JPEG", quality=85)
    same = verify(_source(photo), image_features(whole, query=True))
    assert same is not None
    with_crop = overlay(query, evidence)
    without = overlay(Image.open(io.BytesIO(whole)).convert("RGB"), same)
    # One more legend line for the crop: the outline runs past the image's edges.
    assert with_crop.height - query.height > without.height - photo.height


def test_a_mirrored_and_cropped_copy_is_matched_and_drawn_the_right_way_round(
    photos: list[Image.Image],
) -> None:
    photo = photos[3]
    mirrored = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = mirrored.size
    copy = encode(mirrored.crop((int(w * 0.1), 0, w, h)), "JPEG", quality=80)
    query = image_features(copy, query=True)
    evidence = verify(_source(photo), query)
    assert evidence is not None and evidence.mirrored
    # The source's top-left corner lands near the upload's top-right corner.
    x, y = evidence.transform @ np.array([0.0, 0.0, 1.0])
    assert abs(x - query.width) < 0.1 * query.width and abs(y) < 0.1 * query.height
    assert evidence.changed_fraction < 0.2
