"""Review through a real `counterfake serve`: a lookup opens a case, two reviewers claim from
one queue without ever sharing a case, decisions and appeals move it, and every event reaches
a local receiver signed over its timestamp and body (which the receiver checks, as the README's
snippet does)."""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from counterfake import Store
from counterfake.review import sign, verify

from ..images import encode, photo_like
from .server import Server
from .test_retention import _windows

PHOTO = encode(photo_like(640, 480, seed=77))


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    home: Path = tmp_path_factory.mktemp("review")
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("protected", tenant="acme")
        keys = {
            name: store.keys.create("acme", [scope], name=name)[1]
            for name, scope in [
                ("curate", "curate"),
                ("match", "match"),
                ("alice", "review"),
                ("bob", "review"),
            ]
        }
        keys["other"] = store.keys.create("beta", ["review"], name="other")[1]
    with Server(home) as server:
        yield server, keys


def _event(kind: str, seconds: float = 10.0) -> tuple[dict[str, str], bytes, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for headers, body in _Receiver.received:
            parsed = json.loads(body)
            if parsed["type"] == kind:
                _Receiver.received.remove((headers, body))
                return headers, body, parsed
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event arrived")


def test_a_case_goes_from_lookup_to_decision_to_appeal_and_every_event_is_signed(
    service: tuple[Server, dict[str, str]], receiver: str
) -> None:
    server, keys = service
    curate, match = server.client(keys["curate"]), server.client(keys["match"])
    alice, bob = server.client(keys["alice"]), server.client(keys["bob"])

    made = curate.post(
        "/v1/webhooks",
        json={
            "url": receiver,
            "events": ["case.opened", "case.decided", "appeal.decided", "entry.withdrawn"],
        },
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert "secret" not in curate.get("/v1/webhooks").json()["webhooks"][0]

    value = secrets.token_hex(32)
    added = curate.post("/v1/banks/protected/signals", json={"value": value})
    entry_id = added.json()["entries"][0]["entry_id"]
    found = match.get(
        "/v1/lookup", params={"signal": value, "review": 1, "content_id": "upload-42"}
    ).json()
    case = found["case"]
    assert case["status"] == "open" and case["content_id"] == "upload-42"
    assert case["evidence"][0]["entry_id"] == entry_id and case["bank"] == "protected"
    assert "case" not in match.get("/v1/lookup", params={"signal": value}).json()

    headers, body, event = _event("case.opened")
    assert event["data"]["id"] == case["id"]
    assert headers["Counterfake-Event-Id"] == event["id"]
    signature = headers["Counterfake-Signature"]
    assert verify(secret, body, signature)
    assert not verify(secret, body.replace(b"upload-42", b"upload-43"), signature)
    assert not verify("whsec_wrong", body, signature)
    stale = sign(secret, body, int(time.time()) - 3600)
    assert not verify(secret, body, stale)  # a captured event cannot be replayed later

    # Two reviewers, one queue: one case, one claim.
    claimed = alice.post("/v1/cases/claim", json={}).json()["case"]
    assert claimed["id"] == case["id"] and claimed["claimed_by"]
    assert bob.post("/v1/cases/claim", json={}).json()["case"] is None
    decision = {"decision": "confirm", "policy": "ncii", "reason": "the protected photo"}
    taken = bob.post(f"/v1/cases/{case['id']}/decision", json=decision)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "case_claimed"
    missing = alice.post(f"/v1/cases/{case['id']}/decision", json={**decision, "reason": " "})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_decision"
    decided = alice.post(f"/v1/cases/{case['id']}/decision", json={**decision, "action": "remove"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided" and decided.json()["action"] == "remove"
    _, body, event = _event("case.decided")
    assert event["data"]["decision"] == "confirm" and event["data"]["policy"] == "ncii"

    # Another tenant's reviewer sees nothing of it.
    other = server.client(keys["other"])
    assert other.get(f"/v1/cases/{case['id']}").status_code == 404
    assert other.post("/v1/cases/claim", json={}).json()["case"] is None

    # An appeal reopens it into the appeal queue; its decision is an appeal.decided event.
    appealed = curate.post(f"/v1/cases/{case['id']}/appeal", json={"reason": "not me"})
    assert appealed.json()["status"] == "appeal"
    assert bob.post("/v1/cases/claim", json={}).json()["case"] is None  # open queue is empty
    again = bob.post("/v1/cases/claim", json={"queue": "appeal"}).json()["case"]
    assert again["id"] == case["id"]
    note = bob.post(f"/v1/cases/{case['id']}/comments", json={"body": "the uploader is another"})
    assert note.status_code == 201 and note.json()["author"]
    comments = curate.get(f"/v1/cases/{case['id']}/comments").json()["comments"]
    assert [c["body"] for c in comments] == ["the uploader is another"]
    assert other.get(f"/v1/cases/{case['id']}/comments").status_code == 404
    blank = bob.post(f"/v1/cases/{case['id']}/comments", json={"body": "  "})
    assert blank.status_code == 400 and blank.json()["error"]["code"] == "invalid_comment"
    overturned = {"decision": "not_a_match", "policy": "ncii", "reason": "another person"}
    assert bob.post(f"/v1/cases/{case['id']}/decision", json=overturned).status_code == 200
    _, _, event = _event("appeal.decided")
    assert event["data"]["decision"] == "not_a_match"

    # The decision log, as CSV and JSON Lines.
    table = curate.get("/v1/cases/export", params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    assert table.text.splitlines()[0].startswith("id,tenant,bank")
    assert f"\n{case['id']},acme,protected," in table.text
    log_lines = curate.get("/v1/cases/export", params={"decision": "not_a_match"}).text
    assert [json.loads(line)["id"] for line in log_lines.splitlines()] == [case["id"]]
    assert other.get("/v1/cases/export").text == ""

    # A withdrawal reaches the platform too, and the delivery log shows what went.
    assert curate.delete(f"/v1/banks/protected/entries/{entry_id}").status_code == 200
    _, _, event = _event("entry.withdrawn")
    assert event["data"] == {"bank": "protected", "entry_id": entry_id}
    hook = curate.get("/v1/webhooks").json()["webhooks"][0]["id"]
    log = curate.get(f"/v1/webhooks/{hook}/deliveries").json()["deliveries"]
    assert {d["event"] for d in log} == {
        "case.opened",
        "case.decided",
        "appeal.decided",
        "entry.withdrawn",
    }
    assert all(d["status"] == "delivered" for d in log)
    assert secret not in server.log.read_text()


def test_an_image_lookup_opens_a_case_under_the_uploads_digest(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    curate, match = server.client(keys["curate"]), server.client(keys["match"])
    curate.post(
        "/v1/banks/protected/content", content=PHOTO, headers={"Content-Type": "image/jpeg"}
    ).raise_for_status()
    found = match.post(
        "/v1/lookup",
        params={"review": 1, "content_url": "https://platform.example/p/1"},
        content=PHOTO,
        headers={"Content-Type": "image/jpeg"},
    ).json()
    assert found["matches"] and found["case"]["content_url"] == "https://platform.example/p/1"
    listed = curate.get("/v1/cases", params={"status": "open"}).json()["cases"]
    assert found["case"]["id"] in [c["id"] for c in listed]


def _sharpness(jpeg: bytes) -> float:
    """The variance of a Laplacian: high for sharp detail, low once blurred."""
    from PIL import Image, ImageFilter

    grey = Image.open(io.BytesIO(jpeg)).convert("L")
    edges = grey.filter(ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], 1, 128))
    return float(np.asarray(edges, dtype=np.float64).var())


def test_without_a_retention_no_image_is_kept_for_a_preview(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    match, alice = server.client(keys["match"]), server.client(keys["alice"])
    found = match.post(
        "/v1/lookup", params={"review": 1}, content=PHOTO, headers={"Content-Type": "image/jpeg"}
    ).json()
    preview = alice.get(f"/v1/cases/{found['case']['id']}/preview")
    assert preview.status_code == 404 and preview.json()["error"]["code"] == "no_case_image"


def test_under_a_retention_reviewers_see_blurred_renders_and_the_image_is_purged_on_decision(
    tmp_path: Path,
) -> None:
    from PIL import Image

    home = tmp_path / "home"
    big = encode(photo_like(1600, 1200, seed=78), quality=92)
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("protected", tenant="acme")
        curate = store.keys.create("acme", ["curate", "match"], name="platform")[1]
        reviewer = store.keys.create("acme", ["review"], name="alice")[1]
        other = store.keys.create("acme", ["review"], name="bob")[1]
    env = {"COUNTERFAKE_REVIEW_RETENTION": "1h", "TMPDIR": str(home / "tmp")}
    (home / "tmp").mkdir(parents=True)
    with Server(home, env=env) as server:
        platform, alice, bob = (server.client(k) for k in (curate, reviewer, other))
        jpeg = {"Content-Type": "image/jpeg"}
        platform.post("/v1/banks/protected/content", content=big, headers=jpeg).raise_for_status()
        found = platform.post("/v1/lookup", params={"review": 1}, content=big, headers=jpeg)
        case_id = found.json()["case"]["id"]

        preview = alice.get(f"/v1/cases/{case_id}/preview")
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
        assert preview.headers["cache-control"] == "no-store"
        shown = Image.open(io.BytesIO(preview.content))
        assert max(shown.size) <= 256 and shown.mode == "L"  # small and grey by default
        plain = Image.open(io.BytesIO(big)).convert("L")
        plain.thumbnail((256, 256))
        unblurred = io.BytesIO()
        plain.save(unblurred, "JPEG", quality=80)
        assert _sharpness(preview.content) < _sharpness(unblurred.getvalue()) / 5
        assert alice.get(f"/v1/cases/{case_id}/preview", params={"blur": 1}).status_code == 400

        # A reveal is confirmed (the second click) and needs the case in hand; it is
        # clearer, capped, and audited.
        yes = {"confirm": True}
        unconfirmed = alice.post(f"/v1/cases/{case_id}/reveal")
        assert unconfirmed.status_code == 400
        assert unconfirmed.json()["error"]["code"] == "reveal_unconfirmed"
        refused = alice.post(f"/v1/cases/{case_id}/reveal", json=yes)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "case_not_claimed"
        assert alice.post("/v1/cases/claim", json={}).json()["case"]["id"] == case_id
        taken = bob.post(f"/v1/cases/{case_id}/reveal", json=yes)
        assert taken.status_code == 409  # alice holds it
        revealed = alice.post(f"/v1/cases/{case_id}/reveal", json=yes)
        assert revealed.status_code == 200
        clear = Image.open(io.BytesIO(revealed.content))
        assert max(clear.size) == 768 and clear.mode == "RGB"

        # Settings: a reviewer's own over the tenant's defaults over the built-in ones.
        assert alice.get("/v1/review/settings").json() == {
            "blur": 12.0,
            "grey": True,
            "confirm_reveal": True,
        }
        own = alice.put("/v1/review/settings", json={"confirm_reveal": False, "blur": 20})
        assert own.json() == {"blur": 20.0, "grey": True, "confirm_reveal": False}
        assert alice.post(f"/v1/cases/{case_id}/reveal").status_code == 200  # one click now
        assert platform.put("/v1/review/defaults", json={"grey": False}).status_code == 200
        assert bob.get("/v1/review/settings").json()["grey"] is False  # the tenant's default
        assert alice.get("/v1/review/settings").json()["grey"] is False
        coloured = Image.open(io.BytesIO(bob.get(f"/v1/cases/{case_id}/preview").content))
        assert coloured.mode == "RGB"
        bad = alice.put("/v1/review/settings", json={"blur": 99})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_settings"

        decision = {"decision": "confirm", "policy": "ncii", "reason": "r", "action": "remove"}
        assert alice.post(f"/v1/cases/{case_id}/decision", json=decision).status_code == 200
        gone = alice.get(f"/v1/cases/{case_id}/preview")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "no_case_image"
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        actions = [e.action for e in store.audit_events(limit=50)]
    assert "case_revealed" in actions

    # Purged on decision: no part of the image is left anywhere in the data folder.
    for path in (p for p in home.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for window in _windows(big):
            assert window not in content, f"bytes of the image found in {path}"


def test_a_banks_review_rule_opens_a_case_for_every_match_hma_lookups_included(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    curate, match = server.client(keys["curate"]), server.client(keys["match"])
    value = secrets.token_hex(32)
    curate.post("/v1/banks/protected/signals", json={"value": value}).raise_for_status()
    assert "case" not in match.get("/v1/lookup", params={"signal": value}).json()  # rule off

    ruled = curate.patch("/v1/banks/protected", json={"review": True})
    assert ruled.status_code == 200 and ruled.json()["review"] is True
    found = match.get("/v1/lookup", params={"signal": value, "content_id": "u-7"}).json()
    assert found["case"]["content_id"] == "u-7" and found["case"]["status"] == "open"

    before = len(curate.get("/v1/cases", params={"limit": 1000}).json()["cases"])
    curate.post(
        "/v1/banks/protected/content", content=PHOTO, headers={"Content-Type": "image/jpeg"}
    )
    hma = match.post("/m/lookup", files={"photo": ("p.jpg", PHOTO, "image/jpeg")})
    assert hma.status_code == 200 and "case" not in hma.json()  # HMA's answer, unchanged
    after = curate.get("/v1/cases", params={"limit": 1000}).json()["cases"]
    assert len(after) == before + 1 and after[-1]["evidence"]

    curate.patch("/v1/banks/protected", json={"review": False}).raise_for_status()
    assert "case" not in match.get("/v1/lookup", params={"signal": value}).json()


def test_a_derivative_case_has_an_evidence_overlay_and_a_case_of_copies_has_none(
    tmp_path: Path,
) -> None:
    from PIL import Image

    from ..review_cases import make_review_home, open_derivative_case

    home = tmp_path / "home"
    home.mkdir()
    keys = make_review_home(home)
    with Server(home) as server:  # no retention: drawn on a blank of the upload's shape
        platform, alice = server.client(keys["platform"]), server.client(keys["alice"])
        case_id = open_derivative_case(platform, seed=51)
        case = alice.get(f"/v1/cases/{case_id}").json()
        outline = case["evidence"][0]["outline"]
        assert len(outline["changed_mask"]) == 12 and len(outline["matrix"]) == 2
        drawn = alice.get(f"/v1/cases/{case_id}/overlay")
        assert drawn.status_code == 200 and drawn.headers["cache-control"] == "no-store"
        image = np.asarray(Image.open(io.BytesIO(drawn.content)).convert("RGB")).astype(int)
        red = (image[..., 0] > image[..., 1] + 40) & (image[..., 0] > image[..., 2] + 40)
        grey = (np.abs(image - 128) < 6).all(axis=2)
        assert red.mean() > 0.05 and grey.mean() > 0.05  # changed cells over the blank
        assert max(image.shape[:2]) <= 512 + 120  # the render and its legend
        hidden = server.client(keys["eve"]).get(f"/v1/cases/{case_id}/overlay")
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "case_not_found"

        # A copy (PDQ) match: nothing was changed, so there is nothing to draw.
        jpeg = {"Content-Type": "image/jpeg"}
        platform.post("/v1/banks/protected/content", content=PHOTO, headers=jpeg)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = platform.post("/v1/lookup", params={"review": 1}, content=PHOTO, headers=jpeg)
            if found.json()["matches"]:
                break
            time.sleep(0.2)
        copy_case = found.json()["case"]["id"]
        none = alice.get(f"/v1/cases/{copy_case}/overlay")
        assert none.status_code == 404 and none.json()["error"]["code"] == "no_overlay"
