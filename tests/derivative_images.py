"""Benign derivatives for tests: a region of a photo replaced by another photo's content,
then re-encoded, resized and cropped, as a manipulated copy would be."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def replace_region(
    photo: Image.Image, other: Image.Image, fraction: float
) -> tuple[Image.Image, np.ndarray]:
    """`fraction` of the area, a lower-central block, replaced; and the truth mask."""
    width, height = photo.size
    side = fraction**0.5
    region_w, region_h = int(width * side), int(height * side)
    x0, y0 = (width - region_w) // 2, height - region_h
    out = photo.copy()
    patch = other.resize((width, height)).crop((x0, y0, x0 + region_w, y0 + region_h))
    out.paste(patch, (x0, y0))
    truth = np.zeros((height, width), bool)
    truth[y0 : y0 + region_h, x0 : x0 + region_w] = True
    return out, truth


def reencode(
    image: Image.Image, quality: int = 50, scale: float = 0.6, crop: float = 0.08
) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    out = Image.open(io.BytesIO(buffer.getvalue()))
    out = out.resize((int(out.width * scale), int(out.height * scale)))
    w, h = out.size
    out = out.crop((int(w * crop), int(h * crop), int(w * (1 - crop)), int(h * (1 - crop))))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def grid_truth(truth: np.ndarray, cells: int = 12) -> np.ndarray:
    """The truth mask on the evidence grid: a cell is changed when most of it is."""
    h, w = truth.shape
    ys = (np.arange(cells + 1) * h) // cells
    xs = (np.arange(cells + 1) * w) // cells
    return np.array(
        [
            [truth[ys[r] : ys[r + 1], xs[c] : xs[c + 1]].mean() > 0.5 for c in range(cells)]
            for r in range(cells)
        ]
    )


def watermark(image: Image.Image, text: str = "SAMPLE STAMP") -> Image.Image:
    """A semi-transparent caption across the middle at an angle, as bots stamp their output."""
    from PIL import ImageDraw, ImageFont

    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    font = ImageFont.load_default(size=max(12, h // 9))
    ImageDraw.Draw(layer).text((w * 0.08, h * 0.42), text, fill=(255, 255, 255, 110), font=font)
    layer = layer.rotate(28, center=(w / 2, h / 2))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
