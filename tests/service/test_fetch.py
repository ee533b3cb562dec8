"""Fetching images by URL: off by default; when on, never into private networks (SSRF)."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from counterfake import CounterfakeError, Store, hash_bytes
from counterfake.service.fetch import Fetcher, parse_networks

from ..images import encode, photo_like
from .server import Server

JPEG = encode(photo_like(320, 240, seed=21))


class _Origin(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        _Origin.hosts.append(self.headers.get("Host", ""))
        if url.path == "/image.jpg":
            self._send(200, JPEG)
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/big":
            self._send(200, b"\xff" * 5000)
        elif url.path == "/chunked":
            self.send_response(200)
            self.end_headers()  # no length: read until the limit trips
            for _ in range(50):
                self.wfile.write(b"\xff" * 1000)
        elif url.path == "/slow":
            time.sleep(2)
            self._send(200, JPEG)
        else:
            self._send(404, b"no")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    server.daemon_threads = True
    server.handle_error = lambda *_: None  # type: ignore[method-assign]  # clients hang up
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _code(fetcher: Fetcher, url: str) -> str:
    with pytest.raises(CounterfakeError) as caught:
        asyncio.run(fetcher.fetch(url))
    return caught.value.code


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("100.100.100.200", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_only_public_addresses_are_fetched(address: str, allowed: bool) -> None:
    assert Fetcher(enabled=True).allowed(ipaddress.ip_address(address)) is allowed


def test_fetching_is_off_by_default(origin: int) -> None:
    assert _code(Fetcher(enabled=False), f"http://8.8.8.8:{origin}/") == "url_fetch_disabled"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/image.jpg",
        "http://localhost:{port}/image.jpg",
        "http://[::1]:{port}/image.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/image.jpg",
        "ftp://example.com/image.jpg",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_local_and_non_http_urls_are_refused(origin: int, url: str) -> None:
    assert _code(Fetcher(enabled=True), url.format(port=origin)) == "url_refused"


def test_an_allowed_network_is_fetched_from_the_address_that_was_checked(origin: int) -> None:
    fetcher = Fetcher(
        enabled=True,
        allow=parse_networks("127.0.0.1/32"),
        resolver=_resolver({"images.test": ["127.0.0.1"], "mixed.test": ["8.8.8.8", "10.0.0.1"]}),
    )
    assert asyncio.run(fetcher.fetch(f"http://127.0.0.1:{origin}/image.jpg")) == JPEG
    # A name is resolved once, checked, and connected to by address with its Host kept.
    assert asyncio.run(fetcher.fetch(f"http://images.test:{origin}/image.jpg")) == JPEG
    assert _Origin.hosts[-1] == f"images.test:{origin}"
    # One private answer among public ones refuses the name.
    assert _code(fetcher, f"http://mixed.test:{origin}/image.jpg") == "url_refused"


def test_every_redirect_is_checked(origin: int) -> None:
    fetcher = Fetcher(enabled=True, allow=parse_networks("127.0.0.1/32"))
    base = f"http://127.0.0.1:{origin}"
    assert asyncio.run(fetcher.fetch(f"{base}/redirect?to=/image.jpg")) == JPEG
    loopback = f"{base}/redirect?to=http://127.0.0.2:{origin}/image.jpg"
    assert _code(fetcher, loopback) == "url_refused"
    metadata = f"{base}/redirect?to=http://169.254.169.254/latest/meta-data/"
    everything = Fetcher(enabled=True, allow=parse_networks("0.0.0.0/0"))
    assert _code(everything, metadata) == "url_refused"  # metadata, whatever is allowed
    looping = f"{base}/redirect?to=" + f"{base}/redirect?to=" * 4 + "/image.jpg"
    assert _code(fetcher, looping) in {"url_refused"}


def test_size_and_time_are_limited(origin: int) -> None:
    allow = parse_networks("127.0.0.1/32")
    small = Fetcher(enabled=True, allow=allow, max_bytes=1000)
    assert _code(small, f"http://127.0.0.1:{origin}/big") == "input_too_large"
    assert _code(small, f"http://127.0.0.1:{origin}/chunked") == "input_too_large"
    hasty = Fetcher(enabled=True, allow=allow, timeout=0.5)
    started = time.monotonic()
    assert _code(hasty, f"http://127.0.0.1:{origin}/slow") == "url_fetch_failed"
    assert time.monotonic() - started < 1.9
    assert _code(hasty, f"http://127.0.0.1:{origin}/missing") == "url_fetch_failed"


def test_the_service_hashes_a_url_when_the_operator_allows_it(origin: int, tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'home' / 'counterfake.db'}") as store:
        _, secret = store.keys.create("t", ["match"])
    env = {"COUNTERFAKE_FETCH_URLS": "true", "COUNTERFAKE_FETCH_ALLOW": "127.0.0.1/32"}
    with Server(tmp_path / "home", env=env) as server:
        client = server.client(secret)
        url = f"http://127.0.0.1:{origin}/image.jpg"
        hashed = client.post("/v1/hash", params={"url": url})
        assert hashed.json()["pdq"] == hash_bytes(JPEG).signals["pdq"]
        omm = client.get("/h/hash", params={"url": url})
        assert omm.json()["md5"] == hash_bytes(JPEG).signals["md5"]
        other = f"http://127.0.0.2:{origin}/image.jpg"  # loopback, outside the allowed /32
        refused = client.post("/v1/hash", params={"url": other})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "url_refused")
