"""Derivative matching at scale: query latency and memory with many protected photos.

    python benchmarks/derivative_scale.py [--photos 100000] [--queries 200]

The bank: signatures of the corpus photos (`counterfake protect` on each), then synthetic
photos up to --photos: each a real signature with its keypoints shuffled between photos'
descriptor sets, 15% of descriptor bits flipped and positions jittered, so that descriptor
statistics (what the shortlist's buckets see) stay those of real photos while no synthetic
photo matches a query. Held in memory as a Matcher holds it (Features + KeypointShortlist),
without the store (loading from it is the index benchmark's business).

Baselines in the same run: verification of each query against its true source alone (no
shortlist), i.e. the recall the shortlist could at best deliver; and the shortlist without its
check byte (every bucket entry compared in full), i.e. what the check byte saves.

Queries: derivatives of the real photos (a lower-central 30% block replaced by another photo,
JPEG q50, resize 0.6, crop 8%). Per query, on one core: the shortlist and the verification of
its candidates, the way Matcher does it (features computed beforehand, as the CLI does). Reports
p50/p90/p99 latency, verifications per query, recall (the true source found) and resident
bytes per protected photo.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from counterfake._memory import release_freed_memory
from counterfake.derivatives import verify
from counterfake.index import keypoints
from counterfake.index.keypoints import KeypointShortlist
from counterfake.signals.keypoints import Features, image_features

RESULTS = Path(__file__).resolve().parent / "results"
SHORTLIST = 8


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
    print(f"{len(real)} real signatures", flush=True)

    before = _rss()
    shortlist = KeypointShortlist()
    # As Matcher holds them: size and float16 positions here, descriptors in the shortlist.
    photos: dict[int, tuple[int, int, np.ndarray]] = {}
    for entry_id, features in enumerate(real):
        photos[entry_id] = (features.width, features.height, features.points.astype(np.float16))
        shortlist.add(entry_id, features.descriptors)
    for entry_id in range(len(real), args.photos):
        base = real[int(rng.integers(len(real)))]
        donor = real[int(rng.integers(len(real)))]
        n = min(len(base), len(donor))
        bits = np.unpackbits(donor.descriptors[:n], axis=1)
        bits ^= (rng.random(bits.shape) < 0.15).astype(np.uint8)
        descriptors = np.packbits(bits, axis=1)
        points = base.points[:n] + rng.normal(0, 3, (n, 2)).astype(np.float32)
        # Stored and reloaded as a matcher would: the binary signature is the unit.
        synthetic = Features(base.width, base.height, points.clip(0), descriptors)
        synthetic = Features.from_bytes(synthetic.to_bytes())
        photos[entry_id] = (synthetic.width, synthetic.height, synthetic.points.astype(np.float16))
        shortlist.add(entry_id, synthetic.descriptors)
        if entry_id % 20_000 == 0:
            print(f"  {entry_id:,} photos", flush=True)
    shortlist.candidates(real[0].descriptors, 1)  # builds the sorted tables
    del synthetic, bits, descriptors, points
    release_freed_memory()
    per_photo = (_rss() - before) / args.photos
    print(f"{args.photos:,} photos, {per_photo / 1024:.1f} KB resident each", flush=True)

    queries = []
    for q in range(args.queries):
        i = q % len(images)
        query = image_features(_derivative(images[i], images[(i + 7) % len(images)]), query=True)
        queries.append((i, query, verify(real[i], query) is not None))
    alone = sum(verified for _, _, verified in queries) / len(queries)

    def run(check_bits: int) -> dict[str, Any]:
        """Every query as Matcher.derivatives takes it: the shortlist per view, then each
        candidate verified against the view that shortlisted it."""
        keypoints._CHECK_BITS = check_bits
        latencies, shortlisting, verified, found = [], [], [], 0
        for i, query, _ in queries:
            started = time.perf_counter()
            views = (
                [(query, False)] if query.mirror is None else [(query, False), (query.mirror, True)]
            )
            candidates = dict.fromkeys(
                (e, mirrored)
                for view, mirrored in views
                for e, _ in shortlist.candidates(view.descriptors, SHORTLIST)
            )
            shortlisting.append(time.perf_counter() - started)
            matched = set()
            for e, mirrored in candidates:
                if e in matched:
                    continue
                width, height, points = photos[e]
                descriptors = shortlist.descriptors(e)
                source = Features(width, height, points.astype(np.float32), descriptors)
                if verify(source, query, mirror=mirrored) is not None:
                    matched.add(e)
            latencies.append(time.perf_counter() - started)
            verified.append(len(candidates))
            found += i in matched
        ordered = sorted(latencies)
        return {
            "p50_ms": statistics.median(ordered) * 1000,
            "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "shortlist_p50_ms": statistics.median(shortlisting) * 1000,
            "verifications_mean": statistics.mean(verified),
            "recall": found / len(queries),
        }

    runs = {
        "check byte (counterfake)": run(keypoints._CHECK_BITS),
        "full comparisons (baseline)": run(8),
    }
    report = {
        "benchmark": "derivative_scale",
        "photos": args.photos,
        "queries": args.queries,
        "bytes_per_photo": per_photo,
        "recall_verification_alone": alone,
        "runs": runs,
    }
    lines = [
        "| shortlist | KB per photo (RSS) | query p50 ms | p90 ms | p99 ms | shortlist p50 ms"
        " | verifications per query | recall | recall of verification alone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {per_photo / 1024:.1f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f}"
            f" | {r['p99_ms']:.0f} | {r['shortlist_p50_ms']:.0f} | {r['verifications_mean']:.1f}"
            f" | {r['recall']:.1%} | {alone:.1%} |"
        )
    table = f"{args.photos:,} protected photos, {len(queries)} queries, one core\n\n" + "\n".join(
        lines
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"derivative-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
