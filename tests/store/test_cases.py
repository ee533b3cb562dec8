"""Review cases and the webhook outbox in the store, the same on SQLite and PostgreSQL: a case
is claimed by one reviewer at a time even when many claim at once, decisions need the claim,
a remembered rejection keeps the pair from reopening, and every event is written with what it
reports."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import pytest

from counterfake import Store
from counterfake.errors import ConflictError, NotFoundError
from counterfake.review import MAX_ATTEMPTS


def _open(store: Store, tenant: str = "acme", query: str = "sha256:aa", entry: int = 1) -> Any:
    return store.open_case(
        tenant,
        bank="b",
        signal="pdq",
        evidence=[{"bank": "b", "entry_id": entry, "signal": "pdq", "distance": 3}],
        query=query,
        content_id="upload-1",
        content_url=None,
    )


def _decide(store: Store, case_id: int, reviewer: str, decision: str = "confirm", **kw: Any) -> Any:
    return store.decide_case(
        case_id,
        "acme",
        reviewer,
        decision=decision,
        policy="ncii",
        reason="the protected photo",
        action=kw.get("action"),
        remember=kw.get("remember", False),
    )


def test_concurrent_reviewers_never_claim_the_same_case(store: Store) -> None:
    opened = [_open(store, query=f"sha256:{n}").id for n in range(12)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        claims = list(
            pool.map(lambda n: store.claim_case("acme", f"r{n % 8}", lease_seconds=60), range(16))
        )
    taken = [c.id for c in claims if c is not None]
    assert sorted(taken) == opened  # every case once, none twice, the rest found none
    assert claims.count(None) == 4
    assert store.claim_case("beta", "x", lease_seconds=60) is None  # another tenant's queue


def test_a_queue_is_worked_by_bank_signal_or_score_band(store: Store) -> None:
    def opened(bank: str, signal: str, band: str, n: int) -> int:
        evidence = [{"bank": bank, "entry_id": n, "signal": signal, "distance": 3}]
        case = store.open_case(
            "acme",
            bank=bank,
            signal=signal,
            evidence=evidence,
            query=f"q{n}",
            content_id=None,
            content_url=None,
            band=band,
        )
        assert case is not None and case.band == band
        return int(case.id)

    low = opened("a", "pdq", "low", 1)
    derivative = opened("b", "derivative", "medium", 2)
    high = opened("a", "pdq", "high", 3)
    counts = store.queue_counts("acme")
    assert sorted(counts) == [
        ("open", "a", "pdq", "high", 1),
        ("open", "a", "pdq", "low", 1),
        ("open", "b", "derivative", "medium", 1),
    ]
    assert [c.id for c in store.list_cases("acme", band="high")] == [high]
    assert [c.id for c in store.list_cases("acme", bank="a")] == [low, high]
    assert store.claim_case("acme", "r", band="high", lease_seconds=60).id == high
    assert store.claim_case("acme", "r", band="high", lease_seconds=60) is None
    assert store.claim_case("acme", "r", signal="derivative", lease_seconds=60).id == derivative
    assert store.claim_case("acme", "r", bank="a", lease_seconds=60).id == low
    held = store.list_cases("acme", held_by="r", newest_first=True)
    assert [c.id for c in held] == [high, derivative, low]


def test_a_claim_gates_decisions_and_expires(store: Store) -> None:
    case = _open(store)
    assert store.claim_case("acme", "alice", lease_seconds=60).id == case.id
    with pytest.raises(ConflictError) as held:
        _decide(store, case.id, "bob")
    assert held.value.code == "case_claimed"
    assert store.claim_case("acme", "bob", lease_seconds=60) is None
    store.release_case(case.id, "acme", "alice")
    assert store.claim_case("acme", "bob", lease_seconds=-1).id == case.id  # expired at once
    assert store.claim_case("acme", "carol", lease_seconds=60).id == case.id
    decided = _decide(store, case.id, "carol", action="remove")
    assert (decided.status, decided.decision, decided.action) == ("decided", "confirm", "remove")
    assert decided.decided_by == "carol" and decided.claimed_by is None
    with pytest.raises(ConflictError) as again:
        _decide(store, case.id, "carol")
    assert again.value.code == "case_decided"
    with pytest.raises(NotFoundError):
        store.get_case(case.id, "beta")


def test_escalation_and_appeal_move_a_case_between_queues(store: Store) -> None:
    case = _open(store)
    escalated = _decide(store, case.id, "alice", "escalate")
    assert escalated.status == "escalated"
    assert store.claim_case("acme", "bob", lease_seconds=60) is None  # not in the open queue
    assert store.claim_case("acme", "bob", statuses=("escalated",), lease_seconds=60).id == case.id
    _decide(store, case.id, "bob", "not_a_match")
    appealed = store.appeal_case(case.id, "acme", "it is me, and I did not consent")
    assert appealed.status == "appeal" and appealed.appeal_reason
    with pytest.raises(ConflictError):
        store.appeal_case(case.id, "acme", "twice")
    assert store.claim_case("acme", "carol", statuses=("appeal",), lease_seconds=60).id == case.id
    assert _decide(store, case.id, "carol", action="remove").decision == "confirm"


def test_a_remembered_rejection_keeps_the_pair_from_reopening(store: Store) -> None:
    case = _open(store, query="sha256:bb", entry=7)
    _decide(store, case.id, "alice", "not_a_match", remember=True)
    assert _open(store, query="sha256:bb", entry=7) is None
    assert _open(store, query="sha256:cc", entry=7) is not None  # another upload
    assert _open(store, query="sha256:bb", entry=8) is not None  # another protected entry


def test_events_are_written_with_what_they_report_and_retried_to_the_dead_letters(
    store: Store,
) -> None:
    hook, secret = store.add_webhook("acme", "http://127.0.0.1:9/", ("case.opened", "case.decided"))
    other, _ = store.add_webhook("beta", "http://127.0.0.1:9/", ("case.opened",))
    assert secret.startswith("whsec_") and secret not in repr(hook.to_dict())
    case = _open(store)
    _decide(store, case.id, "alice")
    claimed = store.claim_deliveries(limit=10, lease_seconds=60)
    assert [json.loads(c["body"])["type"] for c in claimed] == ["case.opened", "case.decided"]
    assert all(c["secret"] == secret for c in claimed)  # beta's webhook got nothing
    assert json.loads(claimed[0]["body"])["data"]["id"] == case.id
    assert store.claim_deliveries(limit=10, lease_seconds=60) == []  # leased
    first, second = claimed
    store.finish_deliveries({first["id"]: None, second["id"]: "the receiver answered 500"})
    for _ in range(MAX_ATTEMPTS - 1):
        store.finish_deliveries({second["id"]: "the receiver answered 500"})
    log = {d.id: d for d in store.list_deliveries(hook.id, "acme")}
    assert log[first["id"]].status == "delivered" and log[second["id"]].status == "dead"
    assert [d.id for d in store.list_deliveries(hook.id, "acme", status="dead")] == [second["id"]]
    with pytest.raises(NotFoundError):
        store.list_deliveries(hook.id, "beta")
    replayed = store.replay_delivery(second["id"], "acme")
    assert (replayed.status, replayed.attempts, replayed.event_id) == (
        "pending",
        0,
        log[second["id"]].event_id,
    )
    again = store.claim_deliveries(limit=10, lease_seconds=60)
    assert [c["event_id"] for c in again] == [replayed.event_id]  # the same idempotency key
    store.remove_webhook(other.id, "beta")
    assert [w.id for w in store.list_webhooks(None)] == [hook.id]


def test_a_kept_image_expires_and_is_purged(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    soon = datetime.now(UTC) + timedelta(hours=1)
    kept = store.open_case(
        "acme",
        bank="b",
        signal="pdq",
        evidence=[{"entry_id": 1}],
        query="sha256:k",
        content_id=None,
        content_url=None,
        image=b"\xff\xd8 jpeg bytes",
        keep_until=soon,
    )
    past = store.open_case(
        "acme",
        bank="b",
        signal="pdq",
        evidence=[{"entry_id": 2}],
        query="sha256:p",
        content_id=None,
        content_url=None,
        image=b"\xff\xd8 old bytes",
        keep_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert kept is not None and past is not None
    assert store.case_image(kept.id, "acme") == b"\xff\xd8 jpeg bytes"
    with pytest.raises(NotFoundError) as expired:
        store.case_image(past.id, "acme")
    assert expired.value.code == "no_case_image"
    assert store.purge_case_images() == 1
    assert store.purge_case_images() == 0
    with pytest.raises(NotFoundError):
        store.case_image(kept.id, "beta")  # another tenant's case


def test_comments_stay_with_their_case_and_tenant(store: Store) -> None:
    case = _open(store)
    first = store.comment_case(case.id, "acme", "alice", "looks like the protected photo")
    store.comment_case(case.id, None, "operator", "second")
    assert [c.body for c in store.case_comments(case.id, "acme")] == [first.body, "second"]
    with pytest.raises(NotFoundError):
        store.comment_case(case.id, "beta", "x", "no")
    with pytest.raises(NotFoundError):
        store.case_comments(case.id, "beta")


def test_review_settings_are_a_reviewers_own_over_the_tenants_defaults(store: Store) -> None:
    assert store.review_settings("acme", "alice") == ({}, {})
    store.set_review_settings("acme", "", {"grey": False})
    store.set_review_settings("acme", "alice", {"blur": 20.0})
    store.set_review_settings("acme", "alice", {"blur": 30.0})  # replaced, not added
    assert store.review_settings("acme", "alice") == ({"grey": False}, {"blur": 30.0})
    assert store.review_settings("acme", "bob") == ({"grey": False}, {})
    assert store.review_settings("beta", "alice") == ({}, {})


def test_every_way_of_withdrawing_an_entry_tells_the_webhooks(store: Store) -> None:
    from datetime import UTC, datetime

    from counterfake.model import NewEntry

    store.create_bank("protected", tenant="acme", shared_with=["beta"])
    store.add_webhook("acme", "http://127.0.0.1:9/a", ("entry.withdrawn",))
    store.add_webhook("beta", "http://127.0.0.1:9/b", ("entry.withdrawn",))
    values = [f"{n:064x}" for n in range(1, 4)]
    ids = [
        r.entry_id
        for r in store.add_entries("acme:protected", [NewEntry("pdq", v) for v in values])
    ]
    store.withdraw("acme:protected", ids[0])  # by hand
    # as an exchange applies a withdrawal: the same value, withdrawn
    store.add_entries(
        "acme:protected", [NewEntry("pdq", values[1], withdrawn_at=datetime.now(UTC))]
    )
    store.add_submission("s1", "acme:protected", code_sha256="c" * 64, address_key="a", photos=1)
    store.link_submission("s1", [ids[2]])
    store.withdraw_submission("c" * 64)  # by the victim's withdrawal code
    told: dict[str, list[Any]] = {}
    for item in store.claim_deliveries(limit=50, lease_seconds=60):
        told.setdefault(item["url"][-1], []).append(json.loads(item["body"])["data"])
    assert told["a"] == [{"bank": "protected", "entry_id": i} for i in ids]
    assert told["b"] == [{"bank": "acme:protected", "entry_id": i} for i in ids]
