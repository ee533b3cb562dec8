"""`kill -9` at random moments of the jobs that write in bulk, on SQLite and PostgreSQL:
`bank import` and `bank add --hashes` (run again until one finishes), and a service taking
intake submissions and their withdrawals. After each kill every acknowledged entry is there
exactly once; at the end acknowledged withdrawals are withdrawn and a fresh matcher's index
equals the store. `COUNTERFAKE_KILLS` sets the repeats (5 here; `make crash` runs 50)."""

from __future__ import annotations

import base64
import json
import random
import secrets
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from counterfake import Counterfake, Store
from counterfake.settings import load_settings
from counterfake.signals.keypoints import Features

from ..service.server import COUNTERFAKE, Server
from .test_kill import KILLS, kill_under_load


def _url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'counterfake.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _matcher_equals_store(url: str, home: Path, bank: str) -> None:
    """A fresh matcher holds exactly the bank's active entries: a sample of them matches
    (each as itself), a sample of the withdrawn does not, and the counts agree."""
    with Store.open(url) as store:
        entries = list(store.iter_entries(bank, include_withdrawn=True))
    core = Counterfake(load_settings(database_url=url, home=home))
    try:
        active = [e for e in entries if e.withdrawn_at is None and e.signal_type == "pdq"]
        for entry in random.Random(1).sample(active, min(50, len(active))):
            found = core.lookup_signal("pdq", entry.value)
            assert [m.entry_id for m in found if m.distance == 0] == [entry.id]
        gone = [e for e in entries if e.withdrawn_at is not None and e.signal_type == "pdq"]
        for entry in random.Random(2).sample(gone, min(20, len(gone))):
            assert entry.id not in [m.entry_id for m in core.lookup_signal("pdq", entry.value)]
        assert core.matcher.sizes().get("pdq", 0) == len(active)
    finally:
        core.close()


def _import_file(path: Path, command: str, count: int) -> tuple[list[str], set[str]]:
    """A file of `count` new values; for `import`, a withdrawal of every tenth value some
    lines after its add. Returns the file's records in order (values) and the withdrawn."""
    rng = random.Random(11)
    values = [secrets.token_hex(32) for _ in range(count)]
    withdrawn = set(values[::10]) if command == "import" else set()
    lines: list[str] = []
    order: list[str] = []
    later: list[str] = []
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    for value in values:
        if command == "import":
            lines.append(json.dumps({"signal": "pdq", "value": value, "quality": 100}))
        else:
            lines.append(f"pdq {value}")
        order.append(value)
        if value in withdrawn:
            later.append(value)
        if later and rng.random() < 0.2:
            gone = later.pop(0)
            record = {"signal": "pdq", "value": gone, "quality": 100, "withdrawn_at": at}
            lines.append(json.dumps(record))
            order.append(gone)
    for gone in later:
        lines.append(json.dumps({"signal": "pdq", "value": gone, "withdrawn_at": at}))
        order.append(gone)
    path.write_text("\n".join(lines) + "\n")
    return order, withdrawn


