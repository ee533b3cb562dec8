"""Review cases for tests: a data folder with a tenant's protected photo and its keys, and
derivatives of that photo looked up so that they open cases."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from counterfake import Store
from counterfake.protect import protect_bytes

from .derivative_images import reencode, replace_region
from .images import encode, photo_like

PHOTO = photo_like(800, 600, seed=5)


def open_derivative_case(platform: httpx.Client, *, seed: int = 9, content_id: str = "") -> int:
    """A derivative of the protected photo looked up with review=1: the case it opens."""
    fake, _ = replace_region(PHOTO, photo_like(800, 600, seed=seed), 0.4)
    upload = reencode(fake)
    deadline = time.monotonic() + 10
    while True:  # the service follows the store's change log
        found = platform.post(
            "/v1/lookup",
            params={"review": 1, "content_id": content_id or f"post-{seed}"},
            content=upload,
            headers={"Content-Type": "image/jpeg"},
        ).json()
        if found["case"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found["case"] is not None, found
    return int(found["case"]["id"])


def make_review_home(home: Path) -> dict[str, str]:
    """A data folder with acme's protected photo and keys: platform (match, curate), two
    reviewers, a match-only key, and a reviewer of another tenant."""
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("protected", tenant="acme")
        store.add_entries("acme:protected", protect_bytes(encode(PHOTO, quality=95)).entries())
        keys = {
            name: store.keys.create(tenant, scopes, name=name)[1]
            for name, tenant, scopes in [
                ("platform", "acme", ["match", "curate"]),
                ("alice", "acme", ["review"]),
                ("bob", "acme", ["review"]),
                ("matcher", "acme", ["match"]),
                ("eve", "beta", ["review"]),
            ]
        }
    return keys
