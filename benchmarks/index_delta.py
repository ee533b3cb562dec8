"""Lookups as the delta of a large index grows under steady adds, and when a matcher folds it.

    python benchmarks/index_delta.py [--size 10M] [--rate 1000] [--lookups 2000] [--out FILE]

A multi-index of --size random 256-bit codes (built as a matcher builds it, `merge=False`)
takes adds into its delta until the matcher rebuilds it. Measured in one process, one thread:
lookup p50 / p99 (a code one bit away from a held one, radius 31) with 0 to 1,250,000 codes
in the delta, scanned linearly (as ff1f243 and every release before it searched it) and with
tables of its own (this tree's `rebuilder(seal=True)`, done each time the scanned tail reaches
`MAX_SCANNED`), and the two ways to remake the tables with them: built afresh (406b82e and
922781f) and the delta folded into copies of the tables (`rebuilder()`). Then, for each rule
of when to rebuild, at --rate adds a second: the largest delta, the lookups just before the
rebuild, how often it rebuilds, each rebuild's time and the share of a core its builder
takes. Baselines: 406b82e (a build once the delta holds an eighth of the tables), 922781f (a
build at 262,144 codes) and ff1f243 (a fold at 262,144, the delta scanned); this tree's rule
is asked of `counterfake.matching._due` itself.
Target (issue 18): lookup p99 <= 5 ms in-process at 10M entries with steady adds.
Writes benchmarks/results/index-delta-*.json and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from counterfake.index.mih import MultiIndexHammingIndex
from counterfake.matching import _due

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (0, 65_536, 262_144, 625_000, 1_250_000)


class _Sized:
    """What `_due` reads of an index: codes in its tables and in its delta."""

    def __init__(self, tabled: int, pending: int) -> None:
        self.tabled, self.pending = tabled, pending


def _this_tree_limit(size: int) -> int:
    """The smallest delta at which this tree's matcher rebuilds an index of `size` codes."""
    low, high = 1, size
    while low < high:
        middle = (low + high) // 2
        if _due(_Sized(size, middle), idle=False):  # type: ignore[arg-type]
            high = middle
        else:
            low = middle + 1
    return low


def _lookups(index: MultiIndexHammingIndex, queries: np.ndarray) -> dict[str, float]:
    took = []
    for row in range(queries.shape[0]):
        started = time.perf_counter()
        index.search(queries[row : row + 1], 31)
        took.append(time.perf_counter() - started)
    ms = np.array(took) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