@pytest.mark.parametrize("command", ["import", "add --hashes"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_bulk_add_keeps_what_it_acknowledged_and_a_rerun_completes_it(
    backend: str, command: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(backend, tmp_path, request)
    home = tmp_path / "home"
    with Store.open(url) as store:
        store.create_bank("b")
    source = tmp_path / "signals.txt"
    order, withdrawn = _import_file(source, command, 40_000)
    argv = [str(COUNTERFAKE), "bank", *command.split()[:1], "b"]
    argv += ["--hashes", str(source)] if command == "add --hashes" else [str(source)]
    env = {"COUNTERFAKE_HOME": str(home), "COUNTERFAKE_DATABASE_URL": url}
    acknowledged: dict[str, int] = {}  # value -> entry id, as printed
    rng = random.Random(5)
    killed = 0
    for _ in range(KILLS):
        process = subprocess.Popen(
            [*argv, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.8, 4.0))
        if process.poll() is None:
            process.kill()
            killed += 1
        printed = process.communicate()[0].decode().splitlines()
        # Printed results are the file's records in order: whole lines only (a kill may cut
        # the last one short).
        results = []
        for line in printed:
            try:
                results.append(json.loads(line))
            except ValueError:
                break
        for value, result in zip(order, results, strict=False):
            assert acknowledged.setdefault(value, result["entry_id"]) == result["entry_id"]
        with Store.open(url) as store:
            held = list(store.iter_entries("b", include_withdrawn=True))
        by_value = {e.value: e.id for e in held}
        assert len(by_value) == len(held)  # nothing twice
        assert set(by_value) <= set(order)  # nothing that is not in the file
        for value, entry_id in acknowledged.items():
            assert by_value.get(value) == entry_id, value  # every acknowledgement kept
    assert killed >= 1, "every run finished before its kill: the file is too small"

    finished = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    with Store.open(url) as store:
        held = list(store.iter_entries("b", include_withdrawn=True))
    assert sorted(e.value for e in held) == sorted(set(order))  # each exactly once
    assert {e.value for e in held if e.withdrawn_at is not None} == withdrawn
    assert all(acknowledged.get(e.value, e.id) == e.id for e in held)
    _matcher_equals_store(url, home, "b")


def _signature_line(rng: np.random.Generator) -> str:
    """One protected photo of a signature file, random but well formed: a PDQ hash and a
    signature of 64 keypoints (intake reads the file, it never sees a photo)."""
    features = Features(
        width=480,
        height=360,
        points=(rng.random((64, 2)) * (480, 360)).astype(np.float32),
        descriptors=rng.integers(0, 256, (64, 32), dtype=np.uint8),
    )
    record = {
        "pdq": rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex(),
        "quality": 100,
        "signature": base64.b64encode(features.to_bytes()).decode("ascii"),
    }
    return json.dumps(record)


_HEADER = json.dumps({"format": "counterfake-signatures", "version": 2, "features": "orb-480-2048"})


def _send(server: Server, stop: threading.Event, seed: int, acked: dict[str, list]) -> None:
    """Send one-photo submissions and withdraw some acknowledged ones by their code."""
    rng = np.random.default_rng(seed)
    choose = random.Random(seed)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while not stop.is_set():
            try:
                if acked["sent"] and choose.random() < 0.2:
                    code, pdq = choose.choice(acked["sent"])
                    answer = client.post("/v1/intake/withdraw", json={"code": code})
                    if answer.status_code == 200:
                        acked["withdrawn"].append(pdq)
                    continue
                line = _signature_line(rng)
                answer = client.post("/v1/intake", content=f"{_HEADER}\n{line}\n")
                if answer.status_code == 201:
                    code = answer.json()["withdrawal_code"]
                    acked["sent"].append((code, json.loads(line)["pdq"]))
            except httpx.HTTPError:  # the service died mid-request: not acknowledged
                return


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_service_keeps_every_acknowledged_intake_submission(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(backend, tmp_path, request)
    home = tmp_path / "home"
    env = {
        "COUNTERFAKE_INTAKE_BANK": "people",
        "COUNTERFAKE_INTAKE_ADDRESS_DAILY": "1000000",
        "COUNTERFAKE_INTAKE_DAILY": "1000000",
    }
    acked: dict[str, list] = {"sent": [], "withdrawn": []}
    kill_under_load(
        home,
        url,
        env,
        lambda server, stop, round_, client: _send(server, stop, 1000 * round_ + client, acked),
        seed=9,
    )
    assert len(acked["sent"]) > 5 * KILLS  # the load did run

    with Store.open(url) as store:
        held = list(store.iter_entries("people", include_withdrawn=True))
    pdq = [e for e in held if e.signal_type == "pdq"]
    assert len({e.value for e in pdq}) == len(pdq)  # nothing twice
    assert len([e for e in held if e.signal_type == "derivative"]) == len(pdq)  # photos whole
    by_value = {e.value: e for e in pdq}
    for _, value in acked["sent"]:
        assert value in by_value  # every acknowledged submission kept
    for value in acked["withdrawn"]:
        assert by_value[value].withdrawn_at is not None  # and every acknowledged withdrawal
    _matcher_equals_store(url, home, "people")
