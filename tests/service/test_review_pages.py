"""The review pages' gate, through a real `counterfake serve`: who may sign in, what the session
cookie is, what a form must carry, what another tenant sees, and what a page may load. (The
pages themselves are driven in a real Chromium in tests/pages/test_review_pages.py.)"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from counterfake import Store

from ..images import encode, photo_like
from ..review_cases import make_review_home, open_derivative_case
from .server import Server


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    home = tmp_path_factory.mktemp("review-pages")
    keys = make_review_home(home)
    with Server(home, env={"COUNTERFAKE_REVIEW_RETENTION": "1h"}) as server:
        yield server, keys


def sign_in(server: Server, key: str) -> tuple[httpx.Client, httpx.Response]:
    browser = httpx.Client(base_url=server.url, timeout=30)
    answer = browser.post("/review/login", data={"key": key})
    return browser, answer


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found is not None, "the page has no form"
    return found.group(1)


def test_only_a_key_with_the_review_scope_signs_in_and_the_cookie_is_a_session(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    browser, refused = sign_in(server, keys["matcher"])
    assert refused.status_code == 403 and 'data-code="forbidden"' in refused.text
    assert "counterfake_review" not in browser.cookies
    _, unknown = sign_in(server, "cfk_000000000000_nope")
    assert unknown.status_code == 401 and 'data-code="invalid_key"' in unknown.text

    browser, answer = sign_in(server, keys["alice"])
    assert answer.status_code == 303 and answer.headers["location"] == "/review"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie
    assert keys["alice"] not in cookie  # a session token, not the key
    assert "Max-Age=28800" in cookie  # eight hours
    queues = browser.get("/review")
    assert queues.status_code == 200 and "<h1>Queues</h1>" in queues.text
    assert "alice" in queues.text and "acme" in queues.text


def test_pages_without_a_session_send_the_reviewer_to_sign_in(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, _ = service
    anonymous = httpx.Client(base_url=server.url)
    for path in ("/review", "/review/cases/1", "/review/settings"):
        answer = anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/review/login"
    posted = anonymous.post("/review/claim", data={"queue": "open", "form_token": "x"})
    assert posted.status_code == 303 and posted.headers["location"] == "/review/login"
    forged = httpx.Client(base_url=server.url, cookies={"counterfake_review": "made-up"})
    assert forged.get("/review").headers["location"] == "/review/login"


def test_a_form_without_the_sessions_token_is_refused(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    browser, _ = sign_in(server, keys["bob"])
    # What another site's form would send: the cookie (were it not SameSite) but no token.
    refused = browser.post("/review/claim", data={"queue": "open"})
    assert refused.status_code == 403 and 'data-code="bad_form"' in refused.text
    wrong = browser.post("/review/claim", data={"queue": "open", "form_token": "guess"})
    assert wrong.status_code == 403
    token = form_token(browser.get("/review").text)
    bad_queue = browser.post("/review/claim", data={"queue": "mine", "form_token": token})
    assert bad_queue.status_code == 400 and 'data-code="invalid_queue"' in bad_queue.text


def test_another_tenants_reviewer_sees_none_of_the_cases(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    platform = httpx.Client(base_url=server.url, headers={"X-API-Key": keys["platform"]})
    case_id = open_derivative_case(platform, seed=31)
    eve, _ = sign_in(server, keys["eve"])
    hidden = eve.get(f"/review/cases/{case_id}")
    assert hidden.status_code == 404 and 'data-code="case_not_found"' in hidden.text
    assert "post-31" not in hidden.text
    token = form_token(eve.get("/review").text)
    claimed = eve.post("/review/claim", data={"queue": "open", "form_token": token})
    assert claimed.headers["location"] == "/review?done=empty&queue=open"
    alice, _ = sign_in(server, keys["alice"])
    shown = alice.get(f"/review/cases/{case_id}")
    assert shown.status_code == 200 and "post-31" in shown.text


def test_pages_load_nothing_but_their_own_files_and_are_never_cached(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    platform = httpx.Client(base_url=server.url, headers={"X-API-Key": keys["platform"]})
    case_id = open_derivative_case(platform, seed=32)
    alice, _ = sign_in(server, keys["alice"])
    page = alice.get(f"/review/cases/{case_id}")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "img-src data:" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    # Images are the server's renders, inlined: no image URL a browser could fetch again.
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page.text)
    assert sources and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert alice.get("/review/static/review.js").status_code == 200
    assert alice.get("/review/static/..%2Fcase.html").status_code == 404


def test_signing_out_or_revoking_the_key_ends_the_session(
    service: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, keys = service
    browser, _ = sign_in(server, keys["bob"])
    token = form_token(browser.get("/review").text)
    cookie = browser.cookies["counterfake_review"]
    assert browser.post("/review/logout", data={"form_token": token}).status_code == 303
    replayed = httpx.Client(base_url=server.url, cookies={"counterfake_review": cookie})
    assert replayed.get("/review").headers["location"] == "/review/login"

    with Store.open(f"sqlite:///{server.home / 'counterfake.db'}") as store:
        key, secret = store.keys.create("acme", ["review"], name="carol")
    carol, _ = sign_in(server, secret)
    assert carol.get("/review").status_code == 200
    with Store.open(f"sqlite:///{server.home / 'counterfake.db'}") as store:
        store.keys.revoke(key.key_id)
        sessions = store.audit_events(limit=20)
    assert carol.get("/review").headers["location"] == "/review/login"
    assert any(e.action == "signed_in" for e in sessions)
    assert secret not in server.log.read_text() and cookie not in server.log.read_text()


def test_a_reviewer_works_the_strongest_matches_first(
    service: tuple[Server, dict[str, str]],
) -> None:
    server, keys = service
    platform = httpx.Client(base_url=server.url, headers={"X-API-Key": keys["platform"]})
    open_derivative_case(platform, seed=34)
    copy = encode(photo_like(640, 480, seed=90))
    jpeg = {"Content-Type": "image/jpeg"}
    platform.post("/v1/banks/protected/content", content=copy, headers=jpeg).raise_for_status()
    deadline = time.monotonic() + 10
    while (case := _lookup_case(platform, copy)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert case is not None and case["band"] == "high"  # an exact copy
    listed = platform.get("/v1/cases", params={"band": "high"}).json()["cases"]
    assert case["id"] in [c["id"] for c in listed] and {c["band"] for c in listed} == {"high"}

    alice, _ = sign_in(server, keys["alice"])
    queues = alice.get("/review").text
    high = re.search(r'data-band="high">high (\d+)<', queues)
    assert high is not None and int(high.group(1)) >= 1
    token = form_token(queues)
    claimed = alice.post(
        "/review/claim", data={"queue": "open", "band": "high", "form_token": token}
    )
    page = alice.get(claimed.headers["location"])
    assert '<dd data-band="high">high</dd>' in page.text
    bogus = alice.post("/review/claim", data={"queue": "open", "band": "top", "form_token": token})
    assert bogus.status_code == 400 and 'data-code="invalid_queue"' in bogus.text


def _lookup_case(platform: httpx.Client, image: bytes) -> dict | None:
    found = platform.post(
        "/v1/lookup",
        params={"review": 1},
        content=image,
        headers={"Content-Type": "image/jpeg"},
    ).json()
    return found["case"] if found["matches"] else None
