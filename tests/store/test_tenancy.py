"""Tenants, sharing, bank updates, paging and API keys: the same contract on both backends."""

from __future__ import annotations

import pytest

from counterfake import AccessError, ConflictError, InputError, NewEntry, NotFoundError, Store


def test_a_bank_has_an_owner_and_the_tenants_it_is_shared_with(store: Store) -> None:
    bank = store.create_bank("shared", tenant="acme", shared_with=["beta", "gamma", "beta"])
    assert (bank.tenant, bank.shared_with) == ("acme", ("beta", "gamma"))
    assert bank.visible_to("acme") and bank.visible_to("beta")
    assert not bank.visible_to("delta")
    store.create_bank("plain")
    assert store.get_bank("plain").tenant == "default"
    assert [b.name for b in store.list_banks(tenant="acme")] == ["acme:shared"]
    with pytest.raises(InputError) as info:
        store.create_bank("x", tenant="no spaces")
    assert info.value.code == "invalid_tenant"


def test_bank_names_are_unique_within_a_tenant_only(store: Store) -> None:
    store.create_bank("same")
    for tenant in ("acme", "beta"):
        assert store.create_bank("same", tenant=tenant).name == f"{tenant}:same"
    assert [b.name for b in store.list_banks()] == ["acme:same", "beta:same", "same"]
    with pytest.raises(ConflictError) as info:
        store.create_bank("same", tenant="acme")
    assert (info.value.code, info.value.bank) == ("bank_exists", "same")
    with pytest.raises(InputError) as bad:
        store.create_bank("acme:other")
    assert bad.value.code == "invalid_bank_name"


def test_a_bank_update_changes_only_what_is_given_and_is_in_the_change_log(
    store: Store,
) -> None:
    store.create_bank("b", description="d", threshold=31, shared_with=["beta"])
    before = store.last_change()
    updated = store.update_bank("b", threshold=20)
    assert (updated.pdq_threshold, updated.description, updated.shared_with) == (20, "d", ("beta",))
    updated = store.update_bank("b", description="new", shared_with=[])
    assert (updated.pdq_threshold, updated.description, updated.shared_with) == (20, "new", ())
    assert [c.op for c in store.changes_since(before)] == ["bank_update", "bank_update"]
    with pytest.raises(InputError):
        store.update_bank("b", threshold=129)
    with pytest.raises(NotFoundError):
        store.update_bank("missing", threshold=10)


def test_entries_are_paged_in_id_order_with_filters(store: Store) -> None:
    store.create_bank("b")
    values = [f"{i:064x}" for i in range(1, 8)]
    results = store.add_entries(
        "b",
        [NewEntry("pdq", v, source="image" if i % 2 else "hashes") for i, v in enumerate(values)],
        submitted_by="key1",
    )
    ids = [r.entry_id for r in results]
    store.withdraw("b", ids[0])
    pages, after = [], 0
    while page := store.list_entries("b", after=after, limit=3):
        pages.append([e.id for e in page])
        after = page[-1].id
    assert pages == [ids[:3], ids[3:6], ids[6:]]
    assert [e.id for e in store.list_entries("b", withdrawn=True)] == [ids[0]]
    assert len(store.list_entries("b", withdrawn=False)) == 6
    assert [e.id for e in store.list_entries("b", source="image")] == ids[1::2]
    assert {e.submitted_by for e in store.list_entries("b")} == {"key1"}


def test_keys_are_stored_hashed_authenticated_and_revoked(store: Store) -> None:
    key, secret = store.keys.create("acme", ["match", "curate"], name="platform")
    assert secret.startswith(f"cfk_{key.key_id}_") and len(secret) > 50
    assert store.keys.authenticate(secret) == key
    assert key.scopes == {"match", "curate"}
    for forged in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "cfk_x", "", "nonsense"):
        with pytest.raises(AccessError) as info:
            store.keys.authenticate(forged)
        assert info.value.code == "invalid_key"
    store.keys.revoke(key.key_id)
    with pytest.raises(AccessError):
        store.keys.authenticate(secret)
    assert store.keys.list()[0].revoked_at is not None
    with pytest.raises(InputError) as bad:
        store.keys.create("acme", ["root"])
    assert bad.value.code == "invalid_scope"
    with pytest.raises(NotFoundError):
        store.keys.revoke("nope")


def test_a_key_may_have_a_rate_limit_of_its_own(store: Store) -> None:
    key, secret = store.keys.create("acme", ["match"], rate_limit=50)
    assert key.rate_limit == 50 and store.keys.authenticate(secret).rate_limit == 50
    assert store.keys.create("acme", ["match"])[0].rate_limit is None  # the service's default
    assert store.keys.set_rate_limit(key.key_id, 0).rate_limit == 0  # no limit
    assert store.keys.authenticate(secret).rate_limit == 0
    assert store.keys.set_rate_limit(key.key_id, None).rate_limit is None
    assert store.keys.list()[0].to_dict()["rate_limit"] is None
    for bad in (-1.0, float("nan"), float("inf"), 2e6):
        with pytest.raises(InputError) as refused:
            store.keys.set_rate_limit(key.key_id, bad)
        assert refused.value.code == "invalid_rate_limit"
        with pytest.raises(InputError):
            store.keys.create("acme", ["match"], rate_limit=bad)
    assert store.keys.authenticate(secret).rate_limit is None  # refusals changed nothing
    with pytest.raises(NotFoundError) as missing:
        store.keys.set_rate_limit("nope", 5)
    assert missing.value.code == "key_not_found"


def test_no_key_secret_is_written_to_the_database(store: Store, store_url: str) -> None:
    import sqlalchemy as sa

    _, secret = store.keys.create("acme", ["admin"])
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = [
            *conn.exec_driver_sql("SELECT * FROM api_keys"),
            *conn.exec_driver_sql("SELECT * FROM audit_log"),
        ]
    engine.dispose()
    dumped = repr(rows)
    random_part = secret.split("_", 2)[2]  # cfk_<id>_<random>; the random part may hold "_"
    assert secret not in dumped and random_part not in dumped
