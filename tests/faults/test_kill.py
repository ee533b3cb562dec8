"""`kill -9` of a running service (every worker) at a random moment while clients add and
withdraw, on SQLite and PostgreSQL, again and again: after each restart every acknowledged
entry is there exactly once, every acknowledged withdrawal stays withdrawn, and a fresh
matcher's index equals the store. `COUNTERFAKE_KILLS` sets the repeats (5 here; `make crash`
runs 50)."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from counterfake import Counterfake, Store
from counterfake.settings import load_settings

from ..service.server import Server

KILLS = int(os.environ.get("COUNTERFAKE_KILLS", "5"))


def _tree(pid: int) -> list[int]:
    """A process and its descendants (Linux /proc)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


def _kill_all(server: Server) -> None:
    process = server._process
    assert process is not None
    for pid in _tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def kill_under_load(
    home: Path,
    url: str,
    env: dict[str, str],
    load: Callable[[Server, threading.Event, int, int], None],
    *,
    seed: int,
) -> None:
    """KILLS rounds: serve with 2 workers, let 4 clients run `load(server, stop, round,
    client)`, and `kill -9` every worker at a random moment."""
    rng = random.Random(seed)
    for round_ in range(KILLS):
        with Server(home, workers=2, database_url=url, env=env) as server:
            stop = threading.Event()
            clients = [
                threading.Thread(target=load, args=(server, stop, round_, n)) for n in range(4)
            ]
            for thread in clients:
                thread.start()
            time.sleep(rng.uniform(0.3, 2.0))
            _kill_all(server)  # kill -9, every worker, mid-write
            stop.set()
            for thread in clients:
                thread.join()


def _load(server: Server, secret: str, stop: threading.Event, acked: dict[str, list]) -> None:
    """Add entries and withdraw some of those acknowledged, recording each acknowledgement."""
    rng = random.Random()
    with httpx.Client(base_url=server.url, headers={"X-API-Key": secret}, timeout=30) as client:
        while not stop.is_set():
            try:
                if acked["added"] and rng.random() < 0.25:
                    value, entry_id = rng.choice(acked["added"])
                    answer = client.delete(f"/v1/banks/b/entries/{entry_id}")
                    if answer.status_code == 200:
                        acked["withdrawn"].append(entry_id)
                    continue
                value = secrets.token_hex(32)
                answer = client.post("/v1/banks/b/signals", json={"value": value})
                if answer.status_code == 201:
                    acked["added"].append((value, answer.json()["entries"][0]["entry_id"]))
            except httpx.HTTPError:  # the service died mid-request: not acknowledged
                return


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_service_loses_and_duplicates_nothing_it_acknowledged(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'counterfake.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with Store.open(url) as store:
        store.create_bank("b")
        secret = store.keys.create("default", ["curate"])[1]
    acked: dict[str, list] = {"added": [], "withdrawn": []}
    kill_under_load(
        tmp_path / "home",
        url,
        {},
        lambda server, stop, _round, _client: _load(server, secret, stop, acked),
        seed=7,
    )
    assert len(acked["added"]) > 20 * KILLS  # the load did run

    with Store.open(url) as store:
        entries = []
        after = 0
        while page := store.list_entries("b", after=after, limit=10_000):
            entries += page
            after = page[-1].id
    by_value: dict[str, list] = {}
    for entry in entries:
        by_value.setdefault(entry.value, []).append(entry)
    assert all(len(kept) == 1 for kept in by_value.values())  # nothing twice
    for value, entry_id in acked["added"]:
        assert [e.id for e in by_value.get(value, [])] == [entry_id]  # every ack kept
    withdrawn = {e.id for e in entries if e.withdrawn_at is not None}
    assert set(acked["withdrawn"]) <= withdrawn  # acknowledged withdrawals stay

    # A fresh matcher holds exactly the store's active entries.
    core = Counterfake(load_settings(database_url=url, home=tmp_path / "home"))
    try:
        active = [e for e in entries if e.withdrawn_at is None]
        for entry in random.Random(1).sample(active, min(50, len(active))):
            found = core.lookup_signal("pdq", entry.value)
            assert [m.entry_id for m in found if m.distance == 0] == [entry.id]
        gone = [e for e in entries if e.withdrawn_at is not None]
        for entry in random.Random(2).sample(gone, min(20, len(gone))):
            assert entry.id not in [m.entry_id for m in core.lookup_signal("pdq", entry.value)]
        assert core.matcher.sizes().get("pdq", 0) == len(active)
    finally:
        core.close()
