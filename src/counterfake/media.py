"""The only code that parses untrusted image bytes.

Limits are checked from the header before any pixel is decoded, so a decompression bomb costs
a header parse. Hashing decodes JPEG at 1/2, 1/4 or 1/8 size straight from the DCT (luma only)
when the image stays large enough for PDQ to agree with a full decode; `signals.pdq` knows the
scale and compensates for it.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
import zlib
from typing import Final

import numpy as np
from PIL import Image, ImageOps

from ._warnings import log_c_libraries
from .errors import MediaError
from .settings import DEFAULTS, Settings

log_c_libraries()

__all__ = ["IMAGE_SUFFIXES", "DecodedImage", "Limits", "decode", "decode_gray", "decode_rgb"]

_heif_registered = False


def _register_heif() -> None:
    # pillow-heif costs 25 ms to load: only when an image says it is HEIF/AVIF-like.
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


#: File names media can decode (what a folder of images is read for).
IMAGE_SUFFIXES: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF")
_SIGNATURES: Final = (
    b"\xff\xd8",
    b"\x89PNG",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
#: Smallest side kept by reduced-size decoding; measured on the corpus to keep PDQ within 8 bits.
MIN_HASH_SIDE: Final = 192


@dataclasses.dataclass(frozen=True)
class Limits:
    """What an input may cost before we refuse it."""

    max_bytes: int = DEFAULTS["max_bytes"]
    max_pixels: int = DEFAULTS["max_pixels"]
    max_frames: int = DEFAULTS["max_frames"]

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_bytes, settings.max_pixels, settings.max_frames)


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedImage:
    """Luma of an image, possibly reduced, in its stored (not yet EXIF-rotated) orientation."""

    format: str
    width: int
    height: int
    luma: np.ndarray
    stored_size: tuple[int, int]
    scale: int
    orientation: int
    #: Upright grey levels with the longer side at most `gray_side`, when `decode` was asked
    #: for them (what local features are computed on), from the same decode.
    gray: np.ndarray | None = None


def _looks_supported(data: bytes) -> bool:
    if data.startswith(_SIGNATURES):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp"


def _check_png_chunks(data: bytes) -> None:
    """Verify every chunk's CRC, as libpng does; Pillow skips the check on image data."""
    offset = 8
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        end = offset + 8 + length
        if end + 4 > len(data):
            raise MediaError("the PNG is truncated")
        expected = int.from_bytes(data[end : end + 4], "big")
        if zlib.crc32(data[offset + 4 : end]) != expected:
            kind = data[offset + 4 : offset + 8].decode("latin-1")
            raise MediaError(f"the PNG chunk {kind!r} at byte {offset} fails its CRC check")
        if data[offset + 4 : offset + 8] == b"IEND":
            return
        offset = end + 4


def _open(data: bytes, limits: Limits) -> Image.Image:
    if not data:
        raise MediaError("the input is empty", code="empty_input")
    if len(data) > limits.max_bytes:
        raise MediaError(
            f"the input is {len(data)} bytes; the limit is {limits.max_bytes}",
            code="input_too_large",
        )
    if data[4:8] == b"ftyp":
        _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        raise MediaError(
            "the image declares so many pixels that decoding it would exhaust memory",
            code="image_too_large",
        ) from exc
    except Exception as exc:
        if _looks_supported(data):
            raise MediaError("the image header cannot be read") from exc
        raise MediaError(
            "not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC)",
            code="unsupported_format",
        ) from exc
    if image.format == "PNG":
        _check_png_chunks(data)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise MediaError(f"the image declares a size of {width}x{height}")
    if width * height > limits.max_pixels:
        raise MediaError(
            f"the image is {width}x{height} = {width * height} pixels;"
            f" the limit is {limits.max_pixels}",
            code="image_too_large",
        )
    try:
        frames = int(getattr(image, "n_frames", 1))
        image.seek(0)
    except Exception as exc:
        raise MediaError("the image frames cannot be read") from exc
    if frames > limits.max_frames:
        raise MediaError(
            f"the image has {frames} frames; the limit is {limits.max_frames}",
            code="too_many_frames",
        )
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB the same way every time; alpha is composited on white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _scale_for(width: int, height: int) -> int:
    for scale in (8, 4, 2):
        if min(width, height) // scale >= MIN_HASH_SIDE:
            return scale
    return 1


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError("the image data is corrupt or truncated") from exc


