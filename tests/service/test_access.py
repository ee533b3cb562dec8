"""Who may call what: every route against every scope and tenant, through real HTTP.

The table below is the specification. A route missing from it fails the coverage test, so a
new route cannot ship without saying who may use it.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from counterfake.store import SCOPES

from ..images import encode, photo_like
from .conftest import Service

_counter = itertools.count()
JPEG = encode(photo_like(320, 240, seed=7))


def _pdq() -> str:
    return secrets.token_hex(32)


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    scopes: frozenset[str]  # admin is admitted everywhere; an empty set means public
    #: "owned": the bank in the path must be the key's tenant's; "match": banks named for
    #: matching must be owned by or shared with it.
    bank: str | None = None
    build: Callable[[Setup, str], dict[str, Any]] = lambda setup, bank: {}


class Setup:
    """Creates what a call needs, fresh when the call may destroy it (with an admin key)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.admin = service.client("acme", "admin")

    def bank(self, shared_with: tuple[str, ...] = ()) -> str:
        name = f"b{next(_counter)}-{secrets.token_hex(3)}"
        body = {"name": name, "tenant": "acme", "shared_with": list(shared_with)}
        self.admin.post("/v1/banks", json=body).raise_for_status()
        return name

    def entry(self, bank: str, metadata: dict[str, Any] | None = None) -> tuple[int, str]:
        value = _pdq()
        body = {"signal_type": "pdq", "value": value, "metadata": metadata or {}}
        response = self.admin.post(f"/v1/banks/{bank}/signals", json=body)
        response.raise_for_status()
        return int(response.json()["entries"][0]["entry_id"]), value

    def key_id(self) -> str:
        response = self.admin.post("/v1/keys", json={"tenant": "acme", "scopes": ["match"]})
        return str(response.json()["key_id"])


def _upload(setup: Setup, bank: str) -> dict[str, Any]:
    return {"content": JPEG, "headers": {"Content-Type": "image/jpeg"}}


def _multipart(setup: Setup, bank: str) -> dict[str, Any]:
    return {"files": {"photo": ("p.jpg", JPEG, "image/jpeg")}}


S, M, C, F, R = "submit", "match", "curate", "follow", "review"

