"""Review under load: reviewers claiming and deciding from a deep queue, webhooks keeping up.

    python benchmarks/review.py [--cases 100000] [--reviewers 8] [--rounds 100] [--think 0]

`counterfake serve --workers 2` (SQLite, or `--database-url`) holds `--cases` open cases of
one tenant. `--reviewers` threads, each with its own review key, claim the oldest free case and
decide it (`confirm`), `--rounds` times each after 3 untimed ones; every claim and decision
is timed, and the run fails if any case is claimed twice. Every decision is a `case.decided`
event for a local receiver: the run reports whether deliveries keep up while reviewers decide,
and how fast a backlog of events (`--burst` decisions made in the store before the service
starts) drains, from its first arrival to its last. The baseline in the
same run is `GET /status/live` on the same service: what a request costs before any work.
Targets (issue 16): claim and decide p99 <= 100 ms; webhooks keep up with 200 decisions/s.
Writes benchmarks/results/review.json and .md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np

from counterfake import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.service.server import Server

RESULTS = Path(__file__).resolve().parent / "results"
#: Untimed cycles per reviewer before the timed ones.
_WARMUP = 3


class _Receiver(BaseHTTPRequestHandler):
    arrived: ClassVar[list[float]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.arrived.append(time.monotonic())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def _fill(store: Store, count: int) -> None:
    """Open cases written set-wise (opening them one lookup at a time is not what is measured)."""
    from counterfake.store.schema import cases

    start = datetime.now(UTC) - timedelta(days=1)
    rows = [
        {
            "tenant": "acme",
            "bank": f"bank{n % 4}",
            "signal": "pdq",
            "status": "open",
            "opened_at": start + timedelta(milliseconds=n),
            "content_id": f"upload-{n}",
            "content_url": None,
            "query": f"sha256:{n:064x}",
            "evidence": [
                {"bank": f"bank{n % 4}", "entry_id": n + 1, "signal": "pdq", "distance": 3}
            ],
        }
        for n in range(count)
    ]
    with store._db.write() as conn:
        for begin in range(0, count, 10_000):
            conn.execute(cases.insert(), rows[begin : begin + 10_000])


def _percentiles(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1000
    return {
        "count": len(samples),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
    }


def _reviewer(
    url: str, key: str, rounds: int, think: float
) -> tuple[list[float], list[float], list[int]]:
    claims, decisions, ids = [], [], []
    decision = {"decision": "confirm", "action": "remove", "policy": "ncii", "reason": "bench"}
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
        for number in range(rounds + _WARMUP):
            started = time.perf_counter()
            answer = client.post("/v1/cases/claim", json={})
            claim_took = time.perf_counter() - started
            answer.raise_for_status()
            case = answer.json()["case"]
            if case is None:
                break
            ids.append(case["id"])
            started = time.perf_counter()
            client.post(f"/v1/cases/{case['id']}/decision", json=decision).raise_for_status()
            if number >= _WARMUP:  # the first cycles compile and warm each worker's caches
                claims.append(claim_took)
                decisions.append(time.perf_counter() - started)
            time.sleep(think)  # a person looks at the case before the next one
    return claims, decisions, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--reviewers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds a reviewer spends between cases"
    )
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    receiver.daemon_threads = True
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    result: dict[str, Any] = {
        "cases": args.cases,
        "reviewers": args.reviewers,
        "workers": 2,
        "think_seconds": args.think,
    }
    with tempfile.TemporaryDirectory(prefix="counterfake-review-") as tmp:
        home = Path(tmp)
        url = args.database_url or f"sqlite:///{home / 'counterfake.db'}"
        with Store.open(url) as store:
            started = time.perf_counter()
            _fill(store, args.cases)
            result["fill_seconds"] = round(time.perf_counter() - started, 1)
            keys = [
                store.keys.create("acme", ["review"], name=f"r{n}")[1]
                for n in range(args.reviewers)
            ]
            store.add_webhook("acme", hook_url, ("case.decided",))
            # A backlog of events (decisions made straight in the store) for the service to
            # drain when it starts: its rate is first arrival to last.
            backlog = store.list_cases("acme", statuses=("open",), limit=args.burst)
            for case in backlog:
                store.decide_case(
                    case.id,
                    "acme",
                    "bench",
                    decision="confirm",
                    policy="ncii",
                    reason="bench",
                    action="remove",
                    remember=False,
                )
        with Server(home, workers=2, database_url=args.database_url) as server:
            deadline = time.monotonic() + 300
            while len(_Receiver.arrived) < len(backlog) and time.monotonic() < deadline:
                time.sleep(0.05)
            arrived = list(_Receiver.arrived)
            result["backlog_events"] = len(backlog)
            result["backlog_delivered"] = len(arrived)
            span = max(arrived[-1] - arrived[0], 1e-3) if len(arrived) > 1 else float("nan")
            result["webhook_events_per_second"] = round((len(arrived) - 1) / span, 1)
            _Receiver.arrived.clear()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                live = []
                for _ in range(300):
                    started = time.perf_counter()
                    client.get("/status/live").raise_for_status()
                    live.append(time.perf_counter() - started)
            result["baseline_status_live"] = _percentiles(live)

            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.reviewers) as pool:
                done = list(
                    pool.map(lambda k: _reviewer(server.url, k, args.rounds, args.think), keys)
                )
            elapsed = time.perf_counter() - started
            claims = [s for c, _, _ in done for s in c]
            decisions = [s for _, d, _ in done for s in d]
            ids = [i for _, _, i in done for i in i]
            result["claim"] = _percentiles(claims)
            result["decide"] = _percentiles(decisions)
            result["decided"] = len(ids)
            result["claimed_twice"] = len(ids) - len(set(ids))
            result["decisions_per_second"] = round(len(ids) / elapsed, 1)
            deadline = time.monotonic() + 60
            while len(_Receiver.arrived) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
            result["delivered_while_reviewing"] = len(_Receiver.arrived)

    receiver.shutdown()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "review.json").write_text(json.dumps(result, indent=2) + "\n")
    base = result["baseline_status_live"]
    table = "\n".join(
        [
            f"| {args.reviewers} reviewers ({args.think} s between cases), 2 workers, "
            f"{args.cases:,} open cases | p50 ms | p99 ms | target |",
            "|---|---|---|---|",
            f"| claim | {result['claim']['p50_ms']} | {result['claim']['p99_ms']} | p99 <= 100 |",
            f"| decide | {result['decide']['p50_ms']} | {result['decide']['p99_ms']} "
            "| p99 <= 100 |",
            f"| baseline: GET /status/live | {base['p50_ms']} | {base['p99_ms']} | |",
            "",
            f"{result['decided']} cases decided ({result['decisions_per_second']}/s), "
            f"claimed twice: {result['claimed_twice']}; webhook deliveries while reviewing: "
            f"{result['delivered_while_reviewing']}/{result['decided']}. A backlog of "
            f"{result['backlog_events']} events drained at {result['webhook_events_per_second']}"
            f" deliveries/s (target: keep up with 200 decisions/s).",
        ]
    )
    (RESULTS / "review.md").write_text(table + "\n")
    print(table)
    ok = result["claimed_twice"] == 0 and result["backlog_delivered"] == result["backlog_events"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
