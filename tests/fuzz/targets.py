"""What is fuzzed: every parser of untrusted input, each behind a function that takes bytes.
A parser may refuse its input only with one of our coded errors (`CounterfakeError`); any
other exception, a hang or runaway memory is a finding. Used by `run.py` (atheris, `make
fuzz`) and by `test_targets.py` (the seeds and their regressions, in every test run)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from counterfake._warnings import log_warnings
from counterfake.errors import CounterfakeError
from counterfake.media import Limits

#: Small enough that one execution stays fast; what a bigger limit changes is the cost only.
_LIMITS = Limits(max_bytes=4_000_000, max_pixels=4_000_000, max_frames=20)
_ROOT = Path(tempfile.gettempdir())


def image(data: bytes) -> None:
    """Image decoding and hashing: every format Pillow (and pillow-heif) opens."""
    from counterfake.hashing import hash_bytes

    hash_bytes(data, limits=_LIMITS)


def signature_file(data: bytes) -> None:
    """A signature file as the intake takes it (the protect page's or `counterfake protect`'s)."""
    from counterfake.intake import check_file

    check_file(data.decode("utf-8", "replace").splitlines(), max_photos=100)


def import_lines(data: bytes) -> None:
    """`bank import` and `bank add --hashes`: JSON Lines and ThreatExchange lines."""
    from counterfake.exchange.formats import parse_lines

    for _ in parse_lines(data.decode("utf-8", "replace").splitlines()):
        pass


def ncmec(data: bytes) -> None:
    """An NCMEC hash-sharing XML page (the API's or a file's)."""
    from counterfake.exchange.ncmec import _page

    _page(data, "fuzz", start=0, end=0, file=True, only=frozenset())


def stopncii(data: bytes) -> None:
    """A StopNCII FetchHashes answer (JSON that is not JSON is refused before it is parsed)."""
    from counterfake.exchange.stopncii import _page

    try:
        parsed = json.loads(data)
    except ValueError:
        return
    _page(parsed, 0, "fuzz")


def telegram(data: bytes) -> None:
    """A Telegram Desktop export's result.json, read as a stream."""
    from counterfake.investigate.archive import ArchiveReader

    reader = ArchiveReader(_ROOT)
    for _ in reader._telegram(io.BytesIO(data), _ROOT):
        pass


#: Content types a fuzzed request body is sent as (the input's second byte chooses).
_CONTENT_TYPES = (
    "application/json",
    "application/x-ndjson",
    "multipart/form-data; boundary=fuzz",
    "application/x-www-form-urlencoded",
    "image/jpeg",
)
_service: tuple[Any, list[tuple[str, str]]] | None = None


def _request_client() -> tuple[Any, list[tuple[str, str]]]:
    """One in-process service (SQLite in a temporary folder, intake on) for every execution,
    a key with every scope, and every route that takes a body, its path filled in."""
    global _service
    if _service is None:
        import logging
        import re
        import warnings

        with warnings.catch_warnings():  # Starlette would rather it used httpx2
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        from counterfake import Store
        from counterfake.service.app import create_app
        from counterfake.settings import load_settings
        from counterfake.store import SCOPES

        home = Path(tempfile.mkdtemp(prefix="counterfake-fuzz-"))
        settings = load_settings(
            home=home,
            intake_bank="people",
            intake_address_daily=10**9,
            intake_daily=10**9,
            max_bytes=_LIMITS.max_bytes,
            max_pixels=_LIMITS.max_pixels,
        )
        with Store.open(settings.resolved_database_url) as store:
            secret = store.keys.create("default", list(SCOPES))[1]
            store.create_bank("fz")
        app = create_app(settings)
        for name in ("counterfake", "counterfake.access"):  # a line per request otherwise
            logging.getLogger(name).setLevel(logging.ERROR)
        client = TestClient(app, headers={"X-API-Key": secret}, raise_server_exceptions=True)
        client.__enter__()  # the lifespan: the core, the matcher, the hasher
        routes = sorted(
            (method.upper(), re.sub(r"\{(bank|bank_name|name)\}", "fz", path))
            for path, methods in app.openapi()["paths"].items()
            for method in methods
            if method in ("post", "put", "patch")
        )
        _service = (client, [(m, re.sub(r"\{[a-z_]+\}", "1", p)) for m, p in routes])
    return _service


def request_bodies(data: bytes) -> None:
    """A request body to a route of the service (`/v1`, HMA's, intake, review), in process:
    the first byte chooses the route, the second the content type. Refused bodies must be
    answered with a coded error; a server error (500) is a finding."""
    if len(data) < 2:
        return
    client, routes = _request_client()
    method, path = routes[data[0] % len(routes)]
    answer = client.request(
        method,
        path,
        content=data[2:],
        headers={"Content-Type": _CONTENT_TYPES[data[1] % len(_CONTENT_TYPES)]},
    )
    if answer.status_code >= 500:
        raise AssertionError(f"{method} {path} answered {answer.status_code}: {answer.text[:300]}")
    if answer.status_code >= 400 and not path.startswith(("/m/", "/h/", "/c/")):
        error = answer.json().get("error", {})
        if not error.get("code"):
            raise AssertionError(f"{method} {path} answered {answer.status_code} without a code")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "image": image,
    "signature_file": signature_file,
    "import_lines": import_lines,
    "ncmec": ncmec,
    "stopncii": stopncii,
    "telegram": telegram,
    "request_bodies": request_bodies,
}
SEEDS = Path(__file__).parent / "seeds"


def run(target: str, data: bytes) -> None:
    """One execution: a coded refusal is a pass, anything else propagates."""
    log_warnings()
    with contextlib.suppress(CounterfakeError):
        TARGETS[target](data)