ROUTES = [
    Route("GET", "/status/live", frozenset()),
    Route("GET", "/status/ready", frozenset()),
    Route("GET", "/status", frozenset({S, M, C})),
    Route("GET", "/v1/banks", frozenset({C})),
    Route(
        "POST", "/v1/banks", frozenset({C}), build=lambda s, b: {"json": {"name": s.bank() + "x"}}
    ),
    Route("GET", "/v1/banks/{bank}", frozenset({C}), "owned"),
    Route("PATCH", "/v1/banks/{bank}", frozenset({C}), "owned", lambda s, b: {"json": {}}),
    Route("DELETE", "/v1/banks/{bank}", frozenset({C}), "owned"),
    Route("GET", "/v1/banks/{bank}/entries", frozenset({C}), "owned"),
    Route("GET", "/v1/banks/{bank}/changes", frozenset({F, C}), "match"),
    Route("POST", "/v1/banks/{bank}/content", frozenset({S, C}), "owned", _upload),
    Route(
        "POST",
        "/v1/banks/{bank}/signals",
        frozenset({S, C}),
        "owned",
        lambda s, b: {"json": {"value": _pdq()}},
    ),
    Route(
        "POST",
        "/v1/banks/{bank}/signals/batch",
        frozenset({S, C}),
        "owned",
        lambda s, b: {"json": {"signals": [{"value": _pdq()}, {"value": _pdq()}]}},
    ),
    Route("GET", "/v1/banks/{bank}/entries/{entry_id}", frozenset({C}), "owned"),
    Route("DELETE", "/v1/banks/{bank}/entries/{entry_id}", frozenset({S, C}), "owned"),
    Route(
        "GET",
        "/v1/lookup",
        frozenset({M}),
        "match",
        lambda s, b: {"params": {"signal": _pdq(), "bank": b}},
    ),
    Route(
        "POST",
        "/v1/lookup",
        frozenset({M}),
        "match",
        lambda s, b: {**_upload(s, b), "params": {"bank": b}},
    ),
    Route("POST", "/v1/hash", frozenset({M, C}), build=_upload),
    Route(
        "POST",
        "/v1/compare",
        frozenset({M, C}),
        build=lambda s, b: {"json": {"a": _pdq(), "b": _pdq()}},
    ),
    Route("GET", "/v1/keys", frozenset()),
    Route(
        "POST",
        "/v1/keys",
        frozenset(),
        build=lambda s, b: {"json": {"tenant": "acme", "scopes": ["match"]}},
    ),
    Route("DELETE", "/v1/keys/{key_id}", frozenset()),
    Route(
        "PATCH", "/v1/keys/{key_id}", frozenset(), build=lambda s, b: {"json": {"rate_limit": 5}}
    ),
    Route(
        "GET",
        "/m/raw_lookup",
        frozenset({M}),
        build=lambda s, b: {"params": {"signal": _pdq(), "signal_type": "pdq"}},
    ),
    Route(
        "GET",
        "/m/lookup",
        frozenset({M}),
        build=lambda s, b: {"params": {"signal": _pdq(), "signal_type": "pdq"}},
    ),
    Route("POST", "/m/lookup", frozenset({M}), build=_multipart),
    Route("GET", "/m/index/status", frozenset({M})),
    Route(
        "POST",
        "/m/compare",
        frozenset({M, C}),
        build=lambda s, b: {"json": {"pdq": [_pdq(), _pdq()]}},
    ),
    Route("GET", "/h/hash", frozenset({M, C}), build=lambda s, b: {"params": {"url": "http://x/"}}),
    Route("POST", "/h/hash", frozenset({M, C}), build=_multipart),
    Route("GET", "/c/banks", frozenset({C})),
    Route(
        "POST", "/c/banks", frozenset({C}), build=lambda s, b: {"json": {"name": s.bank() + "o"}}
    ),
    Route("POST", "/c/bank/{bank_name}/content", frozenset({S, C}), "owned", _multipart),
    Route(
        "POST",
        "/c/bank/{bank_name}/signal",
        frozenset({S, C}),
        "owned",
        lambda s, b: {"json": {"pdq": _pdq()}},
    ),
    Route("GET", "/c/bank/{bank_name}", frozenset({C}), "owned"),
    Route(
        "PUT", "/c/bank/{bank_name}", frozenset({C}), "owned", lambda s, b: {"json": {"enabled": 1}}
    ),
    Route("DELETE", "/c/bank/{bank_name}", frozenset({C}), "owned"),
    Route("GET", "/c/bank/{bank_name}/content/{content_id}", frozenset({C}), "owned"),
    Route(
        "PUT",
        "/c/bank/{bank_name}/content/{content_id}",
        frozenset({C}),
        "owned",
        lambda s, b: {"json": {"disable_until_ts": 0}},
    ),
    Route("DELETE", "/c/bank/{bank_name}/content/{content_id}", frozenset({C}), "owned"),
    Route("GET", "/c/signal_type", frozenset({C})),
    Route("PUT", "/c/signal_type/{signal_type_name}", frozenset({C}), build=lambda s, b: {}),
    Route("GET", "/c/signal_type/index", frozenset({C})),
    Route("GET", "/c/content_type", frozenset({C})),
    Route("GET", "/c/exchanges/apis", frozenset({C})),
    Route("GET", "/c/exchanges/api/{api_name}", frozenset({C})),
    Route(
        "POST",
        "/c/exchanges/api/{api_name}",
        frozenset({C}),
        build=lambda s, b: {"json": {"credential_json": {}}},
    ),
    Route("GET", "/c/exchanges/api/{api_name}/schema", frozenset({C})),
    Route("GET", "/c/exchanges", frozenset({C})),
    Route(
        "POST",
        "/c/exchanges",
        frozenset({C}),
        build=lambda s, b: {"json": {"bank": "X_SHARED", "api": "stop_ncii", "api_json": {}}},
    ),
    Route("GET", "/c/exchange/{exchange_name}", frozenset({C})),
    Route("GET", "/c/exchange/{exchange_name}/status", frozenset({C})),
    Route("PUT", "/c/exchange/{exchange_name}", frozenset({C}), build=lambda s, b: {"json": {}}),
    Route("DELETE", "/c/exchange/{exchange_name}", frozenset({C})),
    # Review: reviewers claim and decide; curators list, appeal and run the webhooks.
    Route("GET", "/v1/cases", frozenset({R, C})),
    Route("GET", "/v1/cases/export", frozenset({R, C})),
    Route("GET", "/v1/cases/{case_id}", frozenset({R, C})),
    Route("POST", "/v1/cases/claim", frozenset({R}), build=lambda s, b: {"json": {}}),
    Route("POST", "/v1/cases/{case_id}/release", frozenset({R})),
    Route("GET", "/v1/cases/{case_id}/preview", frozenset({R})),
    Route("GET", "/v1/cases/{case_id}/overlay", frozenset({R})),
    Route("GET", "/v1/cases/{case_id}/comments", frozenset({R, C})),
    Route(
        "POST",
        "/v1/cases/{case_id}/comments",
        frozenset({R, C}),
        build=lambda s, b: {"json": {"body": "seen"}},
    ),
    Route("POST", "/v1/cases/{case_id}/reveal", frozenset({R})),
    Route(
        "POST",
        "/v1/cases/{case_id}/decision",
        frozenset({R}),
        build=lambda s, b: {"json": {"decision": "confirm", "policy": "p", "reason": "r"}},
    ),
    Route(
        "POST",
        "/v1/cases/{case_id}/appeal",
        frozenset({R, C}),
        build=lambda s, b: {"json": {"reason": "r"}},
    ),
    Route("GET", "/v1/review/settings", frozenset({R})),
    Route("PUT", "/v1/review/settings", frozenset({R}), build=lambda s, b: {"json": {}}),
    Route("PUT", "/v1/review/defaults", frozenset({C}), build=lambda s, b: {"json": {}}),
    Route("GET", "/v1/webhooks", frozenset({C})),
    Route(
        "POST",
        "/v1/webhooks",
        frozenset({C}),
        build=lambda s, b: {"json": {"url": "http://127.0.0.1:9/", "events": ["case.opened"]}},
    ),
    Route("DELETE", "/v1/webhooks/{webhook_id}", frozenset({C})),
    Route("GET", "/v1/webhooks/{webhook_id}/deliveries", frozenset({C})),
    Route("POST", "/v1/deliveries/{delivery_id}/replay", frozenset({C})),
    # Keyless by design: the protect page's intake (off here: no intake bank is configured).
    Route("GET", "/v1/intake", frozenset()),
    Route("POST", "/v1/intake", frozenset(), build=lambda s, b: {"content": b"{}"}),
    Route("POST", "/v1/intake/withdraw", frozenset(), build=lambda s, b: {"json": {"code": "A"}}),
]
ADMIN_ONLY = {"/v1/keys", "/v1/keys/{key_id}"}
PUBLIC = {"/status/live", "/status/ready", "/v1/intake"}
#: Answered without a key, but not with 200 here: intake is off, the code unknown.
KEYLESS = {("POST", "/v1/intake"): "intake_disabled", ("POST", "/v1/intake/withdraw"): None}
DENIED = {"missing_key", "invalid_key", "forbidden"}