def _size(text: str) -> int:
    return int(float(text.rstrip("MmKk")) * {"M": 10**6, "K": 10**3}.get(text[-1].upper(), 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10M")
    parser.add_argument("--rate", type=float, default=1000, help="adds a second")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    size = _size(args.size)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2**63, (size + STEPS[-1], 4), dtype=np.uint64)
    ids = np.arange(codes.shape[0], dtype=np.int64)
    started = time.perf_counter()
    index = MultiIndexHammingIndex(ids[:size], codes[:size], merge=False)
    print(f"{size:,} codes in tables ({time.perf_counter() - started:.1f} s)", flush=True)
    queries = codes[rng.integers(0, size, args.lookups)] ^ np.uint64(1)

    steps: list[dict[str, Any]] = []
    held = 0
    for pending in STEPS:
        index.add(ids[size + held : size + pending], codes[size + held : size + pending])
        held = pending
        begun = time.perf_counter()
        MultiIndexHammingIndex(ids[: size + pending], codes[: size + pending], merge=False)
        rebuild = time.perf_counter() - begun
        begun = time.perf_counter()
        folded = index.rebuilder()() if pending else None
        fold = time.perf_counter() - begun
        assert folded is None or (folded.tabled == size + pending and folded.pending == 0)
        del folded
        measured = _lookups(index, queries)
        begun = time.perf_counter()
        sealed = index.rebuilder(seal=True)() if pending else index
        seal = time.perf_counter() - begun
        assert sealed.scanned == 0 and sealed.pending == pending
        with_tables = _lookups(sealed, queries)
        del sealed
        steps.append(
            {
                "pending": pending,
                **measured,
                "sealed_p50_ms": with_tables["p50_ms"],
                "sealed_p99_ms": with_tables["p99_ms"],
                "rebuild_s": round(rebuild, 2),
                "fold_s": round(fold, 2) if pending else None,
                "seal_s": round(seal, 2) if pending else None,
            }
        )
        print(steps[-1], flush=True)

    def at(pending: int) -> dict[str, Any]:
        """The measured step nearest `pending` from above (the worst the rule allows)."""
        return next((s for s in steps if s["pending"] >= pending), steps[-1])

    # (rule, the delta it lets grow, how the tables are remade: afresh or the delta folded in,
    # whether lookups meet the delta in tables of its own)
    capped = max(16_384, min(262_144, size // 8))
    rules = (
        ("baseline (406b82e): an eighth of the tables, built afresh", max(16_384, size // 8), 0, 0),
        ("922781f: the same rule, built afresh", capped, 0, 0),
        ("ff1f243: the same rule, the delta folded in, scanned", capped, 1, 0),
        ("this tree: its rule, folded in, the delta in tables", _this_tree_limit(size), 1, 1),
    )
    rows = []
    for name, limit, folds, sealed_delta in rules:
        worst = at(limit)
        every = limit / args.rate
        builder_s = worst["fold_s"] if folds else worst["rebuild_s"]
        kind = "sealed_" if sealed_delta else ""
        rows.append(
            {
                "rule": name,
                "largest_delta": limit,
                "measured_at": worst["pending"],
                "lookup_p50_ms": worst[f"{kind}p50_ms"],
                "lookup_p99_ms": worst[f"{kind}p99_ms"],
                "rebuild_every_s": round(every, 1),
                "builder_s": builder_s,
                "builder_core_share": round(builder_s / every, 3),
            }
        )
    base, capped_row, scanned, this = rows
    share = this["builder_core_share"] / max(capped_row["builder_core_share"], 1e-9)
    table = "\n".join(
        [
            f"{size:,} codes, {args.rate:g} adds a second, {args.lookups} lookups per step"
            " (radius 31, one thread)",
            "",
            "| codes in the delta | lookup p50 / p99 ms, delta scanned | delta in tables of"
            " its own | its tables built s | tables built afresh s | delta folded in s |",
            "|---|---|---|---|---|---|",
            *(
                f"| {s['pending']:,} | {s['p50_ms']} / {s['p99_ms']}"
                f" | {s['sealed_p50_ms']} / {s['sealed_p99_ms']}"
                f" | {'-' if s['seal_s'] is None else s['seal_s']} | {s['rebuild_s']}"
                f" | {'-' if s['fold_s'] is None else s['fold_s']} |"
                for s in steps
            ),
            "",
            "| rule | largest delta | lookups before the rebuild: p50 / p99 ms | rebuilt every"
            " | each rebuild s | builder's share of a core |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['rule']} | {r['largest_delta']:,} (measured at {r['measured_at']:,}) |"
                f" {r['lookup_p50_ms']} / {r['lookup_p99_ms']} | {r['rebuild_every_s'] / 60:.1f}"
                f" min | {r['builder_s']} | {r['builder_core_share']:.1%} |"
                for r in rows
            ),
            "",
            f"Ratios, this tree / 406b82e: lookup p50 before the rebuild"
            f" {this['lookup_p50_ms'] / base['lookup_p50_ms']:.2f}, p99"
            f" {this['lookup_p99_ms'] / base['lookup_p99_ms']:.2f}. This tree / 922781f: each"
            f" rebuild {this['builder_s'] / max(capped_row['builder_s'], 1e-9):.2f}x, builder's"
            f" share {share:.2f}x."
            f" This tree / ff1f243: lookup p50 before the rebuild"
            f" {this['lookup_p50_ms'] / scanned['lookup_p50_ms']:.2f}, p99"
            f" {this['lookup_p99_ms'] / scanned['lookup_p99_ms']:.2f}.",
        ]
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"index-delta-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"size": size, "rate": args.rate, "steps": steps, "rules": rows}))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
