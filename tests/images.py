"""Benign test images made on the fly: gradients, shapes and noise, never people."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def photo_like(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A textured RGB image with structure at several scales, distinct per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.zeros((height, width, 3))
    for channel in range(3):
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 6, size=2) * 2 * np.pi
            phase = rng.uniform(0, 2 * np.pi)
            base[..., channel] += np.sin(fx * x / width + fy * y / height + phase)
    base = (base - base.min()) / (np.ptp(base) + 1e-9) * 200 + 20
    image = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(20, width // 2), y0 + rng.integers(20, height // 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, with a tiny compressed body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def malformed_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block names more data than it holds: Pillow decodes the image and
    warns ("Tag data larger than file")."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 200  # ImageDescription
    data = bytearray(encode(photo_like(64, 48), exif=exif.tobytes()))
    at = data.find(b"\x01\x0e\x00\x02")  # the tag, then its type (ASCII) and its count
    data[at + 4 : at + 8] = struct.pack("<I", 100_000)
    return bytes(data)


def hostile_tiff(compression: str, tag: int, value: int | None) -> bytes:
    """A small little-endian TIFF whose first IFD says `value` for `tag`; with no value, the
    place `tag` points at is overwritten with garbage instead (a strip's data, say)."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(out, "TIFF", compression=compression)
    data = bytearray(out.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == tag:
            if value is None:
                at = struct.unpack_from("<I", data, entry + 8)[0]
                data[at : at + 20] = b"\xff" * 20
            else:
                struct.pack_into("<HHII", data, entry, tag, 4, 1, value)  # one LONG
            return bytes(data)
    raise AssertionError(f"no tag {tag}")
