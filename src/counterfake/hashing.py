"""Bytes in, every registered signal out: the one entry point for hashing an image."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .errors import FileInputError, MediaError
from .media import DecodedImage, Limits, decode
from .model import NewEntry
from .signals import PdqHash, pdq_dihedral, signal_types

__all__ = ["ImageHashes", "bank_entries", "hash_bytes", "hash_decoded", "hash_file", "read_input"]


@dataclasses.dataclass(frozen=True)
class ImageHashes:
    """All signals of one image. `quality` is PDQ's; `dihedral` is filled only on request."""

    width: int
    height: int
    format: str
    signals: dict[str, str]
    quality: int
    dihedral: dict[str, str] | None = None

    @property
    def pdq(self) -> PdqHash:
        return PdqHash.from_hex(self.signals["pdq"], self.quality)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"width": self.width, "height": self.height}
        out["pdq"] = self.signals.get("pdq")
        out["quality"] = self.quality
        out.update({k: v for k, v in self.signals.items() if k != "pdq"})
        if self.dihedral is not None:
            out["dihedral"] = dict(self.dihedral)
        return out


def hash_bytes(data: bytes, *, dihedral: bool = False, limits: Limits | None = None) -> ImageHashes:
    """Hash an image held in memory; the bytes are not kept."""
    return hash_decoded(data, decode(data, limits=limits), dihedral=dihedral)


def hash_decoded(data: bytes, image: DecodedImage, *, dihedral: bool = False) -> ImageHashes:
    """`hash_bytes` of an image already decoded (`media.decode`): for callers that need the
    decoded image for more than hashing."""
    signals: dict[str, str] = {}
    quality = 0
    for name, signal_type in signal_types(per_image=True).items():
        value, signal_quality = signal_type.compute(data, image)
        signals[name] = value
        if name == "pdq" and signal_quality is not None:
            quality = signal_quality
    variants = None
    if dihedral:
        variants = {name: h.hex for name, h in pdq_dihedral(image).items()}
    return ImageHashes(image.width, image.height, image.format, signals, quality, variants)


def read_input(path: Path, *, limits: Limits | None = None) -> bytes:
    """Read a file the way media expects it, refusing oversize files before reading them."""
    limits = limits or Limits()
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise MediaError(
                f"the file is {size} bytes; the limit is {limits.max_bytes}", code="input_too_large"
            )
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FileInputError("no such file", code="file_not_found", path=str(path)) from exc
    except IsADirectoryError as exc:
        raise FileInputError("a directory, not a file", path=str(path)) from exc
    except PermissionError as exc:
        raise FileInputError("permission denied", path=str(path)) from exc


def hash_file(
    path: str | Path, *, dihedral: bool = False, limits: Limits | None = None
) -> ImageHashes:
    return hash_bytes(read_input(Path(path), limits=limits), dihedral=dihedral, limits=limits)


def bank_entries(hashes: ImageHashes, *, source_name: str | None = None) -> list[NewEntry]:
    """The entries an image contributes to a bank: every signal, PDQ with its quality."""
    metadata = {"source_name": source_name} if source_name else {}
    return [
        NewEntry(
            name,
            value,
            quality=hashes.quality if name == "pdq" else None,
            source="image",
            metadata=dict(metadata),
        )
        for name, value in hashes.signals.items()
    ]
