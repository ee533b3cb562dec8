"""Load on a real `counterfake serve` over loopback: hash lookups and uploads per second.

    python benchmarks/service.py [--entries 100000] [--duration 20] [--connections 32]

Setup (not measured): a fresh SQLite store with one bank of --entries random PDQ entries, plus
the hashes of half of the upload images (so uploads both hit and miss), and a match key; a
second tenant's bank of protected photos and its own match key (so that uploads that miss are
not searched for derivatives, as for a platform without protected banks).

Workloads, each bounded by --duration seconds and --max-requests requests after a warm-up:
  lookup   GET /v1/lookup?signal=<pdq>: a third exact bank hashes, a third within 8 bits of
           one, a third random (misses)
  upload   POST /v1/lookup with a 1-MP JPEG (made from ../shared/corpus/photos) as the body:
           upload, hash and match in one call
  derivative
           POST /v1/lookup with a derivative of a protected photo (a bank of --protected
           corpus photos with `counterfake protect` signatures; 30% replaced by another photo,
           JPEG q50, resize 0.6, crop 8%): PDQ finds nothing, the local features are computed
           and the shortlisted photos verified

Each workload runs against the library in this process without HTTP (the baseline: one core,
no network, no auth), the service with 1 worker and the service with --workers workers.

    python benchmarks/service.py --adds-at 10000,100000,1000000 [--duration 20]

Adds instead: single-signal adds through HTTP at each bank size (the bank filled in bulk to
that size, the service restarted): POST /v1/banks/bench/signals {"value"} and the HMA route
POST /c/bank/bench/signal {"pdq"}, each request a new value, with a submit key, against the
store's `add_entries` in this process, one signal per call (the baseline), and --workers
workers.

    python benchmarks/service.py --grown 100000 [--duration 20]

A bank filled while serving (issue 20's scenario, after HMA's way of seeding a bank): an empty
bank, --grown random PDQ values added through the HMA route POST /c/bank/bench/signal
{"pdq"} by --upload-connections clients while the service (--workers workers) runs, plus the
hashes of half the upload images. Then raw lookups (GET /m/raw_lookup, 1 and 8 connections)
and uploads (POST /v1/lookup with a 1-MP JPEG, 1 and 8 connections) against that service, and
against a service restarted on the same store: the restarted one is the baseline.

    python benchmarks/service.py --hash-url [--protected 200]

GET /h/hash?url= as ROOST Coop calls it inline when it ingests an item: 1-MP JPEGs served by
a loopback image server (another process), 1 and 4 connections, without and with a bank of
--protected photos (then every answer carries a derivative reference, which costs a derivative
search). Target: p99 <= 150 ms with two workers.

    python benchmarks/service.py --bulk-import 1000000

A bulk import while serving: `counterfake bank add --hashes` (another process) adds
--bulk-import entries while one connection sends raw lookups without pause. Reports lookup
latency before, during and after the import, and how long after the import's end each worker
reports ready (caught up) on /status/ready.

The load generator (an asyncio client with keep-alive connections) runs on the same machine
and takes CPU from the server, so service figures are a floor; its own CPU time is reported
beside each figure. Prints a table; writes JSON and the table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from PIL import Image

from counterfake import Matcher, NewEntry, Store, hash_bytes
from counterfake.protect import protect_bytes
from counterfake.signals.keypoints import image_features
from derivative_scale import _derivative, _jpeg

RESULTS = Path(__file__).resolve().parent / "results"
COUNTERFAKE = Path(sys.executable).with_name("counterfake")


# setup ---------------------------------------------------------------------------------------


def _one_megapixel_jpegs(corpus: Path, count: int) -> list[bytes]:
    images = []
    for path in sorted(corpus.glob("*.jpg"))[:count]:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = (1_000_000 / (image.width * image.height)) ** 0.5
            size = (round(image.width * scale), round(image.height * scale))
            buffer = io.BytesIO()
            image.resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=85)
            images.append(buffer.getvalue())
    return images


def _fill(url: str, n: int, rng: np.random.Generator) -> list[str]:
    """n random PDQ entries in bank 'bench', written in bulk; returns their hex values."""
    values = []
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        bank_id = conn.exec_driver_sql("SELECT id FROM banks WHERE name = 'bench:bench'").scalar()
        for start in range(0, n, 200_000):
            codes = rng.integers(0, 256, size=(min(200_000, n - start), 32), dtype=np.uint8)
            part = [bytes(row).hex() for row in codes]
            conn.execute(
                sa.text(
                    "INSERT INTO entries (bank_id, signal_type, value, quality, source, metadata,"
                    " created_at) VALUES (:bank_id, 'pdq', :value, 100, 'bench', '{}',"
                    " '2026-01-01T00:00:00+00:00')"
                ),
                [{"bank_id": bank_id, "value": v} for v in part],
            )
            values += part
    engine.dispose()
    return values


def _bench_bank(url: str, *scopes: str) -> list[str]:
    """A store at `url` with tenant bench's bank 'bench' (stored as bench:bench) and one key
    of that tenant per scope given; returns the keys' secrets in that order."""
    with Store.open(url) as store:
        store.create_bank("bench", tenant="bench")
        return [store.keys.create("bench", [scope], name="benchmark")[1] for scope in scopes]


