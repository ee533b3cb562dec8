"""The database goes away under load and comes back (PostgreSQL behind a forwarder that the
test cuts, as a restart does): requests fail fast with 503 store_unavailable, the service
recovers by itself, and every acknowledged entry is in the store exactly once."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from counterfake import Store

from ..service.server import Server
from .forwarder import Forwarder


class Writers:
    """Clients adding signals in a loop until the block ends. Every answer is recorded as
    (sent, seconds, status, error code, value); a request that got no answer at all is
    recorded with status 0 and the transport error's name, so it fails the checks."""

    def __init__(self, url: str, secret: str, *, clients: int) -> None:
        self.answers: list[tuple[float, float, int, str, str]] = []
        self._url, self._secret = url, secret
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write) for _ in range(clients)]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _write(self) -> None:
        headers = {"X-API-Key": self._secret}
        with httpx.Client(base_url=self._url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                value = secrets.token_hex(32)
                sent = time.monotonic()
                try:
                    answer = client.post("/v1/banks/b/signals", json={"value": value})
                    status = answer.status_code
                    code = answer.json().get("error", {}).get("code", "")
                except httpx.TransportError as exc:
                    status, code = 0, type(exc).__name__
                self.answers.append((sent, time.monotonic() - sent, status, code, value))
                time.sleep(0.02)


def _outage(
    postgres_url: str, tmp_path: Path, *, timeout: str, clients: int, fault: str, seconds: float
) -> tuple[list[tuple[float, float, int, str, str]], str, float, float]:
    """A two-worker service on PostgreSQL behind a forwarder, under `clients` writers: 2 s
    of normal load, then `fault` ("cut" or "freeze") for `seconds`, then 8 s restored. The
    answers, the service's log, and when the fault began and ended."""
    url = sa.engine.make_url(postgres_url)
    with Store.open(postgres_url) as store:
        store.create_bank("b")
        secret = store.keys.create("default", ["curate", "match"])[1]
    env = {"COUNTERFAKE_STATEMENT_TIMEOUT": timeout}  # our own deadline on a call: + 5 s
    with Forwarder(url.host or "127.0.0.1", url.port or 5432) as forwarder:
        proxied = url.set(port=forwarder.port).render_as_string(hide_password=False)
        begin, end = (
            (forwarder.cut, forwarder.restore)
            if fault == "cut"
            else (forwarder.freeze, forwarder.thaw)
        )
        with Server(tmp_path, workers=2, database_url=proxied, env=env) as server:
            with Writers(server.url, secret, clients=clients) as writers:
                time.sleep(2)
                began = time.monotonic()
                begin()
                time.sleep(seconds)
                ended = time.monotonic()
                end()
                time.sleep(8)
            log = server.log.read_text()
    return writers.answers, log, began, ended


def _kept_once(postgres_url: str, answers: list[tuple[float, float, int, str, str]]) -> None:
    acknowledged = [a[4] for a in answers if a[2] == 201]
    with Store.open(postgres_url) as store:
        kept = [e.value for e in store.list_entries("b", limit=100_000)]
    assert sorted(set(kept) & set(acknowledged)) == sorted(acknowledged)  # every one kept
    assert len(kept) == len(set(kept))  # none twice


def test_a_database_restart_fails_requests_fast_and_loses_nothing_acknowledged(
    postgres_url: str, tmp_path: Path
) -> None:
    # 15 s: longer than connecting (5 s) and waiting for a connection (10 s).
    answers, log, cut_at, restored_at = _outage(
        postgres_url, tmp_path, timeout="3", clients=4, fault="cut", seconds=15
    )
    before = [a for a in answers if a[0] < cut_at - 0.5]
    # Answered while the database was away: each refused, none acknowledged.
    away = [a for a in answers if cut_at + 0.5 < a[0] + a[1] < restored_at]
    after = [a for a in answers if a[0] > restored_at + 5]
    summary = [
        (round(a[0] - cut_at, 1), round(a[1], 1), a[2]) for a in answers if a[0] > cut_at - 1
    ]
    assert before and all(a[2] == 201 for a in before)
    assert away, f"no answer while the database was away: {summary[:60]}"
    assert {(a[2], a[3]) for a in away} == {(503, "store_unavailable")}, summary[:60]
    failed = [line for line in log.splitlines() if "a store call failed" in line]
    assert {(a[2], a[3]) for a in answers} <= {(201, ""), (503, "store_unavailable")}, failed[:5]
    assert max(a[1] for a in answers) < 12, summary[:60]  # failed fast: no request hung
    assert after and all(a[2] == 201 for a in after)  # recovered by itself
    assert "Traceback" not in log
    _kept_once(postgres_url, answers)


def test_a_database_that_stops_answering_fails_requests_at_our_deadline_and_loses_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    """The database (or a proxy in front of it) keeps the connections open, its kernel
    acknowledging, but answers nothing: keepalives, `tcp_user_timeout` and `statement_timeout`
    never fire. Each call still gets `statement_timeout` + 5 s, then 503 store_unavailable; the
    service goes on by itself once the database answers again."""
    answers, log, frozen_at, thawed_at = _outage(
        postgres_url, tmp_path, timeout="2", clients=3, fault="freeze", seconds=16
    )
    summary = [
        (round(a[0] - frozen_at, 1), round(a[1], 1), a[2], a[3])
        for a in answers
        if a[0] + a[1] > frozen_at - 0.2
    ]
    # Answered while the database was frozen: each refused, none acknowledged.
    held = [a for a in answers if frozen_at + 0.5 < a[0] + a[1] < thawed_at]
    assert held, f"no answer while the database was frozen: {summary[:60]}"
    assert {(a[2], a[3]) for a in held} == {(503, "store_unavailable")}, summary[:60]
    assert {(a[2], a[3]) for a in answers} <= {(201, ""), (503, "store_unavailable")}, summary
    slow = [a for a in summary if a[1] > 1]
    assert max(a[1] for a in answers) < 2 + 5 + 3, slow  # the deadline, and no more
    assert [a for a in answers if a[0] > thawed_at + 5 and a[2] == 201]  # going again
    assert all(a[2] == 201 for a in answers if a[0] > thawed_at + 5), summary
    assert "went unanswered" in log and "Traceback" not in log
    _kept_once(postgres_url, answers)


def test_a_statement_that_waits_past_the_timeout_is_canceled_and_answered_503(
    postgres_url: str, tmp_path: Path
) -> None:
    """A database that accepts the connection but does not answer in time (here a table held
    locked by another session): the request fails with 503 store_timeout after about
    `statement_timeout`, lookups go on, and writes succeed once it answers."""
    with Store.open(postgres_url) as store:
        store.create_bank("b")
        secret = store.keys.create("default", ["curate", "match"])[1]
    blocker = sa.create_engine(postgres_url)
    env = {"COUNTERFAKE_STATEMENT_TIMEOUT": "1.5"}
    with Server(tmp_path, database_url=postgres_url, env=env) as server:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": secret}, timeout=30) as client:
            assert client.post("/v1/banks/b/signals", json={"value": "a" * 64}).status_code == 201
            deadline = time.monotonic() + 10
            while not client.get("/v1/lookup", params={"signal": "a" * 64}).json()["matches"]:
                assert time.monotonic() < deadline, "the add never reached the matcher"
                time.sleep(0.1)
            with blocker.connect() as held:
                held.exec_driver_sql("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
                sent = time.monotonic()
                answer = client.post("/v1/banks/b/signals", json={"value": "b" * 64})
                waited = time.monotonic() - sent
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "store_timeout"
                assert answer.headers["Retry-After"] == "1"
                assert 1.4 < waited < 6, waited
                # Lookups are answered from the matcher's index, without the locked table.
                found = client.get("/v1/lookup", params={"signal": "a" * 64})
                assert found.status_code == 200, found.text
                assert [m["bank"] for m in found.json()["matches"]] == ["b"]
                held.rollback()
            again = client.post("/v1/banks/b/signals", json={"value": "b" * 64})
            assert again.status_code == 201, again.text
        assert "Traceback" not in server.log.read_text()
    blocker.dispose()
    with Store.open(postgres_url) as store:
        assert sorted(e.value for e in store.iter_entries("b")) == ["a" * 64, "b" * 64]
