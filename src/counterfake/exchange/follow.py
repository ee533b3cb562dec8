"""Following another Counterfake's bank: the `counterfake` exchange type.

The hub serves a bank's change feed (`GET /v1/banks/{bank}/changes?after=SEQ`, keys with the
`follow` scope, the bank shared with their tenant); the follower reads it page by page and
applies each page as entries of its own bank: adds, and withdrawals as withdrawn entries (which
withdraw the entry already there). Applying a page twice changes nothing, so the cursor is
stored after the page: a fetch killed mid-page repeats that page, and loses or duplicates
nothing. Everything a hub sends is checked before any of it is applied (a derivative's value
must be its signature's SHA-256); a page that fails is not applied and the cursor stays.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from ..errors import FetchError, SignalError
from ..model import NewEntry
from ..signals import get_signal_type
from ..signals.keypoints import Features

__all__ = ["PAGE_SIZE", "Page", "bad_page", "client", "get_bytes", "get_json", "read_page"]

PAGE_SIZE: Final = 5000
#: A page larger than this is refused (a hub stops a page at 16 MB of signatures, about
#: 22 MB in base64).
_MAX_PAGE_BYTES: Final = 64 * 1024 * 1024
#: A page must arrive within this many times the client's timeout (a source that trickles
#: a byte at a time never trips a per-read timeout).
_PAGE_TIMEOUTS: Final = 4


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of an exchange's source, checked whole: its entries, the cursor to store once
    they are applied, where the next page starts, and whether there is one."""

    entries: list[NewEntry]
    cursor: str
    next_position: Any
    more: bool
    skipped: int = 0
    #: The entries are the source's whole list: what the exchange brought before and is not
    #: among them is withdrawn.
    snapshot: bool = False
    #: Remote ids whose entries (whatever they were) are withdrawn, after `entries` apply.
    withdraw_remote: tuple[str, ...] = ()


def bad_page(message: str) -> FetchError:
    return FetchError(f"the source's page is malformed: {message}", code="exchange_bad_page")


def read_page(
    client: httpx.Client,
    config: dict[str, Any],
    credential: str | None,
    position: Any,
    *,
    exchange: str,
) -> Page:
    """One page of the hub's feed after `position` (a seq, or the stored cursor's text)."""
    after = int(position or 0)
    target = f"{str(config['url']).rstrip('/')}/v1/banks/{config['remote_bank']}/changes"
    headers = {"X-API-Key": credential} if credential else {}
    data = get_json(client, target, {"after": after, "limit": PAGE_SIZE}, headers)
    return _page(data, after, exchange)


def get_json(
    client: httpx.Client, url: str, params: dict[str, Any], headers: dict[str, str]
) -> Any:
    """A source's JSON answer, its size capped; HTTP failures as coded errors."""
    body = get_bytes(client, url, params, headers)
    try:
        return json.loads(body)
    except ValueError:
        raise bad_page("not JSON") from None


def get_bytes(
    client: httpx.Client,
    url: str,
    params: dict[str, Any] | None,
    headers: dict[str, str],
    *,
    post: Any = None,
) -> bytes:
    """A source's answer (to a GET, or to a POST of the JSON `post`), its size and its time
    capped; HTTP failures as coded errors."""
    deadline = time.monotonic() + (client.timeout.read or 30.0) * _PAGE_TIMEOUTS
    method, body = ("GET", None) if post is None else ("POST", post)
    try:
        with client.stream(method, url, params=params, headers=headers, json=body) as answer:
            if answer.status_code in (401, 403):
                raise FetchError(
                    f"the source refused this exchange's key ({answer.status_code})",
                    code="exchange_refused",
                )
            if answer.status_code == 404:
                raise FetchError(
                    "the source has nothing there for this key", code="exchange_refused"
                )
            if not 200 <= answer.status_code < 300:
                raise FetchError(
                    f"the source answered {answer.status_code}", code="exchange_unreachable"
                )
            body = bytearray()
            for chunk in answer.iter_bytes():
                body += chunk
                if len(body) > _MAX_PAGE_BYTES:
                    raise bad_page(f"larger than {_MAX_PAGE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(
                        "the source is too slow: the page did not arrive in time",
                        code="exchange_unreachable",
                    )
    except httpx.HTTPError as exc:
        raise FetchError(
            f"the source could not be reached ({type(exc).__name__})",
            code="exchange_unreachable",
        ) from None
    return bytes(body)


def _page(data: Any, after: int, exchange: str) -> Page:
    if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
        raise bad_page("no list of changes")
    next_after, more = data.get("next_after"), data.get("more")
    if not isinstance(next_after, int) or isinstance(next_after, bool) or next_after < after:
        raise bad_page(f"the cursor {next_after!r} goes back from {after}")
    if not isinstance(more, bool):
        raise bad_page("'more' is not true or false")
    at = datetime.now(UTC)
    entries = []
    last = after
    for number, change in enumerate(data["changes"]):
        try:
            entries.append(_entry(change, exchange, at))
            seq = change["seq"]
            if not isinstance(seq, int) or seq <= last:
                raise ValueError("seq is not increasing")
            last = seq
        except (KeyError, TypeError, ValueError, binascii.Error, SignalError) as exc:
            raise bad_page(f"change {number}: {exc}") from None
    if entries and next_after != last:
        raise bad_page("next_after is not the last change's seq")
    return Page(entries, str(next_after), next_after, more)


def _entry(change: dict[str, Any], exchange: str, at: datetime) -> NewEntry:
    op = change["op"]
    if op not in ("add", "withdraw"):
        raise ValueError(f"op {op!r}")
    signal_type = get_signal_type(str(change["signal_type"]))
    value = signal_type.normalize(str(change["value"]))
    quality = change.get("quality")
    if quality is not None and (not isinstance(quality, int) or not 0 <= quality <= 100):
        raise ValueError("quality is 0 to 100")
    payload = None
    if signal_type.kind == "local":
        payload = base64.b64decode(change["signature"], validate=True)
        if Features.from_bytes(payload).id != value:
            raise ValueError("the value is not the signature's SHA-256")
    remote = change["entry_id"]
    if not isinstance(remote, int):
        raise ValueError("entry_id is not a number")
    return NewEntry(
        signal_type.name,
        value,
        quality=quality,
        source="exchange",
        metadata={"exchange": exchange, "remote_id": remote},
        withdrawn_at=at if op == "withdraw" else None,
        payload=payload,
    )


def client(timeout: float = 30.0) -> httpx.Client:
    """The fetcher's HTTP client: bounded waits, no redirects (a cursor must not wander)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)), follow_redirects=False
    )
