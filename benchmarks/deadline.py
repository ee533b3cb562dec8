"""What our own deadline on PostgreSQL calls costs: single-signal adds with and without it.

    python benchmarks/deadline.py [--database-url postgresql://...] [--pairs 5] [--seconds 15]

Every wait of the driver for PostgreSQL (a statement, a commit, the pool's ping) is given a
time limit (`store/_deadline.py`); a write of one signal waits about five times. Threads add
one signal at a time through one `Store` for `--seconds`, with the deadline (35 s a wait) and
without it (`statement_timeout` 0: the baseline, the same code with no limit installed),
alternating in `--pairs` pairs so that the machine's drift falls on both. Reported: adds a
second of each run, the ratio per pair and its median. Writes JSON and a table to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from counterfake import NewEntry, Store, load_settings

RESULTS = Path(__file__).resolve().parent / "results"


def _adds_per_second(url: str, timeout: float, threads: int, seconds: float) -> float:
    bank = f"deadline_{secrets.token_hex(4)}"
    with Store.open(url, settings=load_settings(statement_timeout=timeout)) as store:
        store.create_bank(bank)
        done = [0] * threads
        stop = threading.Event()

        def add(n: int) -> None:
            while not stop.is_set():
                store.add_entries(bank, [NewEntry("pdq", secrets.token_hex(32), source="b")])
                done[n] += 1

        workers = [threading.Thread(target=add, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        time.sleep(1)  # warm: the pool fills
        before, started = sum(done), time.perf_counter()
        time.sleep(seconds)
        rate = (sum(done) - before) / (time.perf_counter() - started)
        stop.set()
        for worker in workers:
            worker.join()
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    pairs: list[dict[str, float]] = []
    for number in range(args.pairs):
        order = [("without", 0.0), ("with", 30.0)]
        if number % 2:
            order.reverse()
        pair = {
            name: _adds_per_second(args.database_url, timeout, args.threads, args.seconds)
            for name, timeout in order
        }
        pair["ratio"] = pair["with"] / pair["without"]
        pairs.append(pair)
        print(f"pair {number + 1}: {pair}", flush=True)
    summary: dict[str, Any] = {
        "threads": args.threads,
        "seconds": args.seconds,
        "pairs": pairs,
        "median_without": statistics.median(p["without"] for p in pairs),
        "median_with": statistics.median(p["with"] for p in pairs),
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
    }
    lines = [
        f"Single-signal adds on PostgreSQL, {args.threads} threads, {args.seconds:g} s a run.",
        "",
        "| pair | without deadline (baseline), adds/s | with deadline, adds/s | ratio |",
        "|---|---|---|---|",
    ]
    for number, pair in enumerate(pairs, 1):
        lines.append(f"| {number} | {pair['without']:.0f} | {pair['with']:.0f} | "
                     f"{pair['ratio']:.2f} |")  # fmt: skip
    lines.append(
        f"| median | {summary['median_without']:.0f} | {summary['median_with']:.0f} | "
        f"{summary['median_ratio']:.2f} |"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"deadline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(summary, indent=2))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
