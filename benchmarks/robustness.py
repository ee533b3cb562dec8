"""Robustness of matching: near-duplicates, manipulated derivatives, false positives.

    python benchmarks/robustness.py [--photos 120] [--corpus ../shared/corpus/photos]
                                    [--baseline REF]

The corpus photos are split: the first half are *originals* (protected with
`counterfake protect`, banked as PDQ + derivative signature), the second half are
*unrelated* photos that no query may match.

- Near-duplicate suite: each original under each transform below, matched (1) by PDQ at
  threshold 31, (2) by PDQ at its best threshold (the largest whose false-positive rate on the
  unrelated pairs is 0 at this resolution), (3) by counterfake (PDQ with dihedral variants, then
  derivative verification when PDQ finds nothing).
- Derivative suite: a lower-central "body" block or a random block of 20/40/60% of the area
  replaced by another photo, a smooth fill, OpenCV inpainting or a heavy blur, plus a large
  diagonal semi-transparent text watermark, then JPEG q50, resize 0.6, crop 8% per side.
  Recall, and the mean IoU of the changed-region mask (12x12 grid over the photo, cells inside
  the upload) against the truth; PDQ at 31 beside it.
- False positives: every unrelated photo, and 4 tiles of it, against every original (each pair
  verified as it is and mirrored, not only the shortlisted ones), and PDQ distances of the
  same pairs; the queries the full pipeline matched are listed.

Engines, in the same run on the same bytes: the baseline release (`--baseline`, a git ref run
from a temporary worktree; default the last commit before derivatives round 2; 'none' to
skip) and this tree, each protecting the originals with its own code. Writes JSON, a Markdown
table and PNG plots (this tree's recall against false-positive rate over the inlier
threshold) to benchmarks/results/.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# No counterfake at the top: a spawned worker imports this module before `_init` puts its
# engine's code first on the path.
from derivatives import BASELINE, engine_src, jpeg, reload, truth_grid

RESULTS = Path(__file__).resolve().parent / "results"
Transform = Callable[[Image.Image, np.random.Generator], Image.Image]


def _crop(image: Image.Image, side: float) -> Image.Image:
    w, h = image.size
    return image.crop((int(w * side), int(h * side), int(w * (1 - side)), int(h * (1 - side))))


def _pad(image: Image.Image, side: float, colour: tuple[int, int, int]) -> Image.Image:
    w, h = image.size
    out = Image.new("RGB", (int(w * (1 + 2 * side)), int(h * (1 + 2 * side))), colour)
    out.paste(image, (int(w * side), int(h * side)))
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _text(image: Image.Image, diagonal: bool = False, alpha: int = 150) -> Image.Image:
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(12, h // (6 if diagonal else 14))
    text = "SAMPLE WATERMARK" if diagonal else "@benign.example 2026"
    draw.text(
        (w * 0.05, h * (0.4 if diagonal else 0.85)),
        text,
        fill=(255, 255, 255, alpha),
        font=_font(size),
    )
    if diagonal:
        layer = layer.rotate(30, center=(w / 2, h / 2))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _logo(image: Image.Image) -> Image.Image:
    w, h = image.size
    out = image.copy()
    draw = ImageDraw.Draw(out)
    r = min(w, h) // 8
    draw.ellipse(
        (w - 2 * r - 10, 10, w - 10, 10 + 2 * r),
        fill=(230, 40, 40),
        outline=(255, 255, 255),
        width=4,
    )
    return out


def _screenshot(image: Image.Image) -> Image.Image:
    w, h = image.size
    out = Image.new("RGB", (w + 40, h + 180), (245, 245, 245))
    out.paste(image, (20, 110))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, w + 40, 60), fill=(40, 40, 60))
    draw.text((20, 20), "12:04   benign app   ...", fill=(255, 255, 255), font=_font(24))
    draw.text((20, h + 130), "liked by 12 others", fill=(20, 20, 20), font=_font(22))
    return out


NEAR_DUPLICATES: dict[str, Transform] = {
    "jpeg_q30": lambda im, r: reload(jpeg(im, 30)),
    "jpeg_q50": lambda im, r: reload(jpeg(im, 50)),
    "jpeg_q95": lambda im, r: reload(jpeg(im, 95)),
    "resize_0.5": lambda im, r: im.resize((im.width // 2, im.height // 2)),
    "resize_0.25": lambda im, r: im.resize((im.width // 4, im.height // 4)),
    "blur": lambda im, r: im.filter(ImageFilter.GaussianBlur(2)),
    "noise": lambda im, r: Image.fromarray(
        np.clip(
            np.asarray(im, np.int16) + r.normal(0, 12, (im.height, im.width, 3)), 0, 255
        ).astype(np.uint8)
    ),
    "gamma": lambda im, r: im.point(lambda v: int(255 * (v / 255) ** 0.7)),
    "text_watermark": lambda im, r: _text(im),
    "logo_watermark": lambda im, r: _logo(im),
    "rotate_+4": lambda im, r: im.rotate(4, expand=True, fillcolor=(0, 0, 0)),
    "rotate_-4": lambda im, r: im.rotate(-4, expand=True, fillcolor=(0, 0, 0)),
    "rotate_90": lambda im, r: im.rotate(90, expand=True),
    "flip": lambda im, r: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "crop_5": lambda im, r: _crop(im, 0.05),
    "crop_10": lambda im, r: _crop(im, 0.10),
    "crop_20": lambda im, r: _crop(im, 0.20),
    "pad_20": lambda im, r: _pad(im, 0.2, (0, 0, 0)),
    "screenshot": lambda im, r: _screenshot(im),
    "crop_10+jpeg_q50+resize_0.5": lambda im, r: reload(
        jpeg(_crop(im, 0.1).resize((im.width // 2, im.height // 2)), 50)
    ),
    "flip+text+pad_10": lambda im, r: _pad(
        _text(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), 0.1, (255, 255, 255)
    ),
}


def _region(
    w: int, h: int, fraction: float, kind: str, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    aspect = rng.uniform(0.7, 1.4) if kind == "random" else 1.0
    rw = min(w, int(w * (fraction * aspect) ** 0.5))
    rh = min(h, int(fraction * w * h / max(rw, 1)))
    if kind == "body":
        x0, y0 = (w - rw) // 2, h - rh
    else:
        x0, y0 = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
    return x0, y0, rw, rh


def _fill(
    image: Image.Image, other: Image.Image, box: tuple[int, int, int, int], how: str
) -> Image.Image:
    x0, y0, rw, rh = box
    out = image.copy()
    if how == "other_photo":
        out.paste(other.resize(image.size).crop((x0, y0, x0 + rw, y0 + rh)), (x0, y0))
    elif how == "smooth_fill":
        patch = np.asarray(image.crop((x0, y0, x0 + rw, y0 + rh)), np.float32)
        top, bottom = patch[0].mean(axis=0), patch[-1].mean(axis=0)
        ramp = np.linspace(0, 1, rh)[:, None, None]
        out.paste(
            Image.fromarray(((1 - ramp) * top + ramp * bottom).repeat(rw, axis=1).astype(np.uint8)),
            (x0, y0),
        )
    elif how == "inpaint":
        small = image.resize((image.width // 4, image.height // 4))
        mask = np.zeros((small.height, small.width), np.uint8)
        mask[y0 // 4 : (y0 + rh) // 4 + 1, x0 // 4 : (x0 + rw) // 4 + 1] = 255
        painted = cv2.inpaint(np.asarray(small), mask, 5, cv2.INPAINT_TELEA)
        big = Image.fromarray(painted).resize(image.size, Image.Resampling.BICUBIC)
        out.paste(big.crop((x0, y0, x0 + rw, y0 + rh)), (x0, y0))
    else:  # heavy blur
        out.paste(
            image.crop((x0, y0, x0 + rw, y0 + rh)).filter(ImageFilter.GaussianBlur(25)), (x0, y0)
        )
    return out


def _derivative(
    image: Image.Image,
    other: Image.Image,
    fraction: float,
    region: str,
    fill: str,
    rng: np.random.Generator,
) -> tuple[bytes, np.ndarray]:
    box = _region(image.width, image.height, fraction, region, rng)
    out = _text(_fill(image, other, box, fill), diagonal=True, alpha=90)
    truth = np.zeros((image.height, image.width), bool)
    x0, y0, rw, rh = box
    truth[y0 : y0 + rh, x0 : x0 + rw] = True
    out = reload(jpeg(out, 50)).resize((int(image.width * 0.6), int(image.height * 0.6)))
    return jpeg(_crop(out, 0.08), 90), truth


# workers ---------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init(src: str, originals: list[Path]) -> None:
    """A worker of one engine: its code first on the path, the originals protected with it."""
    sys.path.insert(0, src)
    from counterfake import Matcher, PdqHash, Store, hash_bytes
    from counterfake.protect import protect_bytes
    from counterfake.signals.keypoints import Features

    folder = tempfile.mkdtemp(prefix="cf-robustness-")
    _STATE["store"] = Store.open(f"sqlite:///{folder}/bank.db")
    _STATE["store"].create_bank("originals")
    for index, path in enumerate(originals):
        photo = protect_bytes(jpeg(Image.open(path).convert("RGB"), 95))
        entries = [dataclasses_replace(e, index) for e in photo.entries()]
        _STATE["store"].add_entries("originals", entries)
    _STATE["matcher"] = Matcher(_STATE["store"])
    _STATE["src"] = src
    _STATE["images"] = [Image.open(p).convert("RGB") for p in originals]
    _STATE["names"] = [p.name for p in originals]
    _STATE["pdq"] = [
        PdqHash.from_hex(hash_bytes(jpeg(im, 95)).signals["pdq"]) for im in _STATE["images"]
    ]
    _STATE["features"] = [
        Features.from_bytes(data) for _, data in sorted(_STATE["store"].signatures("originals"))
    ]
    _STATE["entry_of"] = {}
    for entry in _STATE["store"].iter_entries("originals"):
        _STATE["entry_of"][entry.id] = entry.metadata["index"]


def _counterfake(data: bytes) -> tuple[set[int], int | None, float | None]:
    """Which originals the full pipeline matches."""
    from counterfake import hash_bytes
    from counterfake.signals.keypoints import image_features

    hashes = hash_bytes(data, dihedral=True)
    result = _STATE["matcher"].match(hashes, features=lambda: image_features(data, query=True))
    return {_STATE["entry_of"][m.entry_id] for m in result.matches}, None, None


def _near_duplicate(job: tuple[int, str]) -> dict[str, Any]:
    from counterfake import hash_bytes

    index, name = job
    image = _STATE["images"][index]
    rng = np.random.default_rng(index)
    data = jpeg(NEAR_DUPLICATES[name](image, rng), 92)
    distance = hash_bytes(data).pdq - _STATE["pdq"][index]
    found, _, _ = _counterfake(data)
    return {
        "transform": name,
        "index": index,
        "pdq_distance": int(distance),
        "counterfake": index in found,
        "wrong": len(found - {index}),
        "code": _STATE["src"],
    }


def _derivative_job(job: tuple[int, float, str, str]) -> dict[str, Any]:
    from counterfake import hash_bytes
    from counterfake.derivatives import verify
    from counterfake.signals.keypoints import image_features

    index, fraction, region, fill = job
    images = _STATE["images"]
    rng = np.random.default_rng(index * 7 + int(fraction * 100))
    data, truth = _derivative(
        images[index], images[(index + 1) % len(images)], fraction, region, fill, rng
    )
    distance = hash_bytes(data).pdq - _STATE["pdq"][index]
    found, _, _ = _counterfake(data)
    evidence = verify(_STATE["features"][index], image_features(data, query=True), min_inliers=4)
    iou = None
    if index in found and evidence is not None:
        expected = truth_grid(truth) & evidence.visible_mask
        union = (expected | evidence.changed_mask).sum()
        iou = float((expected & evidence.changed_mask).sum() / union) if union else 1.0
    return {
        "fraction": fraction,
        "region": region,
        "fill": fill,
        "index": index,
        "pdq_distance": int(distance),
        "counterfake": index in found,
        "wrong": len(found - {index}),
        "inliers": evidence.inliers if evidence else 0,
        "iou": iou,
        "code": _STATE["src"],
    }


def _unrelated_job(path: Path) -> list[dict[str, Any]]:
    from counterfake import hash_bytes
    from counterfake.signals.keypoints import image_features

    image = Image.open(path).convert("RGB")
    w, h = image.size
    queries = {"photo": image}
    for k, (x, y) in enumerate([(0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2)]):
        queries[f"tile{k}"] = image.crop((x, y, x + w // 2, y + h // 2))
    out = []
    for name, query in queries.items():
        data = jpeg(query, 90)
        features = image_features(data, query=True)
        pdq = hash_bytes(data).pdq
        inliers = [_most_inliers(s, features) for s in _STATE["features"]]
        distances = [int(pdq - p) for p in _STATE["pdq"]]
        found, _, _ = _counterfake(data)
        out.append(
            {
                "query": f"{path.name}:{name}",
                "matched": sorted(_STATE["names"][i] for i in found),
                "max_inliers": max(inliers),
                "inliers": inliers,
                "min_pdq": min(distances),
                "pdq": distances,
                "counterfake_matches": len(found),
                "code": _STATE["src"],
            }
        )
    return out


def _most_inliers(source: Any, query: Any) -> int:
    """Inliers of the best view, as the matcher tries them: a photo may match an unrelated
    mirror image. (A release before query views: its verify tries the query as it is, then
    mirrored.)"""
    from counterfake.derivatives import verify

    if not hasattr(query, "views"):
        evidence = verify(source, query, min_inliers=4)
        return evidence.inliers if evidence else 0
    return max(
        (e.inliers if (e := verify(source, query, min_inliers=4, views=[v])) else 0)
        for v in range(len(query.views))
    )


# report ----------------------------------------------------------------------------------------


def _plots(derivatives: list[dict[str, Any]], unrelated: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    negatives = np.array([i for u in unrelated for i in u["inliers"]])
    thresholds = np.arange(4, 61)
    fig, ax = plt.subplots(figsize=(7, 5))
    for fraction in sorted({d["fraction"] for d in derivatives}):
        positives = np.array([d["inliers"] for d in derivatives if d["fraction"] == fraction])
        recall = [(positives >= t).mean() for t in thresholds]
        fpr = [max((negatives >= t).mean(), 0.5 / negatives.size) for t in thresholds]
        ax.plot(fpr, recall, marker=".", label=f"{int(fraction * 100)}% replaced")
    ax.axvline(1e-4, color="grey", linestyle=":", label="FPR 1e-4")
    ax.set_xscale("log")
    ax.set_xlabel("false-positive rate (unrelated photo and tile pairs)")
    ax.set_ylabel("recall (derivatives)")
    ax.set_title("Derivative verification, sweeping the inlier threshold")
    ax.legend()
    path = out.with_name(out.stem + "-derivatives.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _run_engine(
    ref: str | None,
    originals: list[Path],
    near_jobs: list[tuple[int, str]],
    derivative_jobs: list[tuple[int, float, str, str]],
    unrelated: list[Path],
    processes: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The three suites through one engine's code (`ref`, or this tree's for None)."""
    context = multiprocessing.get_context("spawn")
    with (
        engine_src(ref) as src,
        context.Pool(processes, initializer=_init, initargs=(src, originals)) as pool,
    ):
        near = pool.map(_near_duplicate, near_jobs, chunksize=8)
        derivatives = pool.map(_derivative_job, derivative_jobs, chunksize=8)
        unrelated_results = [r for rs in pool.map(_unrelated_job, unrelated) for r in rs]
    assert all(r["code"] == src for r in near + derivatives + unrelated_results)
    return near, derivatives, unrelated_results


