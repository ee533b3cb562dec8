"""An archive's image signatures in one place: keypoints in files that every process maps
(this one and each Dask worker on the machine, or on a shared disk), thumbnails in memory.

At 100,000 photos the keypoints are 1.8 GB: held once in the page cache instead of once per
process, and read without parsing. They are written as analysis hands each image over, in
whatever order it finishes; an image signed again once its stamp is known gets new rows at
the end. The grey thumbnails (what clustering compares aligned pixels on) stay in this
process's memory and travel with the tasks that need them: they are pictures of the
archive's images, and nothing writes those to disk.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..signals.keypoints import Features
from .images import THUMB_SIDE

__all__ = ["SignatureTable", "TableWriter", "forget_tables", "opened"]


class SignatureTable:
    """Keypoints of images 0..n-1 (an unreadable image has none) and, in the process that
    wrote it, their thumbnails."""

    def __init__(self, folder: Path, thumbs: np.ndarray | None = None) -> None:
        self.folder = folder
        self.starts = np.load(folder / "starts.npy")
        self.counts = np.load(folder / "counts.npy")
        self.sizes = np.load(folder / "sizes.npy")
        self.thumbs = thumbs
        rows = self._map()
        excluded = folder / "excluded.npy"
        self.excluded = np.load(excluded) if excluded.exists() else np.zeros(rows, bool)

    def _map(self) -> int:
        """Maps the keypoint files (rows no image points to any more included); their rows."""
        rows = (self.folder / "points.bin").stat().st_size // 8
        self.points: np.ndarray = np.zeros((0, 2), np.float32)
        self.descriptors: np.ndarray = np.zeros((0, 32), np.uint8)
        if rows:  # a file of no bytes cannot be mapped
            # Plain arrays over the mappings: np.memmap's own indexing cost 0.1 ms a call.
            self.points = np.asarray(
                np.memmap(self.folder / "points.bin", np.float32, "r", shape=(rows, 2))
            )
            self.descriptors = np.asarray(
                np.memmap(self.folder / "descriptors.bin", np.uint8, "r", shape=(rows, 32))
            )
        return rows

    def __len__(self) -> int:
        return len(self.sizes)

    def readable(self, image: int) -> bool:
        return bool(self.counts[image])

    def rows(self, image: int) -> slice:
        start = int(self.starts[image])
        return slice(start, start + int(self.counts[image]))

    @functools.cached_property
    def _owners(self) -> np.ndarray:
        owner = np.full(len(self.excluded), -1, np.int32)  # 2 billion images are not an archive
        for image in np.flatnonzero(self.counts):
            owner[self.rows(int(image))] = image
        return owner

    def owners(self) -> np.ndarray:
        """The image of every keypoint row (-1: a row replaced)."""
        return self._owners

    def exclude(self, rows: np.ndarray) -> None:
        """Leave these keypoint rows out of `features` from now on, in every process."""
        self.excluded = rows
        np.save(self.folder / "excluded.npy", rows)

    def replace(self, signatures: Mapping[int, bytes]) -> None:
        """New signatures for some images (an empty one keeps the old), in every process
        that opens the table from now on. Their rows are added at the end; nothing is
        excluded any more."""
        rows = (self.folder / "points.bin").stat().st_size // 8
        with (
            (self.folder / "points.bin").open("ab") as points,
            (self.folder / "descriptors.bin").open("ab") as descriptors,
        ):
            for image, signature in signatures.items():
                if not signature:
                    continue
                features = Features.from_bytes(signature)
                points.write(np.ascontiguousarray(features.points, np.float32).tobytes())
                descriptors.write(np.ascontiguousarray(features.descriptors, np.uint8).tobytes())
                self.starts[image], self.counts[image] = rows, len(features)
                rows += len(features)
        np.save(self.folder / "starts.npy", self.starts)
        np.save(self.folder / "counts.npy", self.counts)
        self._map()
        self.__dict__.pop("_owners", None)
        self.exclude(np.zeros(rows, bool))

    def kept_descriptors(self, images: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(image, its descriptors less the excluded ones) for those of `images` that keep
        any, read from the file: pages read through the mapping would count against this
        process until it let go of it (1.6 GB of them at 100,000 images)."""
        with (self.folder / "descriptors.bin").open("rb", buffering=0) as fh:
            for image in images:
                rows = self.rows(image)
                keep = ~self.excluded[rows]
                if keep.any():
                    read = os.pread(fh.fileno(), 32 * (rows.stop - rows.start), 32 * rows.start)
                    yield image, np.frombuffer(read, np.uint8).reshape(-1, 32)[keep]

    def features(self, image: int) -> Features:
        """The image's keypoints, less the excluded ones."""
        rows = self.rows(image)
        keep = ~self.excluded[rows]
        width, height = (int(v) for v in self.sizes[image])
        return Features(
            width,
            height,
            np.asarray(self.points[rows])[keep],
            np.asarray(self.descriptors[rows])[keep],
        )


class TableWriter:
    """Writes a table as images arrive; `close` opens it."""

    def __init__(self, folder: Path, images: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.starts = np.zeros(images, np.int64)
        self.counts = np.zeros(images, np.int64)
        self.sizes = np.zeros((images, 2), np.int32)
        self.thumbs = np.zeros((images, THUMB_SIDE, THUMB_SIDE), np.uint8)
        self.rows = 0
        self._points: BinaryIO = (folder / "points.bin").open("wb")
        self._descriptors: BinaryIO = (folder / "descriptors.bin").open("wb")

    def add(self, image: int, signature: bytes, thumb: bytes) -> None:
        """One image's binary signature and thumbnail (empty: it could not be read)."""
        if not signature:
            return
        features = Features.from_bytes(signature)
        self._points.write(np.ascontiguousarray(features.points, np.float32).tobytes())
        self._descriptors.write(np.ascontiguousarray(features.descriptors, np.uint8).tobytes())
        self.starts[image], self.counts[image] = self.rows, len(features)
        self.sizes[image] = (features.width, features.height)
        self.rows += len(features)
        if thumb:
            self.thumbs[image] = np.frombuffer(thumb, np.uint8).reshape(THUMB_SIDE, THUMB_SIDE)

    def close(self) -> SignatureTable:
        self._points.close()
        self._descriptors.close()
        np.save(self.folder / "starts.npy", self.starts)
        np.save(self.folder / "counts.npy", self.counts)
        np.save(self.folder / "sizes.npy", self.sizes)
        return SignatureTable(self.folder, self.thumbs)


def opened(folder: Path) -> SignatureTable:
    """The table in `folder`, opened once per process (a Dask worker keeps it between tasks)
    and again once rows are excluded or replaced."""
    excluded = folder / "excluded.npy"
    rows = (folder / "points.bin").stat().st_size  # grows as images are signed again
    return _opened(folder, excluded.stat().st_mtime_ns if excluded.exists() else 0, rows)


@functools.lru_cache(maxsize=2)
def _opened(folder: Path, excluded: int, rows: int) -> SignatureTable:
    return SignatureTable(folder)


def forget_tables() -> None:
    """Let go of the tables opened here (their files are about to be removed)."""
    _opened.cache_clear()
