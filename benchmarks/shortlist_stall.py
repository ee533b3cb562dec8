"""Lookups while a matcher builds its derivative shortlist: none waits for the build.

    python benchmarks/shortlist_stall.py [--photos 30000] [--rounds 2] [--baseline REF] [--fold]

A SQLite store holds a bank of --photos protected photos (synthetic signatures: real corpus
descriptor sets with 15% of their bits flipped, as derivative_scale.py makes them) and a bank
of 10,000 PDQ hashes. In a fresh process per engine and round, a `Matcher` loads the store;
at once one thread asks for derivatives of an upload (the first derivative query, which
needs the shortlist's tables) while the main thread looks up PDQ hashes in a loop until that
query returns. Reported per engine: how long the first derivative query took, how many
lookups were answered meanwhile and the longest of them. The baseline release (`--baseline`,
a git ref run from a temporary worktree; default 903c26f, which built the tables inside the
first derivative query, under the matcher's lock) alternates with this tree, round by round.

With --fold, the stall measured is that of a growing bank instead: once the first derivative
query has returned, an eighth of --photos and 512 more are added to the bank on a copy of the
store, 50 at a time over the first half of --seconds, each batch read by the matcher from the
change log, while derivative queries run back to back on one thread and the main thread looks
up PDQ hashes: the derivative queries' median, 90th percentile, longest and number, the
longest lookup, when the folded tables came in (seen after a derivative query), and the
engine process's peak memory. The
default baseline is then 0f07a83, in which a query after adds rebuilt the whole delta and
folded it inline. Writes benchmarks/results/shortlist-stall-*.json and .md.
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
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from derivatives import engine_src

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "903c26f"  # main before the shortlist was built in the background
FOLD_BASELINE = "0f07a83"  # main before the shortlist folded its delta in the background


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _fill(url: str, corpus: Path, photos: int) -> tuple[list[str], bytes]:
    """The store's two banks; returns some of its PDQ values and an upload to ask about."""
    from counterfake import NewEntry, Store

    images = [Image.open(p).convert("RGB") for p in sorted(corpus.glob("*.jpg"))[:60]]
    store = Store.open(url)
    store.create_bank("photos")
    store.create_bank("hashes")
    values = [secrets.token_hex(32) for _ in range(10_000)]
    store.add_entries("hashes", [NewEntry("pdq", v) for v in values])
    _add_photos(store, _real(images), photos, seed=11)
    store.close()
    return values[:1000], _jpeg(images[0].resize((480, 360)), 80)


def _real(images: list[Image.Image]) -> list[Any]:
    from counterfake.signals.keypoints import image_features

    return [image_features(_jpeg(im, 95), query=False) for im in images]


def _add_photos(store: Any, real: list[Any], photos: int, *, seed: int) -> None:
    """`photos` synthetic signatures added to the bank "photos"."""
    from counterfake import NewEntry
    from counterfake.signals.keypoints import Features

    rng = np.random.default_rng(seed)
    batch: list[NewEntry] = []
    for n in range(photos):
        base, donor = (real[int(i)] for i in rng.integers(len(real), size=2))
        k = min(len(base), len(donor))
        bits = np.unpackbits(donor.descriptors[:k], axis=1)
        bits ^= (rng.random(bits.shape) < 0.15).astype(np.uint8)
        points = (base.points[:k] + rng.normal(0, 3, (k, 2)).astype(np.float32)).clip(0)
        signature = Features(base.width, base.height, points, np.packbits(bits, axis=1))
        data = signature.to_bytes()
        batch.append(NewEntry("derivative", Features.from_bytes(data).id, payload=data))
        if len(batch) == 2000 or n == photos - 1:
            store.add_entries("photos", batch)
            batch = []


def _engine(src: str, url: str, values: list[str], upload: bytes, out: Any) -> None:
    """One engine's process: load, then the first derivative query against PDQ lookups."""
    sys.path.insert(0, src)
    from counterfake import Matcher, Store
    from counterfake.signals.keypoints import image_features

    query = image_features(upload, query=True)
    matcher = Matcher(Store.open(url))
    done, took = threading.Event(), []

    def first() -> None:
        started = time.perf_counter()
        matcher.derivatives(query)
        took.append(time.perf_counter() - started)
        done.set()

    asking = threading.Thread(target=first)
    asking.start()
    waits = _lookups(matcher, values, done)
    asking.join()
    out.send(
        {
            "first_derivative_s": round(took[0], 2),
            "lookups_meanwhile": len(waits),
            "longest_lookup_ms": round(max(waits, default=0.0) * 1e3, 1),
            "lookup_p50_ms": round(float(np.median(waits)) * 1e3, 3) if waits else None,
        }
    )


def _lookups(matcher: Any, values: list[str], done: threading.Event) -> list[float]:
    """PDQ lookups one after another until `done`: how long each took."""
    waits = []
    while not done.is_set():
        started = time.perf_counter()
        matcher.match_signal("pdq", values[len(waits) % len(values)])
        waits.append(time.perf_counter() - started)
    return waits


