"""Soak: a running service under a steady mixed load for a long time, watched for errors,
latency drift and memory growth.

    python benchmarks/soak.py [--database-url URL] [--entries 1000000] [--photos 10000]
                              [--minutes 30] [--load 0.8] [--workers 2]

`counterfake serve --workers 2` holds a bank of `--entries` random PDQ hashes and one of
`--photos` protected photos (derivative signatures of synthetic photos). A first minute at
full speed (8 clients, no pause) measures the peak; then `--load` of it is offered at a fixed
rate (arrivals scheduled, not waiting on answers) for `--minutes`: 70% signal lookups, 10%
image uploads, 5% derivative lookups (a region of a protected photo replaced), 10% adds and
5% withdrawals. Every 10 s it records the window's latency percentiles, errors, the workers'
resident memory and CPU seconds (and those of their background builds: threads at a raised
nice value), the machine's busy, idle and stolen CPU seconds, the size of
SQLite's write-ahead log, and the CPU milliseconds that a fixed piece of work (a probe
process, every 10 s) took: whether the machine itself was slower then. At the end the
workers must have followed the change log to its end.
Targets (issue 18): 0 errors; p99 of the last 5 minutes within 20% of the first 5 (after a
minute's warm-up); resident memory growth < 5% after warm-up. The baseline in the same run is
the peak phase: the same mix with nothing held back. Writes benchmarks/results/soak-*.json,
.md and .png (latency and RSS over time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from counterfake import Store
from counterfake.model import NewEntry
from counterfake.protect import protect_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.derivative_images import reencode, replace_region
from tests.images import encode, photo_like
from tests.service.server import Server

RESULTS = Path(__file__).resolve().parent / "results"
_MIX = (("lookup", 0.70), ("upload", 0.10), ("derivative", 0.05), ("add", 0.10), ("withdraw", 0.05))
_WINDOW = 10.0
#: The probe: the same work every window (Python bytecode, then a pass over 64 MB), timed in
#: its own CPU time, so that waiting for a core does not count, a slower core does.
_PROBE = """
import sys, time
import numpy as np
block = np.ones(8 << 20)
while True:
    began = time.process_time()
    total = 0
    for i in range(300_000):
        total += i * i
    for _ in range(4):
        total += int(block.sum())
    print(f"{time.monotonic():.2f} {(time.process_time() - began) * 1000:.2f}", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def _tree(pid: int) -> tuple[int, float]:
    """Resident bytes of a process and its descendants, and the CPU seconds they have used."""
    total, cpu = 0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as fh:
                total += int(fh.read().split()[1]) * 4096
            with open(f"/proc/{current}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total, cpu


class _Builders:
    """CPU seconds spent by the service's threads at a raised nice value: the matchers'
    background builds (folds, seals, merges), which a process's CPU time counts with the
    requests'. Sampled every second from /proc, per thread: a build shorter than a second
    can be missed, and a finished one loses at most its last second."""

    def __init__(self, pid: int) -> None:
        self.seconds = 0.0
        self._pid = pid
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(1.0):
            stack = [self._pid]
            while stack:
                current = stack.pop()
                try:
                    for task in Path(f"/proc/{current}/task").iterdir():
                        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                        stack += [int(c) for c in (task / "children").read_text().split()]
                        if int(fields[16]) <= 0:  # nice
                            continue
                        cpu = (int(fields[11]) + int(fields[12])) / tick
                        tid = int(task.name)
                        self.seconds += cpu - self._seen.get(tid, 0.0)
                        self._seen[tid] = cpu
                except (OSError, ValueError, IndexError):
                    continue


def _machine() -> tuple[float, float, float]:
    """Seconds of CPU the whole machine has spent busy, idle and stolen by the host."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]
    steal = ticks[7] if len(ticks) > 7 else 0
    return (sum(ticks[:8]) - idle - steal) / tick, idle / tick, steal / tick


class _Workload:
    """The requests of the mix, with what they need made up front."""

    def __init__(self, key: str, values: list[str], uploads: list[bytes], fakes: list[bytes]):
        self.key = key
        self.values = values
        self.uploads = uploads
        self.fakes = fakes
        self.added: list[int] = []
        self.lock = threading.Lock()

    def one(self, client: httpx.Client, kind: str, rng: random.Random) -> int:
        if kind == "lookup":
            value = rng.choice(self.values)
            return client.get("/v1/lookup", params={"signal": value, "bank": "hashes"}).status_code
        if kind == "upload":
            data = rng.choice(self.uploads)
            return client.post("/v1/lookup", params={"bank": "hashes"}, content=data).status_code
        if kind == "derivative":
            data = rng.choice(self.fakes)
            return client.post("/v1/lookup", params={"bank": "photos"}, content=data).status_code
        if kind == "add":
            answer = client.post("/v1/banks/hashes/signals", json={"value": secrets.token_hex(32)})
            if answer.status_code == 201:
                with self.lock:
                    self.added.append(answer.json()["entries"][0]["entry_id"])
            return answer.status_code
        with self.lock:
            entry = self.added.pop() if self.added else None
        if entry is None:
            return 200
        return client.delete(f"/v1/banks/hashes/entries/{entry}").status_code


def _kind(rng: random.Random) -> str:
    roll = rng.random()
    for kind, share in _MIX:
        if roll < share:
            return kind
        roll -= share
    return _MIX[0][0]


def _peak(server: Server, work: _Workload, seconds: float) -> tuple[float, list[float], int]:
    """Requests a second with 8 clients and no pause: the baseline, and what the load is cut
    from."""
    stop = time.monotonic() + seconds
    took: list[float] = []
    errors = [0]

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=server.url, headers={"X-API-Key": work.key}, timeout=30) as c:
            while time.monotonic() < stop:
                started = time.perf_counter()
                status = work.one(c, _kind(rng), rng)
                took.append(time.perf_counter() - started)
                if status >= 400:
                    errors[0] += 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(took) / seconds, took, errors[0]


def _steady(
    server: Server, work: _Workload, rate: float, seconds: float, wal: Path | None
) -> tuple[list[dict[str, Any]], int]:
    """`rate` requests a second, scheduled (open loop) over 16 senders, windows of 10 s."""
    started = time.monotonic()
    records: list[tuple[float, float, int, str]] = []  # (at, seconds, status, kind)
    lock = threading.Lock()
    senders = 16
    interval = senders / rate

    def sender(n: int) -> None:
        rng = random.Random(1000 + n)
        due = started + n * interval / senders
        with httpx.Client(base_url=server.url, headers={"X-API-Key": work.key}, timeout=30) as c:
            while due < started + seconds:
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                began = time.perf_counter()
                kind = _kind(rng)
                try:
                    status = work.one(c, kind, rng)
                except httpx.HTTPError:
                    status = 599
                with lock:
                    records.append((due - started, time.perf_counter() - began, status, kind))
                due += interval

    windows: list[dict[str, Any]] = []
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    pid = server._process.pid if server._process else 0
    cpu_before, machine_before = _tree(pid)[1], _machine()
    builders = _Builders(pid)
    builders_before = 0.0
    probe = subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(_WINDOW / 2)], stdout=subprocess.PIPE, text=True
    )
    probed: list[tuple[float, float]] = []  # (at, CPU ms)
    reader = threading.Thread(
        target=lambda: probed.extend(
            (float(at) - started, float(ms)) for at, ms in map(str.split, probe.stdout or [])
        ),
        daemon=True,
    )
    reader.start()
    while any(t.is_alive() for t in threads):
        time.sleep(_WINDOW)
        rss, cpu = _tree(pid)
        machine = _machine()
        busy, idle, steal = (now - then for now, then in zip(machine, machine_before, strict=True))
        # Whether a slow phase is the service working harder or getting less of the machine.
        windows.append(
            {
                "at": round(time.monotonic() - started, 1),
                "rss": rss,
                "service_cpu_s": round(cpu - cpu_before, 2),
                "builder_cpu_s": round(builders.seconds - builders_before, 2),
                "machine_busy_s": round(busy, 2),
                "machine_idle_s": round(idle, 2),
                "stolen_s": round(steal, 2),
                "wal_mb": round(wal.stat().st_size / 2**20, 1) if wal and wal.exists() else None,
            }
        )
        cpu_before, machine_before, builders_before = cpu, machine, builders.seconds
    for thread in threads:
        thread.join()
    builders.stop()
    probe.terminate()
    probe.wait()
    reader.join(timeout=5)
    for window in windows:
        mine = [ms for at, ms in probed if window["at"] - _WINDOW <= at < window["at"]]
        window["probe_cpu_ms"] = round(float(np.median(mine)), 2) if mine else None
        inside = [r for r in records if window["at"] - _WINDOW <= r[0] < window["at"]]
        took = np.array([r[1] for r in inside]) * 1000 if inside else np.zeros(1)
        window.update(
            requests=len(inside),
            errors=sum(r[2] >= 400 for r in inside),
            p50_ms=round(float(np.percentile(took, 50)), 2),
            p99_ms=round(float(np.percentile(took, 99)), 2),
            p99_by_kind_ms={
                kind: round(float(np.percentile([r[1] * 1000 for r in mine], 99)), 2)
                for kind, _ in _MIX
                if (mine := [r for r in inside if r[3] == kind])
            },
        )
    return windows, sum(r[2] >= 400 for r in records)


def _plot(windows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [w["at"] / 60 for w in windows]
    figure, (latency, memory) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    latency.plot(minutes, [w["p50_ms"] for w in windows], label="p50")
    latency.plot(minutes, [w["p99_ms"] for w in windows], label="p99")
    latency.set_ylabel("ms")
    latency.legend()
    latency.set_title(title)
    memory.plot(minutes, [w["rss"] / 2**20 for w in windows], color="tab:green")
    memory.set_ylabel("workers' RSS, MB")
    memory.set_xlabel("minutes")
    figure.tight_layout()
    figure.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--peak-seconds", type=float, default=60)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="soak-"))
    url = args.database_url or f"sqlite:///{home / 'counterfake.db'}"
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    rng = random.Random(0)

    print(f"filling {args.entries:,} hashes and {args.photos:,} protected photos ...", flush=True)
    values = [f"{rng.getrandbits(256):064x}" for _ in range(args.entries)]
    photos = [photo_like(320, 240, seed=n) for n in range(args.photos)]
    with Store.open(url) as store:
        store.create_bank("hashes")
        store.create_bank("photos")
        key = store.keys.create("default", ["curate", "match"])[1]
        for begin in range(0, len(values), 50_000):
            chunk = values[begin : begin + 50_000]
            store.add_entries("hashes", [NewEntry("pdq", v, source="soak") for v in chunk])
        for begin in range(0, len(photos), 200):
            entries = []
            for photo in photos[begin : begin + 200]:
                entries += protect_bytes(encode(photo, quality=90)).entries()
            store.add_entries("photos", entries)
    uploads = [encode(photo_like(640, 480, seed=100_000 + n)) for n in range(20)]
    fakes = [
        reencode(replace_region(photos[n], photo_like(320, 240, seed=200_000 + n), 0.3)[0])
        for n in range(20)
    ]
    work = _Workload(key, values, uploads, fakes)

    with Server(home, workers=args.workers, database_url=url) as server:
        peak, peak_took, peak_errors = _peak(server, work, args.peak_seconds)
        rate = peak * args.load
        print(f"peak {peak:.0f} requests/s; soaking at {rate:.0f}/s", flush=True)
        wal = Path(url.removeprefix("sqlite:///") + "-wal") if backend == "sqlite" else None
        windows, errors = _steady(server, work, rate, args.minutes * 60, wal)
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}) as client:
            deadline = time.monotonic() + 60
            while not (status := client.get("/status").json())["caught_up"]:
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
    with Store.open(url) as store:
        active = store.get_bank("hashes").active_entries
        active += store.get_bank("photos").active_entries

    settled = [w for w in windows if w["at"] > 60] or windows  # after a minute's warm-up
    per_five = max(1, int(300 / _WINDOW))
    first = np.percentile([w["p99_ms"] for w in settled[:per_five]] or [0], 50)
    last = np.percentile([w["p99_ms"] for w in settled[-per_five:]] or [0], 50)
    rss_start, rss_end = settled[0]["rss"], settled[-1]["rss"]

    def median_p99(windows: list[dict[str, Any]], kind: str) -> float:
        values = [w["p99_by_kind_ms"][kind] for w in windows if kind in w["p99_by_kind_ms"]]
        return round(float(np.percentile(values, 50)), 2) if values else 0.0

    def cpu_per_request(windows: list[dict[str, Any]], *, builds: bool = True) -> float:
        requests = sum(w["requests"] for w in windows)
        spent = sum(w["service_cpu_s"] - (0 if builds else w["builder_cpu_s"]) for w in windows)
        return 1000 * spent / requests if requests else 0.0

    def idle_share(windows: list[dict[str, Any]]) -> float:
        spent = sum(w["machine_busy_s"] + w["machine_idle_s"] for w in windows)
        return sum(w["machine_idle_s"] for w in windows) / spent if spent else 0.0

    cpu_first, cpu_last = cpu_per_request(settled[:per_five]), cpu_per_request(settled[-per_five:])
    own_first = cpu_per_request(settled[:per_five], builds=False)
    own_last = cpu_per_request(settled[-per_five:], builds=False)
    builds_first = sum(w["builder_cpu_s"] for w in settled[:per_five])
    builds_last = sum(w["builder_cpu_s"] for w in settled[-per_five:])
    idle_first, idle_last = idle_share(settled[:per_five]), idle_share(settled[-per_five:])
    stolen = sum(w["stolen_s"] for w in windows)
    # What the windows' p99 moves with: the machine's speed (the probe), the service's work
    # per request, with and without its background builds, the builds, the write-ahead log.
    along = {
        "probe_cpu_ms": [w["probe_cpu_ms"] for w in settled],
        "service_cpu_ms_per_request": [
            1000 * w["service_cpu_s"] / w["requests"] if w["requests"] else None for w in settled
        ],
        "request_cpu_ms_per_request": [
            1000 * (w["service_cpu_s"] - w["builder_cpu_s"]) / w["requests"]
            if w["requests"]
            else None
            for w in settled
        ],
        "builder_cpu_s": [w["builder_cpu_s"] for w in settled],
        "wal_mb": [w["wal_mb"] for w in settled],
    }
    p99s = [w["p99_ms"] for w in settled]
    correlation = {}
    for name, series in along.items():
        pairs = [(a, b) for a, b in zip(p99s, series, strict=True) if b is not None]
        if len(pairs) > 2 and np.std([b for _, b in pairs]) > 0:
            correlation[name] = round(float(np.corrcoef(np.array(pairs).T)[0, 1]), 2)
    probe_ms = [v for v in along["probe_cpu_ms"] if v is not None]
    probe_first = float(np.median(probe_ms[:per_five])) if probe_ms else 0.0
    probe_last = float(np.median(probe_ms[-per_five:])) if probe_ms else 0.0
    by_kind = {
        kind: (median_p99(settled[:per_five], kind), median_p99(settled[-per_five:], kind))
        for kind, _ in _MIX
    }
    result = {
        "backend": backend,
        "workers": args.workers,
        "entries": args.entries,
        "photos": args.photos,
        "minutes": args.minutes,
        "peak_per_second": round(peak, 1),
        "peak_p50_ms": round(float(np.percentile(peak_took, 50)) * 1000, 2),
        "peak_p99_ms": round(float(np.percentile(peak_took, 99)) * 1000, 2),
        "peak_errors": peak_errors,
        "offered_per_second": round(rate, 1),
        "errors": int(errors),
        "p99_first_5min_ms": round(float(first), 2),
        "p99_last_5min_ms": round(float(last), 2),
        "p99_drift": round(float(last / first - 1), 3) if first else None,
        "rss_growth": round(rss_end / rss_start - 1, 4),
        "p99_first_last_5min_by_kind_ms": by_kind,
        "service_cpu_ms_per_request_first_last_5min": [round(cpu_first, 2), round(cpu_last, 2)],
        "request_cpu_ms_per_request_first_last_5min": [round(own_first, 2), round(own_last, 2)],
        "builder_cpu_s_first_last_5min": [round(builds_first, 1), round(builds_last, 1)],
        "machine_idle_first_last_5min": [round(idle_first, 3), round(idle_last, 3)],
        "stolen_s": round(stolen, 1),
        "probe_cpu_ms_first_last_5min": [round(probe_first, 2), round(probe_last, 2)],
        "p99_correlation": correlation,
        "caught_up": bool(status["caught_up"]),
        "held_entries": status["entries"],
        "store_active_entries": active,
        "windows": windows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"soak-{backend}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    _plot(windows, stem.with_suffix(".png"), f"soak, {backend}, {args.workers} workers")
    rows = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| baseline: peak, 8 clients, no pause | {peak:.0f}/s (p50 {result['peak_p50_ms']} ms,"
        f" p99 {result['peak_p99_ms']} ms) | |",
        f"| offered ({args.load:.0%} of peak), {args.minutes:g} min | {rate:.0f}/s | |",
        f"| errors | {errors} | 0 |",
        f"| p99 first / last 5 min (median of 10 s windows) | {first:.1f} / {last:.1f} ms"
        f" ({result['p99_drift']:+.0%}) | within 20% |",
        f"| workers' RSS after warm-up, start / end | {rss_start / 2**20:.0f} / "
        f"{rss_end / 2**20:.0f} MB ({result['rss_growth']:+.1%}) | < 5% growth |",
        *(
            f"| p99 of {kind}s, first / last 5 min | {a:.1f} / {b:.1f} ms"
            f" ({(b / a - 1 if a else 0):+.0%}) | |"
            for kind, (a, b) in by_kind.items()
        ),
        f"| service CPU ms per request, first / last 5 min | {cpu_first:.1f} / {cpu_last:.1f} | |",
        f"| ... without the background builds | {own_first:.1f} / {own_last:.1f} | |",
        f"| background builds' CPU s, first / last 5 min | {builds_first:.1f} /"
        f" {builds_last:.1f} | |",
        f"| machine idle, first / last 5 min; stolen by the host, whole run | {idle_first:.0%} /"
        f" {idle_last:.0%}; {stolen:.1f} s | |",
        f"| probe's CPU ms for the same work, first / last 5 min | {probe_first:.1f} /"
        f" {probe_last:.1f} | |",
        "| windows' p99 correlates with | "
        + ", ".join(f"{name} {r:+.2f}" for name, r in correlation.items())
        + " | |",
        f"| change log followed to the end | {result['caught_up']} ({status['entries']:,} held,"
        f" {active:,} active in the store) | yes |",
    ]
    table = "\n".join(rows)
    stem.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
