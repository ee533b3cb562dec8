"""Limits on request size and on concurrent hashing, through a server with small limits."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from counterfake import Store

from ..images import encode, photo_like
from .server import Server


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    home: Path = tmp_path_factory.mktemp("limits")
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        _, secret = store.keys.create("t", ["match"])
    env = {
        "COUNTERFAKE_MAX_BYTES": "2000000",
        "COUNTERFAKE_MAX_PIXELS": "30000000",
        "COUNTERFAKE_HASH_CONCURRENCY": "1",
        "COUNTERFAKE_HASH_QUEUE": "0",
    }
    with Server(home, env=env) as server:
        yield server, secret


def test_a_body_over_the_limit_is_refused_with_413(small: tuple[Server, str]) -> None:
    server, secret = small
    client = server.client(secret)
    response = client.post("/v1/hash", content=b"\xff\xd8" + b"\0" * 2_100_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "input_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"\0" * 100_000

    streamed = client.post("/v1/hash", content=chunks())
    assert (streamed.status_code, streamed.json()["error"]["code"]) == (413, "input_too_large")

    huge_json = b'{"signal": "' + b"0" * 2_200_000 + b'"}'
    for body in (huge_json, chunks()):
        refused = client.post(
            "/v1/compare", content=body, headers={"Content-Type": "application/json"}
        )
        assert (refused.status_code, refused.json()["error"]["code"]) == (413, "input_too_large")


def test_beyond_the_hashing_limit_requests_are_refused_busy_not_queued_forever(
    small: tuple[Server, str],
) -> None:
    server, secret = small
    big = encode(photo_like(5000, 4000, seed=3), quality=70)  # slow to hash, under 2 MB
    assert len(big) < 2_000_000

    def post(_: int) -> httpx.Response:
        with server.client(secret) as client:
            return client.post("/v1/hash", content=big)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) <= {200, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json()["error"]["code"] == "busy" and busy.headers["retry-after"] == "1"


def test_a_noisy_key_is_slowed_to_its_rate_and_a_quiet_one_is_not(tmp_path: Path) -> None:
    import threading
    import time

    with Store.open(f"sqlite:///{tmp_path / 'counterfake.db'}") as store:
        noisy = store.keys.create("t", ["match"], name="noisy")[1]
        quiet = store.keys.create("t", ["match"], name="quiet")[1]
    env = {
        "COUNTERFAKE_RATE_LIMIT": "20",
        "COUNTERFAKE_RATE_BURST": "10",
        "COUNTERFAKE_ADDRESS_RATE_LIMIT": "2",
    }
    lookup = {"signal": "0" * 64}
    with Server(tmp_path, env=env) as server:
        stop = threading.Event()
        statuses: list[int] = []
        waits: set[str] = set()

        def hammer() -> None:
            client = server.client(noisy)
            while not stop.is_set():
                answer = client.get("/v1/lookup", params=lookup)
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    assert answer.json()["error"]["code"] == "rate_limited"
                    waits.add(answer.headers["retry-after"])

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        calm = server.client(quiet)
        answered = []
        for _ in range(15):  # 5 a second, under its own rate: never refused
            answered.append(calm.get("/v1/lookup", params=lookup).status_code)
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
        assert answered == [200] * 15
        allowed = statuses.count(200)
        assert statuses.count(429) > allowed  # most of the flood was refused
        assert allowed <= 10 + 20 * seconds + 5  # the burst, then the rate
        assert waits == {"1"}

        # Keyless routes are limited per client address; health checks never are.
        anonymous = httpx.Client(base_url=server.url)
        codes = [anonymous.get("/v1/intake").status_code for _ in range(30)]
        assert codes.count(200) <= 10 + 2 * 2 and codes[-1] == 429
        assert all(anonymous.get("/status/live").status_code == 200 for _ in range(30))


def test_the_workers_of_one_service_share_each_keys_rate(tmp_path: Path) -> None:
    import threading
    import time

    with Store.open(f"sqlite:///{tmp_path / 'counterfake.db'}") as store:
        _, secret = store.keys.create("t", ["match"])
    env = {"COUNTERFAKE_RATE_LIMIT": "20", "COUNTERFAKE_RATE_BURST": "10"}
    with Server(tmp_path, workers=2, env=env) as server:
        stop = threading.Event()
        answers: list[tuple[int, str]] = []

        def hammer() -> None:
            while not stop.is_set():  # a new connection each time: the kernel spreads them
                answer = httpx.get(
                    f"{server.url}/v1/lookup",
                    params={"signal": "0" * 64},
                    headers={"Authorization": f"Bearer {secret}"},
                )
                answers.append((answer.status_code, answer.headers["x-counterfake-worker"]))

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
    allowed = [worker for status, worker in answers if status == 200]
    assert len(set(allowed)) == 2  # both workers answered
    assert {status for status, _ in answers} == {200, 429}
    # One bucket for the key across both workers; each worker's own would allow twice this.
    assert len(allowed) <= 10 + 20 * seconds + 5


def test_a_worker_killed_while_it_holds_a_bucket_keeps_no_other_waiting(tmp_path: Path) -> None:
    import fcntl
    import os
    import signal
    import threading

    from counterfake.service.limits import BucketTable

    with BucketTable.shared() as path:
        first, second = BucketTable(path), BucketTable(path)
        assert [first.take("key:a", 1.0, 2.0) for _ in range(2)] == [0, 0]
        assert second.take("key:a", 1.0, 2.0) == 1  # the same bucket, seen from another worker
        assert second.take("key:b", 1.0, 2.0) == 0  # another name's bucket is its own

        child = os.fork()
        if child == 0:  # a worker that takes every lock of the table and dies holding them
            fd = os.open(path, os.O_RDWR)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(child, 0)
        taken: list[int] = []  # taken on a thread: a lock left held fails here, not hangs
        taker = threading.Thread(target=lambda: taken.append(second.take("key:c", 1.0, 2.0)))
        taker.daemon = True
        taker.start()
        taker.join(timeout=10)
        assert taken == [0]


def test_a_key_with_a_rate_of_its_own_is_held_to_it_and_an_admin_can_change_it(
    tmp_path: Path,
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'counterfake.db'}") as store:
        admin = store.keys.create("t", ["admin"])[1]
        usual_key, usual = store.keys.create("t", ["match"])
        fast = store.keys.create("t", ["match"], rate_limit=0)[1]  # no limit for this one
    env = {"COUNTERFAKE_RATE_LIMIT": "2", "COUNTERFAKE_RATE_BURST": "4"}
    lookup = {"signal": "0" * 64}
    with Server(tmp_path, env=env) as server:

        def answered(secret: str, n: int) -> int:
            with server.client(secret) as client:
                codes = [client.get("/v1/lookup", params=lookup).status_code for _ in range(n)]
            assert set(codes) <= {200, 429}
            return codes.count(200)

        assert answered(fast, 40) == 40
        assert answered(usual, 20) <= 4 + 2 * 2  # the default: its burst, then 2 a second
        with server.client(admin) as client:
            changed = client.patch(f"/v1/keys/{usual_key.key_id}", json={"rate_limit": 0})
            assert changed.status_code == 200 and changed.json()["rate_limit"] == 0
            refused = client.patch(f"/v1/keys/{usual_key.key_id}", json={"rate_limit": -1})
            assert refused.json()["error"]["code"] == "invalid_rate_limit"
        time.sleep(1.2)  # services cache keys for a second
        assert answered(usual, 40) == 40


def test_a_service_killed_outright_leaves_no_rate_table_behind(tmp_path: Path) -> None:
    import os
    import signal
    import tempfile

    def tables() -> set[str]:
        places = [Path(tempfile.gettempdir()), Path("/dev/shm")]
        return {
            p.name for place in places if place.is_dir() for p in place.glob("counterfake-rates*")
        }

    before = tables()
    with Server(tmp_path, workers=2, env={"COUNTERFAKE_RATE_LIMIT": "5"}) as server:
        assert server._process is not None
        parent = server._process.pid
        workers = [
            int(pid)
            for task in Path(f"/proc/{parent}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        assert len(workers) >= 2
        for pid in [parent, *workers]:  # kill -9, every process: no cleanup runs
            os.kill(pid, signal.SIGKILL)
        server._process.wait()
    assert tables() == before
