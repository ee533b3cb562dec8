"""The service's own API (/v1), its OpenMediaMatch routes and its errors, through real HTTP."""

from __future__ import annotations

import secrets

import httpx
import pytest

from ..images import encode, photo_like, png_bomb
from .conftest import Service

PHOTO = photo_like(640, 480, seed=11)
JPEG = encode(PHOTO, quality=90)
RECOMPRESSED = encode(PHOTO.resize((480, 360)), quality=40)
OTHER = encode(photo_like(640, 480, seed=12), quality=90)
OMM_JPEG = encode(photo_like(500, 400, seed=13), quality=90)


def _bank(client: httpx.Client, **fields: object) -> str:
    name = f"api-{secrets.token_hex(4)}"
    response = client.post("/v1/banks", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return name


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.fixture
def curate(service: Service) -> httpx.Client:
    return service.client("acme", "curate")


@pytest.fixture
def match(service: Service) -> httpx.Client:
    return service.client("acme", "match")


def test_banks_are_created_listed_updated_and_deleted(curate: httpx.Client) -> None:
    name = _bank(curate, description="test bank", pdq_threshold=20, shared_with=["beta"])
    got = curate.get(f"/v1/banks/{name}").json()
    assert got["description"] == "test bank"
    assert (got["pdq_threshold"], got["tenant"], got["shared_with"]) == (20, "acme", ["beta"])
    assert name in [b["name"] for b in curate.get("/v1/banks").json()["banks"]]

    updated = curate.patch(f"/v1/banks/{name}", json={"pdq_threshold": 40, "description": "x"})
    assert (updated.json()["pdq_threshold"], updated.json()["description"]) == (40, "x")
    assert _error(curate.post("/v1/banks", json={"name": name})) == (409, "bank_exists")
    bad = curate.patch(f"/v1/banks/{name}", json={"pdq_threshold": 300})
    assert _error(bad) == (400, "invalid_threshold")

    assert curate.delete(f"/v1/banks/{name}").status_code == 204
    assert _error(curate.get(f"/v1/banks/{name}")) == (404, "bank_not_found")


def test_an_upload_is_added_and_its_copies_found_with_their_hashes(
    curate: httpx.Client, match: httpx.Client
) -> None:
    bank = _bank(curate)
    added = curate.post(
        f"/v1/banks/{bank}/content",
        content=JPEG,
        headers={"Content-Type": "image/jpeg"},
        params={"source_name": "holiday.jpg"},
    )
    assert added.status_code == 201
    body = added.json()
    assert {e["signal"] for e in body["entries"]} == {"pdq", "md5", "sha256"}
    assert body["hashes"]["quality"] >= 50

    exact = match.post("/v1/lookup", files={"photo": ("a.jpg", JPEG, "image/jpeg")}).json()
    assert exact["hashes"]["pdq"] == body["hashes"]["pdq"]
    assert {m["signal"] for m in exact["matches"]} == {"pdq", "md5", "sha256"}

    near = match.post(
        "/v1/lookup",
        content=RECOMPRESSED,
        headers={"Content-Type": "application/octet-stream"},
        params={"bank": bank},
    ).json()
    [pdq] = near["matches"]
    assert pdq["signal"] == "pdq" and 0 < pdq["distance"] <= 31
    unrelated = match.post("/v1/lookup", content=OTHER, params={"bank": bank}).json()
    assert unrelated["matches"] == []

    hashed = match.post("/v1/hash", content=RECOMPRESSED).json()
    compared = match.post(
        "/v1/compare", json={"a": hashed["pdq"], "b": body["hashes"]["pdq"]}
    ).json()
    assert compared == {"distance": pdq["distance"], "threshold": 31, "match": True}
    digests = match.post(
        "/v1/compare", json={"signal_type": "md5", "a": "0" * 32, "b": "1" * 32}
    ).json()
    assert digests == {"distance": None, "threshold": None, "match": False}  # no Hamming


def test_a_threshold_change_applies_to_the_next_lookup(
    curate: httpx.Client, match: httpx.Client
) -> None:
    bank = _bank(curate)
    curate.post(f"/v1/banks/{bank}/content", content=JPEG).raise_for_status()
    near = match.post("/v1/lookup", content=RECOMPRESSED, params={"bank": bank}).json()
    distance = near["matches"][0]["distance"]
    curate.patch(f"/v1/banks/{bank}", json={"pdq_threshold": distance - 1}).raise_for_status()
    deadline_ok = False
    for _ in range(20):  # every worker applies it within its refresh interval
        response = match.post("/v1/lookup", content=RECOMPRESSED, params={"bank": bank})
        if response.json()["matches"] == []:
            deadline_ok = True
            break
    assert deadline_ok


def test_entries_are_paged_and_filtered(curate: httpx.Client) -> None:
    bank = _bank(curate)
    ids = []
    for _ in range(5):
        response = curate.post(f"/v1/banks/{bank}/signals", json={"value": secrets.token_hex(32)})
        ids.append(response.json()["entries"][0]["entry_id"])
    curate.post(f"/v1/banks/{bank}/signals", json={"signal_type": "md5", "value": "a" * 32})
    curate.delete(f"/v1/banks/{bank}/entries/{ids[1]}").raise_for_status()

    seen, after = [], 0
    while after is not None:
        page = curate.get(
            f"/v1/banks/{bank}/entries", params={"limit": 2, "after": after, "signal_type": "pdq"}
        ).json()
        seen += [e["entry_id"] for e in page["entries"]]
        after = page["next_after"]
    assert seen == ids
    withdrawn = curate.get(f"/v1/banks/{bank}/entries", params={"withdrawn": True}).json()
    assert [e["entry_id"] for e in withdrawn["entries"]] == [ids[1]]
    by_source = curate.get(f"/v1/banks/{bank}/entries", params={"source": "image"}).json()
    assert by_source["entries"] == []


# OpenMediaMatch ------------------------------------------------------------------------------


def test_openmediamatch_routes_keep_its_shapes(service: Service) -> None:
    curate = service.client("acme", "curate")
    match = service.client("acme", "match")
    name = f"OMM_{secrets.token_hex(3).upper()}"
    created = curate.post("/c/banks", json={"name": name})
    assert (created.status_code, created.json()) == (
        201,
        {"name": name, "matching_enabled_ratio": 1.0},
    )
    assert {"name": name, "matching_enabled_ratio": 1.0} in curate.get("/c/banks").json()
    again = curate.post("/c/banks", json={"name": name})
    assert again.status_code == 403 and "message" in again.json()  # HMA: bank already exists

    content = curate.post(
        f"/c/bank/{name}/content", files={"photo": ("p.jpg", OMM_JPEG, "image/jpeg")}
    ).json()
    assert set(content) == {"id", "signals"}
    assert set(content["signals"]) == {"pdq", "md5", "sha256"}
    pdq = content["signals"]["pdq"]

    value = secrets.token_hex(32)
    signal = curate.post(f"/c/bank/{name}/signal", json={"pdq": value.upper()}).json()
    assert signal["signals"] == {"pdq": value} and isinstance(signal["id"], int)

    raw = match.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq}).json()
    assert raw == {"matches": [content["id"]]}
    with_distance = match.get(
        "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq, "include_distance": "true"}
    ).json()
    assert with_distance == {"matches": [{"bank_content_id": content["id"], "distance": "0"}]}
    other_bank = match.get(
        "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq, "banks": "ELSEWHERE"}
    )
    assert other_bank.json() == {"matches": []}

    by_bank = match.get("/m/lookup", params={"signal_type": "pdq", "signal": pdq}).json()
    assert by_bank == {name: [{"bank_content_id": content["id"], "distance": "0"}]}
    per_type = match.post("/m/lookup", files={"photo": ("p.jpg", OMM_JPEG, "image/jpeg")}).json()
    assert set(per_type) == {"pdq", "md5", "sha256"}
    assert per_type["pdq"] == by_bank
    assert [len(per_type[t][name]) for t in ("md5", "sha256")] == [1, 1]
    hashed = match.post(
        "/h/hash", params={"types": "pdq"}, files={"photo": ("p.jpg", OMM_JPEG, "image/jpeg")}
    )
    assert hashed.json() == {"pdq": pdq}
    status = match.get("/m/index/status", params={"signal_type": "pdq"}).json()
    assert set(status) == {"pdq"}
    assert status["pdq"]["present"] is True and status["pdq"]["size"] >= 2
    assert isinstance(status["pdq"]["built_to"], int)
    compared = match.post("/m/compare", json={"pdq": [pdq, pdq]}).json()
    assert compared == {"pdq": [True, {"distance": 0}]}

    missing = match.get("/m/raw_lookup", params={"signal_type": "nope", "signal": "00"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "unknown_signal_type"
    wrong_field = match.post("/h/hash", files={"video": ("v.mp4", b"xx", "video/mp4")})
    assert _error(wrong_field) == (400, "unsupported_content_type")


def test_hma_banks_content_and_enabled_ratio(service: Service) -> None:
    """GET, PUT and DELETE of a bank and of its content, as HMA answers them; a bank's
    enabled ratio decides which lookups search it (raw lookups ignore it, as in HMA)."""
    curate = service.client("acme", "curate")
    match = service.client("acme", "match")
    name = f"HMA_{secrets.token_hex(3).upper()}"
    assert curate.post("/c/banks", json={"name": name, "enabled_ratio": "0.5"}).status_code == 201
    assert curate.get(f"/c/bank/{name}").json() == {"name": name, "matching_enabled_ratio": 0.5}
    assert curate.get(f"/c/bank/{name}X").status_code == 404
    value = secrets.token_hex(32)
    added = curate.post(f"/c/bank/{name}/signal", json={"pdq": value, "note": "seen twice"})
    content_id = added.json()["id"]

    def found(seed: str) -> bool:
        params = {"signal_type": "pdq", "signal": value, "seed": seed}
        return name in match.get("/m/lookup", params=params).json()

    # Half the lookups search the bank, the same ones for the same seed.
    draws = [found(str(seed)) for seed in range(40)]
    assert 5 < sum(draws) < 35 and draws == [found(str(seed)) for seed in range(40)]
    bypass = {"signal_type": "pdq", "signal": value, "bypass_coinflip": "true", "seed": "1"}
    assert name in match.get("/m/lookup", params=bypass).json()
    disabled = curate.put(f"/c/bank/{name}", json={"enabled": False})
    assert disabled.json() == {"name": name, "matching_enabled_ratio": 0.0}
    assert not any(found(str(seed)) for seed in range(10))
    raw = match.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": value})
    assert raw.json() == {"matches": [content_id]}
    curate.put(f"/c/bank/{name}", json={"enabled_ratio": 1}).raise_for_status()
    rename = curate.put(f"/c/bank/{name}", json={"name": name + "_NEW"})
    assert rename.status_code == 400 and "message" in rename.json()

    item = curate.get(f"/c/bank/{name}/content/{content_id}", params={"include_signals": "true"})
    assert item.json() == {
        "id": content_id,
        "disable_until_ts": 1,
        "original_media_uri": None,
        "bank": {"name": name, "matching_enabled_ratio": 1.0},
        "signals": {"pdq": value},
        "note": "seen twice",
    }
    off = curate.put(f"/c/bank/{name}/content/{content_id}", json={"disable_until_ts": 0})
    assert off.json()["disable_until_ts"] == 0
    assert found("1") is False
    on = curate.put(f"/c/bank/{name}/content/{content_id}", json={"disable_until_ts": 1})
    assert on.json()["disable_until_ts"] == 1
    assert found("1") is True
    later = curate.put(
        f"/c/bank/{name}/content/{content_id}", json={"disable_until_ts": 4_000_000_000}
    )
    assert later.status_code == 400 and "message" in later.json()
    assert curate.delete(f"/c/bank/{name}/content/{content_id}").json() == {"deleted": 1}
    assert curate.delete(f"/c/bank/{name}/content/{content_id}").json() == {"deleted": 0}
    assert found("1") is False

    assert curate.delete(f"/c/bank/{name}").json() == {"message": "Done"}
    assert curate.get(f"/c/bank/{name}").status_code == 404
    assert curate.delete(f"/c/bank/{name}").status_code == 200  # as in HMA: gone is gone


# errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", (400, "empty_input")),
        (b"plain text, not an image", (415, "unsupported_format")),
        (JPEG[: len(JPEG) // 3], (400, "corrupt_image")),
        (png_bomb(60_000, 60_000), (413, "image_too_large")),
    ],
    ids=["empty", "text", "truncated", "pixel-bomb"],
)
def test_bad_uploads_get_a_4xx_with_the_media_code(
    match: httpx.Client, body: bytes, expected: tuple[int, str]
) -> None:
    for path in ("/v1/hash", "/v1/lookup"):
        assert _error(match.post(path, content=body)) == expected


def test_bad_requests_get_stable_codes_never_a_500(
    match: httpx.Client, curate: httpx.Client
) -> None:
    assert _error(match.get("/v1/lookup", params={"signal": "zz"})) == (400, "invalid_signal")
    unknown = match.get("/v1/lookup", params={"signal": "00", "signal_type": "x"})
    assert _error(unknown) == (400, "unknown_signal_type")
    assert _error(match.get("/v1/lookup")) == (422, "invalid_request")
    broken = curate.post(
        "/v1/banks", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert _error(broken) == (422, "invalid_request")
    assert _error(curate.post("/v1/banks", json={"name": "bad name!"})) == (
        400,
        "invalid_bank_name",
    )
    assert _error(curate.get("/v1/nothing-here")) == (404, "not_found")
    two = match.post(
        "/v1/hash",
        files=[("photo", ("a.jpg", JPEG, "image/jpeg")), ("photo", ("b.jpg", JPEG, "image/jpeg"))],
    )
    assert _error(two) == (400, "invalid_multipart")
    fetch = match.post("/v1/hash", params={"url": "http://example.com/a.jpg"})
    assert _error(fetch) == (403, "url_fetch_disabled")


def test_signals_and_query_strings_stay_out_of_the_log(service: Service) -> None:
    match = service.client("acme", "match")
    value = secrets.token_hex(32)
    match.get("/v1/lookup", params={"signal": value}).raise_for_status()
    match.get("/m/raw_lookup", params={"signal": value, "signal_type": "pdq"}).raise_for_status()
    hashed = match.post("/v1/hash", content=JPEG).json()
    log = service.server.log.read_text()
    assert "GET /v1/lookup 200" in log  # the access log is on, without its query string
    for secret in (value, hashed["pdq"], hashed["md5"], service.keys["acme"]["match"]):
        assert secret not in log


def test_the_api_documents_itself(service: Service) -> None:
    client = service.client()
    assert "swagger" in client.get("/docs").text.lower()
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Counterfake"
    assert "/v1/lookup" in spec["paths"] and "/m/raw_lookup" in spec["paths"]


def test_a_batch_of_signals_is_added_in_one_call(service: Service, match: httpx.Client) -> None:
    curate = service.client("acme", "curate")
    name = _bank(curate, shared_with=[])
    values = [secrets.token_hex(32) for _ in range(3)]
    body = {"signals": [{"value": v} for v in values] + [{"value": values[0]}]}
    added = curate.post(f"/v1/banks/{name}/signals/batch", json=body)
    assert added.status_code == 201, added.text
    statuses = [e["status"] for e in added.json()["entries"]]
    assert statuses == ["created", "created", "created", "existing"]
    found = match.get("/v1/lookup", params={"signal": values[2], "bank": name}).json()
    assert [m["entry_id"] for m in found["matches"]] == [added.json()["entries"][2]["entry_id"]]
    too_many = {"signals": [{"value": values[0]}] * 10_001}
    assert _error(curate.post(f"/v1/banks/{name}/signals/batch", json=too_many)) == (
        422,
        "invalid_request",
    )
    bad = {"signals": [{"value": values[0]}, {"value": "nope"}]}
    assert _error(curate.post(f"/v1/banks/{name}/signals/batch", json=bad)) == (
        400,
        "invalid_signal",
    )
    listed = curate.get(f"/v1/banks/{name}/entries").json()["entries"]
    assert len(listed) == 3  # the refused batch added nothing
