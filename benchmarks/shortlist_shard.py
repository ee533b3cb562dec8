"""One shard of the derivative shortlist at 1,000,000 protected photos, written to files and
mapped, as a matcher process of a sharded deployment would hold it.

    python benchmarks/shortlist_shard.py [--photos 1000000] [--folder DIR]

Photos: the signatures of the report half's photos (benchmarks/derivatives.py's split, each
sized to one of its sides), then synthetic photos up to --photos. A synthetic photo is a view
of a tuning-half photo (a random crop, mirror, size, brightness and JPEG quality; --views of
them, run through `image_features` like any protected photo) whose descriptors have 12% of
their bits flipped, each photo by its own masks: the descriptor statistics of real photos, a
few dozen photos per view, none of them a view of a query's source.

Queries: derivatives of the report half's photos made by benchmarks/derivatives.py's `edit`
(20, 40 and 60% replaced; skin, inpaint and other-photo fills; the plain, square and
re-render chains in turn). Per query, as `Matcher.derivatives` does it: the shard's
candidates for each view of the query (the shard's time), then the best 16 over all views
(none under an eighth of the best's votes) verified against their whole signatures (the
worker's time; synthetic photos' signatures rebuilt from their view and masks). Found: the
true source verified. Verification alone: the true source verified with no shortlist.

Two engines over the same photos, each writing the shard with its `KeypointShortlist.write`
in a process of its own and querying it from another that opens it: this tree (keys as wide
as the shard's size calls for, 24 bits at a million photos, 22 at 100,000; pages read one at
a time; nearby keys read, as in a matcher's bank) and the release before it (--baseline,
checked out in a temporary worktree). At a million photos the files are bigger than
this machine's memory; before its queries each process reads its files once, so the page
cache holds what fits. --shards N splits this tree's photos by entry id across N shortlists,
each written and opened as a shard, and each query asks them all in turn and merges their
answers (the plan's fan-out, on one core). --pool keeps the views (computing them takes
minutes) in a file for the next run. Writes JSON and a table to benchmarks/results/.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import multiprocessing
import resource
import shutil
import statistics
import sys
import tempfile
import time
from inspect import signature
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from derivatives import (
    CHAINS,
    FILLS,
    FRACTIONS,
    SIDES,
    _sized,
    edit,
    engine_src,
    half_of,
    jpeg,
)

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "5275a7f"  # main before shards: 20-bit keys only
_FLIP = 0.12  # share of a synthetic descriptor's bits flipped
_MASKS = 1 << 20  # flip masks drawn from, each a photo's run of them
_SHORTLIST, _VOTE_SHARE = 16, 8  # as matching.py
_RANKED = 256  # how far down the true source is looked for (not timed)


def _view(job: tuple[str, int]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """One synthetic view of a photo: (width, height, points, descriptors)."""
    from counterfake.signals.keypoints import image_features

    path, seed = job
    rng = np.random.default_rng(seed)
    image = Image.open(path).convert("RGB")
    w, h = image.size
    cw, ch = (int(side * rng.uniform(0.5, 1.0)) for side in (w, h))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = _sized(image, int(rng.integers(320, 1025)))
    features = image_features(jpeg(image, int(rng.integers(70, 96))), query=False)
    return features.width, features.height, features.points, features.descriptors


def _pool_features(paths: list[Path], views: int, out: Path) -> None:
    """The views synthetic photos are made of, saved for the writers and queriers."""
    jobs = [(str(paths[v % len(paths)]), 1000 + v) for v in range(views)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        made = pool.map(_view, jobs, chunksize=16)
    counts = np.array([len(d) for _, _, _, d in made])
    descriptors = np.zeros((views, 1024, 32), np.uint8)
    points = np.zeros((views, 1024, 2), np.float32)
    for v, (_, _, p, d) in enumerate(made):
        descriptors[v, : len(d)], points[v, : len(p)] = d, p
    sizes = np.array([(w, h) for w, h, _, _ in made])
    np.savez(out, counts=counts, descriptors=descriptors, points=points, sizes=sizes)


class _Photos:
    """The shard's photos: the real signatures (entry ids 1..), then the synthetic ones."""

    def __init__(self, folder: Path, photos: int) -> None:
        from counterfake.signals.keypoints import Features

        pool = np.load(folder / "pool.npz")
        self.counts, self.descriptors = pool["counts"], pool["descriptors"]
        self.points, self.sizes = pool["points"], pool["sizes"]
        self.real = [
            Features.from_bytes(b) for b in np.load(folder / "real.npy", allow_pickle=True)
        ]
        rng = np.random.default_rng(21)
        self.view_of = rng.integers(0, len(self.counts), photos)
        self.mask_of = rng.integers(0, _MASKS, photos)
        rng = np.random.default_rng(22)
        self.masks = np.concatenate(
            [np.packbits(rng.random((1 << 16, 256), np.float32) < _FLIP, axis=1) for _ in range(16)]
        )
        self.photos = photos

    def descriptors_of(self, n: int, k: int) -> np.ndarray:
        view = self.view_of[n]
        k = min(k, int(self.counts[view]))
        runs = (self.mask_of[n] + np.arange(k)) % _MASKS
        return self.descriptors[view, :k] ^ self.masks[runs]

    def shortlisted(self, shortlisted: int, shard: int, shards: int) -> Any:
        """The photos of one shard (entry ids `shard` + 1 modulo `shards`), in order."""
        for n in range(shard, self.photos, shards):
            if n < len(self.real):
                yield n + 1, self.real[n].descriptors[:shortlisted]
            else:
                yield n + 1, self.descriptors_of(n, shortlisted)

    def signature(self, entry_id: int) -> Any:
        from counterfake.signals.keypoints import Features

        n = entry_id - 1
        if n < len(self.real):
            return self.real[n]
        view = self.view_of[n]
        k = int(self.counts[view])
        w, h = (int(v) for v in self.sizes[view])
        return Features(w, h, self.points[view, :k], self.descriptors_of(n, k))


