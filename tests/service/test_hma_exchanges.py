"""HMA's exchange routes (`/c/exchanges...`) through a real `counterfake serve`, in the shapes
HMA answers and in the order ROOST Coop calls them (roostorg/coop,
server/services/hmaService/index.ts: getExchangeApis, getExchangeApiSchema,
setExchangeCredentials, createBank with an exchange, getExchangeForBank). The StopNCII source is
a local stand-in of its documented FetchHashes API (the real one is not reachable here)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..exchange.test_stopncii import FUNCTION, SUBSCRIPTION, _record, _StopNCIIStandIn
from .conftest import Service

BANK = "COOP_ORG1_STOPNCII"


@pytest.fixture
def stop_ncii() -> Iterator[str]:
    _StopNCIIStandIn.records = [_record(i) for i in range(1, 301)] + [
        _record(i, "Withdrawn") for i in range(301, 311)
    ]
    _StopNCIIStandIn.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StopNCIIStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _pdq(number: int) -> str:
    return hashlib.sha256(str(number).encode()).hexdigest()


def _status(client: httpx.Client, name: str, until: float = 20.0) -> dict[str, Any]:
    """The exchange's fetch status once a fetch has completed (the service fetches it in the
    background)."""
    deadline = time.monotonic() + until
    while True:
        status = client.get(f"/c/exchange/{name}/status")
        assert status.status_code == 200, status.text
        body: dict[str, Any] = status.json()
        if body["last_fetch_complete_ts"] is not None or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_coops_exchange_calls_set_up_a_stopncii_exchange_that_fetches_in_the_background(
    service: Service, stop_ncii: str
) -> None:
    coop = service.client("acme", "curate")

    # getExchangeApis: the list, then each API's auth flags.
    apis = coop.get("/c/exchanges/apis").json()
    assert {"stop_ncii", "ncmec", "local_file", "counterfake"} <= set(apis)
    flags = coop.get("/c/exchanges/api/stop_ncii").json()
    assert flags == {"supports_authentification": True, "has_set_authentification": False}
    assert coop.get("/c/exchanges/api/local_file").json()["supports_authentification"] is False
    assert coop.get("/c/exchanges/api/nope").status_code == 400

    # getExchangeApiSchema: the fields Coop builds its forms from.
    schema = coop.get("/c/exchanges/api/stop_ncii/schema").json()
    assert schema["config_schema"] == {"fields": []}
    names = [f["name"] for f in schema["credentials_schema"]["fields"]]
    assert names[:2] == ["fetch_function_key", "subscription_key"]
    ncmec = coop.get("/c/exchanges/api/ncmec/schema").json()
    environment = ncmec["config_schema"]["fields"][0]
    assert environment["type"] == "enum"
    assert "https://report.cybertip.org/hashsharing" in environment["choices"]
    assert coop.get("/c/exchanges/api/nope/schema").status_code == 404

    # setExchangeCredentials: the answer and every other route only say that they are set.
    secrets = {
        "fetch_function_key": FUNCTION,
        "subscription_key": SUBSCRIPTION,
        "base_url_override": stop_ncii,
    }
    setting = coop.post("/c/exchanges/api/stop_ncii", json={"credential_json": secrets})
    assert setting.status_code == 200, setting.text
    assert setting.json()["has_set_authentification"] is True
    assert FUNCTION not in setting.text and SUBSCRIPTION not in setting.text

    # createBank with an exchange: one POST makes the bank and the exchange.
    created = coop.post("/c/exchanges", json={"bank": BANK, "api": "stop_ncii", "api_json": {}})
    assert created.status_code == 201, created.text
    assert created.json() == {"message": "Created successfully"}
    assert coop.get(f"/c/bank/{BANK}").status_code == 200
    assert BANK in coop.get("/c/exchanges").json()

    # getExchangeForBank: the config, then the fetch status once the background fetch ran.
    shown = coop.get(f"/c/exchange/{BANK}")
    assert shown.json() == {"name": BANK, "api": "stop_ncii", "enabled": True}
    status = _status(coop, BANK)
    assert status["last_fetch_succeeded"] is True, status
    assert status["up_to_date"] is True
    assert status["fetched_items"] == 310
    assert status["running_fetch_start_ts"] is None
    assert status["checkpoint_ts"] >= status["last_fetch_complete_ts"] - 1

    # What it fetched matches (Coop's lookupContent), and a withdrawn hash does not.
    matcher = service.client("acme", "match")

    def matched(number: int) -> bool:
        found = matcher.get("/m/lookup", params={"signal": _pdq(number), "signal_type": "pdq"})
        assert found.status_code == 200, found.text
        return len(found.json().get(BANK) or []) > 0

    assert matched(5)
    assert not matched(305)

    # Pausing keeps it listed and stops its fetches; the credentials never show up anywhere.
    paused = coop.put(f"/c/exchange/{BANK}", json={"enabled": False})
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    calls = len(_StopNCIIStandIn.calls)
    time.sleep(1.5)
    assert len(_StopNCIIStandIn.calls) == calls
    for path in (f"/c/exchange/{BANK}", f"/c/exchange/{BANK}/status", "/c/exchanges"):
        text = coop.get(path).text
        assert FUNCTION not in text and SUBSCRIPTION not in text
    assert FUNCTION not in service.server.log.read_text()

    # Clearing the credentials is an empty credential_json.
    cleared = coop.post("/c/exchanges/api/stop_ncii", json={"credential_json": {}})
    assert cleared.json()["has_set_authentification"] is False

    # Deleting the exchange leaves its bank and what it brought.
    assert coop.delete(f"/c/exchange/{BANK}").json() == {"message": "Exchange deleted"}
    assert coop.get(f"/c/exchange/{BANK}").status_code == 404
    assert matched(5)
    assert coop.delete(f"/c/exchange/{BANK}").status_code == 200  # as HMA: nothing to delete


def test_exchanges_belong_to_their_tenant(service: Service, tmp_path: Any) -> None:
    signals = tmp_path / "signals.txt"
    signals.write_text(f"pdq {_pdq(1)}\n")
    acme, beta = service.client("acme", "curate"), service.client("beta", "curate")
    body = {"bank": "SHARED_LIST", "api": "local_file", "api_json": {"filename": str(signals)}}
    assert acme.post("/c/exchanges", json=body).status_code == 201
    assert beta.get("/c/exchange/SHARED_LIST").status_code == 404
    assert "SHARED_LIST" not in beta.get("/c/exchanges").json()
    assert beta.put("/c/exchange/SHARED_LIST", json={"enabled": False}).status_code == 404
    beta.delete("/c/exchange/SHARED_LIST")  # succeeds as HMA's does, and removes nothing
    assert acme.get("/c/exchange/SHARED_LIST").status_code == 200
    # Each tenant names its own: beta may have an exchange of the same name.
    assert beta.post("/c/exchanges", json=body).status_code == 201
    assert acme.get("/c/exchange/SHARED_LIST").json()["filename"] == str(signals)
    assert _status(acme, "SHARED_LIST")["fetched_items"] == 1
    # Credentials are per tenant too.
    ncmec = {"credential_json": {"user": "u", "password": "p"}}
    assert acme.post("/c/exchanges/api/ncmec", json=ncmec).status_code == 200
    assert beta.get("/c/exchanges/api/ncmec").json()["has_set_authentification"] is False


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"api": "stop_ncii", "api_json": {}}, "invalid_request"),  # no bank
        ({"bank": "lower", "api": "stop_ncii"}, "invalid_request"),  # HMA's name rule
        ({"bank": "B_X", "api": "stop_ncii", "api_json": []}, "invalid_request"),
        ({"bank": "B_X", "api_json": {}}, "invalid_request"),  # no api
        ({"bank": "B_X", "api": "fb_threatexchange"}, "unknown_exchange_api"),
        ({"bank": "B_X", "api": "ncmec", "api_json": {}}, "invalid_request"),  # no environment
        (
            {"bank": "B_X", "api": "ncmec", "api_json": {"environment": "ftp://x"}},
            "invalid_exchange",
        ),
        ({"bank": "B_X", "api": "local_file", "api_json": {"filename": 3}}, "invalid_request"),
        ({"bank": "B_X", "api": "stop_ncii", "api_json": {"extra": 1}}, "invalid_request"),
        (
            {
                "bank": "B_X",
                "api": "ncmec",
                "api_json": {"environment": "https://x", "only_esp_ids": ["a"]},
            },
            "invalid_request",
        ),
    ],
)
def test_a_bad_exchange_is_refused_in_hmas_style_and_leaves_no_bank(
    service: Service, body: dict[str, Any], code: str
) -> None:
    client = service.client("acme", "curate")
    refused = client.post("/c/exchanges", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == code and refused.json()["message"]
    assert client.get("/c/bank/B_X").status_code == 404


def test_bad_credentials_are_refused(service: Service) -> None:
    client = service.client("acme", "curate")
    half = {"credential_json": {"fetch_function_key": "f"}}
    assert client.post("/c/exchanges/api/stop_ncii", json=half).status_code == 400
    assert client.post("/c/exchanges/api/ncmec", json=[1]).status_code == 400
    wrong = {"credential_json": {"user": 1, "password": "p"}}
    assert client.post("/c/exchanges/api/ncmec", json=wrong).status_code == 400
    none = {"credential_json": {"x": "y"}}
    assert client.post("/c/exchanges/api/local_file", json=none).status_code == 400
    assert client.get("/c/exchanges/api/stop_ncii").json()["has_set_authentification"] is False
