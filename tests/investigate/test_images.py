"""One image analysed for an investigation, and signed again once its stamp is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from counterfake.derivatives import align
from counterfake.investigate.images import analyse_image, signature_around
from counterfake.signals.keypoints import SHORTLISTED, Features

from .conftest import caption_stamped, jpeg


def _caption_rows(features: Features) -> np.ndarray:
    return features.points[:, 1] >= 0.88 * features.height


def test_signed_again_off_its_caption_a_small_photo_keeps_a_full_signature_of_its_own(
    corpus_dir: Path, tmp_path: Path
) -> None:
    photo = ImageOps.contain(
        Image.open(sorted(corpus_dir.glob("*.jpg"))[135]).convert("RGB"), (260, 260)
    )
    path = tmp_path / "stamped.jpg"
    path.write_bytes(jpeg(caption_stamped(photo), 80))
    first = Features.from_bytes(analyse_image(path, None).features)
    # The caption (a tenth of the image) took almost half of the first signature.
    assert _caption_rows(first).mean() > 0.4

    stamped = np.zeros((first.height // 4 + 1, first.width // 4 + 1), bool)
    stamped[int(0.88 * first.height) // 4 :] = True
    again = Features.from_bytes(signature_around(path, stamped))
    assert (again.width, again.height) == (first.width, first.height)
    assert len(again) == SHORTLISTED
    assert not _caption_rows(again).any()

    # Against the photo itself, the second signature aligns on more of its keypoints (274
    # inliers, against 190 for the first without its caption's).
    original = tmp_path / "original.jpg"
    original.write_bytes(jpeg(photo, 90))
    clean = Features.from_bytes(analyse_image(original, None).features)
    kept = ~_caption_rows(first)
    without_caption = Features(first.width, first.height, first.points[kept],
                               first.descriptors[kept])  # fmt: skip
    before, after = align(clean, without_caption), align(clean, again)
    assert after is not None
    assert before is None or after.inliers > 1.3 * before.inliers


def test_an_image_gone_since_is_signed_again_as_nothing(tmp_path: Path) -> None:
    assert signature_around(tmp_path / "gone.jpg", np.zeros((4, 4), bool)) == b""