def _call(service: Service, setup: Setup, route: Route, client: httpx.Client) -> httpx.Response:
    bank = setup.bank(shared_with=("beta",) if route.bank == "match" else ())
    entry_id, _ = setup.entry(bank)
    path = _path(route, bank, entry_id, setup.key_id())
    return client.request(route.method, path, **route.build(setup, bank))


def _path(route: Route, bank: str, entry_id: int, key_id: str = "") -> str:
    return route.path.format(
        bank=bank,
        bank_name=bank,
        entry_id=entry_id,
        content_id=entry_id,
        key_id=key_id,
        signal_type_name="pdq",
        api_name="stop_ncii",
        exchange_name="X_SHARED",
        case_id=999_999,
        webhook_id=999_999,
        delivery_id=999_999,
    )


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"]["code"])
    return None


def test_the_table_covers_every_route(service: Service) -> None:
    spec = service.client().get("/openapi.json").json()
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_admits_exactly_its_scopes(service: Service, route: Route) -> None:
    setup = Setup(service)
    anonymous = _call(service, setup, route, service.client())
    if (route.method, route.path) in KEYLESS:
        assert _code(anonymous) not in DENIED, anonymous.text
        assert anonymous.status_code < 500
        expected = KEYLESS[(route.method, route.path)]
        assert expected is None or _code(anonymous) == expected, anonymous.text
        return
    if route.path in PUBLIC:
        assert anonymous.status_code == 200
        return
    assert (anonymous.status_code, _code(anonymous)) == (401, "missing_key")
    forged = service.server.client("cfk_000000000000_" + "x" * 43)
    assert _code(_call(service, setup, route, forged)) == "invalid_key"

    for scope in SCOPES:
        response = _call(service, setup, route, service.client("acme", scope))
        admitted = scope == "admin" or scope in route.scopes
        if admitted:
            assert response.status_code < 500, (scope, response.text)
            assert _code(response) not in DENIED, (scope, response.text)
        else:
            assert (response.status_code, _code(response)) == (403, "forbidden"), scope


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.bank], ids=lambda r: f"{r.method} {r.path}"
)
def test_another_tenant_cannot_see_a_bank_it_was_not_given(service: Service, route: Route) -> None:
    setup = Setup(service)
    for scope in route.scopes:
        bank = setup.bank()  # acme's, shared with nobody
        entry_id, _ = setup.entry(bank)
        path = _path(route, bank, entry_id)
        client = service.client("beta", scope)
        response = client.request(route.method, path, **route.build(setup, bank))
        if (route.method, route.path) == ("DELETE", "/c/bank/{bank_name}"):
            # HMA: deleting a bank that does not exist succeeds; acme's bank stays.
            assert response.status_code == 200, scope
            assert setup.admin.get(f"/v1/banks/{bank}").status_code == 200
            continue
        assert (response.status_code, _code(response)) == (404, "bank_not_found"), scope
    # ... while beta's admin sees every bank, naming another tenant's as owner:name.
    admin = service.client("beta", "admin")
    bank = setup.bank(shared_with=("beta",) if route.bank == "match" else ())
    entry_id, _ = setup.entry(bank)
    qualified = f"acme:{bank}"
    path = _path(route, qualified, entry_id)
    response = admin.request(route.method, path, **route.build(setup, qualified))
    assert response.status_code < 400, response.text


