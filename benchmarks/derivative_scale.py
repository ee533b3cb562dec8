"""Derivative matching at scale: query latency and memory with many protected photos.

    python benchmarks/derivative_scale.py [--photos 100000] [--queries 200]

The bank, in a real store (SQLite in a temporary folder) read by a real `Matcher`: signatures
of the corpus photos (`counterfake protect` on each, 20 held out), then synthetic photos up to
--photos: each a real signature with its keypoints shuffled between photos' descriptor sets,
15% of descriptor bits flipped and positions jittered, so that descriptor statistics (what the
shortlist's buckets see) stay those of real photos while no synthetic photo matches a query.
The matcher holds the shortlist (each signature's first keypoints) in memory and reads whole
signatures from the store for the candidates it verifies.

Queries: derivatives of the real photos (a lower-central 30% block replaced by another photo,
JPEG q50, resize 0.6, crop 8%). Per query, on one core: `Matcher.derivatives` (shortlist, the
store read, verification), features computed beforehand as the CLI does. Baselines in the
same run: verification of each query against its true source alone (no shortlist), the recall
the shortlist could at best deliver; and, alternating query by query on the same matcher, the
previous release's query features (the strongest 3,000 of each view, not spread over the
grid). Then the delta
tier: the held-out photos added to the store one by one, each followed by a refresh and a
query for its derivative: how long until an add is matched.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from counterfake import Matcher, NewEntry, Store
from counterfake._memory import release_freed_memory
from counterfake.derivatives import verify
from counterfake.signals import keypoints
from counterfake.signals.keypoints import Features, image_features

RESULTS = Path(__file__).resolve().parent / "results"


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _derivative(photo: Image.Image, other: Image.Image) -> bytes:
    w, h = photo.size
    rw, rh = int(w * 0.3**0.5), int(h * 0.3**0.5)
    x0, y0 = (w - rw) // 2, h - rh
    out = photo.copy()
    out.paste(other.resize((w, h)).crop((x0, y0, x0 + rw, y0 + rh)), (x0, y0))
    out = Image.open(io.BytesIO(_jpeg(out, 50))).resize((int(w * 0.6), int(h * 0.6)))
    w2, h2 = out.size
    return _jpeg(out.crop((int(w2 * 0.08), int(h2 * 0.08), int(w2 * 0.92), int(h2 * 0.92))), 90)


@contextmanager
def _unspread_queries() -> Iterator[None]:
    """Query features as the previous release took them: each view's strongest keypoints,
    wherever they are, not spread over the grid (the baseline)."""

    def strongest(gray: np.ndarray, count: int = keypoints.QUERY_FEATURES) -> Features:
        orb = keypoints._orb(count)
        return keypoints._features(gray, list(orb.detect(gray, None)), orb)

    spread = keypoints.query_features
    keypoints.query_features = strongest  # type: ignore[assignment]
    try:
        yield
    finally:
        keypoints.query_features = spread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    paths = sorted(args.corpus.glob("*.jpg"))
    images = [Image.open(p).convert("RGB") for p in paths]
    real = [image_features(_jpeg(im, 95), query=False) for im in images]
    held_out = list(range(len(real) - 20, len(real)))
    banked = [i for i in range(len(real)) if i not in held_out]
    print(f"{len(real)} real signatures", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="cf-derivative-scale-"))
    store = Store.open(f"sqlite:///{folder}/bank.db")
    store.create_bank("scale")
    entry_of: dict[int, int] = {}
    started = time.perf_counter()
    added = store.add_entries("scale", [_entry(real[i]) for i in banked])
    entry_of.update({i: a.entry_id for i, a in zip(banked, added, strict=True)})
    batch: list[NewEntry] = []
    for n in range(len(banked), args.photos):
        base = real[int(rng.integers(len(real)))]
        donor = real[int(rng.integers(len(real)))]
        k = min(len(base), len(donor))
        bits = np.unpackbits(donor.descriptors[:k], axis=1)
        bits ^= (rng.random(bits.shape) < 0.15).astype(np.uint8)
        points = base.points[:k] + rng.normal(0, 3, (k, 2)).astype(np.float32)
        synthetic = Features(base.width, base.height, points.clip(0), np.packbits(bits, axis=1))
        batch.append(_entry(synthetic))
        if len(batch) == 2000:
            store.add_entries("scale", batch)
            batch = []
        if n % 20_000 == 0:
            print(f"  {n:,} photos", flush=True)
    if batch:
        store.add_entries("scale", batch)
    filled = time.perf_counter() - started
    print(f"{args.photos:,} photos stored in {filled:.0f} s", flush=True)

    release_freed_memory()
    before = _rss()
    started = time.perf_counter()
    matcher = Matcher(store)
    loaded = time.perf_counter() - started
    release_freed_memory()
    per_photo = (_rss() - before) / args.photos
    print(f"matcher loaded in {loaded:.0f} s, {per_photo / 1024:.1f} KB resident each", flush=True)

    # Each query's features both ways: this tree's, and the baseline's (unspread).
    rules = ("this tree", "unspread query features")
    queries = []
    for q in range(args.queries):
        i = banked[q % len(banked)]
        data = _derivative(images[i], images[(i + 7) % len(images)])
        spread = image_features(data, query=True)
        with _unspread_queries():
            unspread = image_features(data, query=True)
        queries.append((i, dict(zip(rules, (spread, unspread), strict=True))))
    alone = {
        name: sum(verify(real[i], query[name]) is not None for i, query in queries) / len(queries)
        for name in rules
    }

    # Alternating query by query on the same matcher.
    latencies: dict[str, list[float]] = {name: [] for name in rules}
    found = dict.fromkeys(rules, 0)
    for number, (i, query) in enumerate(queries):
        for name in rules if number % 2 == 0 else reversed(rules):
            started = time.perf_counter()
            matches = matcher.derivatives(query[name])
            latencies[name].append(time.perf_counter() - started)
            found[name] += any(m.entry_id == entry_of[i] for m in matches)
    runs = {name: _summary(latencies[name], found[name] / len(queries)) for name in rules}
    run = runs["this tree"]

    visible = []
    for i in held_out:
        query = image_features(_derivative(images[i], images[(i + 7) % len(images)]), query=True)
        (result,) = store.add_entries("scale", [_entry(real[i])])
        started = time.perf_counter()
        matcher.refresh()
        matched = any(m.entry_id == result.entry_id for m in matcher.derivatives(query))
        visible.append((time.perf_counter() - started, matched))
    add_seconds = sorted(v for v, _ in visible)
    report = {
        "benchmark": "derivative_scale",
        "photos": args.photos,
        "queries": args.queries,
        "store_fill_seconds": filled,
        "matcher_load_seconds": loaded,
        "bytes_per_photo": per_photo,
        "recall_verification_alone": alone["this tree"],
        "run": run,
        "baseline_unspread_query_features": runs["unspread query features"]
        | {"recall_verification_alone": alone["unspread query features"]},
        "add_to_matched_seconds_median": statistics.median(add_seconds),
        "add_to_matched_seconds_max": add_seconds[-1],
        "adds_matched": sum(m for _, m in visible),
        "adds": len(visible),
    }
    base = runs["unspread query features"]
    table = "\n".join(
        [
            f"{args.photos:,} protected photos, {len(queries)} queries, one core",
            "",
            "| rule | KB per photo (RSS) | query p50 ms | p90 ms | p99 ms | recall"
            " | recall of verification alone | add to matched: median / max s |",
            "|---|---|---|---|---|---|---|---|",
            f"| this tree | {per_photo / 1024:.1f} | {run['p50_ms']:.0f} | {run['p90_ms']:.0f}"
            f" | {run['p99_ms']:.0f} | {run['recall']:.1%} | {alone['this tree']:.1%}"
            f" | {report['add_to_matched_seconds_median']:.2f} /"
            f" {report['add_to_matched_seconds_max']:.2f}"
            f" ({report['adds_matched']} of {len(visible)} matched) |",
            f"| baseline: unspread query features | | {base['p50_ms']:.0f}"
            f" | {base['p90_ms']:.0f} | {base['p99_ms']:.0f} | {base['recall']:.1%}"
            f" | {alone['unspread query features']:.1%} | |",
            "",
            f"p50 ratio, this tree / baseline: {run['p50_ms'] / base['p50_ms']:.2f}",
        ]
    )
    print(table)
    store.close()
    shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"derivative-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"JSON: {out}")
    return 0


def _summary(latencies: list[float], recall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "recall": recall,
    }


def _entry(features: Features) -> NewEntry:
    signature = features.to_bytes()
    return NewEntry("derivative", Features.from_bytes(signature).id, payload=signature)


if __name__ == "__main__":
    sys.exit(main())
