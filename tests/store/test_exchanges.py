"""The store's exchanges, the same on SQLite and PostgreSQL: one fetcher holds an exchange at a
time, a paused one is never due, failures back off, a tenant's credential serves its exchanges
that have none, and credentials are never part of what is shown."""

from __future__ import annotations

import pytest

from counterfake import Store
from counterfake.errors import ConflictError, NotFoundError


def _add(store: Store, name: str, bank: str, credential: str | None = None) -> None:
    store.add_exchange(
        name,
        type="stopncii",
        bank=bank,
        config={"url": "https://example.invalid"},
        credential=credential,
        interval_seconds=60.0,
    )


def test_one_fetcher_holds_an_exchange_and_a_paused_one_is_not_due(store: Store) -> None:
    store.create_bank("b")
    _add(store, "x", "b")
    assert store.claim_exchange(None, lease_seconds=30) == "x"
    assert store.claim_exchange("x", lease_seconds=30) is None  # leased
    assert store.get_exchange("x").fetching
    store.release_exchange("x")
    shown = store.get_exchange("x")
    assert not shown.fetching and shown.last_complete_at is not None
    assert store.claim_exchange(None, lease_seconds=30) is None  # not due for a minute

    _add(store, "y", "b")
    store.enable_exchange("y", False)
    assert not store.get_exchange("y").enabled
    assert store.claim_exchange(None, lease_seconds=30) is None  # due, but paused
    store.enable_exchange("y", True)
    assert store.claim_exchange(None, lease_seconds=30) == "y"
    with pytest.raises(NotFoundError):
        store.enable_exchange("nope", True)
    with pytest.raises(ConflictError):
        _add(store, "y", "b")


def test_failures_back_off_and_a_success_resets_them(store: Store) -> None:
    store.create_bank("b")
    _add(store, "x", "b")
    store.claim_exchange("x", lease_seconds=30)
    store.release_exchange("x", error="exchange_unreachable: gone")
    first = store.get_exchange("x")
    store.claim_exchange("x", lease_seconds=30)
    store.release_exchange("x", error="exchange_unreachable: gone")
    second = store.get_exchange("x")
    assert second.failures == 2
    assert (
        second.next_fetch_at - second.last_complete_at
        > first.next_fetch_at - first.last_complete_at
    )  # type: ignore[operator]
    store.claim_exchange("x", lease_seconds=30)
    store.advance_exchange("x", "7", 3, lease_seconds=30)
    store.release_exchange("x")
    done = store.get_exchange("x")
    assert (done.failures, done.last_error, done.cursor, done.applied) == (0, None, "7", 3)


def test_an_exchange_without_a_credential_takes_its_tenants_for_the_type(store: Store) -> None:
    store.create_bank("b", tenant="acme")
    store.create_bank("c", tenant="beta")
    _add(store, "acme:own", "acme:b", credential="s:f")
    _add(store, "acme:shared", "acme:b")
    _add(store, "beta:other", "beta:c")
    assert store.exchange_credential("acme:shared") == (None, {})
    store.set_type_credential("acme", "stopncii", "s2:f2", {"url": "http://127.0.0.1:1/v1"})
    assert store.has_type_credential("acme", "stopncii")
    assert not store.has_type_credential("beta", "stopncii")
    assert store.exchange_credential("acme:shared") == ("s2:f2", {"url": "http://127.0.0.1:1/v1"})
    assert store.exchange_credential("acme:own") == ("s:f", {})  # its own comes first
    assert store.exchange_credential("beta:other") == (None, {})  # not another tenant's
    assert [x.name for x in store.list_exchanges(tenant="acme")] == ["acme:own", "acme:shared"]
    shown = repr(store.list_exchanges()) + repr([x.to_dict() for x in store.list_exchanges()])
    assert "s2" not in shown and "s:f" not in shown
    assert all("s2" not in str(e.detail) for e in store.audit_events(limit=100))
    store.set_type_credential("acme", "stopncii", None, {})
    assert store.exchange_credential("acme:shared") == (None, {})


def test_removing_a_bank_removes_its_exchanges(store: Store) -> None:
    store.create_bank("b")
    _add(store, "x", "b")
    store.delete_bank("b")
    assert store.list_exchanges() == []