def test_bank_names_are_per_tenant_so_a_taken_name_reveals_nothing(service: Service) -> None:
    taken = Setup(service).bank()  # acme's
    beta = service.client("beta", "curate")
    created = beta.post("/v1/banks", json={"name": taken})
    assert created.status_code == 201 and created.json()["name"] == taken
    assert beta.post("/c/banks", json={"name": taken}).status_code == 403  # its own now (HMA)
    hma = beta.post("/c/banks", json={"name": taken + "-hma"})
    assert hma.status_code == 201, hma.text
    value = _pdq()
    beta.post(f"/v1/banks/{taken}/signals", json={"value": value}).raise_for_status()

    found = service.client("beta", "match").get("/v1/lookup", params={"signal": value})
    assert [m["bank"] for m in found.json()["matches"]] == [taken]
    assert (
        service.client("acme", "match")
        .get("/v1/lookup", params={"signal": value})
        .json()["matches"]
        == []
    )
    # An admin names its own tenant's banks plainly and every other by owner.
    listed = service.client("beta", "admin").get("/v1/banks").json()["banks"]
    assert {f"acme:{taken}", taken, f"{taken}-hma"} <= {b["name"] for b in listed}


def test_a_shared_bank_matches_for_the_other_tenant_without_its_metadata(
    service: Service,
) -> None:
    setup = Setup(service)
    shared = setup.bank(shared_with=("beta",))
    entry_id, value = setup.entry(shared, metadata={"source_name": "acme-private-name.jpg"})
    beta = service.client("beta", "match")

    found = beta.get("/v1/lookup", params={"signal": value})
    assert found.status_code == 200
    # beta names acme's bank by its owner (beta may have a bank of the same name).
    assert [(m["bank"], m["entry_id"]) for m in found.json()["matches"]] == [
        (f"acme:{shared}", entry_id)
    ]
    for text in ("acme-private-name", "metadata", "submitted_by", "tenant"):
        assert text not in found.text

    raw = beta.get("/m/raw_lookup", params={"signal": value, "signal_type": "pdq"})
    assert raw.json() == {"matches": [entry_id]}
    # The owner's curate key reads the metadata; beta's curate key cannot.
    own = service.client("acme", "curate").get(f"/v1/banks/{shared}/entries/{entry_id}")
    assert own.json()["metadata"] == {"source_name": "acme-private-name.jpg"}
    beta_curate = service.client("beta", "curate")
    other = beta_curate.get(f"/v1/banks/acme:{shared}/entries/{entry_id}")
    assert other.status_code == 404

    named = beta.get("/v1/lookup", params={"signal": value, "bank": f"acme:{shared}"})
    assert [m["entry_id"] for m in named.json()["matches"]] == [entry_id]

    # Unsharing takes it away from beta's lookups.
    curate = service.client("acme", "curate")
    curate.patch(f"/v1/banks/{shared}", json={"shared_with": []}).raise_for_status()
    gone = beta.get("/v1/lookup", params={"signal": value, "bank": f"acme:{shared}"})
    assert (gone.status_code, _code(gone)) == (404, "bank_not_found")
    assert beta.get("/v1/lookup", params={"signal": value}).json()["matches"] == []


