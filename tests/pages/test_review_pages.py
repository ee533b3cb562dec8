"""The review pages in a real headless Chromium against a real `counterfake serve`: a reviewer
signs in, claims, reveals, decides with the keyboard, files an appeal, changes their settings;
the core path also with JavaScript off. Screenshots go to $COUNTERFAKE_SCREENSHOTS when set
(`make screenshots` writes docs/)."""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from counterfake import Store

from ..review_cases import make_review_home, open_derivative_case
from ..service.server import Server


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    home = tmp_path_factory.mktemp("review-pages")
    keys = make_review_home(home)
    with Server(home, env={"COUNTERFAKE_REVIEW_RETENTION": "1h"}) as server:
        yield server, keys


def _platform(server: Server, keys: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": keys["platform"]}, timeout=30)


def _key_id(secret: str) -> str:
    return secret.split("_")[1]


def _sign_in(browser, server: Server, key: str, *, javascript: bool = True):  # type: ignore[no-untyped-def]
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1100, "height": 900}
    )
    page = context.new_page()
    page.goto(f"{server.url}/review")
    assert page.url.endswith("/review/login")
    page.fill("#key", key)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{server.url}/review")
    return page


def _shown(page, selector: str) -> Image.Image:  # type: ignore[no-untyped-def]
    source = page.get_attribute(selector, "src")
    assert source is not None and source.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))


def _screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    folder = os.environ.get("COUNTERFAKE_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_reviewer_claims_reveals_and_decides_with_the_keyboard(
    browser: object, review: tuple[Server, dict[str, str]]
) -> None:
    server, keys = review
    platform = _platform(server, keys)
    case_id = open_derivative_case(platform, seed=41, content_id="post-41")
    page = _sign_in(browser, server, keys["alice"])
    sent: list[tuple[str, str]] = []
    page.on("request", lambda r: sent.append((r.resource_type, r.url)))
    waiting = int(page.text_content("tr[data-queue=open] .count") or 0)
    assert waiting >= 1
    _screenshot(page, "review-queues.png")

    page.keyboard.press("j")  # claim the next case
    page.wait_for_url(re.compile(r".*/review/cases/\d+$"))
    claimed = int(page.url.rsplit("/", 1)[1])
    assert claimed <= case_id  # the oldest free case comes first
    assert "by you until" in (page.text_content("#hold") or "")
    preview = _shown(page, "#preview")
    assert max(preview.size) <= 256 and preview.mode == "L"  # small, grey (and blurred)
    overlay = _shown(page, "#overlay")
    rgb = np.asarray(overlay.convert("RGB")).astype(int)
    red = (rgb[..., 0] > rgb[..., 1] + 40) & (rgb[..., 0] > rgb[..., 2] + 40)
    assert red.mean() > 0.03  # the changed region is drawn
    assert page.is_visible("text=green outlines where the protected photo lies")
    _screenshot(page, "review-case.png")

    page.keyboard.press("r")  # a reveal asks for a second click
    page.wait_for_selector("#reveal-confirm")
    assert not page.is_visible("#revealed")
    page.keyboard.press("r")
    page.wait_for_selector("#revealed")
    revealed = _shown(page, "#revealed")
    assert revealed.mode == "RGB" and max(revealed.size) <= 768
    with Store.open(f"sqlite:///{server.home / 'counterfake.db'}") as store:
        reveals = [e for e in store.audit_events(limit=50) if e.action == "case_revealed"]
    assert reveals, "the reveal is in the audit log"

    page.keyboard.press("c")  # confirm, and on to the policy
    assert page.evaluate("document.activeElement.id") == "policy"
    page.keyboard.type("ncii")
    page.fill("#reason", "the protected photo with its lower part replaced")
    page.select_option("#action", "remove")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r".*/review\?done=decided.*"))
    assert page.text_content(".notice") == f"Case {claimed} decided."

    decided = platform.get(f"/v1/cases/{claimed}").json()
    assert decided["status"] == "decided" and decided["decision"] == "confirm"
    assert decided["policy"] == "ncii" and decided["action"] == "remove"
    assert decided["decided_by"] == _key_id(keys["alice"])
    # Every image was inlined by the server: the browser fetched no image, and only pages,
    # the stylesheet and the script of this service.
    assert all(url.startswith(server.url) for _, url in sent)
    assert {kind for kind, _ in sent} <= {"document", "stylesheet", "script"}


