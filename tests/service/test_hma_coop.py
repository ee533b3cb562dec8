"""ROOST Coop against a real `counterfake serve`: Coop's own HMA calls, in Coop's order, with its
parameters and no key (roostorg/coop, server/services/hmaService/index.ts at 1c1f54da).

Each step asserts what Coop reads from the answer: `response.ok`, a 404 (on which Coop deletes
its own record of the bank), `matches[bank]?.length`, and the fields of its exchange pages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlencode

import httpx
import pytest

from counterfake import Store

from ..images import encode, photo_like
from .server import Server

PHOTO = encode(photo_like(640, 480, seed=41))
UNRELATED = encode(photo_like(640, 480, seed=42))
# Coop's name for an org's bank: COOP_<ORG>_<NAME>, upper case.
BANK = "COOP_ORG1_NUDIFY_FAKES"


class _Images(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {"/photo.jpg": PHOTO, "/unrelated.jpg": UNRELATED}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def hma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Counterfake as Coop's HMA_SERVICE_URL: keyless HMA calls from loopback are tenant
    `coop`; fetching by URL is on and may reach the loopback image server."""
    home: Path = tmp_path_factory.mktemp("coop-hma")
    env = {
        "COUNTERFAKE_HMA_ANONYMOUS_TENANT": "coop",
        "COUNTERFAKE_FETCH_URLS": "true",
        "COUNTERFAKE_FETCH_ALLOW": "127.0.0.1/32",
    }
    with Server(home, env=env) as server:
        yield server


def test_coop_runs_its_hma_calls_without_a_key(hma: Server, images: str) -> None:
    coop = httpx.Client(base_url=hma.url, timeout=30)  # Coop sends no key

    # createBank: POST /c/banks, enabled_ratio as a string (enabled_ratio.toString()).
    created = coop.post(
        "/c/banks",
        content=json.dumps({"name": BANK, "enabled_ratio": "1"}),
        headers={"Content-Type": "application/json"},
    )
    assert created.is_success, created.text
    # getBank / getBankById / listBanks: a 404 here would make Coop delete its own record.
    for headers in ({}, {"Content-Type": "application/json"}):
        assert coop.get(f"/c/bank/{BANK}", headers=headers).status_code == 200
    # updateBank with only enabled_ratio: PUT /c/bank/{hma_name}.
    assert coop.put(f"/c/bank/{BANK}", json={"enabled_ratio": 1}).is_success

    # addContentToBank by URL: query parameters only.
    params = urlencode(
        {
            "url": f"{images}/photo.jpg",
            "content_id": "item-1",
            "content_uri": "https://platform.example/item-1",
            "metadata": json.dumps({"reported_by": "user 7"}),
        }
    )
    by_url = coop.post(f"/c/bank/{BANK}/content?{params}")
    assert by_url.is_success, by_url.text
    assert isinstance(by_url.json()["id"], int) and "pdq" in by_url.json()["signals"]
    # ... and by file: multipart, the file under the content type's name, metadata as JSON.
    by_file = coop.post(
        f"/c/bank/{BANK}/content",
        files={"photo": ("blob", UNRELATED, "application/octet-stream")},
        data={
            "content_id": "item-2",
            "metadata": json.dumps({"content_id": "item-2", "json": {"queue": "ncii"}}),
        },
    )
    assert by_file.is_success, by_file.text

    # The item-submission flow: hashContentFromUrl, then lookupContent per signal type.
    hashes = coop.get("/h/hash", params={"url": f"{images}/photo.jpg"})
    assert hashes.is_success, hashes.text
    matched_types = []
    for signal_type, signal in hashes.json().items():
        lookup = coop.get("/m/lookup", params={"signal": signal, "signal_type": signal_type})
        assert lookup.is_success, lookup.text
        if len(lookup.json().get(BANK) or []) > 0:  # matches[bankId]?.length > 0
            matched_types.append(signal_type)
    assert "pdq" in matched_types

    # Exchange pages: the API list, a schema, the bank's exchange (404: none), and creating
    # one without credentials (accepted, as HMA does: the fetch says it was refused).
    apis = coop.get("/c/exchanges/apis")
    assert apis.is_success and "stop_ncii" in apis.json()
    schema = coop.get("/c/exchanges/api/stop_ncii/schema").json()
    assert schema["credentials_schema"]["fields"][0]["name"] == "fetch_function_key"
    assert coop.get(f"/c/exchange/{BANK}").status_code == 404
    exchange = coop.post(
        "/c/exchanges", json={"bank": "COOP_ORG1_SHARED", "api": "stop_ncii", "api_json": {}}
    )
    assert exchange.status_code == 201, exchange.text
    assert coop.get("/c/exchange/COOP_ORG1_SHARED").json()["api"] == "stop_ncii"

    # deleteBank, after which Coop's getBank sees a 404.
    assert coop.delete(f"/c/bank/{BANK}").is_success
    assert coop.get(f"/c/bank/{BANK}").status_code == 404


