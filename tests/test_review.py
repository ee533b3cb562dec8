"""Review's rules: signatures a receiver can check (and a replay it refuses), the backoff
schedule, what a decision needs, and the decision log's two formats."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime

import pytest

from counterfake.errors import InputError
from counterfake.model import Case
from counterfake.review import (
    DECISION_COLUMNS,
    backoff,
    band,
    check_decision,
    check_events,
    sign,
    verify,
    write_decisions,
)


def test_a_signature_covers_the_timestamp_and_the_body() -> None:
    body = b'{"type":"case.decided"}'
    header = sign("whsec_a", body)
    assert header.startswith("t=") and ",v1=" in header
    assert verify("whsec_a", body, header)
    assert not verify("whsec_a", body + b" ", header)
    assert not verify("whsec_b", body, header)
    stamp = header.split(",")[0][2:]
    moved = header.replace(f"t={stamp}", f"t={int(stamp) + 1}")
    assert not verify("whsec_a", body, moved)  # the timestamp is signed too
    assert not verify("whsec_a", body, sign("whsec_a", body, int(time.time()) - 301))
    assert not verify("whsec_a", body, "garbage")


def _pdq(distance: int) -> dict[str, object]:
    return {"signal": "pdq", "distance": distance}


def _derivative(score: float, part: str = "subject") -> dict[str, object]:
    return {"signal": "derivative", "score": score, "matched_part": part}


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        ([{"signal": "sha256", "distance": 0}], "high"),
        ([_pdq(0)], "high"),
        ([_pdq(10)], "high"),
        ([_pdq(11)], "medium"),
        ([_pdq(24)], "medium"),
        ([_pdq(25)], "low"),
        ([{"signal": "vpdq", "distance": 40}], "medium"),  # another type's scale: no guess
        ([_derivative(0.9)], "high"),
        ([_derivative(0.9, "photo")], "high"),
        ([_derivative(0.4)], "medium"),
        ([_derivative(0.2)], "low"),
        ([_derivative(0.9, "background")], "low"),  # a shared backdrop: a weaker signal
        ([_derivative(0.9, "background"), _pdq(5)], "high"),  # the best match decides
        ([], "low"),
    ],
)
def test_a_cases_score_band_is_its_best_matchs(evidence: list, expected: str) -> None:
    assert band(evidence) == expected


def test_retries_wait_longer_each_time_up_to_an_hour() -> None:
    waits = [backoff(n) for n in range(1, 14)]
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0]
    assert waits == sorted(waits) and max(waits) == 3600.0


@pytest.mark.parametrize(
    ("decision", "policy", "reason"),
    [
        ("remove", "p", "r"),
        ("confirm", "", "r"),
        ("confirm", "p", "  "),
        ("confirm", "p" * 201, "r"),
    ],
)
def test_a_decision_needs_a_known_kind_a_policy_and_a_reason(
    decision: str, policy: str, reason: str
) -> None:
    with pytest.raises(InputError) as refused:
        check_decision(decision, policy, reason)
    assert refused.value.code == "invalid_decision"


def test_webhook_events_are_the_four_known_ones() -> None:
    assert check_events(["case.decided", "case.opened"]) == ("case.opened", "case.decided")
    for bad in ([], ["case.closed"]):
        with pytest.raises(InputError):
            check_events(bad)


def test_the_decision_log_is_json_lines_or_csv() -> None:
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    case = Case(
        id=3,
        tenant="acme",
        bank="protected",
        signal="pdq",
        status="decided",
        opened_at=at,
        content_id="upload, with a comma",
        content_url=None,
        evidence=[{"bank": "protected", "entry_id": 1, "signal": "pdq", "distance": 4}],
        decision="confirm",
        action="remove",
        policy="ncii",
        reason='said "yes"',
        decided_by="k1",
        decided_at=at,
    )
    lines = io.StringIO()
    assert write_decisions([case], lines, "jsonl") == 1
    assert json.loads(lines.getvalue()) == json.loads(json.dumps(case.to_dict()))
    table = io.StringIO()
    assert write_decisions([case, case], table, "csv") == 2
    rows = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert list(rows[0]) == list(DECISION_COLUMNS) and len(rows) == 2
    assert rows[0]["content_id"] == "upload, with a comma" and rows[0]["reason"] == 'said "yes"'
    assert rows[0]["content_url"] == ""


def test_a_retention_is_a_number_and_a_unit_and_a_bad_one_stops_the_start(
    tmp_path: object,
) -> None:
    import dataclasses

    from counterfake import Counterfake
    from counterfake.errors import UsageError
    from counterfake.review import retention_seconds
    from counterfake.settings import load_settings

    assert retention_seconds("") is None
    assert retention_seconds("72h") == 72 * 3600 and retention_seconds("30m") == 1800
    assert retention_seconds("7d") == 7 * 86400
    for bad in ("72", "h", "0h", "-1h", "3w", "1.5h"):
        with pytest.raises(InputError):
            retention_seconds(bad)
    settings = dataclasses.replace(load_settings({}), home=tmp_path, review_retention="soon")
    with pytest.raises(UsageError, match="review_retention"):
        Counterfake(settings)
