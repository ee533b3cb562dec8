"""The signature table every process of an investigation maps: images signed again are seen
by each process that opens it afterwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from counterfake.investigate.images import THUMB_SIDE
from counterfake.investigate.table import TableWriter, forget_tables, opened
from counterfake.signals.keypoints import Features


def _signature(n: int, value: int) -> bytes:
    points = np.full((n, 2), float(value), np.float32)
    return Features(480, 360, points, np.full((n, 32), value, np.uint8)).to_bytes()


def test_an_image_signed_again_has_only_its_new_keypoints_in_every_process(
    tmp_path: Path,
) -> None:
    writer = TableWriter(tmp_path, 3)
    thumb = bytes(THUMB_SIDE * THUMB_SIDE)
    writer.add(0, _signature(5, 1), thumb)
    writer.add(1, _signature(4, 2), thumb)
    table = writer.close()
    table.exclude(np.arange(9) < 2)
    before = opened(tmp_path)
    assert len(before.features(0)) == 3

    table.replace({0: _signature(7, 3), 2: b""})
    again = opened(tmp_path)  # another process's view
    for view in (table, again):
        assert len(view.features(0)) == 7
        assert (view.features(0).descriptors == 3).all()
        assert (view.features(1).descriptors == 2).all()
        assert not view.readable(2)
    assert again is not before
    assert (table.owners() == [-1] * 5 + [1] * 4 + [0] * 7).all()
    forget_tables()


def test_kept_descriptors_are_those_features_gives_for_images_that_keep_any(
    tmp_path: Path,
) -> None:
    writer = TableWriter(tmp_path, 4)
    thumb = bytes(THUMB_SIDE * THUMB_SIDE)
    for image, (n, value) in enumerate([(5, 1), (3, 2), (0, 0), (4, 4)]):
        writer.add(image, _signature(n, value) if n else b"", thumb)
    table = writer.close()
    table.exclude(np.isin(np.arange(12), [0, 2, 5, 6, 7]))  # all of image 1's
    kept = list(table.kept_descriptors([3, 0, 1, 2]))
    assert [image for image, _ in kept] == [3, 0]
    for image, descriptors in kept:
        assert (descriptors == table.features(image).descriptors).all()
    assert [len(d) for _, d in kept] == [4, 3]
    forget_tables()