def _flip(value: str, bits: int, rng: random.Random) -> str:
    number = int(value, 16)
    for bit in rng.sample(range(256), bits):
        number ^= 1 << bit
    return f"{number:064x}"


# the load generator --------------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.statuses: dict[int, int] = {}


async def _connection(
    port: int,
    requests: list[bytes],
    deadline: float,
    budget: list[int],
    stats: _Stats,
    offset: int,
    shared: list[int] | None = None,
) -> None:
    """One keep-alive connection sending requests from `offset` on; with `shared`, the
    connections take the next request in turn instead, so that each is sent once."""
    reader = writer = None
    i = offset
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        if shared is not None:
            i = shared[0]
            shared[0] += 1
        request = requests[i % len(requests)]
        i += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lowered = head.lower()
            at = lowered.index(b"content-length:") + 15
            length = int(lowered[at : lowered.index(b"\r\n", at)])
            await reader.readexactly(length)
            stats.latencies.append(time.perf_counter() - started)
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                stats.errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            stats.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _load(
    port: int,
    requests: list[bytes],
    connections: int,
    seconds: float,
    max_requests: int,
    *,
    each_once: bool = False,
) -> tuple[_Stats, float]:
    stats = _Stats()
    budget = [max_requests]
    shared = [0] if each_once else None
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _connection(port, requests, deadline, budget, stats, k * 7919, shared)
            for k in range(connections)
        )
    )
    return stats, time.perf_counter() - started


def _drive(
    port: int, requests: list[bytes], connections: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_load(port, requests, connections, min(3.0, seconds / 4), max_requests))  # warm-up
    stats, elapsed = runner(_load(port, requests, connections, seconds, max_requests))
    return _summary(stats.latencies, elapsed, stats.errors, stats.statuses)


def _summary(
    latencies: list[float], elapsed: float, errors: int, statuses: dict[int, int] | None = None
) -> dict[str, Any]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {
        "requests": len(latencies) + (errors if not statuses else 0),
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(ordered) * 1000 if ordered else 0.0,
        "p99_ms": p99 * 1000,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted((statuses or {}).items())},
        "seconds": elapsed,
    }


# the three ways of serving -------------------------------------------------------------------


def _library(
    url: str, lookups: list[str], uploads: list[bytes], derivatives: list[bytes], seconds: float
) -> dict[str, dict[str, Any]]:
    """The baseline: the same work in this process, one call at a time, no HTTP."""
    out = {}
    with Store.open(url) as store:
        matcher = Matcher(store)
        matcher.match_signal("pdq", lookups[0])

        def derivative(data: bytes) -> Any:
            return matcher.match(
                hash_bytes(data),
                features=lambda: image_features(data, query=True),
                banks=["victims:protected"],
            )

        assert derivative(derivatives[0]).matches
        for name, items, work in (
            ("lookup", lookups, lambda v: matcher.match_signal("pdq", v)),
            ("upload", uploads, lambda d: matcher.match(hash_bytes(d))),
            ("derivative", derivatives, derivative),
        ):
            latencies = []
            started = time.perf_counter()
            i = 0
            while time.perf_counter() - started < seconds:
                t0 = time.perf_counter()
                work(items[i % len(items)])
                latencies.append(time.perf_counter() - t0)
                i += 1
            out[name] = _summary(latencies, time.perf_counter() - started, 0)
    return out


