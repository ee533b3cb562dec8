"""Following another Counterfake: initial sync and incremental pages, beside file transfer.

    python benchmarks/exchange.py [--entries 1000000] [--increment 10000]

A hub (`counterfake serve`, SQLite) holds a bank of `--entries` PDQ entries shared with the
follower's tenant. In the same run:
- initial sync: a follower's `exchange fetch` (the change feed, 5,000 changes a page) into an
  empty bank, against the baseline of `bank export --format jsonl` on the hub and `bank import`
  of that file on the follower (the way banks moved before exchanges);
- incremental: `--increment` more adds (a tenth of them withdrawn again) on the hub, then one
  `exchange fetch`.
Targets (issue 17): initial sync of 1,000,000 <= 3 min, an incremental page of 10,000 changes
<= 5 s. Writes benchmarks/results/exchange.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from counterfake import Counterfake, NewEntry, Store
from counterfake.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.service.server import Server

RESULTS = Path(__file__).resolve().parent / "results"
COUNTERFAKE = Path(sys.executable).with_name("counterfake")


def _fill(store: Store, bank: str, values: list[str]) -> None:
    for start in range(0, len(values), 10_000):
        batch = values[start : start + 10_000]
        store.add_entries(bank, [NewEntry("pdq", v, quality=100) for v in batch])


def _cli(home: Path, *args: str) -> float:
    env = {**os.environ, "COUNTERFAKE_HOME": str(home)}
    env.pop("COUNTERFAKE_DATABASE_URL", None)
    started = time.perf_counter()
    subprocess.run([str(COUNTERFAKE), *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--increment", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(17)
    values = [rng.bytes(32).hex() for _ in range(args.entries + args.increment)]
    result: dict[str, Any] = {"entries": args.entries, "increment": args.increment}
    with tempfile.TemporaryDirectory(prefix="counterfake-exchange-") as tmp:
        hub_home, follower_home = Path(tmp) / "hub", Path(tmp) / "follower"
        hub_home.mkdir()
        with Store.open(f"sqlite:///{hub_home / 'counterfake.db'}") as store:
            store.create_bank("protected", shared_with=["platform"])
            started = time.perf_counter()
            _fill(store, "protected", values[: args.entries])
            result["hub_fill_seconds"] = round(time.perf_counter() - started, 1)
            _, follow = store.keys.create("platform", ["follow"], name="platform")
        time.sleep(0.6)
        settings = load_settings({}, home=follower_home)
        with Server(hub_home) as hub, Counterfake(settings) as core:
            core.create_bank("from-hub")
            core.create_bank("imported")
            core.add_exchange(
                "hub",
                type="counterfake",
                bank="from-hub",
                url=hub.url,
                remote_bank="default:protected",
                credential=follow,
            )
            started = time.perf_counter()
            core.fetch_exchange("hub")
            result["initial_sync_seconds"] = round(time.perf_counter() - started, 1)
            result["initial_sync_entries"] = core.bank("from-hub").active_entries

            export = Path(tmp) / "export.jsonl"
            exported = _cli(hub_home, "bank", "export", "protected", "-o", str(export))
            imported = _cli(follower_home, "bank", "import", "imported", str(export))
            result["baseline_export_seconds"] = round(exported, 1)
            result["baseline_import_seconds"] = round(imported, 1)
            result["baseline_seconds"] = round(exported + imported, 1)

            with Store.open(f"sqlite:///{hub_home / 'counterfake.db'}") as store:
                more = values[args.entries :]
                _fill(store, "protected", more)
                gone = set(more[::10])
                for entry in store.iter_entries("protected"):
                    if entry.value in gone:
                        store.withdraw("protected", entry.id)
            time.sleep(0.6)
            started = time.perf_counter()
            core.fetch_exchange("hub")
            result["incremental_seconds"] = round(time.perf_counter() - started, 2)
            result["incremental_changes"] = args.increment + len(gone)
            result["follower_entries"] = core.bank("from-hub").active_entries
            result["expected_entries"] = args.entries + args.increment - len(gone)
    result["ratio_vs_baseline"] = round(
        result["initial_sync_seconds"] / result["baseline_seconds"], 2
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "exchange.json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join(
        [
            "| step | seconds | target |",
            "|---|---|---|",
            f"| initial sync, {args.entries:,} entries (exchange fetch) | "
            f"{result['initial_sync_seconds']} | <= 180 at 1,000,000 |",
            f"| baseline: bank export + bank import | {result['baseline_seconds']} "
            f"({result['baseline_export_seconds']} + {result['baseline_import_seconds']}) | |",
            f"| incremental, {result['incremental_changes']:,} changes | "
            f"{result['incremental_seconds']} | <= 5 for 10,000 |",
            "",
            f"Follower holds {result['follower_entries']:,} active entries "
            f"(expected {result['expected_entries']:,}); sync / baseline "
            f"{result['ratio_vs_baseline']}x.",
        ]
    )
    (RESULTS / "exchange.md").write_text(table + "\n")
    print(table)
    return 0 if result["follower_entries"] == result["expected_entries"] else 1


if __name__ == "__main__":
    sys.exit(main())
