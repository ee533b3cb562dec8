"""A matcher that follows a bank while it grows, against one started on the grown bank.

    python benchmarks/catch_up.py [--entries 100000] [--lookups 5000]

A bank is filled through the store in transactions of 10,000 PDQ entries while two matchers,
loaded when the bank was empty, follow the change log: one as the CLI does (it catches up in
one `refresh()` afterwards), one as a service worker does (`follow()`: a background thread
reads the log and rebuilds grown indexes; it is done when it has caught up and, after a quiet
spell, folded its last adds into the tables). The baseline is a matcher started afterwards on
the same bank (a restarted worker). Reported: catch-up seconds, load seconds, and the median
lookup time of each over the same queries (half exact hits, half misses; the baseline measured
before and after the others, and averaged). Writes JSON and a table to benchmarks/results/.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from counterfake import Matcher, NewEntry, Store

RESULTS = Path(__file__).resolve().parent / "results"


def _lookups(matcher: Matcher, queries: list[str]) -> float:
    times = []
    for query in queries:
        started = time.perf_counter()
        matcher.match_signal("pdq", query)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=5_000)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    values = [rng.bytes(32).hex() for _ in range(args.entries)]
    queries = [
        values[i] if i % 2 else rng.bytes(32).hex() for i in range(min(args.lookups, args.entries))
    ]
    with tempfile.TemporaryDirectory(prefix="counterfake-catch-up-") as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'counterfake.db'}")
        store.create_bank("grows")
        followed = Matcher(store, refresh_interval=3600)
        background = Matcher(store)
        background.follow()
        for start in range(0, args.entries, 10_000):
            store.add_entries("grows", [NewEntry("pdq", v) for v in values[start : start + 10_000]])
        filled = time.perf_counter()
        while background.sizes().get("pdq") != args.entries or not background.caught_up:
            time.sleep(0.01)
        background_caught_up = time.perf_counter() - filled
        while getattr(background._hamming["pdq"]["grows"], "pending", 0):
            time.sleep(0.05)
        background_settled = time.perf_counter() - filled
        started = time.perf_counter()
        followed.refresh()
        catch_up = time.perf_counter() - started
        started = time.perf_counter()
        restarted = Matcher(store, refresh_interval=3600)
        load = time.perf_counter() - started
        assert followed.sizes() == restarted.sizes() == {"pdq": args.entries}
        restarted_ms = _lookups(restarted, queries) * 1000 / 2
        followed_ms = _lookups(followed, queries) * 1000
        background_ms = _lookups(background, queries) * 1000
        restarted_ms += _lookups(restarted, queries) * 1000 / 2
        background.stop()
        kinds = {
            "followed": type(followed._hamming["pdq"]["grows"]).__name__,
            "background": type(background._hamming["pdq"]["grows"]).__name__,
            "restarted": type(restarted._hamming["pdq"]["grows"]).__name__,
        }
        store.close()
    report: dict[str, Any] = {
        "benchmark": "catch_up",
        "entries": args.entries,
        "followed": {
            "catch_up_s": catch_up,
            "lookup_p50_ms": followed_ms,
            "index": kinds["followed"],
        },
        "background": {
            "caught_up_s": background_caught_up,
            "settled_s": background_settled,
            "lookup_p50_ms": background_ms,
            "index": kinds["background"],
        },
        "restarted": {"load_s": load, "lookup_p50_ms": restarted_ms, "index": kinds["restarted"]},
        "lookup_ratio_followed_vs_restarted": followed_ms / restarted_ms,
        "lookup_ratio_background_vs_restarted": background_ms / restarted_ms,
    }
    table = "\n".join(
        [
            f"| {args.entries:,} entries | ready after | lookup p50 | index |",
            "|---|---|---|---|",
            f"| followed while filled, caught up on demand (CLI) | {catch_up:.2f} s catch-up"
            f" | {followed_ms:.3f} ms | {kinds['followed']} |",
            f"| followed in the background (service worker) | caught up"
            f" {background_caught_up:.2f} s, settled {background_settled:.2f} s after the last"
            f" write | {background_ms:.3f} ms | {kinds['background']} |",
            f"| restarted (baseline) | {load:.2f} s load | {restarted_ms:.3f} ms"
            f" | {kinds['restarted']} |",
            f"\nlookup time against restarted: on demand {followed_ms / restarted_ms:.2f}x,"
            f" background {background_ms / restarted_ms:.2f}x",
        ]
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"catch-up-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