def _summary(
    near: list[dict[str, Any]],
    derivatives: list[dict[str, Any]],
    unrelated_results: list[dict[str, Any]],
    n_originals: int,
    n_unrelated: int,
    min_inliers: int,
) -> tuple[dict[str, Any], list[str]]:
    """One engine's figures (JSON) and its section of the table."""
    pairs = len(unrelated_results) * n_originals
    negatives_pdq = np.array([d for u in unrelated_results for d in u["pdq"]])
    best_pdq = int(negatives_pdq.min()) - 1  # largest threshold with no false positive here
    false_cf = sum(u["counterfake_matches"] for u in unrelated_results)
    max_unrelated_inliers = max(u["max_inliers"] for u in unrelated_results)
    # The operating point: the lowest inlier threshold whose false-positive rate over
    # the unrelated pairs is at most 1e-4, and verification's recall there.
    negatives = np.array([i for u in unrelated_results for i in u["inliers"]])
    loosest = next(t for t in range(4, 200) if (negatives >= t).mean() <= 1e-4)
    operating = {
        "threshold": loosest,
        "false_positive_rate": float((negatives >= loosest).mean()),
        "recall": {
            str(fraction): float(
                np.mean([d["inliers"] >= loosest for d in derivatives if d["fraction"] == fraction])
            )
            for fraction in (0.2, 0.4, 0.6)
        },
    }

    lines = [
        f"Originals {n_originals}, unrelated photos {n_unrelated} (+4 tiles each):"
        f" {pairs:,} unrelated pairs, FPR resolution {1 / pairs:.1e}.",
        "",
    ]
    lines += [
        f"| near-duplicate transform | PDQ @31 | PDQ @best ({best_pdq}) | counterfake |",
        "|---|---|---|---|",
    ]
    per_transform = {}
    for name in NEAR_DUPLICATES:
        rows = [r for r in near if r["transform"] == name]
        pdq31 = np.mean([r["pdq_distance"] <= 31 for r in rows])
        pdqbest = np.mean([r["pdq_distance"] <= best_pdq for r in rows])
        cf = np.mean([r["counterfake"] for r in rows])
        per_transform[name] = {"pdq_31": pdq31, "pdq_best": pdqbest, "counterfake": cf}
        lines.append(f"| {name} | {pdq31:.1%} | {pdqbest:.1%} | {cf:.1%} |")
    overall = {
        k: float(np.mean([v[k] for v in per_transform.values()]))
        for k in ("pdq_31", "pdq_best", "counterfake")
    }
    lines.append(
        f"| **all** | {overall['pdq_31']:.1%} | {overall['pdq_best']:.1%} |"
        f" {overall['counterfake']:.1%} |"
    )
    lines += [
        "",
        "| replaced | region | fill | PDQ @31 | counterfake recall | verification alone"
        " | mean IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    summary_derivatives = []
    by_fraction: dict[str, dict[str, float | None]] = {}
    for fraction in (0.2, 0.4, 0.6):
        for region in ("body", "random"):
            for fill in ("other_photo", "smooth_fill", "inpaint", "heavy_blur"):
                rows = [
                    d
                    for d in derivatives
                    if (d["fraction"], d["region"], d["fill"]) == (fraction, region, fill)
                ]
                ious = [d["iou"] for d in rows if d["iou"] is not None]
                row = {
                    "fraction": fraction,
                    "region": region,
                    "fill": fill,
                    "pdq_31": float(np.mean([d["pdq_distance"] <= 31 for d in rows])),
                    "recall": float(np.mean([d["counterfake"] for d in rows])),
                    "verified": float(np.mean([d["inliers"] >= min_inliers for d in rows])),
                    "iou": float(np.mean(ious)) if ious else None,
                }
                summary_derivatives.append(row)
                lines.append(
                    f"| {int(fraction * 100)}% | {region} | {fill} | {row['pdq_31']:.1%} |"
                    f" {row['recall']:.1%} | {row['verified']:.1%} | {row['iou'] or 0:.2f} |"
                )
        rows = [d for d in derivatives if d["fraction"] == fraction]
        ious = [d["iou"] for d in rows if d["iou"] is not None]
        by_fraction[str(fraction)] = {
            "recall": float(np.mean([d["counterfake"] for d in rows])),
            "iou": float(np.mean(ious)) if ious else None,
        }
        lines.append(
            f"| **{int(fraction * 100)}%** | all | all"
            f" | {np.mean([d['pdq_distance'] <= 31 for d in rows]):.1%}"
            f" | {np.mean([d['counterfake'] for d in rows]):.1%}"
            f" | {np.mean([d['inliers'] >= min_inliers for d in rows]):.1%}"
            f" | {np.mean(ious) if ious else 0:.2f} |"
        )
    lines += [
        "",
        f"False positives: counterfake matched {false_cf} of {len(unrelated_results)} unrelated"
        f" queries ({pairs:,} pairs); most inliers between unrelated images"
        f" {max_unrelated_inliers} (threshold {min_inliers}); closest unrelated PDQ distance"
        f" {int(negatives_pdq.min())}.",
    ]
    pasted = sum(d["wrong"] > 0 for d in derivatives if d["fill"] == "other_photo")
    wrong = sum(r["wrong"] > 0 for r in near) + sum(
        d["wrong"] > 0 for d in derivatives if d["fill"] != "other_photo"
    )
    lines.append(
        f"At a false-positive rate <= 1e-4 (threshold {loosest} inliers:"
        f" {operating['false_positive_rate']:.1e} measured), verification alone finds "
        + " / ".join(f"{v:.1%}" for v in operating["recall"].values())
        + f" at 20 / 40 / 60% replaced; counterfake decides at {min_inliers}."
    )
    for u in unrelated_results:
        if u["matched"]:
            lines.append(f"False positive: {u['query']} matched {', '.join(u['matched'])}.")
    lines.append(
        f"Queries matching an original they do not come from: {wrong} (near-duplicates, and"
        f" derivatives without pasted content); derivatives whose pasted region, taken from"
        f" another original, also matched that original: {pasted}."
    )
    summary = {
        "unrelated_pairs": pairs,
        "pdq_best_threshold": best_pdq,
        "near_duplicates": per_transform,
        "near_duplicate_overall": overall,
        "derivatives": summary_derivatives,
        "false_positive_queries": false_cf,
        "max_unrelated_inliers": max_unrelated_inliers,
        "operating_point_fpr_1e-4": operating,
        "by_fraction": by_fraction,
    }
    return summary, lines


def _comparison(engines: dict[str, dict[str, Any]]) -> list[str]:
    """The engines side by side: recall and changed-region IoU per fraction replaced."""
    lines = [
        "| engine | near-duplicates | recall 20 / 40 / 60% | mean IoU 20 / 40 / 60%"
        " | unrelated queries matched |",
        "|---|---|---|---|---|",
    ]
    for name, summary in engines.items():
        rows = summary["by_fraction"].values()
        recall = " / ".join(f"{r['recall']:.1%}" for r in rows)
        iou = " / ".join("-" if r["iou"] is None else f"{r['iou']:.2f}" for r in rows)
        lines.append(
            f"| {name} | {summary['near_duplicate_overall']['counterfake']:.1%}"
            f" | {recall} | {iou} | {summary['false_positive_queries']} |"
        )
    return lines


def main() -> int:
    from counterfake.derivatives import MIN_INLIERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument(
        "--photos", type=int, default=120, help="originals and unrelated, each half"
    )
    parser.add_argument("--baseline", default=BASELINE, help="git ref; 'none' to skip")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    paths = sorted(args.corpus.glob("*.jpg"))[: args.photos]
    if len(paths) < 4:
        parser.error(f"too few photos in {args.corpus}")
    originals, unrelated = paths[: len(paths) // 2], paths[len(paths) // 2 :]
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"robustness-{time.strftime('%Y%m%d-%H%M%S')}.json"
    started = time.time()
    print(f"{len(originals)} originals; {len(unrelated)} unrelated photos", flush=True)

    near_jobs = [(i, name) for i in range(len(originals)) for name in NEAR_DUPLICATES]
    derivative_jobs = [
        (i, fraction, region, fill)
        for i in range(len(originals))
        for fraction in (0.2, 0.4, 0.6)
        for region in ("body", "random")
        for fill in ("other_photo", "smooth_fill", "inpaint", "heavy_blur")
    ]
    refs: dict[str, str | None] = {}
    if args.baseline != "none":
        refs[f"baseline ({args.baseline})"] = args.baseline
    refs["this tree"] = None
    engines: dict[str, dict[str, Any]] = {}
    sections = []
    for name, ref in refs.items():
        near, derivatives, unrelated_results = _run_engine(
            ref, originals, near_jobs, derivative_jobs, unrelated, args.processes
        )
        print(f"{name} done ({time.time() - started:.0f} s)", flush=True)
        summary, lines = _summary(
            near, derivatives, unrelated_results, len(originals), len(unrelated), MIN_INLIERS
        )
        engines[name] = summary
        sections += [f"### {name}", "", *lines, ""]
        if ref is None:
            plot = _plots(derivatives, unrelated_results, out)
    table = "\n".join([*_comparison(engines), "", *sections])
    report = {
        "benchmark": "robustness",
        "originals": len(originals),
        "unrelated": len(unrelated),
        "engines": engines,
        "seconds": time.time() - started,
        "plot": str(plot),
    }
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}\nplot: {plot}")
    return 0


def dataclasses_replace(entry: Any, index: int) -> Any:
    import dataclasses

    return dataclasses.replace(entry, metadata={"index": index})


if __name__ == "__main__":
    sys.exit(main())