def test_keyless_access_is_the_hma_routes_only_and_their_tenant(hma: Server) -> None:
    keyless = httpx.Client(base_url=hma.url, timeout=30)
    assert keyless.get("/v1/banks").status_code == 401  # /v1 still needs a key
    assert keyless.get("/v1/keys").status_code == 401
    name = "COOP_ORG2_OWN"
    assert keyless.post("/c/banks", json={"name": name}).status_code == 201
    added = keyless.post(f"/c/bank/{name}/signal", json={"pdq": "ab" * 32})
    assert added.status_code == 200
    with Store.open(f"sqlite:///{hma.home / 'counterfake.db'}") as store:
        assert store.get_bank(f"coop:{name}").tenant == "coop"  # the anonymous tenant's bank
        (event,) = [e for e in store.audit_events() if e.action == "entries_added"][:1]
        _, secret = store.keys.create("coop", ["curate"])
    assert (event.bank, event.detail["submitted_by"]) == (f"coop:{name}", "anonymous")
    # A key still works on the HMA routes (and means its own tenant).
    with hma.client(secret) as keyed:
        assert keyed.get(f"/c/bank/{name}").status_code == 200


def test_keyless_hma_calls_from_other_networks_need_a_key(tmp_path: Path) -> None:
    env = {
        "COUNTERFAKE_HMA_ANONYMOUS_TENANT": "coop",
        "COUNTERFAKE_HMA_ANONYMOUS_NETWORKS": "10.0.0.0/8",
    }
    with Server(tmp_path / "home", env=env) as server:
        refused = httpx.get(f"{server.url}/c/banks")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_key"


def test_keyless_hma_access_is_off_by_default(tmp_path: Path) -> None:
    with Server(tmp_path / "home") as server:
        assert httpx.get(f"{server.url}/c/banks").status_code == 401


def test_coop_finds_a_derivative_of_a_protected_photo_in_two_calls(
    tmp_path: Path, corpus_dir: Path, images: str
) -> None:
    """Coop hashes by URL, then looks up each returned signal type. The `derivative` type's
    value is a reference to what a derivative search of the image found, readable on every
    worker: a nudify-style edit of a protected photo is reported in the protecting bank."""
    from PIL import Image

    from counterfake.protect import protect_bytes

    from ..derivative_images import reencode, replace_region

    photos = [Image.open(p).convert("RGB") for p in sorted(corpus_dir.glob("*.jpg"))[30:33]]
    protected, filler, _ = photos
    fake, _ = replace_region(protected, filler, 0.4)
    _Images.files["/fake.jpg"] = reencode(fake)
    home = tmp_path / "home"
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("COOP_ORG1_PROTECTED", tenant="coop")
        store.add_entries(
            "coop:COOP_ORG1_PROTECTED", protect_bytes(encode(protected, quality=95)).entries()
        )
        _, other_key = store.keys.create("other", ["match"])
    env = {
        "COUNTERFAKE_HMA_ANONYMOUS_TENANT": "coop",
        "COUNTERFAKE_FETCH_URLS": "true",
        "COUNTERFAKE_FETCH_ALLOW": "127.0.0.1/32",
    }
    with Server(home, workers=2, env=env) as server:
        hashes = httpx.get(f"{server.url}/h/hash", params={"url": f"{images}/fake.jpg"}).json()
        assert set(hashes) == {"pdq", "md5", "sha256", "derivative"}
        workers = set()
        for _ in range(16):  # new connections: the kernel spreads them over both workers
            lookup = httpx.get(
                f"{server.url}/m/lookup",
                params={"signal": hashes["derivative"], "signal_type": "derivative"},
            )
            workers.add(lookup.headers["x-counterfake-worker"])
            matches = lookup.json()["COOP_ORG1_PROTECTED"]
            assert len(matches) == 1 and matches[0]["changed_fraction"] > 0.2
        assert len(workers) == 2
        pdq = httpx.get(
            f"{server.url}/m/lookup", params={"signal": hashes["pdq"], "signal_type": "pdq"}
        )
        assert pdq.json() == {}  # not a copy: only the derivative reference finds it

        # A reference is the tenant's own, and an unknown one is a clear 400.
        foreign = httpx.get(
            f"{server.url}/m/lookup",
            params={"signal": hashes["derivative"], "signal_type": "derivative"},
            headers={"X-API-Key": other_key},
        )
        unknown = httpx.get(
            f"{server.url}/m/lookup", params={"signal": "nope", "signal_type": "derivative"}
        )
        for refused in (foreign, unknown):
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "unknown_reference"