def decode(
    data: bytes,
    *,
    limits: Limits | None = None,
    exact_luma: bool = False,
    gray_side: int | None = None,
) -> DecodedImage:
    """Decode just enough of an image to hash it: luma, reduced where that is safe.

    JPEG luma is the decoder's Y channel, which skips colour conversion; `exact_luma`
    instead decodes RGB and weighs it as PDQ does (float), for the rare images whose hash
    is unstable enough for the difference to matter. With `gray_side`, the same decode also
    gives `gray`, as `decode_gray` would: a lookup that may search derivatives decodes once.
    """
    limits = limits or Limits()
    image = _open(data, limits)
    width, height = image.size
    orientation = _orientation(image)
    fmt = image.format or "unknown"
    scale = _scale_for(width, height)
    gray = None
    try:
        if fmt in ("JPEG", "MPO") and image.mode in ("RGB", "L", "YCbCr"):
            wanted = (-(-width // scale), -(-height // scale))
            if gray_side is not None and not exact_luma:
                # The finer of the two decodes; PDQ's luma is then box-reduced from it, which
                # is what the DCT-reduced decode gives up to rounding.
                wanted = (max(wanted[0], gray_side), max(wanted[1], gray_side))
            image.draft("RGB" if exact_luma else "L", wanted)
            _load(image)
            decoded = round(width / image.size[0])
            if gray_side is not None and not exact_luma:
                gray = _working_gray(image, gray_side)
                if scale > decoded:
                    image = image.reduce(scale // decoded)
                else:
                    scale = decoded
            else:
                scale = decoded
        else:
            _load(image)
            if gray_side is not None and not exact_luma:
                gray = _working_gray(image, gray_side)
            if scale > 1 and not exact_luma:
                image = (image if image.mode == "L" else _to_rgb(image).convert("L")).reduce(scale)
            elif scale > 1:
                image = _to_rgb(image).reduce(scale)
        if exact_luma:
            rgb = np.asarray(_to_rgb(image), dtype=np.float32)
            luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        else:
            luma = np.asarray(image if image.mode == "L" else _to_rgb(image).convert("L"))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError("the image cannot be decoded") from exc
    stored_size = (width, height)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(
        format=fmt,
        width=width,
        height=height,
        luma=luma,
        stored_size=stored_size,
        scale=scale,
        orientation=orientation,
        gray=gray,
    )


def _working_gray(image: Image.Image, max_side: int) -> np.ndarray:
    gray = ImageOps.exif_transpose(image)
    gray = gray if gray.mode == "L" else _to_rgb(gray).convert("L")
    if max(gray.size) > max_side:
        ratio = max_side / max(gray.size)
        size = (max(1, round(gray.width * ratio)), max(1, round(gray.height * ratio)))
        gray = gray.resize(size, Image.Resampling.BOX)
    return np.asarray(gray)


def decode_gray(data: bytes, *, max_side: int, limits: Limits | None = None) -> np.ndarray:
    """Upright grey levels with the longer side at most `max_side` (JPEGs decoded reduced):
    what local features are computed on."""
    limits = limits or Limits()
    image = _open(data, limits)
    try:
        if image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L", "YCbCr", "CMYK"):
            image.draft("L", (max_side, max_side))
        _load(image)
        return _working_gray(image, max_side)
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError("the image cannot be decoded") from exc


def decode_rgb(data: bytes, *, limits: Limits | None = None) -> Image.Image:
    """Decode the first frame at full size, EXIF orientation applied, as RGB."""
    limits = limits or Limits()
    image = _open(data, limits)
    _load(image)
    try:
        rotated = ImageOps.exif_transpose(image)
        return _to_rgb(rotated)
    except Exception as exc:
        raise MediaError("the image cannot be decoded") from exc
