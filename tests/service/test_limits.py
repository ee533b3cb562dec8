"""Limits on request size and on concurrent hashing, through a server with small limits."""

from __future__ import annotations

import concurrent.futures
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
