"""The protect page's service side, through the real server: its files under /protect with a
strict content security policy, and the keyless intake (off unless configured)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from counterfake import Store
from counterfake.protect import protect_bytes, write_signatures

from .server import Server


@pytest.fixture(scope="module")
def photos(corpus_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(corpus_dir.glob("*.jpg"))[50:53]]


@pytest.fixture(scope="module")
def signature_file(photos: list[bytes]) -> str:
    buffer = io.StringIO()
    write_signatures([protect_bytes(data) for data in photos], buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def intake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    home = tmp_path_factory.mktemp("intake-home")
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        _, secret = store.keys.create("default", ["match"], name="matcher")
    env = {"COUNTERFAKE_INTAKE_BANK": "people", "COUNTERFAKE_INTAKE_ADDRESS_DAILY": "3"}
    with Server(home, workers=2, env=env) as server:
        yield server, secret


def test_the_page_is_served_with_a_policy_that_lets_it_reach_only_its_own_origin(
    intake_server: tuple[Server, str],
) -> None:
    server, _ = intake_server
    with server.client() as client:
        moved = client.get("/protect")
        assert moved.status_code == 308
        assert moved.headers["location"] == "/protect/index.html"
        assert client.get("/protect/withdraw").headers["location"] == "/protect/withdraw.html"
        page = client.get("/protect/index.html")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "connect-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["referrer-policy"] == "no-referrer"
        script = client.get("/protect/assets/pdq.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert client.get("/protect/assets/opencv.js").status_code == 200
        for missing in ("/protect/nothing.js", "/protect/%2e%2e/%2e%2e/pyproject.toml"):
            assert client.get(missing).status_code == 404, missing
        outside = client.get("/protect/../../pyproject.toml")  # the client resolves the dots
        assert outside.status_code == 401
        assert "[project]" not in outside.text


def test_a_signature_file_sent_without_a_key_is_matched_then_withdrawn_within_a_second(
    intake_server: tuple[Server, str], signature_file: str, photos: list[bytes]
) -> None:
    server, secret = intake_server
    with server.client() as anonymous, server.client(secret) as match:
        assert anonymous.get("/v1/intake").json() == {"enabled": True, "max_photos": 100}
        sent = anonymous.post(
            "/v1/intake",
            content=signature_file,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert sent.status_code == 201, sent.text
        receipt = sent.json()
        assert receipt["photos"] == 3
        code = receipt["withdrawal_code"]
        assert _found(match, photos[0], within=2.0)  # both workers, whichever answers
        withdrawn = anonymous.post("/v1/intake/withdraw", json={"code": code})
        assert withdrawn.json() == {"entries": 6}
        started = time.monotonic()
        while time.monotonic() - started < 1.0 and any(_found(match, p) for p in photos):
            time.sleep(0.05)
        assert not any(_found(match, p) for p in photos for _ in range(4))
        again = anonymous.post("/v1/intake/withdraw", json={"code": "AAAA-AAAA"})
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "unknown_withdrawal_code"


def _found(client: httpx.Client, photo: bytes, within: float = 0.0) -> bool:
    deadline = time.monotonic() + within
    while True:
        answer = client.post("/v1/lookup", content=photo).json()
        if answer["matches"] or time.monotonic() >= deadline:
            return bool(answer["matches"])
        time.sleep(0.05)


def test_a_bad_file_is_refused_with_each_bad_line_and_stores_nothing(
    intake_server: tuple[Server, str], signature_file: str
) -> None:
    server, _ = intake_server
    lines = signature_file.splitlines()
    bad = "\n".join([lines[0], lines[1], '{"pdq": "00", "quality": 5, "signature": ""}'])
    with server.client() as anonymous:
        refused = anonymous.post("/v1/intake", content=bad)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "invalid_signature_file"
        assert [line["line"] for line in error["lines"]] == [3]
        binary = anonymous.post("/v1/intake", content=b"\xff\xd8\xff\xe0 a photo, not a file")
        assert binary.json()["error"]["code"] == "invalid_signature_file"


def test_an_address_is_limited_per_day(
    intake_server: tuple[Server, str], signature_file: str
) -> None:
    server, _ = intake_server
    with server.client() as anonymous:
        answers = [anonymous.post("/v1/intake", content=signature_file) for _ in range(4)]
    codes = [a.status_code for a in answers]
    assert 429 in codes
    refused = answers[codes.index(429)].json()["error"]
    assert refused["code"] == "rate_limited"


def test_intake_is_off_by_default(tmp_path: Path, signature_file: str) -> None:
    with Server(tmp_path) as server, server.client() as anonymous:
        assert anonymous.get("/v1/intake").json() == {"enabled": False, "max_photos": 0}
        refused = anonymous.post("/v1/intake", content=signature_file)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "intake_disabled"


def test_the_log_holds_no_signature_and_no_code(
    intake_server: tuple[Server, str], signature_file: str
) -> None:
    server, _ = intake_server
    log = server.log.read_text()
    assert "/v1/intake" in log  # requests are logged ...
    record = signature_file.splitlines()[1]
    assert record[10:60] not in log  # ... their content is not
    assert "withdrawal_code" not in log
