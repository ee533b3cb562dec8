"""Loading a matcher from the store, and how soon another process's change is matched.

    python benchmarks/index_sync.py --size 10M [--database sqlite|postgresql] [--out FILE]

Fills a fresh store (a SQLite file, or a new PostgreSQL database on 127.0.0.1) with one bank of
--size PDQ entries written in bulk, then measures, in this process:
  load_s            Matcher(store) from nothing to ready (reads, decodes and indexes every entry)
  bytes_per_entry   growth of the resident set while loading, over the entries
  add_visible_ms    from another process's add_entries() returning to this matcher matching it
  withdraw_visible_ms  the same for withdraw()
(medians and maxima over --rounds rounds; the matcher polls the change log every 0.5 s, its
default). Writes JSON and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import gc
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from counterfake import ImageHashes, Matcher, NewEntry, Store

RESULTS = Path(__file__).resolve().parent / "results"
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hexes(codes: np.ndarray) -> list[str]:
    raw = codes.astype("<u8").view(np.uint8)[:, ::-1]
    return [bytes(row).hex() for row in raw]


def _fill(url: str, n: int, rng: np.random.Generator) -> None:
    """Write n active PDQ entries into bank 'big' with plain bulk SQL (setup, not measured)."""
    with Store.open(url) as store:
        store.create_bank("big")
    engine = sa.create_engine(url)
    step = 200_000
    with engine.begin() as conn:
        bank_id = conn.exec_driver_sql("SELECT id FROM banks WHERE name = 'big'").scalar()
    for start in range(0, n, step):
        m = min(step, n - start)
        values = _hexes(rng.integers(0, 2**64 - 1, size=(m, 4), dtype=np.uint64, endpoint=True))
        rows = [
            {"bank_id": bank_id, "value": v, "created_at": "2026-01-01T00:00:00+00:00"}
            for v in values
        ]
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO entries (bank_id, signal_type, value, quality, source, metadata,"
                    " created_at) VALUES (:bank_id, 'pdq', :value, 100, 'bench', '{}',"
                    " :created_at) ON CONFLICT DO NOTHING"
                ),
                rows,
            )
        print(f"  filled {start + m:,}/{n:,}", flush=True)
    engine.dispose()


def _writer(url: str, hexes: list[str], ready: Any, go: Any, done: Any, times: Any) -> None:
    with Store.open(url) as store:
        ready.set()
        for i, value in enumerate(hexes):
            go.wait()
            go.clear()
            [result] = store.add_entries("big", [NewEntry("pdq", value, quality=100)])
            times[2 * i] = time.time()
            done.set()
            go.wait()
            go.clear()
            store.withdraw("big", result.entry_id)
            times[2 * i + 1] = time.time()
            done.set()


def _hashes(value: str) -> ImageHashes:
    return ImageHashes(0, 0, "bench", {"pdq": value}, 100)


def _wait_until(matcher: Matcher, value: str, present: bool, since: float) -> float:
    query = _hashes(value)
    while time.time() - since < 10:
        if bool(matcher.match(query).matches) == present:
            return (time.time() - since) * 1000
        time.sleep(0.002)
    raise RuntimeError("change never became visible")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10M")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = args.size.upper()
    n = int(float(text.rstrip("KM")) * {"K": 1_000, "M": 1_000_000}.get(text[-1], 1))
    out = args.out or RESULTS / f"index-sync-{args.size}-{args.database}.json"
    rng = np.random.default_rng(7)

    with tempfile.TemporaryDirectory(prefix="cf-sync-bench-") as tmp:
        admin = None
        if args.database == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'store.db'}"
        else:
            admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
            name = f"counterfake_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = admin.url.set(database=name).render_as_string(hide_password=False)
        try:
            print(f"filling a {args.database} store with {n:,} PDQ entries", flush=True)
            _fill(url, n, rng)
            store = Store.open(url)
            # Warm up compiled kernels on a small index so their memory is not counted.
            from counterfake.index import MultiIndexHammingIndex

            warm = rng.integers(0, 2**63, size=(5000, 4), dtype=np.uint64)
            MultiIndexHammingIndex(np.arange(5000), warm).search(warm[:10], 31)
            MultiIndexHammingIndex(np.arange(5000), warm).search(warm[:1], 31)
            gc.collect()
            base = _rss()
            start = time.perf_counter()
            matcher = Matcher(store, ["big"])
            load_s = time.perf_counter() - start
            gc.collect()
            grown = _rss() - base
            print(f"  loaded {len(matcher):,} entries in {load_s:.1f} s", flush=True)

            probes = _hexes(rng.integers(0, 2**63, size=(args.rounds, 4), dtype=np.uint64))
            # Kernels compile on first use (once per installation, then cached on disk): a
            # first query keeps that out of the visibility figures.
            matcher.match(_hashes(probes[0]))
            context = multiprocessing.get_context("spawn")
            ready, go, done = context.Event(), context.Event(), context.Event()
            times = context.Array("d", 2 * args.rounds)
            writer = context.Process(target=_writer, args=(url, probes, ready, go, done, times))
            writer.start()
            ready.wait(60)
            adds, withdrawals = [], []
            for i, value in enumerate(probes):
                for present, log in ((True, adds), (False, withdrawals)):
                    done.clear()
                    go.set()
                    done.wait(60)
                    since = times[2 * i + (0 if present else 1)]
                    log.append(_wait_until(matcher, value, present, since))
            writer.join(60)
            store.close()
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()

    report = {
        "size": n,
        "database": args.database,
        "load_s": load_s,
        "bytes_per_entry": grown / n,
        "add_visible_ms": {"median": statistics.median(adds), "max": max(adds)},
        "withdraw_visible_ms": {"median": statistics.median(withdrawals), "max": max(withdrawals)},
        "rounds": args.rounds,
        "refresh_interval_s": 0.5,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{n:,} entries, {args.database}")
    print(f"  load:                 {load_s:.1f} s ({report['bytes_per_entry']:.0f} bytes/entry)")
    print(
        f"  add visible after:    median {report['add_visible_ms']['median']:.0f} ms,"
        f" max {report['add_visible_ms']['max']:.0f} ms"
    )
    print(
        f"  withdrawal visible:   median {report['withdraw_visible_ms']['median']:.0f} ms,"
        f" max {report['withdraw_visible_ms']['max']:.0f} ms"
    )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