def _serve(
    home: Path, port: int, workers: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERFAKE_")}
    env["COUNTERFAKE_HOME"] = str(home)
    env.update(extra or {})
    log = (home / f"serve-{workers}.log").open("wb")
    process = subprocess.Popen(
        [str(COUNTERFAKE), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = (home / f"serve-{workers}.log").read_text()
        if text.count("Application startup complete") >= workers:
            return process
        if process.poll() is not None:
            raise RuntimeError(text[-3000:])
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not start")


def _service(
    home: Path,
    workers: int,
    key: str,
    protected_key: str,
    lookups: list[str],
    uploads: list[bytes],
    derivatives: list[bytes],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    port = 18000 + workers
    process = _serve(home, port, workers)
    try:
        headers = f"Host: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        gets = [f"GET /v1/lookup?signal={v} HTTP/1.1\r\n{headers}\r\n".encode() for v in lookups]

        def posts(images: list[bytes], key: str = key) -> list[bytes]:
            return [
                (
                    f"POST /v1/lookup HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
                    "Content-Type: image/jpeg\r\n"
                    f"Content-Length: {len(d)}\r\n\r\n"
                ).encode()
                + d
                for d in images
            ]

        # Check one of each before loading: a wrong answer must not pass as throughput.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}) as c:
            assert c.get("/v1/lookup", params={"signal": lookups[0]}).json()["matches"]
            assert c.post("/v1/lookup", content=uploads[0]).json()["matches"]
            found = c.post(
                "/v1/lookup", content=derivatives[0], headers={"X-API-Key": protected_key}
            ).json()["matches"]
            # The photo whose content was pasted in is protected too, and may match as well.
            assert found and {m["signal"] for m in found} == {"derivative"}, found
        return {
            "lookup": _drive(port, gets, args.connections, args.duration, args.max_requests),
            "upload": _drive(
                port, posts(uploads), args.upload_connections, args.duration, args.max_requests
            ),
            "derivative": _drive(
                port,
                posts(derivatives, protected_key),
                args.upload_connections,
                args.duration,
                args.max_requests,
            ),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


# report --------------------------------------------------------------------------------------


def _table(results: dict[str, dict[str, dict[str, Any]]], workers: int) -> str:
    lines = [
        "| workload | served by | requests/s | vs library | p50 ms | p99 ms | errors | requests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload in ("lookup", "upload", "derivative"):
        base = results["library"][workload]["per_second"]
        for name in ("library", "service-1", f"service-{workers}"):
            row = results[name][workload]
            lines.append(
                f"| {workload} | {name} | {row['per_second']:.0f} |"
                f" {row['per_second'] / base:.2f}x | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |"
                f" {row['errors']} | {row['requests']} |"
            )
    return "\n".join(lines)


def _adds(args: argparse.Namespace) -> int:
    """Single-signal adds at growing bank sizes: the library, then the service."""
    sizes = [int(x) for x in args.adds_at.split(",")]
    rng = np.random.default_rng(2026)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="counterfake-adds-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'counterfake.db'}"
        (key,) = _bench_bank(url, "submit")
        filled = 0
        for size in sizes:
            print(f"filling the bank to {size:,} entries", flush=True)
            _fill(url, size - filled, rng)
            filled = size
            row: dict[str, Any] = {}
            with Store.open(url) as store:
                latencies = []
                started = time.perf_counter()
                while time.perf_counter() - started < args.duration / 2:
                    entry = NewEntry("pdq", rng.bytes(32).hex())
                    t0 = time.perf_counter()
                    store.add_entries("bench:bench", [entry])
                    latencies.append(time.perf_counter() - t0)
                row["library"] = _summary(latencies, time.perf_counter() - started, 0)
            process = _serve(home, 18100, args.workers)
            try:
                head = f"Host: 127.0.0.1\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n"
                for route, make in (
                    ("v1", lambda v: ("/v1/banks/bench/signals", {"value": v})),
                    ("hma", lambda v: ("/c/bank/bench/signal", {"pdq": v})),
                ):
                    requests = []
                    for _ in range(min(args.max_requests, 60_000)):
                        path, body = make(rng.bytes(32).hex())
                        data = json.dumps(body).encode()
                        line = f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(data)}\r\n\r\n"
                        requests.append(line.encode() + data)
                    row[route] = _drive(
                        18100, requests, args.upload_connections, args.duration, len(requests)
                    )
            finally:
                process.terminate()
                process.wait(timeout=30)
            results[str(size)] = row
            print(
                f"{size:>9,} entries: library {row['library']['per_second']:.0f}/s,"
                f" /v1 {row['v1']['per_second']:.0f}/s, HMA {row['hma']['per_second']:.0f}/s",
                flush=True,
            )
    lines = [
        f"| bank entries | library adds/s | /v1 adds/s ({args.workers} workers) | p50 ms |"
        " HMA adds/s | p50 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, row in results.items():
        lines.append(
            f"| {int(size):,} | {row['library']['per_second']:.0f} | {row['v1']['per_second']:.0f}"
            f" | {row['v1']['p50_ms']:.2f} | {row['hma']['per_second']:.0f}"
            f" | {row['hma']['p50_ms']:.2f} | {row['v1']['errors'] + row['hma']['errors']} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"service-adds-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report = {
        "benchmark": "service-adds",
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "connections": args.upload_connections,
        "duration_s": args.duration,
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}")
    return 0


def _requests_get(paths: list[str], key: str) -> list[bytes]:
    head = f"Host: 127.0.0.1\r\nX-API-Key: {key}\r\n"
    return [f"GET {p} HTTP/1.1\r\n{head}\r\n".encode() for p in paths]


def _requests_post(path: str, bodies: list[bytes], key: str, content_type: str) -> list[bytes]:
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]


def _measured(
    port: int, requests: list[bytes], connections: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    """`_drive`, with the load generator's own CPU use beside it (CPU seconds per second)."""
    cpu, wall = time.process_time(), time.perf_counter()
    row = _drive(port, requests, connections, seconds, max_requests)
    row["client_cpu"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return row


def _wait_ready(port: int, workers: int, timeout: float = 600) -> float:
    """Seconds until /status/ready answered 200 from `workers` different workers in a row."""
    started = time.monotonic()
    ready: dict[str, bool] = {}
    while time.monotonic() - started < timeout:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            answer = client.get("/status/ready")
        ready[str(answer.json()["worker"])] = answer.status_code == 200
        if len(ready) >= workers and all(ready.values()):
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"workers not ready after {timeout} s: {ready}")


def _grown(args: argparse.Namespace) -> int:
    """A bank filled through HTTP while serving, against a restart on the same bank."""
    rng = np.random.default_rng(2026)
    pick = random.Random(2026)
    uploads = _one_megapixel_jpegs(args.corpus, args.images)
    port = 18200
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="counterfake-grown-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'counterfake.db'}"
        submit, key = _bench_bank(url, "submit", "match")
        values = [rng.bytes(32).hex() for _ in range(args.grown)]
        banked = [hash_bytes(d) for d in uploads[::2]]  # half the uploads will match
        bodies = [json.dumps({"pdq": v}).encode() for v in values]
        bodies += [json.dumps({"pdq": h.signals["pdq"]}).encode() for h in banked]
        seeding = _requests_post("/c/bank/bench/signal", bodies, submit, "application/json")
        lookups = []
        for i in range(30_000):
            value = pick.choice(values)
            lookups.append([value, _flip(value, 8, pick), rng.bytes(32).hex()][i % 3])
        raw = _requests_get([f"/m/raw_lookup?signal_type=pdq&signal={v}" for v in lookups], key)
        posts = _requests_post("/v1/lookup", uploads, key, "image/jpeg")

        def measure(label: str) -> dict[str, Any]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}) as c:
                hit = c.get("/m/raw_lookup", params={"signal": values[-1], "signal_type": "pdq"})
                assert hit.json()["matches"], hit.text  # a wrong answer is not throughput
                assert c.post("/v1/lookup", content=uploads[0]).json()["matches"]
            row = {}
            for name, requests, connections in (
                ("raw_lookup_1", raw, 1),
                ("raw_lookup_8", raw, 8),
                ("upload_1", posts, 1),
                ("upload_8", posts, 8),
            ):
                row[name] = _measured(port, requests, connections, args.duration, args.max_requests)
                print(
                    f"  {label} {name}: {row[name]['per_second']:.0f}/s"
                    f" (client CPU {row[name]['client_cpu']:.2f})",
                    flush=True,
                )
            return row

        process = _serve(home, port, args.workers)
        try:
            print(f"seeding {len(bodies):,} entries through the HMA route", flush=True)
            cpu, wall = time.process_time(), time.perf_counter()
            stats, elapsed = asyncio.run(
                _load(
                    port,
                    seeding,
                    args.upload_connections,
                    24 * 3600,
                    len(seeding),
                    each_once=True,
                )
            )
            seed = _summary(stats.latencies, elapsed, stats.errors, stats.statuses)
            seed["client_cpu"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
            seed["ready_after_s"] = _wait_ready(port, args.workers)
            with Store.open(url) as store:
                held = store.get_bank("bench:bench").active_entries
            if held != len(set(bodies)):
                raise RuntimeError(f"seeded {held} entries, not {len(set(bodies))}")
            results["seeding"] = seed
            print(
                f"  {seed['per_second']:.0f} adds/s, errors {seed['errors']},"
                f" ready {seed['ready_after_s']:.2f} s after",
                flush=True,
            )
            results["filled_while_serving"] = measure("filled while serving")
        finally:
            process.terminate()
            process.wait(timeout=30)
        wal = home / "counterfake.db-wal"
        results["wal_bytes_after_seeding"] = wal.stat().st_size if wal.exists() else 0
        process = _serve(home, port, args.workers)
        try:
            _wait_ready(port, args.workers)
            results["restarted"] = measure("restarted")
        finally:
            process.terminate()
            process.wait(timeout=30)

    lines = [
        "| workload | filled while serving /s | restarted /s | ratio | p50 ms (filled / restarted)"
        " | p99 ms (filled / restarted) | client CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("raw_lookup_1", "raw_lookup_8", "upload_1", "upload_8"):
        grown, restarted = results["filled_while_serving"][name], results["restarted"][name]
        lines.append(
            f"| {name} | {grown['per_second']:.0f} | {restarted['per_second']:.0f} |"
            f" {grown['per_second'] / restarted['per_second']:.2f}x |"
            f" {grown['p50_ms']:.2f} / {restarted['p50_ms']:.2f} |"
            f" {grown['p99_ms']:.2f} / {restarted['p99_ms']:.2f} |"
            f" {grown['client_cpu']:.2f} / {restarted['client_cpu']:.2f} |"
        )
    seed = results["seeding"]
    lines.append("")
    lines.append(
        f"Seeding: {seed['requests']:,} adds at {seed['per_second']:.0f}/s through the HMA route"
        f" ({args.upload_connections} connections, p50 {seed['p50_ms']:.2f} ms, p99"
        f" {seed['p99_ms']:.2f} ms, {seed['errors']} errors); every worker ready"
        f" {seed['ready_after_s']:.2f} s after the last add; WAL"
        f" {results['wal_bytes_after_seeding'] / 1e6:.1f} MB after."
    )
    return _report(args, "service-grown", results, "\n".join(lines))


def _bulk_import(args: argparse.Namespace) -> int:
    """Raw lookups without pause while another process imports a bulk of hashes."""
    rng = np.random.default_rng(2026)
    port = 18300
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="counterfake-bulk-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'counterfake.db'}"
        (key,) = _bench_bank(url, "match")
        values = _fill(url, 100_000, rng)  # the bank before the import
        imported = home / "import.txt"
        new_values = [rng.bytes(32).hex() for _ in range(args.bulk_import)]
        imported.write_text("".join(f"pdq {v}\n" for v in new_values))
        raw = _requests_get(
            [f"/m/raw_lookup?signal_type=pdq&signal={v}" for v in values[:30_000]], key
        )
        process = _serve(home, port, args.workers)
        try:
            _wait_ready(port, args.workers)
            print("lookups before the import", flush=True)
            results["before"] = _measured(port, raw, 1, args.duration, args.max_requests)
            env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERFAKE_")}
            env["COUNTERFAKE_HOME"] = str(home)
            print(f"importing {args.bulk_import:,} hashes with the CLI", flush=True)
            started = time.perf_counter()
            importer = subprocess.Popen(
                [str(COUNTERFAKE), "bank", "add", "bench:bench", "--hashes", str(imported)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            during = _Stats()
            cpu = time.process_time()

            async def look_until_done() -> float:
                loop_started = time.perf_counter()
                while importer.poll() is None:
                    await _connection(port, raw, time.perf_counter() + 1.0, [10**9], during, 0)
                return time.perf_counter() - loop_started

            elapsed = asyncio.run(look_until_done())
            ended = time.perf_counter()
            if importer.returncode != 0:
                raise RuntimeError(importer.stderr.read().decode() if importer.stderr else "")
            row = _summary(during.latencies, elapsed, during.errors, during.statuses)
            row["client_cpu"] = (time.process_time() - cpu) / elapsed
            row["max_ms"] = max(during.latencies, default=0.0) * 1000
            results["during"] = row
            results["import_seconds"] = ended - started
            results["ready_after_import_s"] = _wait_ready(port, args.workers)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}) as c:
                hit = c.get(
                    "/m/raw_lookup", params={"signal": new_values[-1], "signal_type": "pdq"}
                )
                assert hit.json()["matches"], hit.text
            print("lookups after the import", flush=True)
            results["after"] = _measured(port, raw, 1, args.duration, args.max_requests)
        finally:
            process.terminate()
            process.wait(timeout=30)
    lines = [
        "| lookups (1 connection) | requests/s | p50 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("before", "during", "after"):
        row = results[name]
        top = f"{row['max_ms']:.1f}" if "max_ms" in row else "-"
        lines.append(
            f"| {name} the import | {row['per_second']:.0f} | {row['p50_ms']:.2f} |"
            f" {row['p99_ms']:.2f} | {top} | {row['errors']} |"
        )
    lines.append("")
    lines.append(
        f"The import of {args.bulk_import:,} hashes (`counterfake bank add --hashes`, another"
        f" process) took {results['import_seconds']:.1f} s; every worker reported ready"
        f" {results['ready_after_import_s']:.2f} s after it ended."
    )
    return _report(args, "service-bulk-import", results, "\n".join(lines))


def _hash_url(args: argparse.Namespace) -> int:
    """GET /h/hash?url= as Coop calls it inline on ingest: 1-MP JPEGs from a loopback image
    server (another process), without and with a bank of protected photos (then each answer
    also carries a derivative reference, which costs a derivative search)."""
    uploads = _one_megapixel_jpegs(args.corpus, args.images)
    port = 18400
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="counterfake-hash-url-") as tmp:
        home = Path(tmp)
        media = home / "media"
        media.mkdir()
        for i, data in enumerate(uploads):
            (media / f"{i}.jpg").write_bytes(data)
        origin = subprocess.Popen(
            [sys.executable, "-m", "http.server", "18401", "--bind", "127.0.0.1"],
            cwd=media,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"sqlite:///{home / 'counterfake.db'}"
        (key,) = _bench_bank(url, "match")
        env = {"COUNTERFAKE_FETCH_URLS": "true", "COUNTERFAKE_FETCH_ALLOW": "127.0.0.1/32"}
        paths = [
            f"/h/hash?url=http%3A%2F%2F127.0.0.1%3A18401%2F{i}.jpg" for i in range(len(uploads))
        ]
        requests = _requests_get(paths, key)
        try:
            time.sleep(0.5)
            for label in ("no protected bank", "protected bank"):
                if label == "protected bank":
                    with Store.open(url) as store:
                        store.create_bank("protected", tenant="bench")
                        paths_ = sorted(args.corpus.glob("*.jpg"))[
                            args.images : args.images + args.protected
                        ]
                        for path in paths_:
                            photo = Image.open(path).convert("RGB")
                            store.add_entries(
                                "bench:protected", protect_bytes(_jpeg(photo, 95)).entries()
                            )
                process = _serve(home, port, args.workers, env)
                try:
                    with httpx.Client(headers={"X-API-Key": key}) as client:
                        first = client.get(f"http://127.0.0.1:{port}{paths[0]}")
                        assert first.status_code == 200, first.text
                        assert ("derivative" in first.json()) == (label == "protected bank")
                    row = {}
                    for connections in (1, 4):
                        row[f"{connections}"] = _measured(
                            port, requests, connections, args.duration, args.max_requests
                        )
                        print(
                            f"  {label}, {connections} connection(s):"
                            f" p50 {row[str(connections)]['p50_ms']:.1f} ms,"
                            f" p99 {row[str(connections)]['p99_ms']:.1f} ms",
                            flush=True,
                        )
                    results[label] = row
                finally:
                    process.terminate()
                    process.wait(timeout=30)
        finally:
            origin.terminate()
            origin.wait(timeout=10)
    lines = [
        "| GET /h/hash?url= (1-MP JPEG, loopback) | connections | requests/s | p50 ms | p99 ms"
        " | errors | client CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in results.items():
        for connections, cell in row.items():
            lines.append(
                f"| {label} | {connections} | {cell['per_second']:.0f} | {cell['p50_ms']:.1f} |"
                f" {cell['p99_ms']:.1f} | {cell['errors']} | {cell['client_cpu']:.2f} |"
            )
    return _report(args, "service-hash-url", results, "\n".join(lines))


def _report(args: argparse.Namespace, name: str, results: dict[str, Any], table: str) -> int:
    print()
    print(table)
    report = {
        "benchmark": name,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--upload-connections", type=int, default=8)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--protected", type=int, default=200, help="photos in the protected bank")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--adds-at", default=None, help="bank sizes for the adds workload")
    parser.add_argument("--grown", type=int, default=0, help="entries seeded while serving")
    parser.add_argument("--bulk-import", type=int, default=0, help="entries imported meanwhile")
    parser.add_argument("--hash-url", action="store_true", help="GET /h/hash?url= latency")
    args = parser.parse_args()
    if args.hash_url:
        return _hash_url(args)
    if args.adds_at:
        return _adds(args)
    if args.grown:
        return _grown(args)
    if args.bulk_import:
        return _bulk_import(args)

    rng = np.random.default_rng(2026)
    pick = random.Random(2026)
    uploads = _one_megapixel_jpegs(args.corpus, args.images)
    if len(uploads) < 2:
        parser.error(f"no photos in {args.corpus}")
    with tempfile.TemporaryDirectory(prefix="counterfake-service-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'counterfake.db'}"
        print(f"filling a store with {args.entries:,} PDQ entries", flush=True)
        (key,) = _bench_bank(url, "match")
        with Store.open(url) as store:
            _, protected_key = store.keys.create("victims", ["match"], name="benchmark")
        values = _fill(url, args.entries, rng)
        with Store.open(url) as store:
            banked = [hash_bytes(d) for d in uploads[::2]]  # half the uploads will match
            store.add_entries(
                "bench:bench",
                [NewEntry("pdq", h.signals["pdq"], quality=h.quality) for h in banked],
            )
            # Protected photos from past the upload images; the first verifies the setup.
            paths = sorted(args.corpus.glob("*.jpg"))[args.images : args.images + args.protected]
            photos = [Image.open(path).convert("RGB") for path in paths]
            store.create_bank("protected", tenant="victims")
            for photo in photos:
                store.add_entries("victims:protected", protect_bytes(_jpeg(photo, 95)).entries())
            derivatives = [
                _derivative(photo, photos[(i + 7) % len(photos)]) for i, photo in enumerate(photos)
            ]
        lookups = []
        for i in range(30_000):
            value = pick.choice(values)
            lookups.append([value, _flip(value, 8, pick), rng.bytes(32).hex()][i % 3])
        uploads = [uploads[0], *pick.sample(uploads[1:], len(uploads) - 1)]

        results: dict[str, Any] = {}
        print("library, in this process", flush=True)
        results["library"] = _library(url, lookups, uploads, derivatives, args.duration)
        for workers in sorted({1, args.workers}):
            print(f"service, {workers} worker(s)", flush=True)
            results[f"service-{workers}"] = _service(
                home, workers, key, protected_key, lookups, uploads, derivatives, args
            )

    table = _table(results, args.workers)
    print()
    print(table)
    report = {
        "benchmark": "service",
        "entries": args.entries,
        "workers": args.workers,
        "duration_s": args.duration,
        "connections": {"lookup": args.connections, "upload": args.upload_connections},
        "protected_photos": args.protected,
        "upload_image_bytes_median": statistics.median(len(d) for d in uploads),
        "cpus": os.cpu_count(),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"service-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
