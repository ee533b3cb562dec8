"""Derivatives of protected photos on edits and sizes nobody tuned for (issue 12's chains).

    python benchmarks/derivatives.py [--half report|tune] [--baseline REF] [--limit N]

The corpus is split once and for all by a hash of each file's name: the *tune* half is for
trying changes, the *report* half for the figures (the default). In each half, two thirds of
the photos are originals, protected at a long side drawn from 320-1024 px; the rest are
unrelated photos (false-positive queries, and the content pasted into derivatives).

Each original is edited at 20 / 40 / 60% replaced: a soft-edged, torso-like ellipse in the
lower centre filled with a skin-tone gradient with noise, OpenCV inpainting, or another
photo; then one of three chains:

- `plain`: diagonal semi-transparent text watermark, a 2-5% crop per side, resize 0.7,
  JPEG q60 (the independent evaluation's chain).
- `square`: squashed to 512x512 first (the input of the DeepNude family), region replaced,
  the whole image bilateral-filtered (re-rendered), watermark, JPEG q75.
- `rerender`: region replaced, median filter and a colour shift, watermark, a 2-5% crop,
  resized to a long side of 224-400 px, JPEG q70.

False positives: the unrelated photos through the same chains, and *backdrop pairs*: two
portraits against one backdrop photo, one protected, the other queried through the chains; a
match there must say it is on the background alone. The corpus holds two portraits (0342, an
astronaut; 0356, Grace Hopper; both public domain): *face* pairs use them (each protected in
turn); *faceless* pairs use two unrelated photos as the subjects, where no head can be told
from the background (reported, not counted as a pass).

Engines, in the same run on the same bytes: PDQ at 31; the baseline release (`--baseline`, a
git ref run from a temporary worktree; default the last commit before round 2); this tree.
Writes JSON (with every miss and every false match, by photo) and a Markdown table to
benchmarks/results/.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import hashlib
import io
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
BASELINE = "f2847c8"  # main before derivatives round 2
FRACTIONS = (0.2, 0.4, 0.6)
FILLS = ("skin", "inpaint", "other_photo")
CHAINS = ("plain", "square", "rerender")
SIDES = (320, 384, 448, 512, 640, 800, 1024)
SKIN = [(224, 172, 140), (198, 134, 98), (141, 85, 56), (240, 200, 170), (110, 70, 50)]


def half_of(name: str) -> str:
    """The fixed split: a photo's half never depends on the corpus or on the run."""
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "report"


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def reload(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _sized(image: Image.Image, side: int) -> Image.Image:
    ratio = side / max(image.size)
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _ellipse(w: int, h: int, fraction: float) -> np.ndarray:
    """A soft-edged torso-like ellipse in the lower centre covering `fraction` of the frame
    (weights 0-1)."""
    a = (fraction / (1.2 * np.pi)) ** 0.5  # half-width, of the frame's width
    b = 1.2 * a  # half-height, of the frame's height
    cy = max(0.5, 1.0 - b * 0.85)
    ys, xs = np.mgrid[0:h, 0:w]
    inside = ((xs / w - 0.5) / a) ** 2 + ((ys / h - cy) / b) ** 2 <= 1.0
    soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(1.0, 0.015 * max(w, h)))
    return soft