def _write(
    src: str, folder: Path, photos: int, key_bits: int | None, shards: int, out: Any
) -> None:
    sys.path.insert(0, src)  # this engine's code first, before the editable install's
    from counterfake.index.keypoints import KeypointShortlist
    from counterfake.signals.keypoints import SHORTLISTED

    source = _Photos(folder, photos)
    started = time.perf_counter()
    write = KeypointShortlist.write
    for shard in range(shards):
        write(
            folder / "shards" / str(shard),
            source.shortlisted(SHORTLISTED, shard, shards),
            share_votes=True,
            **({"key_bits": key_bits} if key_bits else {}),
            # as a matcher's bank holds it (the release before had no such setting)
            **({"nearby_keys": True} if "nearby_keys" in signature(write).parameters else {}),
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.send({"write_seconds": time.perf_counter() - started, "write_peak_bytes": peak})


def _status() -> dict[str, int]:
    with open("/proc/self/status") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile")}


def _query(src: str, folder: Path, photos: int, queries: list[tuple[bytes, int]], out: Any) -> None:
    sys.path.insert(0, src)
    import counterfake
    from counterfake.derivatives import verify
    from counterfake.index.keypoints import KeypointShortlist
    from counterfake.signals.keypoints import image_features

    assert counterfake.__file__ is not None and counterfake.__file__.startswith(src)
    source = _Photos(folder, photos)
    features = [image_features(data, query=True) for data, _ in queries]
    folders = sorted((folder / "shards").iterdir())
    alone = [
        verify(source.signature(e), f) is not None
        for f, (_, e) in zip(features, queries, strict=True)
    ]
    for shard in folders:
        for name in ("descriptors.bin", "rows.bin", "checks.bin", "offsets.npy"):
            with (shard / name).open("rb") as fh:  # into the page cache, as much as fits
                while fh.read(1 << 24):
                    pass
    before = _status()
    started = time.perf_counter()
    shortlists = [KeypointShortlist.open(shard) for shard in folders]
    opened = time.perf_counter() - started
    for shortlist in shortlists:  # loads the compiled loops
        shortlist.candidates(features[0].descriptors, _SHORTLIST)
    rows = []
    for n, (query, (_, entry_id)) in enumerate(zip(features, queries, strict=True)):
        if n % 30 == 0:
            print(f"  query {n}", flush=True)
        started = time.perf_counter()
        voted = sorted(
            (-votes, e, number)
            for number, view in enumerate(query.views)
            for shortlist in shortlists
            for e, votes in shortlist.candidates(view.features.descriptors, _SHORTLIST)
        )
        shard_seconds = time.perf_counter() - started
        most = -voted[0][0] if voted else 0.0
        tries: dict[int, list[int]] = {}
        for negated, e, number in voted[:_SHORTLIST]:
            if -negated * _VOTE_SHARE >= most:
                tries.setdefault(e, []).append(number)
        signatures = {e: source.signature(e) for e in tries}  # the store's read, not timed
        started = time.perf_counter()
        verified = [e for e, views in tries.items() if verify(signatures[e], query, views=views)]
        verify_seconds = time.perf_counter() - started
        ranked = sorted(
            (-votes, e)
            for view in query.views
            for shortlist in shortlists
            for e, votes in shortlist.candidates(view.features.descriptors, _RANKED)
        )
        order = list(dict.fromkeys(e for _, e in ranked))
        rows.append(
            {
                "rank": order.index(entry_id) + 1 if entry_id in order else None,
                "shard_seconds": shard_seconds,
                "verify_seconds": verify_seconds,
                "verified": len(tries),
                "shortlisted": entry_id in tries,
                "found": entry_id in verified,
                "false": [e for e in verified if e != entry_id],
            }
        )
    out.send(
        {
            "open_seconds": opened,
            "before": before,
            "after": _status(),
            "alone": alone,
            "rows": rows,
        }
    )


def _run(target: Any, *args: Any) -> dict[str, Any]:
    """`target` in a process of its own (its memory measured alone), its answer."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(*args, child), daemon=True)
    process.start()
    child.close()
    answer: dict[str, Any] = parent.recv()
    process.join()
    return answer


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument("--views", type=int, default=8000)
    parser.add_argument("--sources", type=int, default=60, help="report-half photos queried")
    parser.add_argument("--folder", type=Path, default=None, help="for the shards' files")
    parser.add_argument("--pool", type=Path, default=None, help="the views' file, kept")
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the release before")
    parser.add_argument("--key-bits", type=int, default=None, help="this tree's: by size")
    parser.add_argument("--half", choices=("tune", "report"), default="report")
    parser.add_argument("--shards", type=int, default=1, help="this tree's photos split in")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from counterfake.signals.keypoints import image_features

    paths = sorted(args.corpus.glob("*.jpg"))
    asked = [p for p in paths if half_of(p.name) == args.half][: args.sources]
    other = [p for p in paths if half_of(p.name) != args.half]
    # Other-photo fills come from photos neither protected nor viewed: a derivative holding
    # a protected photo's pixels is that photo's derivative too.
    other, donors = other[:-20], other[-20:]
    originals = [
        _sized(Image.open(p).convert("RGB"), SIDES[i % len(SIDES)]) for i, p in enumerate(asked)
    ]
    folder = Path(tempfile.mkdtemp(prefix="cf-shard-", dir=args.folder))
    try:
        started = time.perf_counter()
        real = [image_features(jpeg(im, 95), query=False).to_bytes() for im in originals]
        np.save(folder / "real.npy", np.array(real, dtype=object), allow_pickle=True)
        if args.pool is None or not args.pool.exists():
            _pool_features(other, args.views, args.pool or folder / "pool.npz")
        if args.pool is not None:
            shutil.copyfile(args.pool, folder / "pool.npz")
        views = len(np.load(folder / "pool.npz")["counts"])
        print(f"{len(real)} sources, {views} views in {time.perf_counter() - started:.0f} s")
        queries = []
        for i, image in enumerate(originals):
            other = Image.open(donors[i % len(donors)]).convert("RGB")
            for f, fraction in enumerate(FRACTIONS):
                fill, chain = FILLS[(i + f) % 3], CHAINS[(i + 2 * f) % 3]
                data, _ = edit(image, other, fraction, fill, chain, seed=100 * i + f)
                queries.append((data, i + 1))
        runs: dict[str, dict[str, Any]] = {}
        names = ("this tree", f"baseline ({args.baseline})")
        # One after the other: two shards would not fit the page cache (nor some disks).
        for name, ref in zip(names, (None, args.baseline), strict=True):
            with engine_src(ref) as src:
                # The baseline's own width, in one shard.
                key_bits, shards = (args.key_bits, args.shards) if ref is None else (None, 1)
                runs[name] = _run(_write, src, folder, args.photos, key_bits, shards)
                print(
                    f"{name}: written in {runs[name]['write_seconds']:.0f} s",
                    flush=True,
                )
                runs[name] |= _run(_query, src, folder, args.photos, queries)
            written = list((folder / "shards").rglob("*"))
            runs[name]["file_bytes"] = sum(f.stat().st_size for f in written if f.is_file())
            settings = json.loads((folder / "shards" / "0" / "shortlist.json").read_text())
            runs[name]["key_bits"] = settings.get("key_bits", 20)
            runs[name]["shards"] = shards
            shutil.rmtree(folder / "shards")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    summary = {name: _summary(run, queries) for name, run in runs.items()}
    table = _table(args.photos, len(queries), summary)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"shortlist-shard-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report_json = {
        "benchmark": "shortlist_shard",
        "photos": args.photos,
        "views": views,
        "half": args.half,
        "queries": len(queries),
        "layouts": summary,
        "runs": runs,
    }
    out.write_text(json.dumps(report_json, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"JSON: {out}")
    return 0


def _summary(run: dict[str, Any], queries: list[tuple[bytes, int]]) -> dict[str, Any]:
    rows = run["rows"]
    shard_ms = [r["shard_seconds"] * 1000 for r in rows]
    total_ms = [(r["shard_seconds"] + r["verify_seconds"]) * 1000 for r in rows]
    by_fraction = {}
    for f, fraction in enumerate(FRACTIONS):
        mine = rows[f :: len(FRACTIONS)]
        alone = run["alone"][f :: len(FRACTIONS)]
        # Of the derivatives verification alone finds: how far down the true source ranks.
        ranks = [r["rank"] for r, a in zip(mine, alone, strict=True) if a]
        by_fraction[str(fraction)] = {
            "recall": sum(r["found"] for r in mine) / len(mine),
            "recall_verification_alone": sum(alone) / len(alone),
            "source_ranked": {
                str(k): sum(r is not None and r <= k for r in ranks) / max(1, len(ranks))
                for k in (16, 64, _RANKED)
            },
        }
    return {
        "key_bits": run["key_bits"],
        "file_gb": run["file_bytes"] / 1e9,
        "write_seconds": run["write_seconds"],
        "write_peak_gb": run["write_peak_bytes"] / 1e9,
        "open_seconds": run["open_seconds"],
        "resident_mapped_gb": (run["after"]["RssFile"] - run["before"]["RssFile"]) / 1e9,
        "resident_own_gb": (run["after"]["RssAnon"] - run["before"]["RssAnon"]) / 1e9,
        "shard_p50_ms": statistics.median(shard_ms),
        "shard_p99_ms": _percentile(shard_ms, 0.99),
        "query_p50_ms": statistics.median(total_ms),
        "query_p99_ms": _percentile(total_ms, 0.99),
        "verified_per_query_median": statistics.median(r["verified"] for r in rows),
        "false_matches": sum(len(r["false"]) for r in rows),
        "recall": sum(r["found"] for r in rows) / len(rows),
        "recall_verification_alone": sum(run["alone"]) / len(rows),
        "by_fraction": by_fraction,
    }


def _table(photos: int, queries: int, summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"One shard of {photos:,} protected photos, {queries} queries, one core",
        "",
        "| engine | key bits | files GB | written s | shard p50 ms | p99"
        " | with verification p50 ms | p99 | verified per query | recall 20 / 40 / 60%"
        " | verification alone | false matches |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        recall = " / ".join(f"{v['recall']:.1%}" for v in s["by_fraction"].values())
        alone = " / ".join(
            f"{v['recall_verification_alone']:.1%}" for v in s["by_fraction"].values()
        )
        lines.append(
            f"| {name} | {s['key_bits']} | {s['file_gb']:.1f} | {s['write_seconds']:.0f}"
            f" | {s['shard_p50_ms']:.0f}"
            f" | {s['shard_p99_ms']:.0f} | {s['query_p50_ms']:.0f} | {s['query_p99_ms']:.0f}"
            f" | {s['verified_per_query_median']:.0f} | {recall} | {alone} | {s['false_matches']} |"
        )
    ours, base = summary.values()
    lines += [
        "",
        "ratios, this tree / baseline:"
        f" shard p50 {ours['shard_p50_ms'] / base['shard_p50_ms']:.2f},"
        f" p99 {ours['shard_p99_ms'] / base['shard_p99_ms']:.2f}; recall"
        f" {ours['recall']:.1%} against {base['recall']:.1%}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
