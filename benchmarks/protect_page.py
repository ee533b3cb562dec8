"""The protect page in headless Chromium: speed, and agreement with `counterfake protect`.

    python benchmarks/protect_page.py --corpus ../shared/corpus/photos [--photos 60]
        [--screenshots docs]

The page is written out with `counterfake page` and opened from disk in Debian's Chromium
(Playwright drives it; the same page the service serves). In the same run:
- Speed: milliseconds per photo in the page (decode, PDQ, keypoint signature; the page's own
  per-photo clock) on 1 MP and 12 MP JPEGs made from corpus photos, beside `counterfake
  protect` on the same files (the same work in Python, one process, per photo), as medians.
  Target: <= 300 ms per 1 MP photo in the page.
- PDQ: every corpus photo through the page, its distance to `counterfake hash`.
- Derivatives: `--photos` originals of the report half (benchmarks/derivatives.py's fixed split)
  protected both ways; each edited with the round-2 chains of benchmarks/derivatives.py
  (20/40/60% replaced by a skin-like fill, inpainting or another photo; plain, squashed to
  512x512 and smoothed, re-rendered small) and with benchmarks/robustness.py's edits, and
  verified against its source's page-made and Python-made signature; the next `--photos`
  report-half photos, unrelated, are verified against every source both ways (false matches).
Writes benchmarks/results/protect_page.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from counterfake import PdqHash, hash_bytes
from counterfake.derivatives import verify
from counterfake.protect import ProtectedPhoto, protect_bytes, read_signatures
from counterfake.signals.keypoints import Features, image_features
from derivatives import CHAINS, FILLS, FRACTIONS, edit, half_of
from robustness import _derivative as robustness_edit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pages.conftest import CHROMIUM_ARGS as ARGS

RESULTS = Path(__file__).resolve().parent / "results"


def _page_run(page: Any, files: list[Path]) -> tuple[list[ProtectedPhoto], list[float]]:
    done = int(page.get_attribute("body", "data-done") or 0)
    page.set_input_files("#photos", [str(f) for f in files])
    page.wait_for_selector(f"body[data-done='{done + 1}']", timeout=3_600_000)
    ms = page.eval_on_selector_all(
        "#list [data-state=done]", "els => els.map(e => Number(e.dataset.ms))"
    )
    with page.expect_download() as download:
        page.click("#download")
    text = Path(download.value.path()).read_text()
    photos = [p for p in read_signatures(text.splitlines()) if isinstance(p, ProtectedPhoto)]
    return photos, ms


def _edits(image: Image.Image, other: Image.Image, number: int) -> Iterator[tuple[str, bytes]]:
    """(suite and share replaced, derivative bytes): benchmarks/derivatives.py's round-2
    chains, then benchmarks/robustness.py's edits (a lower-central block replaced by another
    photo, a smooth fill, inpainting or a blur; a diagonal watermark; JPEG 50, 0.6x, 8% crop)."""
    for fraction in FRACTIONS:
        for fill in FILLS:
            for chain in CHAINS:
                data, _ = edit(image, other, fraction, fill, chain, seed=number)
                yield f"round 2, {int(fraction * 100)}%", data
    rng = np.random.default_rng(number)
    for fraction in FRACTIONS:
        for fill in ("other_photo", "smooth_fill", "inpaint", "blur"):
            data, _ = robustness_edit(image, other, fraction, "body", fill, rng)
            yield f"robustness, {int(fraction * 100)}%", data


def _python_ms(files: list[Path]) -> list[float]:
    out = []
    for path in files:
        data = path.read_bytes()
        started = time.perf_counter()
        protect_bytes(data)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _sized_set(sources: list[Path], folder: Path, size: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sources:
        target = folder / path.name
        Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(
            target, "JPEG", quality=90
        )
        out.append(target)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "n": len(ordered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--photos", type=int, default=60, help="originals (and unrelated)")
    parser.add_argument("--speed", type=int, default=24, help="1 MP photos timed (12 MP: 1/4)")
    parser.add_argument("--screenshots", type=Path, help="also save layout screenshots here")
    args = parser.parse_args()
    corpus = sorted(args.corpus.glob("*.jpg"))
    chromium = shutil.which("chromium")
    if not corpus or chromium is None:
        print("needs the corpus and Debian's chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="protect-page-"))
    counterfake = Path(sys.executable).with_name("counterfake")
    subprocess.run([str(counterfake), "page", str(work / "site")], check=True)
    result: dict[str, Any] = {"photos": args.photos}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        context = browser.new_context(accept_downloads=True, locale="en-GB")
        page = context.new_page()
        page.goto((work / "site" / "index.html").as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.check("#names")

        # Speed, page beside Python, on the same files.
        one = _sized_set(corpus[: args.speed], work / "1mp", (1155, 866))
        twelve = _sized_set(corpus[: max(2, args.speed // 4)], work / "12mp", (4000, 3000))
        speed = {}
        for label, files in (("1 MP", one), ("12 MP", twelve)):
            _, page_ms = _page_run(page, files)
            python_ms = _python_ms(files)
            speed[label] = {"page_ms": _stats(page_ms), "python_ms": _stats(python_ms)}
            speed[label]["ratio"] = round(
                speed[label]["page_ms"]["median"] / speed[label]["python_ms"]["median"], 2
            )
        result["speed"] = speed

        # PDQ of every corpus photo, page against counterfake hash.
        started = time.perf_counter()
        made, _ = _page_run(page, corpus)
        by_name = {p.name: p for p in made}
        distances = [
            PdqHash.from_hex(by_name[path.name].pdq)
            - PdqHash.from_hex(hash_bytes(path.read_bytes()).signals["pdq"])
            for path in corpus
        ]
        result["pdq"] = {
            "photos": len(distances),
            "within_8_bits": round(sum(d <= 8 for d in distances) / len(distances), 4),
            "median_bits": statistics.median(distances),
            "max_bits": max(distances),
            "page_seconds": round(time.perf_counter() - started, 1),
        }
        if args.screenshots:
            _screenshots(browser, work, corpus[:3], args.screenshots)
        browser.close()

    # Derivatives: the page's signatures and Python's, verified against the same edits.
    report = [p for p in corpus if half_of(p.name) == "report"]
    originals, unrelated = report[: args.photos], report[args.photos : 2 * args.photos]
    sources = {
        "page": [Features.from_bytes(by_name[p.name].signature) for p in originals],
        "python": [Features.from_bytes(protect_bytes(p.read_bytes()).signature) for p in originals],
    }
    found: dict[str, dict[str, int]] = {}
    trials: dict[str, int] = {}
    for number, path in enumerate(originals):
        image = Image.open(path).convert("RGB")
        other = Image.open(unrelated[number]).convert("RGB")
        for suite, data in _edits(image, other, number):
            query = image_features(data, query=True)
            trials[suite] = trials.get(suite, 0) + 1
            for kind, signatures in sources.items():
                found.setdefault(kind, {}).setdefault(suite, 0)
                found[kind][suite] += verify(signatures[number], query) is not None
    false = {kind: 0 for kind in sources}
    for path in unrelated:
        query = image_features(path.read_bytes(), query=True)
        for kind, signatures in sources.items():
            false[kind] += sum(verify(s, query) is not None for s in signatures)
    result["derivatives"] = {
        "trials": trials,
        "recall": {
            kind: {k: round(v / trials[k], 4) for k, v in counts.items()}
            for kind, counts in found.items()
        },
        "false_matches": false,
        "unrelated_pairs": len(unrelated) * len(originals),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "protect_page.json").write_text(json.dumps(result, indent=2) + "\n")
    table = _table(result)
    (RESULTS / "protect_page.md").write_text(table)
    print(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _screenshots(browser: Any, work: Path, photos: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    layouts = (
        ("protect-page-desktop.png", {"width": 1280, "height": 900}, "en-GB"),
        ("protect-page-phone.png", {"width": 390, "height": 844}, "uk-UA"),
    )
    for name, viewport, locale in layouts:
        context = browser.new_context(viewport=viewport, locale=locale, device_scale_factor=1)
        page = context.new_page()
        page.goto((work / "site" / "index.html").as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.set_input_files("#photos", [str(p) for p in photos])
        page.wait_for_selector("body[data-done='1']", timeout=120_000)
        page.screenshot(path=str(folder / name), full_page=True)
        context.close()


def _table(result: dict[str, Any]) -> str:
    lines = [
        "| photo | page ms (median / p90) | photos/s | counterfake protect ms (median / p90)"
        " | page / python |",
        "|---|---|---|---|---|",
    ]
    for label, row in result["speed"].items():
        page, python = row["page_ms"], row["python_ms"]
        lines.append(
            f"| {label} (n={page['n']}) | {page['median']} / {page['p90']} | "
            f"{1000 / page['median']:.1f} | {python['median']} / {python['p90']} | "
            f"{row['ratio']}x |"
        )
    pdq = result["pdq"]
    lines += [
        "",
        f"PDQ: {pdq['photos']} corpus photos, {pdq['within_8_bits']:.2%} within 8 bits of "
        f"`counterfake hash` (median {pdq['median_bits']}, max {pdq['max_bits']} bits).",
        "",
        "| edits, replaced | trials | page signatures | python signatures |",
        "|---|---|---|---|",
    ]
    deriv = result["derivatives"]
    for key, n in deriv["trials"].items():
        lines.append(
            f"| {key} | {n} | {deriv['recall']['page'][key]:.1%} | "
            f"{deriv['recall']['python'][key]:.1%} |"
        )
    lines.append(
        f"\nFalse matches among {deriv['unrelated_pairs']} unrelated pairs: page "
        f"{deriv['false_matches']['page']}, python {deriv['false_matches']['python']}."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
