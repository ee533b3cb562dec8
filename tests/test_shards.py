"""The derivative shortlist split over real `counterfake shard` processes: together they find
what one whole shortlist finds, each holds only its part, they follow the store, and a shard
that is away or a caller without the key gets a coded error, never a hang."""

from __future__ import annotations

import json
import os
import secrets
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Client
from pathlib import Path

import pytest
from PIL import Image

from counterfake import Store
from counterfake.errors import AccessError, UnavailableError
from counterfake.matching import Matcher
from counterfake.protect import protect_bytes
from counterfake.shards import Shards
from counterfake.signals.keypoints import Features, image_features
from counterfake.store.signatures import part_of

from .derivative_images import reencode, replace_region

COUNTERFAKE = Path(sys.executable).with_name("counterfake")
PHOTOS = 72  # past 32 a shard: each shard's part is shortlisted, not verified whole


@dataclass
class Bank:
    url: str
    folder: Path
    key: str
    ids: list[int]  # entry ids of the protected photos, in corpus order
    paths: list[Path]

    @property
    def filler(self) -> Path:
        """What fills a derivative's replaced region: a photo never protected."""
        return self.paths[PHOTOS + 1]


def _env(url: str, key: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("COUNTERFAKE_")},
        "COUNTERFAKE_DATABASE_URL": url,
        "COUNTERFAKE_SHARD_KEY": key,
    }


