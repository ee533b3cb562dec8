"""NCMEC's hash-sharing API (v2): the `ncmec` exchange type, from the API or from a file of its
XML.

Read as python-threatexchange's client reads it (`exchanges/clients/ncmec/hash_api.py`):
`GET {base}/v2/entries?from=T&to=T` (HTTP basic auth, the credential `USER:PASSWORD`) answers
`<images maxTimestamp=...>` and `<videos ...>` holding `<image>` / `<video>` entries (an `<id>`,
a `<member id=...>`, `<fingerprints>` with `<md5>`, `<pdq>`...) and `<deletedImage>` /
`<deletedVideo>` tombstones, and `<paging><next>` until the range is done. PDQ and MD5
fingerprints become entries (other fingerprint types are skipped); a tombstone withdraws every
entry that NCMEC entry brought (its fingerprints are not repeated in it). The XML is parsed with
defusedxml. The stored cursor is the range's start until its last page is applied, then the
newest `maxTimestamp`: NCMEC's paging links are only good for the range they came with.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree

from ..errors import FetchError, SignalError
from ..model import NewEntry
from ..signals import get_signal_type
from .follow import Page, bad_page, get_bytes

__all__ = ["read_page"]

_FINGERPRINTS: Final = {"pdq": "pdq", "md5": "md5"}
_DATE: Final = "%Y-%m-%dT%H:%M:%SZ"


def _stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(_DATE)


def read_page(
    client: httpx.Client,
    config: dict[str, Any],
    credential: str | None,
    position: Any,
    *,
    exchange: str,
) -> Page:
    """One page of entries: from the API (`position` is the stored cursor's text, then
    (range start, range end, next link)), or the whole file."""
    if "path" in config:
        try:
            data = Path(str(config["path"])).read_bytes()
        except OSError as exc:
            raise FetchError(
                f"the NCMEC file cannot be read ({exc.strerror or type(exc).__name__})",
                code="exchange_unreachable",
            ) from None
        return _page(data, exchange, start=0, end=0, file=True, only=_members(config))
    if isinstance(position, str):
        now = int(datetime.now(UTC).timestamp())
        position = (int(position or 0), now, "")
    start, end, link = position
    base = str(config["url"]).rstrip("/")
    user, _, password = (credential or "").partition(":")
    if not user or not password:
        raise FetchError(
            "an ncmec exchange needs its credential as USER:PASSWORD", code="exchange_refused"
        )
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    if link:
        if not str(link).startswith("/"):
            raise bad_page("the next link is not a path on the same server")
        data = get_bytes(client, base + str(link), None, headers)  # the link's own query
    else:
        params = {"from": _stamp(start), "to": _stamp(end)}
        data = get_bytes(client, f"{base}/v2/entries", params, headers)
    page = _page(data, exchange, start=start, end=end, only=_members(config))
    if page.more and page.next_position[2] == link:
        raise bad_page("the next link repeats the last one")
    return page


def _members(config: dict[str, Any]) -> frozenset[str]:
    """HMA's `only_esp_ids`: take only these members' entries (none: every member's)."""
    return frozenset(str(member) for member in config.get("only_esp_ids") or ())


def _strip(element: Element) -> Element:
    for node in element.iter():
        node.tag = node.tag.rpartition("}")[2]  # the v2 namespace adds nothing here
    return element


def _page(
    data: bytes,
    exchange: str,
    *,
    start: int,
    end: int,
    file: bool = False,
    only: frozenset[str] = frozenset(),
) -> Page:
    try:
        root = _strip(ElementTree.fromstring(data))
    except Exception as exc:  # defusedxml's refusals and expat's errors alike
        raise bad_page(f"not NCMEC XML ({type(exc).__name__})") from None
    entries: list[NewEntry] = []
    gone: list[str] = []
    newest = start
    skipped = 0
    for group in (root.find("images"), root.find("videos")):
        if group is None:
            continue
        stamp = group.get("maxTimestamp")
        if stamp:
            try:
                seconds = int(datetime.strptime(stamp, _DATE).replace(tzinfo=UTC).timestamp())
            except ValueError:
                raise bad_page(f"maxTimestamp {stamp[:40]!r}") from None
            newest = max(newest, seconds)
        for item in group:
            kind = item.tag
            if kind not in ("image", "video", "deletedImage", "deletedVideo"):
                continue
            ident, member = item.findtext("id"), item.find("member")
            if not ident or member is None or not member.get("id"):
                raise bad_page(f"an entry without an id or a member: {kind}")
            remote = f"{member.get('id')}/{ident.strip()}"
            if only and member.get("id") not in only:
                skipped += 1
                continue
            if kind.startswith("deleted"):
                gone.append(remote)
                continue
            for fingerprint in item.find("fingerprints") or []:
                signal = _FINGERPRINTS.get(fingerprint.tag.lower())
                if signal is None or not (fingerprint.text or "").strip():
                    skipped += 1
                    continue
                try:
                    value = get_signal_type(signal).normalize(fingerprint.text or "")
                except SignalError as exc:
                    raise bad_page(f"entry {remote}: {exc.message}") from None
                entries.append(
                    NewEntry(
                        signal,
                        value,
                        source="exchange",
                        metadata={
                            "exchange": exchange,
                            "remote_id": remote,
                            "classification": item.findtext("classification") or None,
                        },
                    )
                )
    link = (root.findtext("paging/next") or "").strip()
    if file or not link:
        cursor = str(newest if not file else 0)
        return Page(entries, cursor, (newest, end, ""), False, skipped, withdraw_remote=tuple(gone))
    return Page(entries, str(start), (start, end, link), True, skipped, withdraw_remote=tuple(gone))
