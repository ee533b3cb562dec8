"""The protect page in a real headless Chromium (Debian's, driven by Playwright), served by a
real `counterfake serve` or opened from disk."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.server import Server

#: Chromium as root on a closed network: no sandbox, and none of its own background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one test module: Playwright's sync API holds an event loop while it runs,
    and later tests that call asyncio.run() must not find it running."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclasses.dataclass
class Sent:
    """A request the page made."""

    method: str
    url: str
    body: bytes


@dataclasses.dataclass
class Run:
    """What protecting photos in the page gave: the file it offered and every request."""

    text: str
    requests: list[Sent]
    states: list[str]
    messages: list[str]


def protect_in_page(page, files: list[Path], *, names: bool = True) -> Run:  # type: ignore[no-untyped-def]
    """Choose `files` in an open, ready page, wait until all are done, save the file. The
    run's requests are all the page made since it was opened."""
    requests: list[Sent] = page.sent
    done = int(page.get_attribute("body", "data-done") or 0)
    if names:
        page.check("#names")
    page.set_input_files("#photos", [str(f) for f in files])
    page.wait_for_selector(f"body[data-done='{done + 1}']", timeout=600_000)
    states = page.eval_on_selector_all("#list [data-state]", "els => els.map(e => e.dataset.state)")
    messages = page.eval_on_selector_all("#list li", "els => els.map(e => e.textContent)")
    text = ""
    if page.is_visible("#download"):
        with page.expect_download() as download:
            page.click("#download")
        text = Path(download.value.path()).read_text()
    return Run(text, requests, states, messages)


def open_page(browser, url: str, *, locale: str = "en-GB", viewport=None):  # type: ignore[no-untyped-def]
    context = browser.new_context(
        locale=locale, accept_downloads=True, viewport=viewport or {"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.sent = []  # every request, from the first
    page.on("request", lambda r: page.sent.append(Sent(r.method, r.url, r.post_data_buffer or b"")))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=120_000)
    return page


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("page-home")
    with Server(home, env={"COUNTERFAKE_INTAKE_BANK": "people"}) as server:
        yield server
