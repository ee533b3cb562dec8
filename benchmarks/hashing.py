"""Hashing throughput and PDQ agreement, against the reference pipelines, in one run.

    python benchmarks/hashing.py --corpus ../shared/corpus/photos [--repeat 5] [--out FILE]

Methods, each reading every file from disk (page cache warmed first), single process:
  counterfake             hash_file: reduced-size decode + PDQ + MD5 + SHA-256
  threatexchange          pdq_from_file, the path OpenMediaMatch uses (the baseline)
  perception              Thorn's perception PDQHash, if installed
  counterfake_all_cores   hash_file in a process pool, one worker per core
Throughput is the median of --repeat passes; ratios are against threatexchange. Agreement is
the Hamming distance of each method's PDQ to pdqhash on a full decode. Writes JSON and a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as counterfake does; before NumPy loads

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from counterfake import PdqHash, hash_file, pdq_reference


def _methods() -> dict[str, Callable[[Path], str]]:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    methods: dict[str, Callable[[Path], str]] = {
        "counterfake": lambda p: hash_file(p).signals["pdq"],
        "threatexchange": lambda p: pdq_from_file(p)[0],
    }
    try:
        import base64

        from perception.hashers import PDQHash

        hasher = PDQHash()

        def perception_pdq(path: Path) -> str:
            return base64.b64decode(hasher.compute(str(path))).hex()

        methods["perception"] = perception_pdq
    except ImportError:
        print("perception is not installed: skipped", file=sys.stderr)
    return methods


def _pass(method: Callable[[Path], str], files: list[Path]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    hashes = [method(path) for path in files]
    return time.perf_counter() - start, hashes


def _hash_chunk(paths: list[str]) -> int:
    for path in paths:
        hash_file(path)
    return len(paths)


def _pool_pass(files: list[Path], workers: int, pool: ProcessPoolExecutor) -> float:
    chunks = [[str(p) for p in files[i :: workers * 4]] for i in range(workers * 4)]
    start = time.perf_counter()
    assert sum(pool.map(_hash_chunk, chunks)) == len(files)
    return time.perf_counter() - start


def _distribution(distances: list[int]) -> dict[str, Any]:
    array = np.array(distances)
    return {
        "n": len(distances),
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "p99": float(np.percentile(array, 99)),
        "max": int(array.max()),
        "within_10": float((array <= 10).mean()),
        "histogram": {str(k): int((array == k).sum()) for k in range(0, int(array.max()) + 1, 2)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hashing.json"))
    args = parser.parse_args()

    files = sorted(p for p in args.corpus.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        print(f"no JPEG files in {args.corpus}", file=sys.stderr)
        return 2
    print(f"{len(files)} images from {args.corpus}; {args.repeat} passes per method", flush=True)

    reference = [pdq_reference(p.read_bytes()) for p in files]
    methods = _methods()
    results: dict[str, Any] = {}
    for name, method in methods.items():
        _, hashes = _pass(method, files)  # warm-up, and the hashes for agreement
        times = [_pass(method, files)[0] for _ in range(args.repeat)]
        good = [
            PdqHash.from_hex(h) - ref
            for h, ref in zip(hashes, reference, strict=True)
            if (ref.quality or 0) >= 80
        ]
        results[name] = {
            "images_per_s": len(files) / statistics.median(times),
            "pass_seconds": times,
            "agreement_quality_ge_80": _distribution(good),
        }
        print(f"  {name}: {results[name]['images_per_s']:.1f} images/s", flush=True)

    with ProcessPoolExecutor(args.workers) as pool:
        _pool_pass(files, args.workers, pool)
        times = [_pool_pass(files, args.workers, pool) for _ in range(args.repeat)]
    results["counterfake_all_cores"] = {
        "images_per_s": len(files) / statistics.median(times),
        "pass_seconds": times,
        "workers": args.workers,
    }

    baseline = results["threatexchange"]["images_per_s"]
    for value in results.values():
        value["ratio_vs_threatexchange"] = value["images_per_s"] / baseline
    report = {
        "corpus": str(args.corpus),
        "images": len(files),
        "quality_ge_80": sum((r.quality or 0) >= 80 for r in reference),
        "repeat": args.repeat,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print()
    print(f"{'method':<24}{'images/s':>10}{'vs TE':>8}{'PDQ bits vs full decode (q>=80)':>40}")
    for name, value in results.items():
        agreement = value.get("agreement_quality_ge_80")
        detail = (
            f"median {agreement['median']:.0f}, p99 {agreement['p99']:.0f}, max {agreement['max']},"
            f" <=10: {agreement['within_10']:.1%}"
            if agreement
            else f"({value['workers']} workers)"
        )
        print(
            f"{name:<24}{value['images_per_s']:>10.1f}"
            f"{value['ratio_vs_threatexchange']:>7.1f}x   {detail}"
        )
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
