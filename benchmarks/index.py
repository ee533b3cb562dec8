"""Exact Hamming range search at scale: counterfake's index against faiss and threatexchange.

    python benchmarks/index.py --size 1M --distribution uniform [--radius 31] [--out FILE]

Each method runs in its own process on the same codes and queries:
  faiss_flat      faiss IndexBinaryFlat, brute force: the ground truth for recall
  threatexchange  python-threatexchange's PDQIndex (faiss IndexBinaryMultiHash, 16 x 16 bits,
                  nflip = r // 16), the class OpenMediaMatch uses, fed hex strings as it is
  counterfake     counterfake.index.MultiIndexHammingIndex
Reported per method: qps_single (one query per call, as a matcher serving uploads does;
bounded by --single-seconds), qps_batched (all queries in one call), recall against faiss_flat,
bytes_per_code (growth of the process's resident set while building, over the codes; the
codes array itself is loaded before the baseline), build_s, add_ms and remove_ms (median of 20).

Distributions (`--distribution`):
  uniform    independent uniform 256-bit codes
  realistic  PDQ hashes of ../shared/corpus/photos, of their quadrant and centre tiles and of
             augmentations (flip, rotate 90, blur, JPEG q30, half size, gamma), as bases; each
             code is a base picked with weight rank^-0.5 (a few bases are popular), with 48-96
             random bits flipped on average (a distinct image that keeps PDQ's bit biases) for
             90% of codes and 0-24 (a near-duplicate) for 10%; each bit flips independently.
             Bases are cached in benchmarks/results.
Queries (--queries, default 10,000): half are stored codes with 0-40 random bits flipped (on
average), half
are fresh codes from the same generator (non-members).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import gc
import io
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def _flip_random(codes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> None:
    """Flip about counts[i] random bits of row i (each bit with probability counts[i] / 256)."""
    p = (counts / 256.0)[:, None]
    mask = np.packbits(rng.random((codes.shape[0], 256)) < p, axis=1, bitorder="little")
    codes ^= mask.view(np.uint64)


def _realistic_bases(corpus: Path) -> np.ndarray:
    cache = RESULTS / "realistic-bases.npy"
    if cache.exists():
        return np.load(cache)
    from PIL import Image, ImageFilter, ImageOps

    from counterfake import PdqHash, hash_bytes

    def encode(image: Image.Image, quality: int = 90) -> bytes:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()

    codes = []
    files = sorted(corpus.glob("*.jpg"))
    for number, path in enumerate(files):
        image = Image.open(path)
        image.draft("RGB", (800, 800))
        image = image.convert("RGB")
        w, h = image.size
        variants = [
            image,
            image.crop((0, 0, w // 2, h // 2)),
            image.crop((w // 2, 0, w, h // 2)),
            image.crop((0, h // 2, w // 2, h)),
            image.crop((w // 2, h // 2, w, h)),
            image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)),
            ImageOps.mirror(image),
            image.rotate(90, expand=True),
            image.filter(ImageFilter.GaussianBlur(3)),
            image.resize((max(1, w // 2), max(1, h // 2))),
            image.point(lambda v: int(255 * (v / 255) ** 0.6)),
        ]
        for variant in variants:
            codes.append(PdqHash.from_hex(hash_bytes(encode(variant)).signals["pdq"]).words())
        codes.append(PdqHash.from_hex(hash_bytes(encode(image, 30)).signals["pdq"]).words())
        if number % 50 == 0:
            print(f"  bases: {number}/{len(files)} photos", file=sys.stderr, flush=True)
    bases = np.unique(np.stack(codes), axis=0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.save(cache, bases)
    return bases


def _generate(n: int, distribution: str, corpus: Path, rng: np.random.Generator) -> np.ndarray:
    if distribution == "uniform":
        return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)
    bases = _realistic_bases(corpus)
    weights = 1.0 / np.sqrt(np.arange(1, bases.shape[0] + 1))
    weights /= weights.sum()
    out = np.empty((n, 4), dtype=np.uint64)
    step = 250_000
    for start in range(0, n, step):
        m = min(step, n - start)
        chunk = bases[rng.choice(bases.shape[0], size=m, p=weights)].copy()
        near = rng.random(m) < 0.1
        counts = np.where(near, rng.integers(0, 25, m), rng.integers(48, 97, m))
        _flip_random(chunk, counts, rng)
        out[start : start + m] = chunk
    return out


def _queries(codes: np.ndarray, q: int, fresh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    members = codes[rng.integers(0, codes.shape[0], q // 2)].copy()
    _flip_random(members, rng.integers(0, 41, members.shape[0]), rng)
    return np.concatenate([members, fresh[: q - q // 2]])


# --- one method in its own process -------------------------------------------------------------


def _hex(codes: np.ndarray) -> list[str]:
    # PDQ hex is the 256-bit value big-endian; our words are little-endian uint64s.
    raw = codes.astype("<u8").view(np.uint8)[:, ::-1]
    return [bytes(row).hex() for row in raw]


class _Method:
    def build(self, codes: np.ndarray) -> None: ...

    def single(self, query: np.ndarray, radius: int) -> Any: ...

    def batched(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]: ...

    def add(self, new_id: int, code: np.ndarray) -> None: ...

    def remove(self, entry_id: int) -> bool:
        return False


def _inflation(codes: np.ndarray, bitpos: np.ndarray) -> float:
    """Mean over tables of E[bucket size seen by a stored code] / its value for uniform codes:
    how many times more candidates the substrings hand out than balanced buckets would."""
    from counterfake.index import _kernels

    n, buckets = codes.shape[0], 1 << bitpos.shape[1]
    uniform = 1 + (n - 1) / buckets
    ratios = []
    for t in range(bitpos.shape[0]):
        counts = np.bincount(_kernels.substring_keys(codes, bitpos, t), minlength=buckets)
        ratios.append(float((counts.astype(np.float64) ** 2).sum() / n) / uniform)
    return float(np.mean(ratios))


class _Counterfake(_Method):
    def build(self, codes: np.ndarray) -> None:
        from counterfake.index import MultiIndexHammingIndex

        self.index = MultiIndexHammingIndex(np.arange(codes.shape[0]), codes)
        self.codes = codes

    def stats(self) -> dict[str, Any]:
        """Bucket balance of the chosen substrings against plain consecutive bits."""
        chosen = self.index._bitpos
        tables, bits = chosen.shape
        consecutive = np.arange(tables * bits, dtype=np.int64).reshape(tables, bits)
        sample = self.codes[: min(self.codes.shape[0], 2_000_000)]
        return {
            "tables": int(tables),
            "bits_per_table": int(bits),
            "candidate_inflation_chosen_bits": _inflation(sample, chosen),
            "candidate_inflation_consecutive_bits": _inflation(sample, consecutive),
        }

    def single(self, query: np.ndarray, radius: int) -> Any:
        return self.index.search(query[None, :], radius)

    def batched(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        rows, ids, _ = self.index.search_arrays(queries, radius)
        return rows, ids

    def add(self, new_id: int, code: np.ndarray) -> None:
        self.index.add([new_id], code[None, :])

    def remove(self, entry_id: int) -> bool:
        self.index.remove([entry_id])
        return True


class _ThreatExchange(_Method):
    def build(self, codes: np.ndarray) -> None:
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        self.index = PDQIndex(zip(_hex(codes), range(codes.shape[0]), strict=True))

    def single(self, query: np.ndarray, radius: int) -> Any:
        return self.index.query(_hex(query[None, :])[0])

    def batched(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        hexes = _hex(queries)
        found = self.index.index.search_with_distance_in_result(hexes, radius)
        rows, ids = [], []
        for row, h in enumerate(hexes):
            for local_id, _, _ in found[h]:
                rows.append(row)
                ids.append(self.index.local_id_to_entry[local_id][1])
        return np.array(rows, dtype=np.int64), np.array(ids, dtype=np.int64)

    def add(self, new_id: int, code: np.ndarray) -> None:
        self.index.add(_hex(code[None, :])[0], new_id)


class _FaissFlat(_Method):
    def build(self, codes: np.ndarray) -> None:
        import faiss

        self.index = faiss.IndexBinaryFlat(256)
        self.index.add(np.ascontiguousarray(codes).view(np.uint8))

    def single(self, query: np.ndarray, radius: int) -> Any:
        return self.index.range_search(query[None, :].view(np.uint8), radius + 1)

    def batched(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        limits, _, ids = self.index.range_search(
            np.ascontiguousarray(queries).view(np.uint8), radius + 1
        )
        rows = np.repeat(np.arange(queries.shape[0]), np.diff(limits).astype(np.int64))
        return rows.astype(np.int64), ids.astype(np.int64)

    def add(self, new_id: int, code: np.ndarray) -> None:
        self.index.add(code[None, :].view(np.uint8))


METHODS = {"faiss_flat": _FaissFlat, "threatexchange": _ThreatExchange, "counterfake": _Counterfake}


def _run(name: str, workdir: str, radius: int, single_seconds: float) -> None:
    codes = np.load(Path(workdir) / "codes.npy")
    queries = np.load(Path(workdir) / "queries.npy")
    # Warm up on a small index first: imports and compiled kernels are not the index's memory.
    warm = METHODS[name]()
    warm.build(codes[:2000])
    warm.single(queries[0], radius)
    warm.batched(queries[:10], radius)
    del warm
    gc.collect()
    method = METHODS[name]()
    base = _rss()
    start = time.perf_counter()
    method.build(codes)
    build_s = time.perf_counter() - start
    gc.collect()
    grown = _rss() - base
    method.single(queries[0], radius)

    done = 0
    start = time.perf_counter()
    while done < queries.shape[0] and time.perf_counter() - start < single_seconds:
        method.single(queries[done], radius)
        done += 1
    qps_single = done / (time.perf_counter() - start)

    start = time.perf_counter()
    rows, ids = method.batched(queries, radius)
    qps_batched = queries.shape[0] / (time.perf_counter() - start)
    np.savez(Path(workdir) / f"{name}.npz", rows=rows, ids=ids)

    n = codes.shape[0]
    adds, removes = [], []
    for i in range(20):
        start = time.perf_counter()
        method.add(n + i, codes[i])
        adds.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        supported = method.remove(n + i)
        if supported:
            removes.append((time.perf_counter() - start) * 1000)
    result: dict[str, Any] = {
        "qps_single": qps_single,
        "single_queries": done,
        "qps_batched": qps_batched,
        "bytes_per_code": grown / n,
        "build_s": build_s,
        "add_ms": statistics.median(adds),
        "remove_ms": statistics.median(removes) if removes else None,
    }
    if hasattr(method, "stats"):
        result["index"] = method.stats()
    (Path(workdir) / f"{name}.json").write_text(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1M", help="number of codes: 1M, 10M, 200K, ...")
    parser.add_argument("--distribution", choices=("uniform", "realistic"), default="uniform")
    parser.add_argument("--radius", type=int, default=31)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--single-seconds", type=float, default=20.0)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    n = _parse_size(args.size)
    out = args.out or RESULTS / f"index-{args.size}-{args.distribution}-r{args.radius}.json"

    rng = np.random.default_rng(20261125)
    print(f"generating {n:,} {args.distribution} codes", flush=True)
    codes = _generate(n, args.distribution, args.corpus, rng)
    fresh = _generate(args.queries, args.distribution, args.corpus, rng)
    queries = _queries(codes, args.queries, fresh, rng)

    context = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {}
    hits: dict[str, set[int]] = {}
    with tempfile.TemporaryDirectory(prefix="cf-index-bench-") as workdir:
        np.save(Path(workdir) / "codes.npy", codes)
        np.save(Path(workdir) / "queries.npy", queries)
        del codes
        for name in args.methods.split(","):
            print(f"running {name}", flush=True)
            process = context.Process(
                target=_run, args=(name, workdir, args.radius, args.single_seconds)
            )
            process.start()
            process.join()
            if process.exitcode != 0:
                print(f"  {name} failed with exit code {process.exitcode}", flush=True)
                continue
            results[name] = json.loads((Path(workdir) / f"{name}.json").read_text())
            found = np.load(Path(workdir) / f"{name}.npz")
            hits[name] = set((found["rows"] * (n + 1000) + found["ids"]).tolist())
            print(f"  {results[name]}", flush=True)

    truth = hits.get("faiss_flat")
    for name, value in results.items():
        value["recall"] = (len(hits[name] & truth) / len(truth)) if truth else None
        value["false_hits"] = len(hits[name] - truth) if truth else None
    baseline = results.get("threatexchange")
    for value in results.values():
        for key in ("qps_single", "qps_batched"):
            value[f"{key}_vs_threatexchange"] = value[key] / baseline[key] if baseline else None
    report = {
        "size": n,
        "distribution": args.distribution,
        "radius": args.radius,
        "queries": args.queries,
        "true_hits": len(truth) if truth else None,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))

    print(f"\n{n:,} codes, {args.distribution}, r = {args.radius}, {args.queries:,} queries")
    header = (
        "method",
        "qps 1",
        "x TE",
        "qps batch",
        "x TE",
        "recall",
        "B/code",
        "build s",
        "add ms",
        "remove ms",
    )
    print("".join(f"{h:>12}" for h in header))
    for name, v in results.items():
        cells = [
            name,
            f"{v['qps_single']:.0f}",
            f"{v['qps_single_vs_threatexchange'] or 0:.1f}",
            f"{v['qps_batched']:.0f}",
            f"{v['qps_batched_vs_threatexchange'] or 0:.1f}",
            f"{v['recall']:.4f}" if v["recall"] is not None else "-",
            f"{v['bytes_per_code']:.0f}",
            f"{v['build_s']:.1f}",
            f"{v['add_ms']:.3f}",
            f"{v['remove_ms']:.3f}" if v["remove_ms"] is not None else "n/a",
        ]
        print("".join(f"{c:>12}" for c in cells))
    index_stats = results.get("counterfake", {}).get("index")
    if index_stats:
        print(
            f"\ncounterfake: {index_stats['tables']} tables of"
            f" {index_stats['bits_per_table']} bits; candidates per probe vs balanced buckets:"
            f" {index_stats['candidate_inflation_chosen_bits']:.2f}x with bits chosen from the"
            f" data, {index_stats['candidate_inflation_consecutive_bits']:.2f}x with consecutive"
            " bits"
        )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
