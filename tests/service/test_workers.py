"""Several workers: what one worker writes, every worker matches (or stops matching) within
one second. Real `counterfake serve --workers 2`, real HTTP, both store backends."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from counterfake import Store

from .server import Server

VISIBLE_WITHIN = 1.0


def _lookups(server: Server, key: str, value: str, count: int) -> list[tuple[str, bool]]:
    """`count` lookups, each on a new connection (so the kernel spreads them over workers)."""
    answers = []
    for _ in range(count):
        with server.client(key) as client:
            response = client.get("/v1/lookup", params={"signal": value})
            response.raise_for_status()
            answers.append(
                (response.headers["x-counterfake-worker"], bool(response.json()["matches"]))
            )
    return answers


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_add_and_a_withdrawal_reach_every_worker_within_a_second(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{home / 'counterfake.db'}"
    )
    with Store.open(url) as store:
        store.create_bank("shared", tenant="t")
        _, key = store.keys.create("t", ["curate", "match"])
    with Server(home, workers=2, database_url=url) as server:
        value = secrets.token_hex(32)
        before = _lookups(server, key, value, 10)
        assert not any(matched for _, matched in before)

        with server.client(key) as client:
            added = client.post("/v1/banks/shared/signals", json={"value": value})
            written_at = time.monotonic()
            entry_id = added.json()["entries"][0]["entry_id"]
            writer = added.headers["x-counterfake-worker"]
        time.sleep(max(0.0, VISIBLE_WITHIN - (time.monotonic() - written_at)))
        after_add = _lookups(server, key, value, 30)
        workers = {worker for worker, _ in after_add}
        assert len(workers) == 2, "the lookups did not reach both workers"
        assert workers - {writer}, "no lookup reached the worker that did not write"
        assert all(matched for _, matched in after_add), after_add

        with server.client(key) as client:
            client.delete(f"/v1/banks/shared/entries/{entry_id}").raise_for_status()
            withdrawn_at = time.monotonic()
        time.sleep(max(0.0, VISIBLE_WITHIN - (time.monotonic() - withdrawn_at)))
        after_withdraw = _lookups(server, key, value, 30)
        assert len({worker for worker, _ in after_withdraw}) == 2
        assert not any(matched for _, matched in after_withdraw), after_withdraw


def test_the_status_route_says_how_fresh_the_index_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        _, key = store.keys.create("t", ["match"])
    with Server(home) as server, server.client(key) as client:
        status = client.get("/status").json()
        assert status["status"] == "ok" and status["entries"] == 0
        assert 0 <= status["refreshed_seconds_ago"] < 60
        assert httpx.get(f"{server.url}/status/live").json() == {"status": "ok"}
        ready = httpx.get(f"{server.url}/status/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert status["caught_up"] is True


def test_every_worker_follows_a_bulk_import_by_itself_and_reports_ready(tmp_path: Path) -> None:
    """A bulk import from another process (past the size where a bank gets the multi-index):
    each worker catches up in the background, with no request asking it to, and says so on
    /status/ready, which answers without a key for each worker separately."""
    from counterfake import NewEntry

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'counterfake.db'}"
    with Store.open(url) as store:
        store.create_bank("bulk", tenant="t")
        _, key = store.keys.create("t", ["match"])
    values = [secrets.token_hex(32) for _ in range(60_000)]
    with Server(home, workers=2, database_url=url) as server:
        with Store.open(url) as store:
            for start in range(0, len(values), 10_000):
                chunk = values[start : start + 10_000]
                store.add_entries("t:bulk", [NewEntry("pdq", v) for v in chunk])
        deadline = time.monotonic() + 60
        ready: dict[str, bool] = {}
        while time.monotonic() < deadline and not (len(ready) == 2 and all(ready.values())):
            with httpx.Client(base_url=server.url) as client:
                answer = client.get("/status/ready")
                ready[str(answer.json()["worker"])] = answer.status_code == 200
            time.sleep(0.05)
        assert len(ready) == 2 and all(ready.values()), ready
        time.sleep(VISIBLE_WITHIN)
        for value in (values[0], values[-1]):
            answers = _lookups(server, key, value, 12)
            assert len({worker for worker, _ in answers}) == 2
            assert all(matched for _, matched in answers), answers


def test_workers_ask_the_shards_and_a_shard_that_stops_answering_is_a_503_until_it_does(
    tmp_path: Path, corpus_dir: Path
) -> None:
    """`serve --shards 2`: the derivative shortlist lives in two shard processes that every
    worker asks. A shard that stops answering fails derivative lookups with 503
    `shard_unavailable` (after the shards' timeout, never a hang), and one killed is
    replaced by the supervisor and asked again."""
    import re
    import signal

    from PIL import Image

    from counterfake.protect import protect_bytes

    from ..derivative_images import reencode, replace_region

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'counterfake.db'}"
    paths = sorted(corpus_dir.glob("*.jpg"))[40:44]
    with Store.open(url) as store:
        store.create_bank("photos", tenant="t")
        _, key = store.keys.create("t", ["match"])
        ids = [
            next(
                a.entry_id
                for a in store.add_entries("t:photos", protect_bytes(p.read_bytes()).entries())
                if a.signal_type == "derivative"
            )
            for p in paths[:3]
        ]
    filler = Image.open(paths[3]).convert("RGB")
    uploads = [
        reencode(replace_region(Image.open(p).convert("RGB"), filler, 0.3)[0]) for p in paths[:3]
    ]

    def lookup(data: bytes) -> httpx.Response:
        with server.client(key) as client:  # a new connection: either worker
            return client.post("/v1/lookup", content=data, params={"bank": "photos"})

    def shard_pids() -> dict[str, int]:
        found = re.findall(r"shard (\d)/2 \(process (\d+)\) answering", server.log.read_text())
        return {part: int(pid) for part, pid in found}  # the latest of each part

    with Server(home, workers=2, database_url=url, args=["--shards", "2"]) as server:
        assert "2 shard(s)" in server.log.read_text()
        assert sorted(shard_pids()) == ["0", "1"]
        workers = set()
        for entry_id, data in zip(ids, uploads, strict=True):
            answers = [lookup(data) for _ in range(10)]
            assert all(a.status_code == 200 for a in answers), answers[0].text
            assert all([m["entry_id"] for m in a.json()["matches"]] == [entry_id] for a in answers)
            workers |= {a.headers["x-counterfake-worker"] for a in answers}
        assert len(workers) == 2, "the lookups did not reach both workers"

        paused = shard_pids()["0"]
        os.kill(paused, signal.SIGSTOP)
        try:
            began = time.monotonic()
            stalled = lookup(uploads[0])
            assert stalled.status_code == 503 and time.monotonic() - began < 30
            assert stalled.json()["error"]["code"] == "shard_unavailable"
        finally:
            os.kill(paused, signal.SIGCONT)
        assert lookup(uploads[0]).status_code == 200

        killed = shard_pids()["1"]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while (answer := lookup(uploads[1])).status_code != 200 and time.monotonic() < deadline:
            assert answer.json()["error"]["code"] == "shard_unavailable", answer.text
            time.sleep(0.2)
        assert [m["entry_id"] for m in answer.json()["matches"]] == [ids[1]]
        assert shard_pids()["1"] != killed  # the supervisor started another
