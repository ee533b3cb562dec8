"""Lookups while a large bank grows: none stalls while the index is rebuilt.

    python benchmarks/index_stall.py --size 10M [--seconds 90] [--rate 1000] [--out FILE]
                                     [--store FILE]  (kept and reused: filling takes minutes)
                                     [--no-quiet-spell]

A SQLite store holds one bank of --size PDQ entries (filled in bulk, as index_sync.py does). A
Matcher loads it and follows the change log, as a service worker does. Another process adds
--rate entries a second (batches of 50) for the whole run, except for a 5-second pause a third
of the way in: the quiet spell in which the follower folds the delta into the tables on its
background thread (`--no-quiet-spell`: adds throughout, so that only the growth rule
rebuilds, as under adds that never stop). Meanwhile one thread of this process looks up
random hashes in a loop and records each lookup's latency.

Reported: lookup p50 / p99 / max over the run, within the rebuilds (from the builder's start
to its swap, watched every millisecond), within the folds among them (a rebuild after which
the tables hold more; the others give the delta tables of its own) and minute by minute.
The baseline, in the same run, is the index built afresh on the calling thread from what
the matcher holds at the end, which is what every rebuild cost before the delta was folded
instead (and what a lookup behind a build on the calling thread would wait); a fold's own
time is in the folds column.
Target (issue 18): lookup p99 <= 5 ms in-process at 10M entries with steady adds.
Writes benchmarks/results/index-stall-*.json and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from counterfake import ImageHashes, Matcher, NewEntry, Store
from counterfake.index.mih import MultiIndexHammingIndex

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_sync import _fill, _hexes

RESULTS = Path(__file__).resolve().parent / "results"


def _writer(url: str, rate: float, seconds: float, pause_at: float, stop: Any) -> None:
    """Adds at a steady rate in batches of 50, silent for 5 s at `pause_at`."""
    rng = np.random.default_rng()  # new values on every run, also over a kept store
    with Store.open(url) as store:
        started = time.monotonic()
        sent = 0
        while not stop.is_set() and time.monotonic() - started < seconds:
            elapsed = time.monotonic() - started
            if pause_at <= elapsed < pause_at + 5:
                time.sleep(0.05)
                continue
            due = int(elapsed * rate)
            if sent < due:
                values = _hexes(rng.integers(0, 2**64 - 1, size=(50, 4), dtype=np.uint64))
                store.add_entries("big", [NewEntry("pdq", v, quality=100) for v in values])
                sent += 50
            else:
                time.sleep(0.005)


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max": round(ordered[-1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10M")
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--quiet-spell", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    size = int(float(args.size.rstrip("MK")) * (1e6 if args.size.endswith("M") else 1e3))
    path = args.store or Path(tempfile.mkdtemp(prefix="index-stall-")) / "store.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        print(f"filling {size:,} entries ...", flush=True)
        _fill(url, size, np.random.default_rng(0))

    store = Store.open(url)
    started = time.monotonic()
    matcher = Matcher(store)
    query = ImageHashes(0, 0, "bench", {"pdq": "0" * 64}, 100)
    matcher.match(query)
    matcher.follow()
    print(f"loaded in {time.monotonic() - started:.1f} s; running {args.seconds:.0f} s", flush=True)

    builds: list[tuple[float, float]] = []  # the background rebuilds, start and end
    folds: list[bool] = []  # each rebuild's kind: a fold (the tables grew) or a seal
    lookups: list[tuple[float, float]] = []  # start, milliseconds
    done = threading.Event()

    def tabled() -> int:
        return int(getattr(next(iter(matcher._hamming["pdq"].values())), "tabled", 0))

    def watch() -> None:
        began, tabled_then = None, 0
        while not done.is_set():
            building = matcher._builder is not None  # the follower's rebuild in progress
            now = time.monotonic()
            if building and began is None:
                began, tabled_then = now, tabled()
            elif not building and began is not None:
                builds.append((began, now))
                folds.append(tabled() > tabled_then)
                began = None
            time.sleep(0.001)

    def look() -> None:
        codes = np.random.default_rng(5).integers(0, 2**64 - 1, size=(20_000, 4), dtype=np.uint64)
        values = _hexes(codes)
        n = 0
        while not done.is_set():
            hashes = ImageHashes(0, 0, "bench", {"pdq": values[n % len(values)]}, 100)
            sent = time.monotonic()
            matcher.match(hashes)
            lookups.append((sent, (time.monotonic() - sent) * 1000))
            n += 1

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    writer = context.Process(
        target=_writer,
        args=(url, args.rate, args.seconds, args.seconds / 3 if args.quiet_spell else 1e9, stop),
    )
    threads = [threading.Thread(target=watch), threading.Thread(target=look)]
    run_started = time.monotonic()
    writer.start()
    for thread in threads:
        thread.start()
    writer.join(args.seconds + 60)
    time.sleep(2)
    done.set()
    stop.set()
    for thread in threads:
        thread.join()
    run_seconds = time.monotonic() - run_started
    held = matcher.sizes().get("pdq", 0)
    matcher.stop()

    during = [ms for at, ms in lookups if any(b <= at <= e for b, e in builds)]
    outside = [ms for at, ms in lookups if not any(b <= at <= e for b, e in builds)]
    fold_spans = [span for span, fold in zip(builds, folds, strict=True) if fold]
    during_folds = [ms for at, ms in lookups if any(b <= at <= e for b, e in fold_spans)]
    # The baseline: the index built afresh on the calling thread.
    index = next(iter(matcher._hamming["pdq"].values()))
    ids, codes = index.arrays()
    began = time.monotonic()
    MultiIndexHammingIndex(ids, codes, merge=False)
    inline_s = time.monotonic() - began
    in_store = store.get_bank("big").active_entries  # what the matcher should hold
    store.close()

    result = {
        "size": size,
        "held_at_end": held,
        "store_active_at_end": in_store,
        "seconds": round(run_seconds, 1),
        "add_rate": args.rate,
        "rebuilds": [round(e - b, 2) for b, e in builds],
        "folds": [round(e - b, 2) for b, e in fold_spans],
        "seals": len(builds) - len(fold_spans),
        "lookups_all": _percentiles([ms for _, ms in lookups]),
        "lookups_during_rebuild": _percentiles(during),
        "lookups_during_fold": _percentiles(during_folds),
        "lookups_outside_rebuild": _percentiles(outside),
        "lookups_by_minute": [
            _percentiles(
                [ms for at, ms in lookups if minute <= (at - run_started) / 60 < minute + 1]
            )
            for minute in range(int(run_seconds // 60) + 1)
        ],
        "baseline_inline_rebuild_s": round(inline_s, 2),
        # The slowest lookups: seconds into the run, milliseconds, seconds after a rebuild's end.
        "slowest": [
            (
                round(at - run_started, 2),
                round(ms, 1),
                [round(at - e, 2) for _, e in builds],
            )
            for at, ms in sorted(lookups, key=lambda item: -item[1])[:8]
        ],
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"index-stall-{args.size}.json"
    out.write_text(json.dumps(result, indent=2))
    print(
        "| engine | lookups | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {name} | {r.get('n', 0):,} | {r.get('p50', '-')} | {r.get('p99', '-')}"
            f" | {r.get('max', '-')} |\n"
            for name, r in (
                ("background rebuild: whole run", result["lookups_all"]),
                ("background rebuild: during a rebuild", result["lookups_during_rebuild"]),
                ("background rebuild: during a fold", result["lookups_during_fold"]),
                ("background rebuild: outside rebuilds", result["lookups_outside_rebuild"]),
            )
        )
        + f"| baseline: built afresh on the calling thread | - | - | - | {inline_s * 1000:.0f} |\n"
    )
    print(
        f"folds (s): {result['folds']}; delta tables given: {result['seals']};"
        f" entries held at the end: {held:,} (the store's: {in_store:,})"
    )
    print(
        "lookups minute by minute, p50 / p99 ms: "
        + ", ".join(
            f"{m.get('p50', '-')} / {m.get('p99', '-')}" for m in result["lookups_by_minute"]
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
