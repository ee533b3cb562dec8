"""A small Telegram export with known truth, built from benign corpus photos.

Chat "Requests": target A's original, then a bot's derivative of it (a large region smoothed
over), forwarded to the same chat, a watermarked copy of that derivative and a re-encoded
repost; two bot derivatives of target B (whose original never appears; B is protected in a
bank); unrelated photos C and D, and a repost of C. Senders include a spreadsheet formula.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from counterfake import Store
from counterfake.protect import protect_bytes

START = 1_780_272_000  # 2026-06-01 UTC
DAY = 86_400


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def drawn(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A picture of its own made of rectangles over a colour field, with grain: what a channel
    of graphics posts. A rectangle's corner looks the same wherever it falls."""
    rng = np.random.default_rng(seed)
    width, height = size
    field = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    image = field.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(12, 30))):
        x, y = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        w, h = rng.uniform(0.03, 0.4) * width, rng.uniform(0.03, 0.4) * height
        draw.rectangle((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    grain = rng.normal(0, 6, (height, width, 1))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8))


def smoothed(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The region (fractions of the size) blurred away: a benign stand-in for a fake."""
    w, h = image.size
    region = (int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))
    out = image.copy()
    out.paste(image.crop(region).filter(ImageFilter.GaussianBlur(30)), region[:2])
    return out


def watermarked(image: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for row in range(0, image.height, image.height // 6):
        draw.text((10, row), "SAMPLE WATERMARK " * 4, fill=(255, 255, 255, 150))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def diagonal_stamped(image: Image.Image, name: str = "@benign_render_bot") -> Image.Image:
    """A bot's free-version stamp: its name in large text turned across the middle."""
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text, font = f"{name} free", ImageFont.load_default(size=max(12, w // 11))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    at = ((w - right + left) / 2, (h - bottom + top) / 2)
    draw.text(at, text, fill=(255, 255, 255, 220), font=font, stroke_width=max(1, w // 300),
              stroke_fill=(0, 0, 0, 150))  # fmt: skip
    layer = layer.rotate(28, center=(w / 2, h / 2))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def caption_stamped(image: Image.Image, name: str = "@benign_caption_bot") -> Image.Image:
    """A bot's caption bar: a dark strip along the bottom with its name and link in it."""
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    top = int(h * 0.9)
    draw.rectangle((0, top, w, h), fill=(0, 0, 0, 170))
    font = ImageFont.load_default(size=max(8, (h - top) // 2))
    text = f"{name} | free version | t.me/{name[1:]}"
    draw.text((w * 0.03, top + (h - top) // 5), text, fill=(255, 255, 255, 235), font=font)
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def stamped(image: Image.Image) -> Image.Image:
    """A bot's corner logo: the same on every output, sized to the image."""
    out = image.convert("RGB").copy()
    w, h = out.size
    r = min(w, h) // 7
    draw = ImageDraw.Draw(out)
    box = (w - 3 * r - 8, h - r - 8, w - 8, h - 8)
    draw.rounded_rectangle(box, radius=r // 4, fill=(25, 25, 35))
    draw.ellipse((box[0] + 6, box[1] + 6, box[0] + r - 6, box[3] - 6), fill=(230, 60, 60))
    draw.text((box[0] + r, box[1] + r // 4), "BENIGN", fill=(255, 255, 255))
    draw.line((box[0] + r, box[3] - 10, box[2] - 10, box[3] - 10), fill=(255, 255, 255), width=3)
    return out


@dataclass
class Archive:
    root: Path
    truth: dict[str, str]  # message key -> A-original, A-derivative, B-derivative, C, D
    bank_url: str
    protected_entries: set[int]


@pytest.fixture(scope="session")
def archive(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = tmp_path_factory.mktemp("export")
    photos = [Image.open(p).convert("RGB") for p in sorted(corpus_dir.glob("*.jpg"))[20:24]]
    a, b, c, d = photos
    derivative_a = jpeg(smoothed(a, (0.25, 0.45, 0.75, 1.0)), 80)
    messages: list[dict[str, Any]] = []
    truth: dict[str, str] = {}

    def post(label: str, data: bytes, day: float, **fields: Any) -> None:
        number = len(messages) + 1
        relative = f"photos/photo_{number}@01-06-2026_12-00-00.jpg"
        (root / "photos").mkdir(exist_ok=True)
        (root / relative).write_bytes(data)
        when = START + int(day * DAY)
        messages.append({
            "id": number, "type": "message", "date": "2026-06-01T12:00:00",
            "date_unixtime": str(when), "from": "user one", "from_id": "user1",
            "photo": relative, "width": 1024, "height": 768, "text": "", **fields,
        })  # fmt: skip
        truth[f"7/{number}"] = label

    post("A-original", jpeg(a, 90), 0.0, text="please")
    post("A-derivative", derivative_a, 0.01, via_bot="@render_bot")
    post("A-derivative", derivative_a, 1.0, forwarded_from="Requests")
    post("A-derivative", jpeg(watermarked(Image.open(io.BytesIO(derivative_a))), 85), 2.0,
         **{"from": "=HYPERLINK(\"x\")", "from_id": "user9"})  # fmt: skip
    smaller = Image.open(io.BytesIO(derivative_a)).reduce(2)
    post("A-derivative", jpeg(smaller, 70), 9.0)
    post("B-derivative", jpeg(smoothed(b, (0.2, 0.4, 0.8, 1.0)), 80), 3.0, via_bot="@render_bot")
    post("B-derivative", jpeg(smoothed(b, (0.0, 0.0, 0.5, 0.5)), 80), 3.1, via_bot="@render_bot")
    post("C", jpeg(c, 90), 4.0)
    post("C", jpeg(c.resize((800, int(800 * c.height / c.width))), 75), 8.0)
    post("D", jpeg(d, 90), 5.0, **{"from": None, "from_id": "channel7"})
    document = {"name": "Requests <script>", "type": "public_supergroup", "id": 7,
                "messages": messages}  # fmt: skip
    (root / "result.json").write_text(json.dumps(document))

    url = f"sqlite:///{tmp_path_factory.mktemp('bank') / 'bank.db'}"
    with Store.open(url) as store:
        store.create_bank("protected")
        added = store.add_entries("protected", protect_bytes(jpeg(b, 95), name="B").entries())
    return Archive(root, truth, url, {r.entry_id for r in added})
