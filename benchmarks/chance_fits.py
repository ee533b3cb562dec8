"""Chance fits: how many inliers, at what angle, unrelated photos reach against each other.

    python benchmarks/chance_fits.py [--limit N] [--processes 2]

Why: a derivative that keeps 40% of its photo, cropped and shrunk, often leaves fewer than
`MIN_INLIERS` correspondences; `derivatives.verify` accepts fewer only for an upright fit. This
measures what that costs in false matches. Every corpus photo (at a long side drawn from
320-1024 px, as in benchmarks/derivatives.py) is protected; every one is then edited as a
derivative would be (40% replaced, one of the three chains of benchmarks/derivatives.py) and
fitted against every *other* protected photo, all query views, with `derivatives.align` at 4
inliers. The pair the edit pasted from is left out (that content is really there). Each
photo pair is counted once, by its best view.

Writes JSON and a Markdown table (pairs reaching each inlier count, at any angle and upright)
to benchmarks/results/. The whole corpus takes about an hour on two cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import derivatives as bench  # the edits of the derivatives benchmark

RESULTS = Path(__file__).resolve().parent / "results"
COUNTS = (6, 7, 8, 9, 10, 11, 12)
_STATE: dict[str, Any] = {}


def _init(signatures: list[bytes]) -> None:
    from counterfake.signals.keypoints import Features

    _STATE["sources"] = [Features.from_bytes(s) for s in signatures]


def _fits(job: tuple[int, int, bytes]) -> list[tuple[int, int, int, float]]:
    """(query, source, inliers, degrees) of the best view against each other photo."""
    from counterfake.derivatives import align
    from counterfake.signals.keypoints import image_features

    own, pasted, data = job
    query = image_features(data, query=True)
    out = []
    for number, source in enumerate(_STATE["sources"]):
        if number in (own, pasted):
            continue
        best = (0, 0.0)
        for view in query.views:
            fit = align(source, view.features, min_inliers=4)
            if fit is not None and fit.inliers > best[0]:
                t = fit.transform
                best = (fit.inliers, float(np.degrees(np.arctan2(t[1, 0], t[0, 0]))))
        out.append((own, number, *best))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from counterfake.derivatives import MIN_INLIERS
    from counterfake.protect import protect_bytes

    started = time.time()
    paths = sorted(args.corpus.glob("*.jpg"))[: args.limit or None]
    images = [
        bench._sized(Image.open(p).convert("RGB"), bench.SIDES[i % len(bench.SIDES)])
        for i, p in enumerate(paths)
    ]
    signatures = [protect_bytes(bench.jpeg(im, 92)).signature for im in images]
    n = len(images)
    jobs = []
    for u, image in enumerate(images):
        pasted = (u + 7) % n
        chain, fill = bench.CHAINS[u % 3], bench.FILLS[u % 3]
        data, _ = bench.edit(image, images[pasted], 0.4, fill, chain, 99_000 + u)
        jobs.append((u, pasted, data))
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.processes, initializer=_init, initargs=(signatures,)) as pool:
        fits = [f for part in pool.map(_fits, jobs, chunksize=2) for f in part]
    inliers = np.array([f[2] for f in fits])
    upright = np.abs(np.array([f[3] for f in fits])) <= 10.0
    rows = [
        {
            "inliers": c,
            "any_angle": int((inliers >= c).sum()),
            "upright": int(((inliers >= c) & upright).sum()),
        }
        for c in COUNTS
    ]
    top = sorted(fits, key=lambda f: -f[2])[:20]
    report = {
        "benchmark": "chance_fits",
        "photos": n,
        "pairs": len(fits),
        "min_inliers": MIN_INLIERS,
        "at_least": rows,
        "strongest": [
            {"query": paths[q].name, "source": paths[s].name, "inliers": k, "degrees": round(d, 1)}
            for q, s, k, d in top
        ],
        "seconds": round(time.time() - started, 1),
    }
    lines = [
        f"{n} photos, {len(fits):,} unrelated pairs (best view each)",
        "",
        "| at least this many inliers | pairs, any angle | pairs, upright (within 10 degrees) |",
        "|---|---|---|",
        *(f"| {r['inliers']} | {r['any_angle']} | {r['upright']} |" for r in rows),
        "",
        "Strongest: "
        + ", ".join(
            f"{t['query']}/{t['source']} {t['inliers']} at {t['degrees']}°"
            for t in report["strongest"][:8]
        ),
    ]
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"chance-fits-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
