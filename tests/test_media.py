"""media: every supported format decodes, every bad input is refused with its stable code."""

from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from counterfake import Limits, MediaError, decode, decode_rgb, hash_bytes, pdq_reference
from tests.images import encode, photo_like, png_bomb

ORIGINAL = photo_like(640, 480, seed=1)


def _code(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(MediaError) as info:
        hash_bytes(data, limits=limits)
    return info.value.code


# --- refusals -------------------------------------------------------------------------------


def test_zero_bytes_is_empty_input() -> None:
    assert _code(b"") == "empty_input"


def test_truncated_jpeg_is_corrupt() -> None:
    data = encode(ORIGINAL, "JPEG", quality=90)
    assert _code(data[: len(data) // 2]) == "corrupt_image"


def test_png_with_bad_crc_is_corrupt() -> None:
    data = bytearray(encode(ORIGINAL, "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    crc_at = idat + 4 + length
    data[crc_at : crc_at + 4] = b"\x00\x00\x00\x00"
    assert _code(bytes(data)) == "corrupt_image"


def test_text_file_named_jpg_is_unsupported() -> None:
    assert _code(b"hello, this is not an image\n" * 10) == "unsupported_format"


def test_unsupported_format_is_refused() -> None:
    data = encode(ORIGINAL.convert("RGB"), "PPM")
    assert _code(data) == "unsupported_format"


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = png_bomb(60_000, 60_000)
    tracemalloc.start()
    try:
        assert _code(data) == "image_too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"refusing a bomb allocated {peak} bytes"


def test_pixel_limit_is_a_setting() -> None:
    data = encode(ORIGINAL, "PNG")
    assert _code(data, Limits(max_pixels=640 * 480 - 1)) == "image_too_large"
    assert hash_bytes(data, limits=Limits(max_pixels=640 * 480)).width == 640


def test_byte_limit_is_a_setting() -> None:
    data = encode(ORIGINAL, "JPEG")
    assert _code(data, Limits(max_bytes=len(data) - 1)) == "input_too_large"


def test_gif_with_too_many_frames_is_refused() -> None:
    frames = [Image.new("L", (8, 8), i * 5) for i in range(40)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert _code(data, Limits(max_frames=10)) == "too_many_frames"
    assert hash_bytes(data, limits=Limits(max_frames=40)).width == 8


def test_many_frame_gif_hashes_its_first_frame() -> None:
    first = photo_like(64, 64, seed=3).convert("P")
    rest = [photo_like(64, 64, seed=4 + i).convert("P") for i in range(3)]
    animated = encode(first, "GIF", save_all=True, append_images=rest)
    single = encode(first, "GIF")
    assert hash_bytes(animated).pdq - hash_bytes(single).pdq == 0


def test_one_pixel_image_hashes_with_zero_quality() -> None:
    result = hash_bytes(encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"))
    assert (result.width, result.height) == (1, 1)
    assert result.quality == 0


# --- formats and modes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("WEBP", {"quality": 95}),
        ("BMP", {}),
        ("TIFF", {}),
        ("GIF", {}),
    ],
)
def test_every_supported_format_hashes_close_to_the_original(fmt: str, params: dict) -> None:
    reference = hash_bytes(encode(ORIGINAL, "PNG")).pdq
    result = hash_bytes(encode(ORIGINAL, fmt, **params))
    assert (result.width, result.height) == (640, 480)
    assert result.pdq - reference <= 16


def test_heif_decodes() -> None:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(ORIGINAL).save(buffer, quality=90)
    result = hash_bytes(buffer.getvalue())
    assert result.format == "HEIF"
    assert result.pdq - hash_bytes(encode(ORIGINAL, "PNG")).pdq <= 16


def test_alpha_is_composited_on_white() -> None:
    rgba = ORIGINAL.convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 320, 480))
    rgba.putalpha(alpha)
    on_white = Image.new("RGB", rgba.size, (255, 255, 255))
    on_white.paste(rgba, mask=alpha)
    assert hash_bytes(encode(rgba, "PNG")).pdq - hash_bytes(encode(on_white, "PNG")).pdq <= 2
    la = rgba.convert("LA")
    gray_white = Image.new("L", la.size, 255)
    gray_white.paste(la.convert("L"), mask=alpha)
    assert hash_bytes(encode(la, "PNG")).pdq - hash_bytes(encode(gray_white, "PNG")).pdq <= 2


def test_palette_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 32, 64))
    image.info["transparency"] = 0
    rgb = decode_rgb(encode(image, "PNG", transparency=0))
    assert rgb.getpixel((48, 10)) == (255, 255, 255)
    assert rgb.getpixel((10, 10)) == (255, 0, 0)


def test_cmyk_jpeg_hashes_like_the_rgb_image() -> None:
    cmyk = encode(ORIGINAL.convert("CMYK"), "JPEG", quality=95)
    assert decode(cmyk).format == "JPEG"
    assert hash_bytes(cmyk).pdq - hash_bytes(encode(ORIGINAL, "PNG")).pdq <= 16


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    gray8 = np.asarray(ORIGINAL.convert("L"), dtype=np.uint16)
    image16 = Image.fromarray((gray8 * 257).astype(np.uint16))
    data = encode(image16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    eight = hash_bytes(encode(ORIGINAL.convert("L"), "PNG"))
    sixteen = hash_bytes(data)
    assert sixteen.pdq - eight.pdq <= 2
    assert sixteen.quality == eight.quality


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    """A camera stores pixels unrotated plus a tag; we hash what a viewer shows."""
    upright = photo_like(800, 600, seed=7)
    stored = _unapply_orientation(upright, orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    result = hash_bytes(data)
    assert (result.width, result.height) == (800, 600)
    assert result.pdq - hash_bytes(encode(upright, "JPEG", quality=95)).pdq <= 16
    assert result.pdq - pdq_reference(data) <= 10


def _unapply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    inverse = {
        1: [],
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_90],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_270],
    }[orientation]
    for op in inverse:
        image = image.transpose(op)
    return image


def test_large_jpeg_is_decoded_at_reduced_size() -> None:
    data = encode(photo_like(3200, 2400, seed=5), "JPEG", quality=90)
    decoded = decode(data)
    assert decoded.scale == 8
    assert decoded.luma.shape == (300, 400)
    assert (decoded.width, decoded.height) == (3200, 2400)
    assert hash_bytes(data).pdq - pdq_reference(data) <= 10


def test_libtiffs_complaints_go_to_our_log_not_to_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.images import hostile_tiff

    with (
        caplog.at_level("INFO", logger="counterfake.warnings"),
        pytest.raises(MediaError) as refused,
    ):
        decode(hostile_tiff("tiff_lzw", 273, None))  # a strip of LZW garbage
    assert refused.value.code == "corrupt_image"
    said = [r.getMessage() for r in caplog.records if r.name == "counterfake.warnings"]
    assert any(m.startswith("libtiff error: ") and "not yet in table" in m for m in said), said
    assert "not yet in table" not in capfd.readouterr().err
