"""The SQLite store's disk fills up under a running service (a small tmpfs): writes are
refused with 507 store_full, reads and matching go on, nothing accepted before is lost, and
writes work again once there is room."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from counterfake import Store

from ..service.server import Server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _batch(n: int) -> dict[str, list[dict[str, str]]]:
    return {"signals": [{"signal_type": "pdq", "value": secrets.token_hex(32)} for _ in range(n)]}


def test_a_full_disk_refuses_writes_with_a_code_and_reads_go_on(
    small_disk: Path, tmp_path: Path
) -> None:
    database = f"sqlite:///{small_disk / 'counterfake.db'}"
    with Store.open(database) as store:
        store.create_bank("b")
        secret = store.keys.create("default", ["curate", "match"])[1]
    filler = small_disk / "filler"
    home = tmp_path / "home"
    with Server(home, database_url=database) as server:
        client = server.client(secret)
        first = _batch(1)["signals"][0]["value"]
        client.post("/v1/banks/b/signals", json={"value": first}).raise_for_status()
        free = subprocess.run(
            ["df", "--output=avail", "-B1", str(small_disk)], text=True, capture_output=True
        ).stdout.split()[-1]
        filler.write_bytes(b"\0" * max(0, int(free) - 400_000))  # leave about 400 KB

        accepted, refused = 0, None
        for _ in range(200):
            answer = client.post("/v1/banks/b/signals/batch", json=_batch(200))
            if answer.status_code != 201:
                refused = answer
                break
            accepted += 200
        assert refused is not None, "the disk never filled"
        assert refused.status_code == 507
        assert refused.json()["error"]["code"] == "store_full"

        # Reads and matching go on.
        assert client.get("/v1/banks/b").status_code == 200
        found = client.get("/v1/lookup", params={"signal": first}).json()["matches"]
        assert [m["distance"] for m in found] == [0]
        # Smaller writes may still fit in pages the refused one freed; each is kept or refused.
        for _ in range(50):
            again = client.post("/v1/banks/b/signals/batch", json=_batch(20))
            assert again.status_code in (201, 507)
            if again.status_code == 507:
                assert again.json()["error"]["code"] == "store_full"
                break
            accepted += 20
        else:
            raise AssertionError("a full disk took 1,000 more entries")

        filler.unlink()  # room again: writes work, without a restart
        assert client.post("/v1/banks/b/signals/batch", json=_batch(10)).status_code == 201
        log = server.log.read_text()
    assert "Traceback" not in log
    with Store.open(database) as store:
        held = store.list_entries("b", limit=100_000)
    assert len(held) == 1 + accepted + 10  # nothing accepted was lost
