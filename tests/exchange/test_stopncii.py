"""The `stopncii` exchange type against a local server that implements StopNCII's documented
FetchHashes API (the real API is not reachable from here, so this is a stand-in; that
python-threatexchange's own StopNCII client reads the stand-in's answers is checked too).
`Withdrawn` and `Deleted` withdraw the entry, which python-threatexchange does not."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from counterfake import Counterfake
from counterfake.errors import CounterfakeError

SUBSCRIPTION, FUNCTION, FEEDBACK = "sub-key-123", "fn-key-456", "fb-key-789"


class _StopNCIIStandIn(http.server.BaseHTTPRequestHandler):
    """FetchHashes as StopNCII documents it: records modified at or after startTimestamp,
    oldest first, pageSize at a time, continued by an opaque nextPageToken."""

    records: ClassVar[list[dict[str, Any]]] = []
    calls: ClassVar[list[dict[str, str]]] = []
    feedbacks: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        """SubmitFeedback, with its own function key; the body is kept for the test."""
        keys = (self.headers.get("Ocp-Apim-Subscription-Key"), self.headers.get("x-functions-key"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urllib.parse.urlparse(self.path).path != "/v1/SubmitFeedback":
            self._answer(404, {"message": "not found"})
        elif keys != (SUBSCRIPTION, FEEDBACK):
            self._answer(401, {"statusCode": 401, "message": "Access denied"})
        else:
            self.feedbacks.append(json.loads(body))
            self._answer(200, {})

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.calls.append(query)
        keys = (self.headers.get("Ocp-Apim-Subscription-Key"), self.headers.get("x-functions-key"))
        if url.path != "/v1/FetchHashes":
            self._answer(404, {"message": "not found"})
            return
        if keys != (SUBSCRIPTION, FUNCTION):
            self._answer(401, {"statusCode": 401, "message": "Access denied"})
            return
        start, size = int(query["startTimestamp"]), int(query["pageSize"])
        chosen = sorted(
            (r for r in self.records if r["lastModtimestamp"] >= start),
            key=lambda r: r["lastModtimestamp"],
        )
        offset = int(query.get("nextPageToken") or 0)
        page = chosen[offset : offset + size]
        more = offset + size < len(chosen)
        newest = max((r["lastModtimestamp"] for r in chosen), default=start - 1)
        self._answer(
            200,
            {
                "count": len(page),
                "nextPageToken": str(offset + size) if more else None,
                "nextSetTimestamp": newest + 1,
                "hasMoreRecords": more,
                "hashRecords": page,
            },
        )

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _record(number: int, status: str = "Active", kind: str = "ImagePDQ", at: int = 0) -> dict:  # type: ignore[type-arg]
    digest = hashlib.sha256(str(number).encode()).hexdigest()  # unrelated hashes
    value = digest if kind == "ImagePDQ" else digest[:32]
    return {
        "lastModtimestamp": at or 1_700_000_000 + number,
        "signalType": kind,
        "hashValue": value,
        "hashStatus": status,
        "caseNumbers": {f"case-{number}": status},
        "CSPFeedbacks": [],
    }


@pytest.fixture
def stand_in() -> Iterator[tuple[str, type[_StopNCIIStandIn]]]:
    _StopNCIIStandIn.records = (
        [_record(i) for i in range(1, 2001)]
        + [_record(i, "Withdrawn") for i in range(2001, 2101)]
        + [_record(i, "Deleted") for i in range(2101, 2151)]
        + [_record(i, kind="VideoMD5") for i in range(3001, 3101)]
        + [_record(i, kind="Text") for i in range(4001, 4011)]
    )
    _StopNCIIStandIn.calls = []
    _StopNCIIStandIn.feedbacks = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StopNCIIStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _StopNCIIStandIn
    server.shutdown()


def test_the_stand_in_speaks_what_python_threatexchange_reads(
    stand_in: tuple[str, type[_StopNCIIStandIn]],
) -> None:
    from threatexchange.exchanges.clients.stopncii.api import StopNCIIAPI

    url, _ = stand_in
    api = StopNCIIAPI(SUBSCRIPTION, FUNCTION, base_url_override=url)
    pages = list(api.fetch_hashes_iter())
    records = [r for page in pages for r in page.hashRecords]
    assert len(records) == 2260
    assert {r.hashStatus.value for r in records} == {"Active", "Withdrawn", "Deleted"}


def test_against_a_local_stopncii_stand_in_hashes_arrive_and_withdrawals_are_honoured(
    stand_in: tuple[str, type[_StopNCIIStandIn]], core: Counterfake
) -> None:
    url, handler = stand_in
    core.add_exchange(
        "stopncii",
        type="stopncii",
        bank="stopncii",
        url=url,
        credential=f"{SUBSCRIPTION}:{FUNCTION}",
    )
    status = core.fetch_exchange("stopncii")
    assert status.last_error is None
    assert len(handler.calls) == 3  # 2,260 records, 800 a page
    assert handler.calls[1]["nextPageToken"] == "800"
    entries = list(core.store.iter_entries("stopncii", include_withdrawn=True))
    active = [e for e in entries if e.withdrawn_at is None]
    assert len(entries) == 2250  # the 10 Text records are skipped
    assert len(active) == 2100  # 2,000 PDQ and 100 MD5
    assert {e.signal_type for e in active} == {"pdq", "md5"}
    assert all(e.metadata["case_numbers"] for e in entries)
    assert _matched(core, 5)
    assert not _matched(core, 2005)  # withdrawn at the source
    audited = [e for e in core.store.audit_events(limit=50) if e.action == "exchange_withdrew"]
    assert sum(e.detail["withdrawn"] for e in audited) == 150
    assert {(e.bank, e.detail["exchange"]) for e in audited} == {("stopncii", "stopncii")}

    # Later the person withdraws a hash: the next fetch asks only for what changed since.
    handler.records.append(_record(7, "Withdrawn", at=1_800_000_000))
    cursor = int(status.cursor)
    core.fetch_exchange("stopncii")
    assert int(handler.calls[-1]["startTimestamp"]) == cursor
    assert not _matched(core, 7)
    assert _matched(core, 8)


def _matched(core: Counterfake, number: int) -> bool:
    return bool(core.lookup_signal("pdq", hashlib.sha256(str(number).encode()).hexdigest()))


def test_a_wrong_key_is_refused_and_recorded(
    stand_in: tuple[str, type[_StopNCIIStandIn]], core: Counterfake
) -> None:
    url, _ = stand_in
    core.add_exchange("wrong", type="stopncii", bank="stopncii", url=url, credential="a:b")
    with pytest.raises(CounterfakeError) as raised:
        core.fetch_exchange("wrong")
    assert raised.value.code == "exchange_refused"
    assert core.exchange("wrong").last_error.startswith("exchange_refused")
    with pytest.raises(CounterfakeError) as malformed:
        core.add_exchange("half", type="stopncii", bank="stopncii", url=url, credential="a")
    assert malformed.value.code == "exchange_refused"


def test_an_exchange_without_a_key_uses_its_tenants_key_for_the_type(
    stand_in: tuple[str, type[_StopNCIIStandIn]], core: Counterfake
) -> None:
    url, _ = stand_in
    core.add_exchange("nokey", type="stopncii", bank="stopncii", url="https://unused.invalid")
    with pytest.raises(CounterfakeError) as missing:
        core.fetch_exchange("nokey")
    assert missing.value.code == "exchange_refused"
    assert not core.has_exchange_credential("stopncii")
    core.set_exchange_credential("stopncii", f"{SUBSCRIPTION}:{FUNCTION}", config={"url": url})
    assert core.has_exchange_credential("stopncii")
    assert core.fetch_exchange("nokey").last_error is None
    assert _matched(core, 1)
    core.set_exchange_credential("stopncii", None)
    assert not core.has_exchange_credential("stopncii")


def test_feedback_reaches_the_stand_in_as_python_threatexchanges_client_sends_it(
    stand_in: tuple[str, type[_StopNCIIStandIn]], core: Counterfake
) -> None:
    from threatexchange.exchanges.clients.stopncii.api import (
        StopNCIIAPI,
        StopNCIICSPFeedbackValue,
        StopNCIIEndpoint,
        StopNCIISignalType,
    )

    url, handler = stand_in
    value = hashlib.sha256(b"1").hexdigest()
    StopNCIIAPI(
        SUBSCRIPTION,
        FUNCTION,
        additional_function_keys={StopNCIIEndpoint.SubmitFeedback: FEEDBACK},
        base_url_override=url,
    ).submit_feedback(StopNCIISignalType.ImagePDQ, value, StopNCIICSPFeedbackValue.Blocked)
    theirs = handler.feedbacks.pop()

    core.add_exchange(
        "ncii", type="stopncii", bank="stopncii", url=url, credential=f"{SUBSCRIPTION}:{FUNCTION}"
    )
    with pytest.raises(CounterfakeError) as no_key:  # the feedback key is its own
        core.send_exchange_feedback("ncii", [value], "Blocked")
    assert no_key.value.code == "exchange_refused"
    core.remove_exchange("ncii")
    core.add_exchange(
        "ncii",
        type="stopncii",
        bank="stopncii",
        url=url,
        credential=f"{SUBSCRIPTION}:{FUNCTION}:{FEEDBACK}",
    )
    assert core.send_exchange_feedback("ncii", [value.upper(), value], "Blocked") == 1
    assert handler.feedbacks == [theirs]  # the same body as python-threatexchange's
    assert theirs == {
        "count": 1,
        "hashFeedbacks": [{"tags": [], "feedbackValue": "Blocked", "hashValue": value}],
    }
    events = core.store.audit_events(limit=10)
    assert events[0].action == "exchange_feedback_sent" and events[0].detail["hashes"] == 1
    assert FEEDBACK not in str([e.detail for e in events])
    with pytest.raises(CounterfakeError) as wrong:
        core.send_exchange_feedback("ncii", [value], "Withdrawn")  # StopNCII's own state
    assert wrong.value.code == "invalid_feedback"