def test_the_core_path_works_without_javascript_and_an_appeal_reopens_a_case(
    browser: object, review: tuple[Server, dict[str, str]]
) -> None:
    server, keys = review
    platform = _platform(server, keys)
    open_derivative_case(platform, seed=42, content_id="post-42")
    page = _sign_in(browser, server, keys["bob"], javascript=False)

    page.click("tr[data-queue=open] button")
    page.wait_for_url(re.compile(r".*/review/cases/\d+$"))
    case_id = int(page.url.rsplit("/", 1)[1])
    page.check("input[value=not_a_match]")
    page.fill("#policy", "ncii")
    page.fill("#reason", "a different person")
    page.check("input[name=remember]")
    page.click("#decide")
    page.wait_for_url(re.compile(r".*/review\?done=decided.*"))
    assert page.text_content(".notice") == f"Case {case_id} decided."
    assert page.is_visible(f"table.decided a[href='/review/cases/{case_id}']")

    page.fill("#case-id", str(case_id))
    page.click("form[action='/review/find'] button")
    page.wait_for_url(f"{server.url}/review/cases/{case_id}")
    assert "not_a_match" in (page.text_content("#decision") or "")
    page.fill("#appeal-reason", "the person in the photo says it is her")
    page.click("#appeal-form button")
    page.wait_for_url(re.compile(rf".*/review/cases/{case_id}\?done=appealed"))
    assert page.text_content("[data-status]") == "appeal"
    _screenshot(page, "review-appeal.png")

    page.goto(f"{server.url}/review")
    assert int(page.text_content("tr[data-queue=appeal] .count") or 0) >= 1
    page.click("tr[data-queue=appeal] button")
    page.wait_for_url(re.compile(r".*/review/cases/\d+$"))
    assert int(page.url.rsplit("/", 1)[1]) == case_id
    assert page.is_visible("#decision-form")
    # A decision without its reason comes back with the form and what was wrong.
    page.check("input[value=escalate]")
    page.fill("#policy", "ncii")
    page.evaluate("document.getElementById('reason').removeAttribute('required')")
    page.click("#decide")
    assert page.get_attribute(".problem", "data-code") == "invalid_decision"
    assert platform.get(f"/v1/cases/{case_id}").json()["status"] == "appeal"


def test_a_reviewers_settings_change_what_they_see(
    browser: object, review: tuple[Server, dict[str, str]]
) -> None:
    server, keys = review
    platform = _platform(server, keys)
    open_derivative_case(platform, seed=43, content_id="post-43")
    with Store.open(f"sqlite:///{server.home / 'counterfake.db'}") as store:
        _, carol = store.keys.create("acme", ["review"], name="carol")
    page = _sign_in(browser, server, carol)
    page.click("text=Settings")
    assert page.input_value("#blur") == "12" and page.is_checked("input[name=grey]")
    page.fill("#blur", "30")
    page.uncheck("input[name=grey]")
    page.uncheck("input[name=confirm_reveal]")
    _screenshot(page, "review-settings.png")
    page.click("#settings-form button")
    page.wait_for_url(re.compile(r".*/review/settings\?done=saved"))
    assert page.text_content(".notice") == "Settings saved."
    own = httpx.get(f"{server.url}/v1/review/settings", headers={"X-API-Key": carol}).json()
    assert own == {"blur": 30.0, "grey": False, "confirm_reveal": False}
    other = httpx.get(f"{server.url}/v1/review/settings", headers={"X-API-Key": keys["bob"]})
    assert other.json()["grey"] is True  # one reviewer's settings are their own

    page.goto(f"{server.url}/review")
    page.click("tr[data-queue=open] button")
    page.wait_for_url(re.compile(r".*/review/cases/\d+$"))
    assert _shown(page, "#preview").mode == "RGB"
    page.click("#reveal")  # one click now
    page.wait_for_selector("#revealed")

    page.goto(f"{server.url}/review/settings")
    page.evaluate("document.getElementById('blur').removeAttribute('max')")
    page.fill("#blur", "99")
    page.click("#settings-form button")
    assert page.get_attribute(".problem", "data-code") == "invalid_settings"
