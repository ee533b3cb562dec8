"""CLI start-up and corpus hashing through the CLI, against python-threatexchange, in one run.

    python benchmarks/startup.py --corpus ../shared/corpus/photos [--repeat 10] [--out FILE]

Whole processes, as a user runs them (a fresh store in a temporary home):
  counterfake --version          the CLI's own start-up
  counterfake hash ONE.jpg       start-up + one decode and hash
  counterfake match ONE.jpg      start-up + store + matcher + lookup (a one-photo bank)
  counterfake hash CORPUS/       every photo of the corpus (hashed on one process per core)
  ... one process                the same with COUNTERFAKE_HASH_PROCESSES=1
  threatexchange (baseline)      pdq_from_file over the same files, one process: the path
                                 python-threatexchange (and so OpenMediaMatch) takes
Each figure is the median of --repeat runs (the corpus ones of --corpus-repeat). Targets (issue
19): --version <= 0.25 s, hash ONE <= 0.4 s, CLI corpus hashing >= 10x the baseline. Writes
JSON and a table to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "counterfake")
BASELINE = """
import sys
from pathlib import Path
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file
files = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file())
for p in files:
    pdq_from_file(p)
"""


def _timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def _median(args: list[str], env: dict[str, str], repeat: int) -> dict[str, Any]:
    runs = [_timed(args, env) for _ in range(repeat)]
    return {"median_s": statistics.median(runs), "runs_s": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--corpus-repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "startup.json")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.rglob("*") if p.is_file())
    one = str(files[0])
    for path in files:  # warm the page cache
        path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="counterfake-startup-") as home:
        env = {**os.environ, "COUNTERFAKE_HOME": home}
        subprocess.run([CLI, "bank", "create", "b"], env=env, capture_output=True, check=True)
        subprocess.run([CLI, "bank", "add", "b", one], env=env, capture_output=True, check=True)
        results: dict[str, Any] = {
            "version": _median([CLI, "--version"], env, args.repeat),
            "hash_one": _median([CLI, "hash", one], env, args.repeat),
            "match_one": _median([CLI, "match", one], env, args.repeat),
            "cli_corpus": _median([CLI, "hash", str(args.corpus)], env, args.corpus_repeat),
            "cli_corpus_one_process": _median(
                [CLI, "hash", str(args.corpus)],
                {**env, "COUNTERFAKE_HASH_PROCESSES": "1"},
                args.corpus_repeat,
            ),
            "threatexchange_corpus": _median(
                [sys.executable, "-c", BASELINE, str(args.corpus)], env, args.corpus_repeat
            ),
        }
    baseline = results["threatexchange_corpus"]["median_s"]
    ratio = baseline / results["cli_corpus"]["median_s"]
    one_ratio = baseline / results["cli_corpus_one_process"]["median_s"]
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "corpus_files": len(files),
        "results": results,
        "cli_corpus_speedup_vs_threatexchange": ratio,
        "cli_corpus_one_process_speedup_vs_threatexchange": one_ratio,
        "targets": {"version_s": 0.25, "hash_one_s": 0.4, "corpus_speedup": 10.0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"{'command':<34} {'median':>9}  target",
        f"{'counterfake --version':<34} {results['version']['median_s']:>8.3f}s  <= 0.25 s",
        f"{'counterfake hash ONE':<34} {results['hash_one']['median_s']:>8.3f}s  <= 0.4 s",
        f"{'counterfake match ONE':<34} {results['match_one']['median_s']:>8.3f}s  (none)",
        f"{'counterfake hash CORPUS':<34} {results['cli_corpus']['median_s']:>8.3f}s",
        f"{'  ... on one process':<34} {results['cli_corpus_one_process']['median_s']:>8.3f}s",
        f"{'threatexchange pdq_from_file':<34} "
        f"{results['threatexchange_corpus']['median_s']:>8.3f}s  (baseline)",
        f"CLI corpus hashing: {ratio:.1f}x the baseline ({len(files)} files, {os.cpu_count()}"
        f" cores; target >= 10x); on one process {one_ratio:.1f}x",
    ]
    table = "\n".join(lines)
    args.out.with_suffix(".txt").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