@contextmanager
def shard(bank: Bank, part: str, address: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real `counterfake shard` process, once it answers; stopped at the end."""
    log = bank.folder / f"shard-{part.replace('/', '-')}-{secrets.token_hex(2)}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(COUNTERFAKE), "shard", part, "--listen", address],
            env=_env(bank.url, bank.key),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"answering on" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _query(path: Path, other: Path, fraction: float = 0.35) -> Features:
    photo = Image.open(path).convert("RGB")
    fake, _ = replace_region(photo, Image.open(other).convert("RGB"), fraction)
    return image_features(reencode(fake), query=True)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Bank:
    folder = tmp_path_factory.mktemp("shards")
    url = f"sqlite:///{folder / 'store.db'}"
    paths = sorted(corpus_dir.glob("*.jpg"))[: PHOTOS + 2]  # then one added later, a filler
    with Store.open(url) as store:
        store.create_bank("victims")
        ids = []
        for path in paths[:PHOTOS]:
            added = store.add_entries("victims", protect_bytes(path.read_bytes()).entries())
            ids.append(next(a.entry_id for a in added if a.signal_type == "derivative"))
    return Bank(url, folder, secrets.token_urlsafe(16), ids, paths)


@pytest.fixture(scope="module")
def two_shards(bank: Bank) -> Iterator[list[str]]:
    addresses = [f"unix:{bank.folder / f's{k}.sock'}" for k in range(2)]
    with shard(bank, "0/2", addresses[0]), shard(bank, "1/2", addresses[1]):
        yield addresses


def test_shards_together_find_what_one_whole_shortlist_finds(
    bank: Bank, two_shards: list[str]
) -> None:
    with Store.open(bank.url) as store:
        whole = Matcher(store)
        sharded = Matcher(store, shards=Shards(two_shards, bank.key))
        assert sharded.protects_photos() and sharded.sizes() == whole.sizes()
        for number in (3, 20, 41, 66):
            query = _query(bank.paths[number], bank.filler)
            found = [(m.entry_id, m.score) for m in sharded.derivatives(query)]
            assert found == [(m.entry_id, m.score) for m in whole.derivatives(query)]
            assert [entry_id for entry_id, _ in found] == [bank.ids[number]]
        unrelated = image_features(bank.filler.read_bytes(), query=True)
        assert sharded.derivatives(unrelated) == []


def test_each_shard_holds_and_answers_only_its_part(bank: Bank, two_shards: list[str]) -> None:
    query = _query(bank.paths[10], bank.filler)
    views = [view.features.descriptors for view in query.views]
    for k, address in enumerate(two_shards):
        answered = Shards([address], bank.key).shortlisted(views)
        assert answered and all(part_of(entry_id, 2) == k for _, entry_id, _, _ in answered)
        assert {view for _, _, _, view in answered} <= set(range(len(views)))
        holds_source = part_of(bank.ids[10], 2) == k
        assert (bank.ids[10] in {entry_id for _, entry_id, _, _ in answered}) == holds_source
    assert Shards(two_shards, bank.key).shortlisted(views, banks=["elsewhere"]) == []


def test_a_photo_protected_after_the_shards_started_is_found_and_once_withdrawn_is_not(
    bank: Bank, two_shards: list[str]
) -> None:
    late = bank.paths[PHOTOS]
    with Store.open(bank.url) as store:
        sharded = Matcher(store, shards=Shards(two_shards, bank.key))
        query = _query(late, bank.filler)
        assert sharded.derivatives(query) == []
        added = store.add_entries("victims", protect_bytes(late.read_bytes()).entries())
        entry_id = next(a.entry_id for a in added if a.signal_type == "derivative")
        deadline = time.monotonic() + 5
        while not (found := sharded.derivatives(query)) and time.monotonic() < deadline:
            time.sleep(0.1)  # the shards follow the change log every half second
        assert [m.entry_id for m in found] == [entry_id]
        for entry in added:
            store.withdraw("victims", entry.entry_id)
        deadline = time.monotonic() + 5
        while (found := sharded.derivatives(query)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found == []


def test_a_shard_that_is_away_fails_the_query_with_a_code_and_is_asked_again_when_back(
    bank: Bank,
) -> None:
    address = f"unix:{bank.folder / 'away.sock'}"
    shards = Shards([address], bank.key, timeout=5)
    views = [view.features.descriptors for view in _query(bank.paths[5], bank.filler).views]
    with pytest.raises(UnavailableError) as never_started:
        shards.shortlisted(views)
    assert never_started.value.code == "shard_unavailable"
    with shard(bank, "1/2", address) as process:
        assert shards.shortlisted(views)
        process.kill()  # no goodbye: its socket is left behind
        process.wait()
        began = time.monotonic()
        with pytest.raises(UnavailableError) as killed:
            shards.shortlisted(views)
        assert killed.value.code == "shard_unavailable" and time.monotonic() - began < 5
    with shard(bank, "1/2", address):  # takes the dead shard's socket over
        assert shards.shortlisted(views)


def test_a_caller_without_the_key_is_refused_and_a_malformed_request_gets_a_code(
    bank: Bank, two_shards: list[str]
) -> None:
    views = [view.features.descriptors for view in _query(bank.paths[7], bank.filler).views]
    with pytest.raises(UnavailableError) as refused:
        Shards(two_shards[:1], "not the key").shortlisted(views)
    assert refused.value.code == "shard_unavailable"

    with Client(two_shards[0].removeprefix("unix:"), "AF_UNIX", authkey=bank.key.encode()) as conn:
        header = json.dumps({"banks": None, "views": [5]}).encode()
        for garbage in (b"", b"\x00\x00\x00\x09{not json", struct.pack(">I", 2) + header):
            conn.send_bytes(garbage)
            reply = json.loads(conn.recv_bytes())
            assert reply["error"]["code"] == "invalid_shard_request"
        short = struct.pack(">I", len(header)) + header + b"\x01" * 31  # 5 descriptors asked
        conn.send_bytes(short)
        assert json.loads(conn.recv_bytes())["error"]["code"] == "invalid_shard_request"
    assert Shards(two_shards, bank.key).shortlisted(views)  # still answering


def test_the_shard_command_says_what_is_wrong_with_its_arguments(bank: Bank) -> None:
    def run(*args: str, key: str = bank.key) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(COUNTERFAKE), "shard", *args],
            env=_env(bank.url, key),
            capture_output=True,
            text=True,
            timeout=60,
        )

    wrong_part = run("2/2", "--listen", f"unix:{bank.folder / 'x.sock'}")
    assert wrong_part.returncode == 2 and "K/N" in wrong_part.stderr
    wrong_address = run("0/2", "--listen", "nowhere")
    assert wrong_address.returncode == 2 and "HOST:PORT" in wrong_address.stderr
    no_key = run("0/2", "--listen", f"unix:{bank.folder / 'x.sock'}", key="")
    assert no_key.returncode == 1 and "[missing_key]" in no_key.stderr
    assert "Traceback" not in wrong_part.stderr + wrong_address.stderr + no_key.stderr


def test_a_shard_answers_over_tcp_as_over_a_unix_socket(bank: Bank, two_shards: list[str]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    views = [view.features.descriptors for view in _query(bank.paths[12], bank.filler).views]
    with shard(bank, "0/1", f"127.0.0.1:{port}"):
        over_tcp = Shards([f"127.0.0.1:{port}"], bank.key).shortlisted(views)
    over_unix = Shards(two_shards, bank.key).shortlisted(views)
    assert bank.ids[12] in {entry_id for _, entry_id, _, _ in over_tcp}
    assert {e for _, e, _, _ in over_tcp} & {e for _, e, _, _ in over_unix}


def test_shards_that_name_no_shard_or_a_bad_address_are_refused_at_once() -> None:
    from counterfake.errors import UsageError

    for addresses in ([], [" ", ""], ["nowhere"], ["unix:"], ["host:99999"]):
        with pytest.raises(UsageError):
            Shards(addresses, "a key")
    with pytest.raises(AccessError) as no_key:
        Shards(["unix:/tmp/x.sock"], "")
    assert no_key.value.code == "missing_key"
