"""`counterfake demo`: the whole loop on bundled benign photos, in a throwaway store."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps
from rich.console import Console
from rich.table import Table

from .core import Counterfake
from .settings import load_settings

__all__ = ["alterations", "run_demo", "sample_photos"]

BANK = "protected-demo"
CONTROL = "coins.jpg"  # kept out of the bank: nothing should match it


def sample_photos() -> dict[str, bytes]:
    """The bundled sample photos (see samples/LICENSES.md), by file name."""
    folder = resources.files("counterfake") / "samples"
    return {
        item.name: item.read_bytes()
        for item in sorted(folder.iterdir(), key=lambda p: p.name)
        if item.name.endswith(".jpg")
    }


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction), int(h * fraction)
    return image.crop((dx, dy, w - dx, h - dy))


def _watermark(image: Image.Image) -> Image.Image:
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=max(12, base.size[1] // 10))
    draw.text(
        (base.size[0] // 20, base.size[1] // 2),
        "SAMPLE WATERMARK",
        font=font,
        fill=(255, 255, 255, 150),
    )
    return Image.alpha_composite(base, layer).convert("RGB")


def alterations() -> dict[str, Callable[[Image.Image], bytes]]:
    """The edits the demo applies, each returning the altered image's bytes."""
    return {
        "re-encoded JPEG q30": lambda im: _jpeg(im, 30),
        "resized to 50%": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2))),
        "cropped 3% per side": lambda im: _jpeg(_crop(im, 0.03)),
        "text watermark": lambda im: _jpeg(_watermark(im)),
        "flipped left-right": lambda im: _jpeg(ImageOps.mirror(im)),
        "cropped 15% per side": lambda im: _jpeg(_crop(im, 0.15)),
        "lower third blurred out": lambda im: _jpeg(_blur_lower(im, 1 / 3)),
    }


def _blur_lower(image: Image.Image, fraction: float) -> Image.Image:
    """A stand-in for a manipulated region: the lower part of the photo, heavily blurred."""
    out = image.convert("RGB")
    top = int(out.height * (1 - fraction))
    box = (0, top, out.width, out.height)
    out.paste(out.crop(box).filter(ImageFilter.GaussianBlur(30)), box[:2])
    return out


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    photos = sample_photos()
    with tempfile.TemporaryDirectory(prefix="counterfake-demo-") as home:
        core = Counterfake(load_settings(database_url=f"sqlite:///{Path(home) / 'demo.db'}"))
        try:
            core.create_bank(BANK, description="bundled sample photos")
            for name, data in photos.items():
                if name != CONTROL:
                    core.add_image(BANK, data, source_name=name)
                    core.add_signatures(BANK, [core.protect(data, name=name)])
            bank = core.bank(BANK)
            console.print(
                f"Built bank [bold]{BANK}[/bold] from {len(photos) - 1} sample photos"
                f" ({bank.active_entries} entries: PDQ, MD5, SHA-256 and a derivative"
                " signature each, as `counterfake protect` makes it) in a temporary store.\n"
            )
            names = {
                e.id: e.metadata.get("source_name", "?") for e in core.entries(BANK, limit=1000)
            }
            table = Table("photo", "alteration", "matched", "PDQ dist", "via")
            matched = expected = 0
            for name, data in photos.items():
                original = Image.open(io.BytesIO(data))
                original.load()
                for label, alter in alterations().items():
                    found = core.lookup(alter(original), banks=[BANK], dihedral=True)
                    best = found.matches[0] if found.matches else None
                    if name != CONTROL:
                        expected += 1
                        matched += best is not None and names.get(best.entry_id) == name
                    if best is None:
                        table.add_row(name, label, "[yellow]no[/yellow]", "-", "-")
                    else:
                        table.add_row(
                            name,
                            label,
                            f"[green]{names.get(best.entry_id)}[/green]",
                            best.shown_distance,
                            f"{best.signal} {best.how}".strip(),
                        )
            console.print(table)
            console.print(
                f"\n{matched} of {expected} altered copies matched their source photo;"
                f" {CONTROL} was left out of the bank as a control and should match nothing."
                "\nPDQ finds copies; crops and replaced regions defeat it, and the derivative"
                " signatures find them (with the share of the photo that was changed).\n"
            )
        finally:
            core.close()
    console.print(
        "[bold]Try next[/bold] (your store: $COUNTERFAKE_HOME, or set COUNTERFAKE_DATABASE_URL):\n"
        "  counterfake hash --json PHOTO...            hash photos on this machine\n"
        "  counterfake bank create mine                make a bank\n"
        "  counterfake bank add mine PHOTO_OR_FOLDER   add photos' hashes to it\n"
        "  counterfake protect PHOTO... -o sig.jsonl   signatures of your own photos\n"
        "  counterfake bank add mine --signatures sig.jsonl\n"
        "                                              protect them against derivatives\n"
        "  counterfake match --dihedral IMAGE...       match images against your banks\n"
        "  counterfake bank export mine --format te    share the PDQ hashes\n"
        "  counterfake key create --tenant me --scope curate --scope match\n"
        "                                              an API key for the service\n"
        "  counterfake serve --workers 2               the HTTP matching service;"
        " API docs at http://127.0.0.1:8000/docs\n"
        "  counterfake investigate EXPORT --bank mine --out report/\n"
        "                                              a Telegram export: targets, growth, report\n"
        "  make test                                   run the whole test suite",
        highlight=False,
    )
    return 0