def test_a_submit_key_adds_and_withdraws_only_its_own_and_reads_nothing(
    service: Service,
) -> None:
    setup = Setup(service)
    bank = setup.bank()
    other_entry, other_value = setup.entry(bank)
    submit = service.client("acme", "submit")

    added = submit.post(f"/v1/banks/{bank}/signals", json={"value": (mine := _pdq())})
    assert added.status_code == 201
    [entry] = added.json()["entries"]
    assert set(added.json()) == {"accepted", "entries"}

    again = submit.post(f"/v1/banks/{bank}/signals", json={"value": other_value})
    assert again.json() == {"accepted": 1, "entries": []}  # no id of someone else's entry

    refused = submit.delete(f"/v1/banks/{bank}/entries/{other_entry}")
    assert (refused.status_code, _code(refused)) == (404, "entry_not_found")
    assert submit.get(f"/v1/banks/{bank}/entries").status_code == 403
    assert submit.get("/v1/lookup", params={"signal": mine}).status_code == 403

    withdrawn = submit.delete(f"/v1/banks/{bank}/entries/{entry['entry_id']}")
    answer = withdrawn.json()
    assert (answer["entry_id"], answer["withdrawn"]) == (entry["entry_id"], True)
    assert set(answer) == {"entry_id", "withdrawn", "withdrawn_at"}  # as for every scope
    curate = service.client("acme", "curate")
    active = curate.get(f"/v1/banks/{bank}/entries", params={"withdrawn": "false"}).json()
    assert [e["entry_id"] for e in active["entries"]] == [other_entry]


def test_a_revoked_key_is_refused_within_a_second(service: Service) -> None:
    admin = service.client("acme", "admin")
    created = admin.post("/v1/keys", json={"tenant": "acme", "scopes": ["match"]}).json()
    client = service.server.client(created["key"])
    assert client.get("/m/index/status").status_code == 200
    admin.delete(f"/v1/keys/{created['key_id']}").raise_for_status()
    import time

    time.sleep(1.1)
    response = client.get("/m/index/status")
    assert (response.status_code, _code(response)) == (401, "invalid_key")
