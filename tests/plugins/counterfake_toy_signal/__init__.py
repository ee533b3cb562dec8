"""A toy outside plug-in: a 256-bit average hash registered through the `counterfake.signals`
entry-point group (see the dist-info folder beside it). Tests put this folder on PYTHONPATH."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from PIL import Image

from counterfake.errors import SignalError
from counterfake.media import DecodedImage
from counterfake.signals import Kind, SignalType


class AverageHash(SignalType):
    """16x16 grey levels of the upright image, each bit set where brighter than the mean."""

    name = "ahash"
    kind: ClassVar[Kind] = "hamming256"
    threshold: ClassVar[int] = 24

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        small = Image.fromarray(np.asarray(image.luma, dtype=np.uint8)).resize(
            (16, 16), Image.Resampling.BOX
        )
        pixels = np.asarray(small, dtype=np.float32).ravel()
        bits = np.packbits(pixels > pixels.mean())
        return bits.tobytes().hex(), None

    def normalize(self, value: str) -> str:
        text = value.strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise SignalError(f"an ahash is 64 hexadecimal digits, not {value[:80]!r}")
        return text

    def distance(self, a: str, b: str) -> int:
        return (int(a, 16) ^ int(b, 16)).bit_count()
