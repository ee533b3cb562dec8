"""What an attacker found at the service's edge, each now refused: bodies read before the key
was checked, JSON as large as an image, slow bodies without a deadline, forged log lines,
aborted uploads logged as server errors, ids and names that broke routes, Pillow's words in
answers, redirects that echoed the Host header, a restart that could not bind, /docs that
needed a CDN. Every test talks to a real `counterfake serve` over loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from counterfake import Store

from ..images import encode, photo_like
from .server import Server


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    home: Path = tmp_path_factory.mktemp("edge")
    keys = {}
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        for scope in ("curate", "submit", "match", "admin"):
            keys[scope] = store.keys.create("edge", [scope])[1]
        keys["other"] = store.keys.create("other", ["curate", "match"])[1]
    env = {"COUNTERFAKE_BODY_TIMEOUT": "2", "COUNTERFAKE_CLIENT_UPLOADS": "2"}
    with Server(home, env=env) as server:
        with server.client(keys["curate"]) as client:
            assert client.post("/v1/banks", json={"name": "edge"}).status_code == 201
        yield server, keys


def _raw(server: Server, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_keyless_body_is_refused_before_it_is_read(edge: tuple[Server, dict[str, str]]) -> None:
    server, _ = edge
    started = time.monotonic()
    sock = _raw(
        server,
        "POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 45000000\r\n",
        b"[" * 1000,  # the rest never comes: an answer that waited for it would time out
    )
    answer = _answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.monotonic() - started < 1.5  # not after the 2 s body deadline


def test_json_bodies_are_capped_far_below_images(edge: tuple[Server, dict[str, str]]) -> None:
    server, keys = edge
    with server.client(keys["curate"]) as client:
        big = client.post("/v1/banks", json={"name": "x", "description": "d" * 300_000})
        assert (big.status_code, big.json()["error"]["code"]) == (413, "input_too_large")
        fine = client.post("/v1/banks", json={"name": "fine", "description": "d" * 1000})
        assert fine.status_code == 201


def test_a_slow_body_gets_a_deadline(edge: tuple[Server, dict[str, str]]) -> None:
    server, keys = edge
    started = time.monotonic()
    sock = _raw(
        server,
        f"POST /v1/hash HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['match']}\r\n"
        "Content-Type: image/jpeg\r\nContent-Length: 1000\r\n",
        b"\xff",
    )
    answer = _answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"body_timeout" in answer or b"content-length" in answer.lower()
    assert time.monotonic() - started < 10


def test_one_address_sends_a_limited_number_of_bodies_at_once(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, keys = edge
    head = (
        f"POST /v1/hash HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['match']}\r\n"
        "Content-Type: image/jpeg\r\nContent-Length: 1000\r\n"
    )
    slow = [_raw(server, head, b"\xff") for _ in range(2)]
    time.sleep(0.3)
    third = _raw(server, head, b"\xff")
    answer = _answer(third)
    for sock in [*slow, third]:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 429"), answer[:300]


def test_log_lines_cannot_be_forged_and_aborts_are_one_line(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, keys = edge
    with server.client(keys["curate"]) as client:
        client.get("/v1/banks%0AFAKE LINE 200")
    for _ in range(5):
        sock = _raw(
            server,
            f"POST /v1/hash HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['match']}\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n",
            b"\xff\xd8" + b"\0" * 1000,
        )
        time.sleep(0.05)
        sock.close()
    time.sleep(0.5)
    log = server.log.read_text()
    assert not any(line.startswith("FAKE LINE") for line in log.splitlines())
    assert "/v1/banks\\nFAKE LINE" in log
    assert "Traceback" not in log
    assert " 499 " in log


def test_ids_beyond_the_database_and_names_with_a_newline_are_refused(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, keys = edge
    with server.client(keys["curate"]) as client:
        for entry_id in (2**63, 2**64 + 5, 0):
            got = client.get(f"/v1/banks/edge/entries/{entry_id}")
            assert (got.status_code, got.json()["error"]["code"]) == (404, "entry_not_found")
        named = client.post("/v1/banks", json={"name": "edge2\n"})
        assert (named.status_code, named.json()["error"]["code"]) == (400, "invalid_bank_name")


def test_image_errors_are_ours_not_pillows(edge: tuple[Server, dict[str, str]]) -> None:
    server, keys = edge
    truncated = encode(photo_like(300, 200))[:400]
    with server.client(keys["match"]) as client:
        for body in (truncated, b"\x89PNG\r\n\x1a\n" + b"\0" * 40):
            answer = client.post("/v1/hash", content=body).json()["error"]
            assert answer["code"] in ("corrupt_image", "unsupported_format")
            assert "(" not in answer["message"] and "Error" not in answer["message"]
        broken = client.post(
            "/v1/hash",
            content=b"--b\r\nContent-Disposition: form-data; name=photo; filename=a\r\n\r\nxx",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        ).json()["error"]
        assert broken["code"] == "invalid_multipart"
        assert "unpack" not in broken["message"] and "buffer" not in broken["message"]


def test_a_trailing_slash_is_the_same_route_without_echoing_the_host(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, keys = edge
    with server.client(keys["curate"]) as client:
        answer = client.get("/v1/banks/", headers={"Host": "evil.example"})
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "edge" in [b["name"] for b in answer.json()["banks"]]


def test_the_docs_work_offline_and_declare_how_to_send_a_key(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, _ = edge
    with server.client() as client:
        page = client.get("/docs").text
        assert "https://" not in page and "http://" not in page
        assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
        spec = client.get("/openapi.json").json()
    time.sleep(0.3)
    assert "Traceback" not in server.log.read_text()  # a streamed file is not a client abort
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert {"ApiKey": []} in spec["paths"]["/v1/lookup"]["get"]["security"]


def test_a_submit_key_learns_no_existing_ids_on_the_hma_route(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, keys = edge
    value = "3c" * 32
    with server.client(keys["curate"]) as curate:
        curate.post("/c/bank/edge/signal", json={"pdq": value})
    with server.client(keys["submit"]) as submit:
        again = submit.post("/c/bank/edge/signal", json={"pdq": value}).json()
        fresh = submit.post("/c/bank/edge/signal", json={"pdq": "3d" * 32}).json()
    assert again["id"] is None
    assert isinstance(fresh["id"], int)


def test_status_counts_only_what_the_tenant_may_see(edge: tuple[Server, dict[str, str]]) -> None:
    server, keys = edge
    with server.client(keys["other"]) as other, server.client(keys["admin"]) as admin:
        other.post("/v1/banks", json={"name": "other-bank"})
        other.post("/v1/banks/other-bank/signals", json={"value": "5a" * 32})
        mine = other.get("/status").json()
        everything = admin.get("/status").json()
        sizes = other.get("/m/index/status").json()
    assert (mine["banks"], mine["entries"]) == (1, 1)
    assert everything["banks"] >= 2 and everything["entries"] > 1
    assert sizes["pdq"]["size"] == 1
    assert "change_seq" not in mine and "change_seq" in everything


def test_deep_metadata_is_refused_and_never_breaks_a_listing(
    edge: tuple[Server, dict[str, str]],
) -> None:
    server, keys = edge
    deep: dict[str, object] = {}
    cursor = deep
    for _ in range(900):
        cursor["a"] = {}
        cursor = cursor["a"]  # type: ignore[assignment]
    with server.client(keys["submit"]) as submit, server.client(keys["curate"]) as curate:
        refused = submit.post("/v1/banks/edge/signals", json={"value": "6b" * 32, "metadata": deep})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_metadata")
        assert curate.get("/v1/banks/edge/entries").status_code == 200


def test_a_restart_on_the_same_port_binds_at_once(tmp_path: Path) -> None:
    home = tmp_path / "restart"
    first = Server(home, workers=2)
    with first, httpx.Client(base_url=first.url) as client:
        for _ in range(20):
            client.get("/status/live")
    second = Server(home, workers=2)
    second.port, second.url = first.port, first.url
    with second, httpx.Client(base_url=second.url) as client:
        assert client.get("/status/live").status_code == 200


def test_a_third_party_warning_goes_to_the_log_as_ours(edge: tuple[Server, dict[str, str]]) -> None:
    from ..images import malformed_exif_jpeg

    server, keys = edge
    with server.client(keys["match"]) as client:
        assert client.post("/v1/hash", content=malformed_exif_jpeg()).status_code == 200
    log = server.log.read_text()
    assert "counterfake.warnings UserWarning: Tag data larger than file" in log
    assert "warnings.warn(" not in log  # not Python's own two-line print
