"""PDQ, the industry's 256-bit perceptual hash, computed fast from a reduced decode.

PDQ blurs the full-size luma with two passes of a box filter per axis (the "Jarosz" filter,
windows of about 1/128 of each side), samples 64x64 points, keeps 16x16 DCT coefficients and
thresholds them at their median. Every step before the DCT is linear and separable, so the
64x64 buffer is `Mv @ luma @ Mh.T` for two 64-row matrices that depend only on the image size.
A JPEG decoded at 1/k size holds k x k block means; summing each matrix row over the blocks
gives the same buffer from k^2 fewer pixels, with the full-size filter windows kept exactly.
That, not a smaller PDQ, is why the fast path agrees with pdqhash on a full decode.

`pdq_reference` is the path python-threatexchange (and so OpenMediaMatch) takes: pdqhash on a
full decode. Its hex is identical to threatexchange's by construction; tests hold both to it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Final

import numpy as np

from ..errors import SignalError
from ..media import DecodedImage, Limits, decode_rgb
from ..settings import DEFAULTS

__all__ = ["DIHEDRAL_NAMES", "PDQ_THRESHOLD", "PdqHash", "pdq", "pdq_dihedral", "pdq_reference"]

#: pdqhash's order and names for the eight dihedral variants.
DIHEDRAL_NAMES: Final = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flipx",
    "flipy",
    "flipplus1",
    "flipminus1",
)
_HEX_DIGITS: Final = 64
_HEX: Final = re.compile(f"[0-9a-f]{{{_HEX_DIGITS}}}")
#: The distance within which two PDQ hashes are the same image (the setting's default).
PDQ_THRESHOLD: Final[int] = DEFAULTS["pdq_threshold"]


@dataclasses.dataclass(frozen=True)
class PdqHash:
    """A PDQ hash as a value: `a - b` is the Hamming distance, `.hex` round-trips."""

    value: int
    quality: int | None = None

    @classmethod
    def from_hex(cls, text: str, quality: int | None = None) -> PdqHash:
        text = text.strip().lower()
        if not _HEX.fullmatch(text):
            raise SignalError(f"a PDQ hash is 64 hexadecimal digits, not {text[:80]!r}")
        return cls(int(text, 16), quality)

    @property
    def hex(self) -> str:
        return format(self.value, "064x")

    def distance(self, other: PdqHash) -> int:
        return (self.value ^ other.value).bit_count()

    def __sub__(self, other: PdqHash) -> int:
        return self.distance(other)

    def words(self) -> np.ndarray:
        """Four little-endian uint64 words, the layout the Hamming index stores."""
        return np.frombuffer(self.value.to_bytes(32, "little"), dtype="<u8").copy()

    def __str__(self) -> str:
        return self.hex


def _jarosz_window(size: int) -> int:
    return (size + 2 * 64 - 1) // (2 * 64)


@functools.lru_cache(maxsize=1024)
def _axis_matrix(size: int, scale: int) -> np.ndarray:
    """64 x ceil(size/scale) weights: two box passes, decimation, block summing."""
    window = _jarosz_window(size)
    half = (window + 2) // 2
    idx = np.arange(size)
    lo = np.maximum(0, idx - (window - half))
    hi = np.minimum(size, idx + half)
    count = (hi - lo).astype(np.float64)
    rows = ((np.arange(64) + 0.5) * size / 64).astype(np.int64)
    width = int((hi[rows] - lo[rows]).max())
    mids = lo[rows][:, None] + np.arange(width)[None, :]
    valid = mids < hi[rows][:, None]
    mids = np.where(valid, mids, 0)
    weight = np.where(valid, 1.0 / count[rows][:, None], 0.0) / count[mids]
    diff = np.zeros((64, size + 1))
    row_index = np.broadcast_to(np.arange(64)[:, None], mids.shape)
    np.add.at(diff, (row_index, lo[mids]), weight)
    np.add.at(diff, (row_index, hi[mids]), -weight)
    matrix = np.cumsum(diff, axis=1)[:, :size]
    if scale > 1:
        blocks = -(-size // scale)
        padded = np.zeros((64, blocks * scale))
        padded[:, :size] = matrix
        matrix = padded.reshape(64, blocks, scale).sum(axis=2)
    return np.ascontiguousarray(matrix, dtype=np.float32)


_u = np.arange(1, 17)[:, None]
_x = np.arange(64)[None, :]
_DCT: Final = (np.sqrt(2 / 64) * np.cos(np.pi / 128 * _u * (2 * _x + 1))).astype(np.float32)

# EXIF orientation -> the same transform as PIL's exif_transpose, on a 2-D array.
_ORIENT = {
    1: lambda b: b,
    2: np.fliplr,
    3: lambda b: np.rot90(b, 2),
    4: np.flipud,
    5: lambda b: b.T,
    6: lambda b: np.rot90(b, 3),
    7: lambda b: np.rot90(b, 2).T,
    8: lambda b: np.rot90(b, 1),
}
# pdqhash's dihedral variants, as transforms of the 64x64 buffer (same order as DIHEDRAL_NAMES).
_DIHEDRAL = (
    lambda b: b,
    lambda b: np.rot90(b, 1),
    lambda b: np.rot90(b, 2),
    lambda b: np.rot90(b, 3),
    np.flipud,
    np.fliplr,
    lambda b: b.T,
    lambda b: np.rot90(b, 2).T,
)


def _buffer64(image: DecodedImage) -> np.ndarray:
    width, height = image.stored_size
    rows = _axis_matrix(height, image.scale)
    cols = _axis_matrix(width, image.scale)
    luma = image.luma.astype(np.float32)
    if luma.shape != (rows.shape[1], cols.shape[1]):
        raise SignalError(
            f"luma of shape {luma.shape} does not match {width}x{height}/{image.scale}"
        )
    buffer = rows @ (luma @ cols.T)
    return np.ascontiguousarray(_ORIENT[image.orientation](buffer))


def _quality(buffer: np.ndarray) -> int:
    down = np.trunc((buffer[:-1, :] - buffer[1:, :]) * 100 / 255)
    across = np.trunc((buffer[:, :-1] - buffer[:, 1:]) * 100 / 255)
    gradient = int(np.abs(down).sum() + np.abs(across).sum())
    return min(100, gradient // 90)


def _hash_buffer(buffer: np.ndarray, quality: int) -> PdqHash:
    coefficients = (_DCT @ buffer @ _DCT.T).ravel()
    median = np.partition(coefficients, 127)[127]
    bits = np.packbits(coefficients > median, bitorder="little")
    return PdqHash(int.from_bytes(bits.tobytes(), "little"), quality)


def pdq(image: DecodedImage) -> PdqHash:
    """PDQ of a decoded image (see the module docstring for why reduced decodes agree)."""
    buffer = _buffer64(image)
    return _hash_buffer(buffer, _quality(buffer))


def pdq_dihedral(image: DecodedImage) -> dict[str, PdqHash]:
    """PDQ of the image under all eight rotations and flips, keyed by pdqhash's names."""
    buffer = _buffer64(image)
    quality = _quality(buffer)
    return {
        name: _hash_buffer(np.ascontiguousarray(op(buffer)), quality)
        for name, op in zip(DIHEDRAL_NAMES, _DIHEDRAL, strict=True)
    }


def pdq_reference(data: bytes, *, limits: Limits | None = None) -> PdqHash:
    """pdqhash on a full-size decode: the path python-threatexchange takes. Slow; for checks."""
    rgb = np.asarray(decode_rgb(data, limits=limits), dtype=np.uint8)
    import pdqhash  # the reference only; the fast path does not need it

    vector, quality = pdqhash.compute(rgb)
    value = 0
    for bit in vector:
        value = (value << 1) | int(bit)
    return PdqHash(value, int(quality))
