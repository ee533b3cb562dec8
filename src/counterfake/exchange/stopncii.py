"""StopNCII's hash API: the `stopncii` exchange type.

Read as python-threatexchange's client reads it (`exchanges/clients/stopncii/api.py`):
`GET {base}/FetchHashes?startTimestamp=T&pageSize=N[&nextPageToken=P]` with the
`Ocp-Apim-Subscription-Key` and `x-functions-key` headers answers
`{"count", "nextPageToken", "nextSetTimestamp", "hasMoreRecords", "hashRecords":
[{"lastModtimestamp", "signalType", "hashValue", "hashStatus", "caseNumbers", "CSPFeedbacks"}]}`.
A record is the hash's whole current state: `Withdrawn` and `Deleted` withdraw the entry
(python-threatexchange's StopNCII exchange, which HMA uses, does not act on them, so a withdrawn
hash stays matched there). `ImagePDQ` becomes a `pdq` entry and `VideoMD5` an `md5` entry;
other signal types are skipped and counted. Page tokens do not last, so the stored cursor is
the sequence's start timestamp until its last page is applied, then `nextSetTimestamp`: a
fetch cut short starts its sequence again, and applying records twice changes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from ..errors import FetchError, SignalError
from ..model import NewEntry
from ..signals import get_signal_type
from .follow import Page, bad_page, get_bytes, get_json

__all__ = ["BASE_URL", "FEEDBACK", "read_page", "send_feedback"]

BASE_URL: Final = "https://api.stopncii.org/v1"
_PAGE_SIZE: Final = 800
#: python-threatexchange's default first startTimestamp.
_START: Final = 10
_TYPES: Final = {"ImagePDQ": "pdq", "VideoMD5": "md5"}
_WITHDRAWN: Final = ("Withdrawn", "Deleted")
_STATUSES: Final = ("Unknown", "Received", "Active", *_WITHDRAWN)


#: What a platform may tell StopNCII about a hash (python-threatexchange's
#: StopNCIICSPFeedbackValue without StopNCII's own Withdrawn and Deleted).
FEEDBACK: Final = ("Blocked", "NotBlocked", "PendingReview", "QualityUnknown", "None", "Unknown")
_FEEDBACK_BATCH: Final = 500


def credentials(text: str | None, *, feedback: bool = False) -> dict[str, str]:
    """The stored credential, 'SUBSCRIPTION_KEY:FUNCTION_KEY[:FEEDBACK_FUNCTION_KEY]' (each
    StopNCII endpoint has its own function key), as the headers for FetchHashes, or for
    SubmitFeedback."""
    subscription, _, keys = (text or "").partition(":")
    function, _, feedback_key = keys.partition(":")
    if not subscription or not function:
        raise FetchError(
            "a stopncii exchange needs its credential as SUBSCRIPTION_KEY:FUNCTION_KEY",
            code="exchange_refused",
        )
    if feedback and not feedback_key:
        raise FetchError(
            "sending feedback needs the SubmitFeedback function key, as a third part of the"
            " credential (SUBSCRIPTION_KEY:FUNCTION_KEY:FEEDBACK_FUNCTION_KEY)",
            code="exchange_refused",
        )
    key = feedback_key if feedback else function
    return {"Ocp-Apim-Subscription-Key": subscription, "x-functions-key": key}


def send_feedback(
    client: httpx.Client,
    config: dict[str, Any],
    credential: str | None,
    values: list[str],
    feedback: str,
    tags: list[str],
) -> None:
    """Tell StopNCII what this platform found for these PDQ hashes (`SubmitFeedback`, as
    python-threatexchange's client posts it: `{"count", "hashFeedbacks": [{"tags",
    "feedbackValue", "hashValue"}]}`), a batch at a time."""
    headers = credentials(credential, feedback=True)
    url = f"{str(config.get('url') or BASE_URL).rstrip('/')}/SubmitFeedback"
    for start in range(0, len(values), _FEEDBACK_BATCH):
        batch = values[start : start + _FEEDBACK_BATCH]
        body = {
            "count": len(batch),
            "hashFeedbacks": [
                {"tags": tags, "feedbackValue": feedback, "hashValue": value} for value in batch
            ],
        }
        get_bytes(client, url, None, headers, post=body)


def read_page(
    client: httpx.Client,
    config: dict[str, Any],
    credential: str | None,
    position: Any,
    *,
    exchange: str,
) -> Page:
    """One FetchHashes page from `position` ((start timestamp, page token), or the stored
    cursor's text at the start of a fetch)."""
    if isinstance(position, str):
        position = (int(position or _START), "")
    start, token = position
    params: dict[str, Any] = {"startTimestamp": start, "pageSize": _PAGE_SIZE}
    if token:
        params["nextPageToken"] = token
    url = f"{str(config.get('url') or BASE_URL).rstrip('/')}/FetchHashes"
    data = get_json(client, url, params, credentials(credential))
    return _page(data, start, exchange)


def _page(data: Any, start: int, exchange: str) -> Page:
    if not isinstance(data, dict) or not isinstance(data.get("hashRecords"), list):
        raise bad_page("no list of hashRecords")
    more, token, checkpoint = (
        data.get("hasMoreRecords"),
        data.get("nextPageToken"),
        data.get("nextSetTimestamp"),
    )
    if not isinstance(more, bool):
        raise bad_page("hasMoreRecords is not true or false")
    if more and not (isinstance(token, str) and token):
        raise bad_page("more records but no nextPageToken")
    if not isinstance(checkpoint, int) or isinstance(checkpoint, bool) or checkpoint < start:
        raise bad_page(f"nextSetTimestamp {checkpoint!r} goes back from {start}")
    at = datetime.now(UTC)
    entries: list[NewEntry] = []
    skipped = 0
    for number, record in enumerate(data["hashRecords"]):
        try:
            entry = _entry(record, exchange, at)
        except (KeyError, TypeError, ValueError, SignalError) as exc:
            raise bad_page(f"record {number}: {exc}") from None
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    if more:  # the sequence goes on: keep its start until its last page is applied
        return Page(entries, str(start), (start, token), True, skipped)
    return Page(entries, str(checkpoint), (checkpoint, ""), False, skipped)


def _entry(record: dict[str, Any], exchange: str, at: datetime) -> NewEntry | None:
    status = record["hashStatus"]
    if status not in _STATUSES:
        raise ValueError(f"hashStatus {status!r}")
    modified = record["lastModtimestamp"]
    if not isinstance(modified, int):
        raise ValueError("lastModtimestamp is not a number")
    cases = record.get("caseNumbers") or {}
    if not isinstance(cases, dict):
        raise ValueError("caseNumbers is not an object")
    kind = _TYPES.get(str(record["signalType"]))
    if kind is None:
        return None
    value = get_signal_type(kind).normalize(str(record["hashValue"]))
    metadata: dict[str, Any] = {
        "exchange": exchange,
        "case_numbers": sorted(str(c) for c in cases)[:20],
        "last_modified": modified,
    }
    if len(json.dumps(metadata)) > 4096:
        metadata["case_numbers"] = metadata["case_numbers"][:3]
    return NewEntry(
        kind,
        value,
        source="exchange",
        metadata=metadata,
        withdrawn_at=at if status in _WITHDRAWN else None,
    )
