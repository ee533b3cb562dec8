"""Derivative matching at scale: query latency and memory with many protected photos.

    python benchmarks/derivative_scale.py [--photos 100000] [--queries 200] [--baseline REF]
                                          [--shards N]

The bank, in a real store (SQLite in a temporary folder) read by a real `Matcher`: signatures
of the corpus photos (`counterfake protect` on each, 20 held out), then synthetic photos up to
--photos: each a real signature with its keypoints shuffled between photos' descriptor sets,
15% of descriptor bits flipped and positions jittered, so that descriptor statistics (what the
shortlist's buckets see) stay those of real photos while no synthetic photo matches a query.
The matcher holds the shortlist (each signature's first keypoints) in memory and reads whole
signatures from the store for the candidates it verifies.

Queries: derivatives of the real photos (a lower-central 30% block replaced by another photo,
JPEG q50, resize 0.6, crop 8%). Two engines over the same store, each in its own process with
its own matcher: this tree and the baseline release (`--baseline`, a git ref, checked out in a
temporary worktree). Each computes its query features beforehand, as the CLI does, and
measures the recall of verification against each query's true source alone (no shortlist):
the most the shortlist could deliver. Then they take turns, ten queries at a time, the first
to go alternating: per query, on one core, `Matcher.derivatives` (shortlist, the store read,
verification). Then, this tree only, the delta tier: the held-out photos added to the store
one by one, each followed by a refresh and a query for its derivative: how long until an add
is matched.

--shards N adds a third engine in the same turns: this tree's matcher holding no shortlist,
asking N real `counterfake shard` processes over the same store (unix sockets), as a service
worker given `COUNTERFAKE_SHARDS` does. Its memory is the worker's; the shards' resident
memory is reported beside it (each shard process's whole RSS, interpreter included).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import io
import json
import multiprocessing
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

from derivatives import engine_src

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "637a54a"  # main before the compiled shortlist loop
_TURN = 10  # queries per engine per turn


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


def _engine(
    src: str,
    url: str,
    photos: int,
    queries: list[tuple[bytes, int]],
    conn: Connection,
    shards: tuple[list[str], str] | None = None,
) -> None:
    """One engine's process: its matcher over the store (asking `shards`, addresses and key,
    if given), then queries by turns on request; ("adds", [(signature, derivative)]) runs the
    delta-tier phase."""
    sys.path.insert(0, src)  # this engine's code first, before the editable install's
    import counterfake
    from counterfake import Matcher, NewEntry, Store
    from counterfake._memory import release_freed_memory
    from counterfake.derivatives import verify
    from counterfake.signals.keypoints import Features, image_features

    assert counterfake.__file__ is not None and counterfake.__file__.startswith(src)
    store = Store.open(url)
    features = [image_features(data, query=True) for data, _ in queries]
    release_freed_memory()
    before = _rss()
    if shards is None:
        matcher = Matcher(store)
    else:
        from counterfake.shards import Shards

        matcher = Matcher(store, shards=Shards(*shards, timeout=120))
    # The first query builds the shortlist's tables (and loads the compiled loops): what a
    # matcher holds, and its peak, are measured after it; it is not timed.
    started = time.perf_counter()
    matcher.derivatives(features[0])
    built = time.perf_counter() - started
    release_freed_memory()
    per_photo = (_rss() - before) / photos
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sources = dict(store.signatures("scale", sorted({e for _, e in queries})))
    alone = sum(
        verify(Features.from_bytes(sources[entry_id]), query) is not None
        for query, (_, entry_id) in zip(features, queries, strict=True)
    ) / len(queries)
    conn.send(
        {
            "bytes_per_photo": per_photo,
            "peak_bytes": peak,
            "first_query_seconds": built,
            "recall_verification_alone": alone,
        }
    )
    while (asked := conn.recv()) is not None:
        kind, items = asked
        out = []
        if kind == "queries":
            for n in items:
                started = time.perf_counter()
                matches = matcher.derivatives(features[n])
                seconds = time.perf_counter() - started
                out.append((seconds, any(m.entry_id == queries[n][1] for m in matches)))
        else:
            for signature, data in items:
                query = image_features(data, query=True)
                entry = NewEntry("derivative", Features.from_bytes(signature).id, payload=signature)
                (result,) = store.add_entries("scale", [entry])
                started = time.perf_counter()
                matcher.refresh()
                matched = any(m.entry_id == result.entry_id for m in matcher.derivatives(query))
                out.append((time.perf_counter() - started, matched))
        conn.send(out)
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the baseline release")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--shards", type=int, default=0, help="also this tree over N shards")
    args = parser.parse_args()
    from counterfake import NewEntry, Store
    from counterfake.signals.keypoints import Features, image_features

    def entry(features: Features) -> NewEntry:
        signature = features.to_bytes()
        return NewEntry("derivative", Features.from_bytes(signature).id, payload=signature)

    rng = np.random.default_rng(11)
    paths = sorted(args.corpus.glob("*.jpg"))
    images = [Image.open(p).convert("RGB") for p in paths]
    real = [image_features(_jpeg(im, 95), query=False) for im in images]
    held_out = list(range(len(real) - 20, len(real)))
    banked = [i for i in range(len(real)) if i not in held_out]
    print(f"{len(real)} real signatures", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="cf-derivative-scale-"))
    url = f"sqlite:///{folder}/bank.db"
    store = Store.open(url)
    store.create_bank("scale")
    started = time.perf_counter()
    added = store.add_entries("scale", [entry(real[i]) for i in banked])
    entry_of = {i: a.entry_id for i, a in zip(banked, added, strict=True)}
    batch: list[NewEntry] = []
    for n in range(len(banked), args.photos):
        base = real[int(rng.integers(len(real)))]
        donor = real[int(rng.integers(len(real)))]
        k = min(len(base), len(donor))
        bits = np.unpackbits(donor.descriptors[:k], axis=1)
        bits ^= (rng.random(bits.shape) < 0.15).astype(np.uint8)
        points = base.points[:k] + rng.normal(0, 3, (k, 2)).astype(np.float32)
        batch.append(
            entry(Features(base.width, base.height, points.clip(0), np.packbits(bits, axis=1)))
        )
        if len(batch) == 2000:
            store.add_entries("scale", batch)
            batch = []
        if n % 20_000 == 0:
            print(f"  {n:,} photos", flush=True)
    if batch:
        store.add_entries("scale", batch)
    store.close()
    filled = time.perf_counter() - started
    print(f"{args.photos:,} photos stored in {filled:.0f} s", flush=True)

    queries = []
    for q in range(args.queries):
        i = banked[q % len(banked)]
        queries.append((_derivative(images[i], images[(i + 7) % len(images)]), entry_of[i]))
    adds = [
        (real[i].to_bytes(), _derivative(images[i], images[(i + 7) % len(images)]))
        for i in held_out
    ]
    names: tuple[str, ...] = ("this tree", f"baseline ({args.baseline})")
    sharded = f"this tree, {args.shards} shards" if args.shards else ""
    if sharded:
        names += (sharded,)
    context = multiprocessing.get_context("spawn")
    with (
        engine_src(None) as ours,
        engine_src(args.baseline) as theirs,
        _shard_processes(ours, url, args.shards, folder) as (shards, shard_rss),
    ):
        pipes, engines, facts = {}, [], {}
        # One after the other: a matcher's load peaks at over three times what it then holds.
        for name, src in zip(names, (ours, theirs, ours), strict=False):
            parent, child = context.Pipe()
            process = context.Process(
                target=_engine,
                args=(src, url, args.photos, queries, child, shards if name == sharded else None),
                daemon=True,
            )
            process.start()
            child.close()  # so that a worker that dies is an EOFError here, not a wait
            pipes[name] = parent
            engines.append(process)
            facts[name] = parent.recv()
            kb = facts[name]["bytes_per_photo"] / 1024
            print(f"{name}: matcher loaded, {kb:.1f} KB per photo", flush=True)
        timed: dict[str, list[tuple[float, bool]]] = {name: [] for name in names}
        for turn, first in enumerate(range(0, len(queries), _TURN)):
            chunk = list(range(first, min(first + _TURN, len(queries))))
            for name in names if turn % 2 == 0 else reversed(names):
                pipes[name].send(("queries", chunk))
                timed[name].extend(pipes[name].recv())
        pipes[names[0]].send(("adds", adds))
        visible = pipes[names[0]].recv()
        for name in names:
            pipes[name].send(None)
        for process in engines:
            process.join()
        shards_rss = shard_rss()
    shutil.rmtree(folder, ignore_errors=True)

    runs = {
        name: _summary([s for s, _ in timed[name]], sum(f for _, f in timed[name]) / len(queries))
        | facts[name]
        for name in names
    }
    run, base = runs[names[0]], runs[names[1]]
    add_seconds = sorted(v for v, _ in visible)
    report = {
        "benchmark": "derivative_scale",
        "photos": args.photos,
        "queries": args.queries,
        "store_fill_seconds": filled,
        "run": run,
        "baseline": {"ref": args.baseline} | base,
        "add_to_matched_seconds_median": statistics.median(add_seconds),
        "add_to_matched_seconds_max": add_seconds[-1],
        "adds_matched": sum(m for _, m in visible),
        "adds": len(visible),
    }
    if sharded:
        report["sharded"] = runs[sharded] | {
            "shards": args.shards,
            "shard_rss_bytes": shards_rss,
            "shard_rss_bytes_per_photo": sum(shards_rss) / args.photos,
        }

    def row(name: str, r: dict[str, float]) -> str:
        return (
            f"| {name} | {r['bytes_per_photo'] / 1024:.1f} | {r['peak_bytes'] / 1e9:.1f}"
            f" | {r['first_query_seconds']:.1f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f}"
            f" | {r['p99_ms']:.0f} | {r['recall']:.1%} | {r['recall_verification_alone']:.1%}"
        )

    table = "\n".join(
        [
            f"{args.photos:,} protected photos, {len(queries)} queries, one core",
            "",
            "| engine | KB per photo (RSS) | peak GB | first query s | query p50 ms | p90 ms"
            " | p99 ms | recall | recall of verification alone | add to matched: median / max s |",
            "|---|---|---|---|---|---|---|---|---|---|",
            row(names[0], run) + f" | {report['add_to_matched_seconds_median']:.2f} /"
            f" {report['add_to_matched_seconds_max']:.2f}"
            f" ({report['adds_matched']} of {len(visible)} matched) |",
            row(names[1], base) + " | |",
            *(
                [
                    row(sharded, runs[sharded]) + " | |",
                    "",
                    f"the {args.shards} shards' resident memory: "
                    + ", ".join(f"{b / 1e9:.2f} GB" for b in shards_rss)
                    + f" ({sum(shards_rss) / args.photos / 1024:.1f} KB per photo in all)",
                ]
                if sharded
                else []
            ),
            "",
            f"ratios, this tree / baseline: p50 {run['p50_ms'] / base['p50_ms']:.2f},"
            f" p99 {run['p99_ms'] / base['p99_ms']:.2f}",
            *(
                [
                    f"ratios, {args.shards} shards / this tree: p50"
                    f" {runs[sharded]['p50_ms'] / run['p50_ms']:.2f},"
                    f" p99 {runs[sharded]['p99_ms'] / run['p99_ms']:.2f}"
                ]
                if sharded
                else []
            ),
        ]
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"derivative-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"JSON: {out}")
    return 0


@contextmanager
def _shard_processes(
    src: str, url: str, count: int, folder: Path
) -> Iterator[tuple[tuple[list[str], str] | None, Callable[[], list[int]]]]:
    """`count` real `counterfake shard` processes of `src` over the store, once they answer:
    (their addresses and key, a function giving each one's resident bytes now)."""
    if not count:
        yield None, list
        return
    key = secrets.token_urlsafe(16)
    env = {**os.environ, "COUNTERFAKE_DATABASE_URL": url, "COUNTERFAKE_SHARD_KEY": key}
    env["PYTHONPATH"] = src
    addresses = [f"unix:{folder / f'shard-{k}.sock'}" for k in range(count)]
    run = "import sys; from counterfake.cli import main; sys.exit(main())"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", run, "shard", f"{k}/{count}", "--listen", address], env=env
        )
        for k, address in enumerate(addresses)
    ]

    def rss() -> list[int]:
        out = []
        for process in processes:
            with open(f"/proc/{process.pid}/statm") as fh:
                out.append(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
        return out

    try:
        while not all((folder / f"shard-{k}.sock").exists() for k in range(count)):
            if any(p.poll() is not None for p in processes):
                raise SystemExit("a shard process exited while loading")
            time.sleep(0.5)
        print(f"{count} shards answering", flush=True)
        yield (addresses, key), rss
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def _summary(latencies: list[float], recall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "recall": recall,
    }


if __name__ == "__main__":
    sys.exit(main())
