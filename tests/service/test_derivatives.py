"""Derivatives of protected photos through the service: same lookup, same visibility rules."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
from PIL import Image

from counterfake import Store
from counterfake.protect import protect_bytes

from ..derivative_images import reencode, replace_region
from ..images import encode
from .conftest import Service


def _lookup(client: httpx.Client, data: bytes, bank: str) -> list[dict]:
    response = client.post("/v1/lookup", content=data, params={"bank": bank})
    assert response.status_code == 200, response.text
    return response.json()["matches"]


def test_a_derivative_of_a_protected_photo_is_matched_by_upload(
    service: Service, corpus_dir: Path
) -> None:
    photos = [Image.open(p).convert("RGB") for p in sorted(corpus_dir.glob("*.jpg"))[30:33]]
    protected, filler, unrelated = photos
    curate, match = service.client("acme", "curate"), service.client("acme", "match")
    bank = f"protected-{secrets.token_hex(4)}"
    assert curate.post("/v1/banks", json={"name": bank}).status_code == 201
    with Store.open(f"sqlite:///{service.server.home / 'counterfake.db'}") as store:
        # The store names acme's bank by its owner (another process: the CLI, say).
        added = store.add_entries(
            f"acme:{bank}", protect_bytes(encode(protected, quality=95)).entries()
        )
    derivative_id = next(r.entry_id for r in added if r.signal_type == "derivative")
    fake, _ = replace_region(protected, filler, 0.4)
    upload = reencode(fake)

    deadline = time.monotonic() + 5
    while not (found := _lookup(match, upload, bank)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the workers follow the change log
    assert len(found) == 1
    assert found[0]["signal"] == "derivative" and found[0]["entry_id"] == derivative_id
    assert 0 < found[0]["score"] <= 1 and 0.15 < found[0]["changed_fraction"] < 0.8
    assert set(found[0]) == {
        "bank",
        "entry_id",
        "signal",
        "score",
        "changed_fraction",
        "matched_part",
    }
    assert found[0]["matched_part"] in ("subject", "background", "photo")

    assert _lookup(match, encode(unrelated, quality=90), bank) == []
    # Another tenant's key sees neither the bank nor its protected photos.
    other = service.client("beta", "match").post("/v1/lookup", content=upload)
    assert other.status_code == 200 and other.json()["matches"] == []