def _fill(
    image: Image.Image, other: Image.Image, weight: np.ndarray, how: str, seed: int
) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.asarray(image, np.float32)
    h, w = weight.shape
    if how == "skin":
        top, bottom = (np.array(SKIN[int(i)], np.float32) for i in rng.integers(0, len(SKIN), 2))
        ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        patch = (1 - ramp) * top + ramp * bottom + rng.normal(0, 4, (h, w, 3))
        patch = cv2.GaussianBlur(patch.astype(np.float32), (0, 0), 1.0)
    elif how == "inpaint":
        small_side = 4
        small = cv2.resize(np.asarray(image), (max(1, w // small_side), max(1, h // small_side)))
        mask = (cv2.resize(weight, (small.shape[1], small.shape[0])) > 0.05).astype(np.uint8) * 255
        painted = cv2.inpaint(small, mask, 5, cv2.INPAINT_TELEA)
        patch = cv2.resize(painted, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    else:
        patch = np.asarray(other.resize((w, h)), np.float32)
    out = base * (1 - weight[..., None]) + patch * weight[..., None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _watermark(image: Image.Image, text: str = "SAMPLE STAMP") -> Image.Image:
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.text((w * 0.08, h * 0.42), text, fill=(255, 255, 255, 110), font=_font(max(12, h // 9)))
    layer = layer.rotate(28, center=(w / 2, h / 2))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    left, top, right, bottom = rng.uniform(0.02, 0.05, 4)
    return image.crop((int(w * left), int(h * top), int(w * (1 - right)), int(h * (1 - bottom))))


def edit(
    image: Image.Image, other: Image.Image, fraction: float, fill: str, chain: str, seed: int
) -> tuple[bytes, np.ndarray]:
    """One derivative's bytes and its truth mask (over the original's pixels)."""
    rng = np.random.default_rng(seed)
    if fraction:
        truth_weight = _ellipse(image.width, image.height, fraction)
    else:  # a clean copy through the chain: nothing replaced
        truth_weight = np.zeros((image.height, image.width), np.float32)
    if chain == "square":
        work = image.resize((512, 512), Image.Resampling.BICUBIC)
        weight = cv2.resize(truth_weight, (512, 512))
        out = _fill(work, other, weight, fill, seed)
        out = Image.fromarray(cv2.bilateralFilter(np.asarray(out), 9, 40, 7))
        return jpeg(_watermark(out), 75), truth_weight > 0.5
    out = _fill(image, other, truth_weight, fill, seed)
    if chain == "rerender":
        out = out.filter(ImageFilter.MedianFilter(3))
        shift = rng.uniform(0.93, 1.07, 3)
        out = Image.fromarray(np.clip(np.asarray(out, np.float32) * shift, 0, 255).astype(np.uint8))
        out = _sized(_crop(_watermark(out), rng), int(rng.integers(224, 401)))
        return jpeg(out, 70), truth_weight > 0.5
    out = _crop(_watermark(out), rng)
    out = out.resize(
        (max(1, int(out.width * 0.7)), max(1, int(out.height * 0.7))), Image.Resampling.BILINEAR
    )
    return jpeg(out, 60), truth_weight > 0.5


def portrait(backdrop: Image.Image, person: Image.Image) -> Image.Image:
    """A person (head and shoulders, an upright ellipse) in front of a backdrop, 640x480."""
    out = backdrop.resize((640, 480))
    pasted = person.resize((280, 420))
    mask = Image.new("L", pasted.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, 280, 500), fill=255)
    out.paste(pasted, (180, 60), mask)
    return out


def truth_grid(truth: np.ndarray, cells: int = 12) -> np.ndarray:
    h, w = truth.shape
    ys, xs = (np.arange(cells + 1) * h) // cells, (np.arange(cells + 1) * w) // cells
    return np.array(
        [
            [truth[ys[r] : ys[r + 1], xs[c] : xs[c + 1]].mean() > 0.5 for c in range(cells)]
            for r in range(cells)
        ]
    )


# engines (one pool per engine; its workers import that engine's counterfake) ----------------

_STATE: dict[str, Any] = {}


def _init(src: str, originals: list[bytes]) -> None:
    # This engine's code first (a spawned worker starts with the parent's sys.path, where
    # the editable install puts this tree's src).
    sys.path.insert(0, src)
    from counterfake import Matcher, Store
    from counterfake.protect import protect_bytes
    from counterfake.signals.keypoints import Features

    folder = tempfile.mkdtemp(prefix="cf-derivatives-")
    store = Store.open(f"sqlite:///{folder}/bank.db")
    store.create_bank("originals")
    for index, data in enumerate(originals):
        photo = protect_bytes(data)
        store.add_entries("originals", [_with_index(e, index) for e in photo.entries()])
    _STATE["matcher"] = Matcher(store)
    _STATE["sources"] = [
        Features.from_bytes(data) for _, data in sorted(store.signatures("originals"))
    ]
    _STATE["src"] = src
    _STATE["index_of"] = {e.id: e.metadata["index"] for e in store.iter_entries("originals")}


def _with_index(entry: Any, index: int) -> Any:
    import dataclasses

    return dataclasses.replace(entry, metadata={"index": index})


def _query(job: tuple[bytes, int | None]) -> dict[str, Any]:
    from counterfake import hash_bytes
    from counterfake.derivatives import verify
    from counterfake.signals.keypoints import image_features

    data, index = job
    started = time.perf_counter()
    result = _STATE["matcher"].match(
        hash_bytes(data, dihedral=True), features=lambda: image_features(data, query=True)
    )
    seconds = time.perf_counter() - started
    # Baseline for the shortlist: the true source alone, verified.
    alone = (
        index is not None
        and verify(_STATE["sources"][index], image_features(data, query=True)) is not None
    )
    found = []
    for m in result.matches:
        ev = m.evidence
        found.append(
            {
                "index": _STATE["index_of"][m.entry_id],
                "derivative": ev is not None,
                "changed": ev.changed_mask.tolist() if ev is not None else None,
                "visible": ev.visible_mask.tolist() if ev is not None else None,
                "changed_fraction": m.changed_fraction,
                "part": getattr(ev, "matched_part", None) if ev is not None else None,
            }
        )
    return {"found": found, "seconds": seconds, "alone": alone, "code": _STATE["src"]}


@contextmanager
def engine_src(ref: str | None) -> Iterator[str]:
    """The src folder of `ref` (a temporary worktree), or of this tree."""
    if ref is None:
        yield str(REPO / "src")
        return
    folder = tempfile.mkdtemp(prefix="cf-baseline-")
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", folder, ref],
        check=True,
        capture_output=True,
    )
    try:
        yield str(Path(folder) / "src")
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", folder],
            check=False,
            capture_output=True,
        )


def _run_engine(
    ref: str | None, originals: list[bytes], queries: list[tuple[bytes, int | None]], processes: int
) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    with (
        engine_src(ref) as src,
        context.Pool(processes, initializer=_init, initargs=(src, originals)) as pool,
    ):
        results = pool.map(_query, queries, chunksize=4)
    assert all(r["code"] == src for r in results)
    return results


def _pdq_distances(
    originals: list[bytes], queries: list[tuple[int | None, bytes]]
) -> list[int | None]:
    from counterfake import hash_bytes

    hashes = [hash_bytes(o).pdq for o in originals]
    out: list[int | None] = []
    for index, data in queries:
        out.append(None if index is None else int(hash_bytes(data).pdq - hashes[index]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--half", choices=("report", "tune"), default="report")
    parser.add_argument("--baseline", default=BASELINE, help="git ref; 'none' to skip")
    parser.add_argument("--limit", type=int, default=0, help="at most this many originals")
    parser.add_argument("--chains", default=",".join(CHAINS))
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    chains = args.chains.split(",")
    paths = [p for p in sorted(args.corpus.glob("*.jpg")) if half_of(p.name) == args.half]
    if len(paths) < 6:
        parser.error(f"too few photos in {args.corpus}")
    originals_paths = [p for i, p in enumerate(paths) if i % 3 != 2]
    unrelated_paths = [p for i, p in enumerate(paths) if i % 3 == 2]
    if args.limit:
        originals_paths = originals_paths[: args.limit]
    started = time.time()

    images = [
        _sized(Image.open(p).convert("RGB"), SIDES[i % len(SIDES)])
        for i, p in enumerate(originals_paths)
    ]
    others = [_sized(Image.open(p).convert("RGB"), 640) for p in unrelated_paths]
    # Backdrops and faceless subjects come from the last unrelated photos, which nothing else
    # uses (a photo in two roles would be a true match, not a false one).
    spare, others = others[-18:], others[:-18]
    faces = [
        Image.open(args.corpus / "0342.jpg").convert("RGB").crop((100, 0, 400, 450)),
        Image.open(args.corpus / "0356.jpg").convert("RGB").crop((80, 0, 440, 540)),
    ]
    pairs: list[tuple[str, Image.Image, Image.Image]] = []
    for k, backdrop in enumerate(spare[:12]):
        first, second = faces[k % 2], faces[1 - k % 2]
        pairs.append(("face", portrait(backdrop, first), portrait(backdrop, second)))
    for k, backdrop in enumerate(spare[12:15]):
        subjects = (spare[15], spare[16 + k % 2])
        pairs.append(("faceless", portrait(backdrop, subjects[0]), portrait(backdrop, subjects[1])))
    bank = [jpeg(im, 92) for im in images] + [jpeg(p[1], 92) for p in pairs]

    queries: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        for fraction in FRACTIONS:
            for f, fill in enumerate(FILLS):
                for c, chain in enumerate(chains):
                    seed = index * 1000 + int(fraction * 100) * 10 + f * 3 + c
                    other = others[(index + f) % len(others)]
                    data, truth = edit(image, other, fraction, fill, chain, seed)
                    q = Image.open(io.BytesIO(data))
                    queries.append(
                        {
                            "kind": "derivative",
                            "index": index,
                            "name": originals_paths[index].name,
                            "fraction": fraction,
                            "fill": fill,
                            "chain": chain,
                            "original_side": max(image.size),
                            "query_side": max(q.size),
                            "truth": truth_grid(truth),
                            "data": data,
                        }
                    )
    for index, image in enumerate(images):
        for c, chain in enumerate(chains):
            data, _ = edit(image, others[0], 0.0, "skin", chain, 55_000 + index * 3 + c)
            queries.append({"kind": "clean", "index": index, "chain": chain, "data": data})
    for u, other in enumerate(others):
        for c, chain in enumerate(chains):
            data, _ = edit(
                other, others[(u + 1) % len(others)], 0.4, FILLS[u % 3], chain, 99_000 + u * 3 + c
            )
            name = unrelated_paths[u].name
            queries.append(
                {"kind": "unrelated", "index": None, "name": name, "chain": chain, "data": data}
            )
    for k, (kind, _, second) in enumerate(pairs):
        for c, chain in enumerate(chains):
            data, _ = edit(second, others[0], 0.2, "inpaint", chain, 77_000 + k * 3 + c)
            queries.append(
                {"kind": f"backdrop {kind}", "index": len(images) + k, "chain": chain, "data": data}
            )
    print(
        f"{args.half} half: {len(images)} originals, {len(others)} unrelated, {len(pairs)} backdrop"
        f" pairs; {len(queries)} queries ({time.time() - started:.0f} s)",
        flush=True,
    )

    blobs = [
        (q["data"], q["index"] if q["kind"] in ("derivative", "clean") else None) for q in queries
    ]
    engines: dict[str, list[dict[str, Any]]] = {}
    refs = {} if args.baseline == "none" else {f"baseline ({args.baseline})": args.baseline}
    refs["this tree"] = None
    for name, ref in refs.items():
        engines[name] = _run_engine(ref, bank, blobs, args.processes)
        print(f"{name} done ({time.time() - started:.0f} s)", flush=True)
    pdq = _pdq_distances(
        bank, [(q["index"] if q["kind"] == "derivative" else None, q["data"]) for q in queries]
    )

    report = _report(queries, engines, pdq)
    names = [p.name for p in originals_paths] + [f"backdrop pair {k}" for k in range(len(pairs))]
    report["cases"] = _cases(queries, engines, names)
    report.update(
        {
            "benchmark": "derivatives",
            "half": args.half,
            "originals": len(images),
            "unrelated": len(others),
            "backdrop_pairs": len(pairs),
            "chains": chains,
            "seconds": round(time.time() - started, 1),
        }
    )
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"derivatives-{args.half}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    table = report.pop("table")
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}")
    return 0


def _cases(
    queries: list[dict[str, Any]], engines: dict[str, list[dict[str, Any]]], names: list[str]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per engine, each derivative it missed and each match it should not have made, by
    photo: what the next change should look at."""
    out = {}
    for engine, results in engines.items():
        missed, wrong = [], []
        for q, result in zip(queries, results, strict=True):
            if q["kind"] == "derivative" and not any(
                f["index"] == q["index"] for f in result["found"]
            ):
                missed.append(
                    {k: q[k] for k in ("name", "fraction", "fill", "chain")}
                    | {"sides": [q["original_side"], q["query_side"]]}
                )
            for f in result["found"]:
                if q["kind"] in ("derivative", "unrelated") and f["index"] != q["index"]:
                    wrong.append(
                        {
                            "query": q["name"],
                            "kind": q["kind"],
                            "chain": q["chain"],
                            "matched": names[f["index"]],
                            "part": f["part"],
                        }
                    )
        out[engine] = {"missed": missed, "false_matches": wrong}
    return out


def _report(
    queries: list[dict[str, Any]], engines: dict[str, list[dict[str, Any]]], pdq: list[int | None]
) -> dict[str, Any]:
    names = list(engines)
    derivative = [i for i, q in enumerate(queries) if q["kind"] == "derivative"]

    def found(engine: str, i: int) -> dict[str, Any] | None:
        return next(
            (f for f in engines[engine][i]["found"] if f["index"] == queries[i]["index"]), None
        )

    def recall(rows: list[int]) -> dict[str, float]:
        out = {"pdq_31": float(np.mean([pdq[i] is not None and pdq[i] <= 31 for i in rows]))}
        for e in names:
            out[e] = float(np.mean([found(e, i) is not None for i in rows]))
            out[e + ", verification alone"] = float(np.mean([engines[e][i]["alone"] for i in rows]))
        return out

    groups: dict[str, list[int]] = defaultdict(list)
    for i in derivative:
        q = queries[i]
        pct = f"{int(q['fraction'] * 100)}%"
        groups[f"{pct} all"].append(i)
        groups[f"{pct} chain {q['chain']}"].append(i)
        groups[f"{pct} fill {q['fill']}"].append(i)
        band = "original <= 512 px" if q["original_side"] <= 512 else "original > 512 px"
        groups[f"{pct} {band}"].append(i)
        qband = "query < 320 px" if q["query_side"] < 320 else "query >= 320 px"
        groups[f"{pct} {qband}"].append(i)
    rows = {k: {"queries": len(v), **recall(v)} for k, v in sorted(groups.items())}

    ious: dict[str, dict[str, float]] = {}
    latency: dict[str, float] = {}
    for e in names:
        per: dict[str, list[float]] = defaultdict(list)
        for i in derivative:
            f = found(e, i)
            if f is None or f["changed"] is None:
                continue
            truth = queries[i]["truth"] & np.array(f["visible"])
            changed = np.array(f["changed"])
            union = (truth | changed).sum()
            per[f"{int(queries[i]['fraction'] * 100)}%"].append(
                float((truth & changed).sum() / union) if union else 1.0
            )
        ious[e] = {k: round(float(np.mean(v)), 3) for k, v in sorted(per.items())}
    false = {}
    for e in names:
        unrelated = [i for i, q in enumerate(queries) if q["kind"] == "unrelated"]
        out: dict[str, int] = {
            "unrelated_queries": len(unrelated),
            "unrelated_matched": sum(bool(engines[e][i]["found"]) for i in unrelated),
            "other_wrong": sum(
                any(f["index"] != queries[i]["index"] for f in engines[e][i]["found"])
                for i in derivative
            ),
            "derivatives_on_background": sum(
                (f := found(e, i)) is not None and f["part"] == "background" for i in derivative
            ),
        }
        for kind in ("face", "faceless"):
            asked = [i for i, q in enumerate(queries) if q["kind"] == f"backdrop {kind}"]
            hits = [found(e, i) for i in asked]
            out[f"backdrop_{kind}_queries"] = len(asked)
            out[f"backdrop_{kind}_plain"] = sum(
                h is not None and h["part"] != "background" for h in hits
            )
            out[f"backdrop_{kind}_background"] = sum(
                h is not None and h["part"] == "background" for h in hits
            )
        clean = [i for i, q in enumerate(queries) if q["kind"] == "clean"]
        fractions = [
            f["changed_fraction"]
            for i in clean
            if (f := found(e, i)) is not None and f["changed_fraction"] is not None
        ]
        out["clean_found"] = sum(found(e, i) is not None for i in clean)
        out["clean_queries"] = len(clean)
        out["clean_as_derivative"] = len(fractions)
        out["clean_changed_fraction_mean_x1000"] = round(1000 * float(np.mean(fractions or [0])))
        false[e] = out
        times = sorted(r["seconds"] for r in engines[e])
        latency[e] = round(1000 * times[len(times) // 2], 1)
        latency[e + " p99"] = round(1000 * times[int(len(times) * 0.99)], 1)

    columns = [c for e in names for c in (e, e + ", verification alone")]
    lines = [
        "| group | queries | PDQ @31 | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['queries']} | {r['pdq_31']:.1%} | "
            + " | ".join(f"{r[c]:.1%}" for c in columns)
            + " |"
        )
    lines += [
        "",
        "| engine | IoU by replaced | unrelated matched | backdrop (faces): plain / on background"
        " | backdrop (faceless): plain / on background | derivatives on background"
        " | wrong original | clean copies: found, via derivatives, mean changed_fraction"
        " | ms p50 / p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in names:
        fx = false[e]
        lines.append(
            f"| {e} | {ious[e]} | {fx['unrelated_matched']} / {fx['unrelated_queries']}"
            f" | {fx['backdrop_face_plain']} / {fx['backdrop_face_background']}"
            f" of {fx['backdrop_face_queries']}"
            f" | {fx['backdrop_faceless_plain']} / {fx['backdrop_faceless_background']}"
            f" of {fx['backdrop_faceless_queries']}"
            f" | {fx['derivatives_on_background']} | {fx['other_wrong']}"
            f" | {fx['clean_found']} / {fx['clean_queries']}, {fx['clean_as_derivative']},"
            f" {fx['clean_changed_fraction_mean_x1000'] / 1000:.3f}"
            f" | {latency[e]} / {latency[e + ' p99']} |"
        )
    return {
        "recall": rows,
        "iou": ious,
        "false": false,
        "query_ms": latency,
        "table": "\n".join(lines),
    }


if __name__ == "__main__":
    sys.exit(main())
