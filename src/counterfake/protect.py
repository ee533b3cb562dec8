"""Protecting photos in advance: signatures made on the person's own machine, and the file
that carries them to a bank.

The signature file is JSON Lines, UTF-8. Its first line is a header:
    {"format": "counterfake-signatures", "version": 2, "features": "orb-480-2048"}
then one line per photo:
    {"pdq": "<64 hex>", "quality": 0-100, "signature": "<base64 of a signals.keypoints signature>"}
with `"name": "<file name>"` only when `counterfake protect --with-names` was asked for.
No pixels, no sizes of the original, no EXIF, no paths. Version 2 signatures carry up to 2,048
keypoints (1,024 before this release; such files are still read), rank-ordered, from a working
image that small photos are enlarged to, and head boxes; version 1 files (512 keypoints) are
still read, and match. The header's `features` names how they were made; readers go by each
signature's own count.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final

from .errors import FormatError, SignalError
from .hashing import hash_bytes
from .media import Limits
from .model import NewEntry
from .signals.keypoints import SOURCE_FEATURES, WORK_SIDE, Features, image_features
from .signals.pdq import PdqHash

__all__ = ["FORMAT", "ProtectedPhoto", "protect_bytes", "read_signatures", "write_signatures"]

FORMAT: Final = "counterfake-signatures"
_VERSION: Final = 2
_READABLE: Final = (1, 2)
_FEATURES: Final = f"orb-{WORK_SIDE}-{SOURCE_FEATURES}"


@dataclasses.dataclass(frozen=True)
class ProtectedPhoto:
    pdq: str
    quality: int
    signature: bytes
    name: str | None = None

    def entries(self) -> list[NewEntry]:
        """What the photo puts in a bank: its PDQ hash (copies) and its signature
        (derivatives); the name, if the file carries one, as `source_name`."""
        metadata = {"source_name": self.name} if self.name else {}
        features = Features.from_bytes(self.signature)
        return [
            NewEntry("pdq", self.pdq, quality=self.quality, source="protect", metadata=metadata),
            NewEntry(
                "derivative",
                features.id,
                source="protect",
                metadata=dict(metadata),
                payload=self.signature,
            ),
        ]

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "pdq": self.pdq,
            "quality": self.quality,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        if self.name:
            record["name"] = self.name
        return record


def protect_bytes(
    data: bytes, *, name: str | None = None, limits: Limits | None = None
) -> ProtectedPhoto:
    """A photo's signature, computed here; the bytes are not kept."""
    hashes = hash_bytes(data, limits=limits)
    features = image_features(data, query=False, limits=limits)
    return ProtectedPhoto(hashes.signals["pdq"], hashes.quality, features.to_bytes(), name)


def write_signatures(photos: Iterable[ProtectedPhoto], fh: IO[str]) -> int:
    fh.write(json.dumps({"format": FORMAT, "version": _VERSION, "features": _FEATURES}) + "\n")
    count = 0
    for photo in photos:
        fh.write(json.dumps(photo.to_json()) + "\n")
        count += 1
    return count


def read_signatures(
    lines: Iterable[str], *, path: str | None = None
) -> Iterator[ProtectedPhoto | FormatError]:
    """Photos from a signature file; a bad line is yielded as a FormatError, in its place."""
    numbered = enumerate(lines, start=1)
    for number, line in numbered:
        if not line.strip():
            continue
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not (
            isinstance(header, dict)
            and header.get("format") == FORMAT
            and header.get("version") in _READABLE
        ):
            raise FormatError(
                f"not a {FORMAT} file of version 1 or 2 (first line)", path=path, line=number
            )
        break
    else:
        raise FormatError(f"an empty file, not {FORMAT}", path=path)
    for number, line in numbered:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            signature = base64.b64decode(record["signature"], validate=True)
            Features.from_bytes(signature)
            quality = int(record["quality"])
            if not 0 <= quality <= 100:
                raise ValueError(f"quality is 0 to 100, not {quality}")
            name = record.get("name")
            yield ProtectedPhoto(
                PdqHash.from_hex(str(record["pdq"])).hex,
                quality,
                signature,
                str(name) if name else None,
            )
        except (ValueError, KeyError, TypeError, binascii.Error, SignalError) as exc:
            yield FormatError(f"bad signature record: {exc}", path=path, line=number)