def _fold_engine(
    src: str,
    url: str,
    values: list[str],
    upload: bytes,
    corpus: str,
    added: int,
    seconds: float,
    out: Any,
) -> None:
    """One engine's process for --fold: load, first derivative query, adds past an eighth,
    then derivative queries back to back against PDQ lookups."""
    sys.path.insert(0, src)
    from counterfake import Matcher, Store
    from counterfake.signals.keypoints import image_features

    query = image_features(upload, query=True)
    store = Store.open(url)
    matcher = Matcher(store)
    matcher.derivatives(query)  # the first tables
    shortlist = matcher._shortlists["photos"]
    tables = shortlist._tables
    images = [Image.open(p).convert("RGB") for p in sorted(Path(corpus).glob("*.jpg"))[:60]]
    real = _real(images)
    took: list[float] = []
    folded: list[float] = []
    done = threading.Event()
    began = time.perf_counter()

    def add() -> None:  # batches of 50, over the first half of the window
        batches = -(-added // 50)
        for n in range(batches):
            _add_photos(store, real, min(50, added - 50 * n), seed=12 + n)
            matcher.refresh()
            time.sleep(max(0.0, began + (n + 1) * seconds / 2 / batches - time.perf_counter()))

    def ask() -> None:
        while time.perf_counter() - began < seconds:
            started = time.perf_counter()
            matcher.derivatives(query)
            took.append(time.perf_counter() - started)
            if not folded and shortlist._tables not in (None, tables):
                folded.append(time.perf_counter() - began)
        done.set()

    adding = threading.Thread(target=add)
    adding.start()
    asking = threading.Thread(target=ask)
    asking.start()
    waits = _lookups(matcher, values, done)
    asking.join()
    adding.join()
    out.send(
        {
            "derivative_p50_s": round(float(np.median(took)), 2),
            "derivative_p90_s": round(float(np.percentile(took, 90)), 2),
            "longest_derivative_s": round(max(took), 2),
            "derivative_queries": len(took),
            "lookups_meanwhile": len(waits),
            "longest_lookup_ms": round(max(waits, default=0.0) * 1e3, 1),
            "tables_folded_after_s": round(folded[0], 1) if folded else None,
            "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--photos", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", default=None, help="git ref of the baseline release")
    parser.add_argument("--fold", action="store_true", help="the fold of the delta instead")
    parser.add_argument("--seconds", type=float, default=30.0, help="--fold: queries for this")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.baseline = args.baseline or (FOLD_BASELINE if args.fold else BASELINE)
    folder = Path(tempfile.mkdtemp(prefix="cf-shortlist-stall-"))
    url = f"sqlite:///{folder}/bank.db"
    values, upload = _fill(url, args.corpus, args.photos)
    names = ("this tree", f"baseline ({args.baseline})")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    context = multiprocessing.get_context("spawn")
    with engine_src(None) as ours, engine_src(args.baseline) as theirs:
        sources = dict(zip(names, (ours, theirs), strict=True))
        for turn in range(args.rounds):
            order = names if turn % 2 == 0 else names[::-1]
            for name in order:
                parent, child = context.Pipe()
                if args.fold:  # adds go to a copy: every round starts from the same store
                    shutil.copy(folder / "bank.db", folder / "round.db")
                    copy = f"sqlite:///{folder}/round.db"
                    extra = (str(args.corpus), args.photos // 8 + 512, args.seconds)
                    process = context.Process(
                        target=_fold_engine,
                        args=(sources[name], copy, values, upload, *extra, child),
                    )
                else:
                    process = context.Process(
                        target=_engine, args=(sources[name], url, values, upload, child)
                    )
                process.start()
                child.close()
                runs[name].append(parent.recv())
                process.join()
                print(f"{name}, round {turn + 1}: {runs[name][-1]}", flush=True)
    if args.fold:
        lines = [
            f"{args.photos:,} protected photos and {args.photos // 8 + 512:,} added in batches of"
            f" 50 over {args.seconds / 2:g} s, 10,000 PDQ hashes; derivative queries for"
            f" {args.seconds:g} s, PDQ lookups meanwhile (per round)",
            "",
            "| engine | derivative query p50 s | p90 s | longest s | derivative queries"
            " | lookups meanwhile | longest lookup ms | folded tables in after s | peak GB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        shown = 8
    else:
        lines = [
            f"{args.photos:,} protected photos, 10,000 PDQ hashes; first derivative query after"
            " a load, PDQ lookups meanwhile (per round)",
            "",
            "| engine | first derivative query s | lookups meanwhile | longest lookup ms |",
            "|---|---|---|---|",
        ]
        shown = 3
    for name in names:
        cells = [" / ".join(str(r[key]) for r in runs[name]) for key in runs[name][0]][:shown]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    table = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"shortlist-stall-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {"benchmark": "shortlist_stall", "photos": args.photos, "fold": args.fold, **runs}
    out.write_text(json.dumps(record))
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}")
    shutil.rmtree(folder, ignore_errors=True)  # the store and its copy: gigabytes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
