"""Following another Counterfake (the `counterfake` exchange type), between two real servers:
what the hub adds is matched on the follower within 2 s and what it withdraws stops matching
within 2 s; a fetch killed mid-way loses and duplicates nothing; a hub's bad pages are refused
whole; the credential is never shown."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from counterfake import Counterfake, Store
from counterfake.exchange.follow import PAGE_SIZE
from counterfake.model import NewEntry
from counterfake.protect import protect_bytes, write_signatures
from counterfake.settings import load_settings

from ..faults.test_kill import KILLS
from ..service.server import Server

COUNTERFAKE = Path(sys.executable).with_name("counterfake")


@dataclasses.dataclass
class Hub:
    server: Server
    curate: str  # the hub operator's key
    follow: str  # the platform's key on the hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    home = tmp_path_factory.mktemp("hub")
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("protected", shared_with=["platform"])
        _, curate = store.keys.create("default", ["curate", "submit"], name="hub operator")
        _, follow = store.keys.create("platform", ["follow"], name="platform")
    with Server(home) as server:
        yield Hub(server, curate, follow)


def _settings(home: Path) -> object:
    return dataclasses.replace(load_settings({}), home=home)


@pytest.fixture(scope="module")
def follower(tmp_path_factory: pytest.TempPathFactory, hub: Hub) -> Iterator[tuple[Server, str]]:
    home = tmp_path_factory.mktemp("follower")
    with Counterfake(_settings(home)) as core:  # type: ignore[arg-type]
        core.create_bank("from-hub")
        core.add_exchange(
            "hub",
            type="counterfake",
            bank="from-hub",
            url=hub.server.url,
            remote_bank="default:protected",
            credential=hub.follow,
        )
        _, match = core.store.keys.create("default", ["match"], name="platform matcher")
    with Server(home, workers=2) as server:
        yield server, match


def _signature_file(photos: list[Path]) -> str:
    buffer = io.StringIO()
    write_signatures([protect_bytes(p.read_bytes()) for p in photos], buffer)
    return buffer.getvalue()


def _until(condition, seconds: float) -> float | None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_hub_adds_and_withdrawals_reach_the_follower_within_two_seconds(
    hub: Hub, follower: tuple[Server, str], corpus_dir: Path, tmp_path: Path
) -> None:
    server, match = follower
    photos = sorted(corpus_dir.glob("*.jpg"))[70:73]
    signatures = tmp_path / "protect.jsonl"
    signatures.write_text(_signature_file(photos))
    env = {**os.environ, "COUNTERFAKE_HOME": str(hub.server.home)}
    env.pop("COUNTERFAKE_DATABASE_URL", None)
    added = subprocess.run(
        [str(COUNTERFAKE), "bank", "add", "protected", "--signatures", str(signatures), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    ids = [json.loads(line)["entry_id"] for line in added.stdout.splitlines() if "entry_id" in line]
    with server.client(match) as client:

        def found(photo: Path) -> bool:
            return bool(client.post("/v1/lookup", content=photo.read_bytes()).json()["matches"])

        took = _until(lambda: all(found(p) for p in photos), 2.0)
        assert took is not None, "the hub's adds did not reach the follower within 2 s"
        # A derivative of a protected photo is found through the followed signature.
        from PIL import Image

        from tests.derivative_images import reencode, replace_region

        edited, _ = replace_region(
            Image.open(photos[0]).convert("RGB"), Image.open(photos[1]).convert("RGB"), 0.3
        )
        matches = client.post("/v1/lookup", content=reencode(edited)).json()["matches"]
        assert any(m["signal"] == "derivative" for m in matches)

        with hub.server.client(hub.curate) as curate:
            for entry_id in ids:
                assert curate.delete(f"/v1/banks/protected/entries/{entry_id}").status_code == 200
        took = _until(lambda: not any(found(p) for p in photos), 2.0)
        assert took is not None, "the hub's withdrawals did not reach the follower within 2 s"


def test_the_credential_is_never_shown(follower: tuple[Server, str], hub: Hub) -> None:
    server, _ = follower
    env = {**os.environ, "COUNTERFAKE_HOME": str(server.home)}
    env.pop("COUNTERFAKE_DATABASE_URL", None)
    for args in (["exchange", "show", "hub", "--json"], ["exchange", "list", "--json"]):
        shown = subprocess.run(
            [str(COUNTERFAKE), *args], env=env, capture_output=True, text=True, check=True
        )
        assert hub.follow not in shown.stdout
        assert json.loads(shown.stdout.splitlines()[0])["has_credential"] is True
    assert hub.follow not in server.log.read_text()
    assert hub.follow not in hub.server.log.read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_fetch_killed_mid_way_loses_and_duplicates_nothing(
    backend: str, hub: Hub, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "follower"
    url = (
        f"sqlite:///{home / 'counterfake.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    remote = f"bulk-{backend}"
    # Three pages of the feed (follow.PAGE_SIZE changes each): a kill once one is applied lands
    # mid-way (with a single page, a slow machine saw the fetch end before the kill).
    values = [f"{i:064x}" for i in range(1, 2 * PAGE_SIZE + 1501)]
    with Store.open(f"sqlite:///{hub.server.home / 'counterfake.db'}") as store:
        store.create_bank(remote, shared_with=["platform"])
        store.add_entries(remote, [NewEntry("pdq", v, quality=100) for v in values])
        withdrawn = store.list_entries(remote, limit=50)
        for entry in withdrawn:
            store.withdraw(remote, entry.id)
    time.sleep(0.6)  # the feed serves changes once they are half a second old
    settings = dataclasses.replace(load_settings({}), home=home, database_url=url)
    with Counterfake(settings) as core:
        core.create_bank("copy")
        core.add_exchange(
            "bulk",
            type="counterfake",
            bank="copy",
            url=hub.server.url,
            remote_bank=f"default:{remote}",
            credential=hub.follow,
        )
    env = {**os.environ, "COUNTERFAKE_HOME": str(home), "COUNTERFAKE_DATABASE_URL": url}
    killed = 0
    rng = random.Random(3)
    for _ in range(max(3, KILLS)):  # killed at a random moment once it has applied a page
        process = subprocess.Popen(
            [str(COUNTERFAKE), "exchange", "fetch", "bulk"], env=env, stdout=subprocess.DEVNULL
        )
        applied_before = _applied(url)
        _until(lambda b=applied_before, p=process: _applied(url) > b or p.poll() is not None, 60)
        time.sleep(rng.uniform(0, 0.3))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        # A killed fetch leaves its lease; the next takes over once it expires.
        with Store.open(url) as store:
            store.release_exchange("bulk")
    assert killed >= 1
    finished = subprocess.run(
        [str(COUNTERFAKE), "exchange", "fetch", "bulk", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    with Store.open(url) as store:
        entries = list(store.iter_entries("copy", include_withdrawn=True))
    assert sorted(e.value for e in entries) == values  # each exactly once
    gone = {e.value for e in withdrawn}
    assert {e.value for e in entries if e.withdrawn_at} == gone
    assert all(e.metadata["exchange"] == "bulk" for e in entries)


def _applied(url: str) -> int:
    try:
        with Store.open(url) as store:
            return store.get_exchange("bulk").applied
    except Exception:  # the database is being written: ask again
        return 0


class _BadHub(http.server.BaseHTTPRequestHandler):
    pages: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:
        body = self.pages.pop(0) if self.pages else b'{"changes": [], "next_after": 0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bad_hub() -> Iterator[tuple[str, type[_BadHub]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _BadHub
    server.shutdown()


def _good_change(seq: int) -> dict[str, object]:
    return {
        "seq": seq,
        "op": "add",
        "entry_id": seq,
        "signal_type": "pdq",
        "value": f"{seq:064x}",
        "quality": 100,
        "signature": None,
    }


@pytest.mark.parametrize(
    ("page", "why"),
    [
        (b"<html>not json</html>", "not JSON"),
        ({"changes": [], "next_after": -1, "more": False}, "goes back"),
        ({"changes": [_good_change(5)], "next_after": 4, "more": False}, "last change's seq"),
        ({"changes": [_good_change(6), _good_change(6)], "next_after": 6, "more": False}, "seq"),
        (
            {"changes": [{**_good_change(7), "value": "zz"}], "next_after": 7, "more": False},
            "change 0",
        ),
        (
            {
                "changes": [
                    _good_change(8),
                    {**_good_change(9), "signal_type": "derivative", "signature": "Q0ZLMg=="},
                ],
                "next_after": 9,
                "more": False,
            },
            "change 1",
        ),
        ({"changes": [_good_change(10)], "next_after": 10, "more": "yes"}, "more"),
        ({"changes": [], "next_after": 0, "more": True}, "the next is this one"),
    ],
)
def test_a_bad_page_is_refused_whole_and_the_cursor_stays(
    bad_hub: tuple[str, type[_BadHub]], tmp_path: Path, page: object, why: str
) -> None:
    url, handler = bad_hub
    handler.pages = [page if isinstance(page, bytes) else json.dumps(page).encode()]
    with Counterfake(_settings(tmp_path)) as core:  # type: ignore[arg-type]
        core.create_bank("copy")
        core.add_exchange("bad", type="counterfake", bank="copy", url=url, remote_bank="x")
        with pytest.raises(Exception) as raised:
            core.fetch_exchange("bad")
        assert getattr(raised.value, "code", None) == "exchange_bad_page"
        assert why in str(raised.value)
        status = core.exchange("bad")
        assert status.cursor == "" and status.applied == 0
        assert status.failures == 1 and status.last_error.startswith("exchange_bad_page")
        assert status.next_fetch_at > status.last_fetch_at  # backed off
        assert core.bank("copy").active_entries == 0


def test_an_unreachable_hub_is_a_coded_failure_retried_later(tmp_path: Path) -> None:
    with Counterfake(_settings(tmp_path)) as core:  # type: ignore[arg-type]
        core.create_bank("copy")
        core.add_exchange(
            "gone", type="counterfake", bank="copy", url="http://127.0.0.1:9", remote_bank="x"
        )
        assert core.fetch_due_exchanges() == 1
        first = core.exchange("gone")
        assert first.last_error is not None and first.last_error.startswith("exchange_unreachable")
        assert core.fetch_due_exchanges() == 0  # not due again until its backoff has passed
        assert (first.next_fetch_at - first.last_fetch_at).total_seconds() >= 1.0


def test_the_feed_carries_what_matching_needs_and_no_metadata(hub: Hub, tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{hub.server.home / 'counterfake.db'}") as store:
        store.create_bank("named", shared_with=["platform"])
        store.add_entries(
            "named", [NewEntry("pdq", "ab" * 32, quality=90, metadata={"source_name": "me.jpg"})]
        )
    time.sleep(0.6)
    with httpx.Client(base_url=hub.server.url) as client:
        page = client.get(
            "/v1/banks/default:named/changes", headers={"X-API-Key": hub.follow}
        ).json()
        other = client.get("/v1/banks/default:named/changes", params={"after": 10**9})
    (change,) = page["changes"]
    assert set(change) == {"seq", "op", "entry_id", "signal_type", "value", "quality", "signature"}
    assert "me.jpg" not in json.dumps(page)
    assert page["next_after"] == change["seq"] and page["more"] is False
    assert other.status_code == 401  # no key, no feed


class _SlowHub(http.server.BaseHTTPRequestHandler):
    """A hub that answers its first page, then (by `mode`) says nothing, or trickles a page a
    byte at a time, fast enough never to trip a per-read timeout."""

    mode: ClassVar[str] = "silent"
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.calls.append(self.path)
        if "after=0" in self.path:
            body = json.dumps(
                {"changes": [_good_change(1), _good_change(2)], "next_after": 2, "more": True}
            ).encode()
            self._send(body)
            return
        if self.mode == "good":
            self._send(
                json.dumps({"changes": [_good_change(3)], "next_after": 3, "more": False}).encode()
            )
            return
        if self.mode == "silent":
            time.sleep(5)
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(200):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.05)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_a_slow_or_silent_hub_is_cut_off_and_what_was_applied_stays(
    tmp_path: Path, mode: str
) -> None:
    _SlowHub.mode, _SlowHub.calls = mode, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings = dataclasses.replace(_settings(tmp_path), exchange_timeout=0.3)  # type: ignore[type-var]
    try:
        with Counterfake(settings) as core:
            core.create_bank("copy")
            core.add_exchange("slow", type="counterfake", bank="copy", url=url, remote_bank="x")
            started = time.monotonic()
            with pytest.raises(Exception) as raised:
                core.fetch_exchange("slow")
            assert time.monotonic() - started < 4  # cut off, not waited out
            assert getattr(raised.value, "code", None) == "exchange_unreachable"
            status = core.exchange("slow")
            assert status.cursor == "2" and status.applied == 2  # the first page stays applied
            assert status.failures == 1 and status.last_error.startswith("exchange_unreachable")
            assert status.next_fetch_at > status.last_fetch_at  # retried after a backoff

            # The hub recovers: the fetch goes on from page two and duplicates nothing.
            _SlowHub.mode = "good"
            done = core.fetch_exchange("slow")
            assert done.last_error is None and done.failures == 0 and done.cursor == "3"
            assert "after=2" in _SlowHub.calls[-1]
            entries = list(core.store.iter_entries("copy", include_withdrawn=True))
            assert sorted(e.value for e in entries) == [f"{n:064x}" for n in (1, 2, 3)]
    finally:
        server.shutdown()


def test_a_hub_killed_and_restarted_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    home.mkdir()
    values = [f"{n:064x}" for n in range(1, 151)]
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("protected", shared_with=["platform"])
        store.add_entries("protected", [NewEntry("pdq", v) for v in values[:100]])
        _, follow = store.keys.create("platform", ["follow"], name="platform")
    time.sleep(0.6)  # the feed serves changes half a second old
    hub = Server(home)
    with hub, Counterfake(_settings(tmp_path / "follower")) as core:  # type: ignore[arg-type]
        core.create_bank("copy")
        core.add_exchange(
            "hub",
            type="counterfake",
            bank="copy",
            url=hub.url,
            remote_bank="default:protected",
            credential=follow,
        )
        assert core.fetch_exchange("hub").applied == 100
        assert hub._process is not None
        hub._process.send_signal(signal.SIGKILL)  # the hub crashes
        hub._process.wait()
        with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
            store.add_entries("protected", [NewEntry("pdq", v) for v in values[100:]])
            for entry in list(store.iter_entries("protected"))[:10]:
                store.withdraw("protected", entry.id)
        with pytest.raises(Exception) as down:
            core.fetch_exchange("hub")
        assert getattr(down.value, "code", None) == "exchange_unreachable"
        assert core.exchange("hub").applied == 100

        with hub:  # back on the same address
            time.sleep(0.6)
            assert core.fetch_exchange("hub").last_error is None
        entries = list(core.store.iter_entries("copy", include_withdrawn=True))
        assert sorted(e.value for e in entries) == values  # each exactly once
        assert sum(e.withdrawn_at is not None for e in entries) == 10
        assert core.bank("copy").active_entries == 140


def test_a_huge_page_is_refused_before_it_is_read_whole(
    bad_hub: tuple[str, type[_BadHub]], tmp_path: Path
) -> None:
    url, handler = bad_hub
    # Valid JSON (whitespace, then a good page), but past the 64 MB a page may take.
    good = json.dumps({"changes": [_good_change(1)], "next_after": 1, "more": False})
    handler.pages = [b" " * (65 * 1024 * 1024) + good.encode()]
    with Counterfake(_settings(tmp_path)) as core:  # type: ignore[arg-type]
        core.create_bank("copy")
        core.add_exchange("huge", type="counterfake", bank="copy", url=url, remote_bank="x")
        with pytest.raises(Exception) as raised:
            core.fetch_exchange("huge")
        assert getattr(raised.value, "code", None) == "exchange_bad_page"
        assert "larger than" in str(raised.value)
        assert core.exchange("huge").cursor == "" and core.bank("copy").active_entries == 0
