"""The store contract: every test runs on SQLite and on a real PostgreSQL database."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from counterfake import (
    ConflictError,
    DatabaseError,
    InputError,
    NewEntry,
    NotFoundError,
    SignalError,
    Store,
    UnavailableError,
)
from counterfake.settings import load_settings

PDQ_A = "a" * 64


def _signature(rng: np.random.Generator) -> NewEntry:
    """A derivative entry of a random 50-keypoint signature, as protecting a photo stores it."""
    from counterfake.signals.keypoints import Features

    points = rng.uniform(0, 400, (50, 2)).astype(np.float32)
    data = Features(480, 400, points, rng.integers(0, 256, (50, 32), np.uint8)).to_bytes()
    return NewEntry("derivative", Features.from_bytes(data).id, payload=data)


def _active_ids(store: Store, bank: str) -> list[int]:
    return sorted(i for _, ids, _, _ in store.active_columns(bank) for i in ids)


PDQ_B = "b" * 64


def test_banks_are_created_listed_shown_and_deleted(store: Store) -> None:
    created = store.create_bank("victims", description="protected photos", threshold=20)
    assert (created.name, created.pdq_threshold, created.description) == (
        "victims",
        20,
        "protected photos",
    )
    store.create_bank("known")
    assert [b.name for b in store.list_banks()] == ["known", "victims"]
    assert store.get_bank("known").pdq_threshold == 31
    store.delete_bank("known")
    with pytest.raises(NotFoundError) as info:
        store.get_bank("known")
    assert info.value.code == "bank_not_found"


def test_duplicate_bank_is_a_conflict(store: Store) -> None:
    store.create_bank("one")
    with pytest.raises(ConflictError) as info:
        store.create_bank("one")
    assert (info.value.code, info.value.bank) == ("bank_exists", "one")


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 101, "bad/name", "é", "ok\n", "ok\r"])
def test_bad_bank_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InputError) as info:
        store.create_bank(name)
    assert info.value.code == "invalid_bank_name"


def test_threshold_is_validated(store: Store) -> None:
    with pytest.raises(InputError) as info:
        store.create_bank("t", threshold=-1)
    assert info.value.code == "invalid_threshold"


def test_adding_the_same_signal_twice_is_idempotent(store: Store) -> None:
    store.create_bank("b")
    first = store.add_entries("b", [NewEntry("pdq", PDQ_A, quality=90), NewEntry("md5", "c" * 32)])
    again = store.add_entries("b", [NewEntry("pdq", PDQ_A.upper())])
    assert [r.status for r in first] == ["created", "created"]
    assert again[0].status == "existing"
    assert again[0].entry_id == first[0].entry_id
    assert store.get_bank("b").active_entries == 2


def test_entries_keep_metadata_quality_and_source(store: Store) -> None:
    store.create_bank("b")
    [result] = store.add_entries(
        "b", [NewEntry("pdq", PDQ_A, quality=77, source="image", metadata={"source_name": "x.jpg"})]
    )
    entry = store.get_entry(result.entry_id)
    assert (entry.bank, entry.signal_type, entry.value, entry.quality, entry.source) == (
        "b",
        "pdq",
        PDQ_A,
        77,
        "image",
    )
    assert entry.metadata == {"source_name": "x.jpg"}
    assert entry.created_at.tzinfo is not None
    assert entry.withdrawn_at is None


def test_invalid_values_are_refused_before_anything_is_written(store: Store) -> None:
    store.create_bank("b")
    with pytest.raises(SignalError):
        store.add_entries("b", [NewEntry("pdq", PDQ_A), NewEntry("pdq", "not-hex")])
    assert store.get_bank("b").active_entries == 0


def test_withdrawn_entries_leave_the_active_set_at_once(store: Store) -> None:
    store.create_bank("b")
    a, b = store.add_entries("b", [NewEntry("pdq", PDQ_A), NewEntry("pdq", PDQ_B)])
    withdrawn = store.withdraw("b", a.entry_id)
    assert withdrawn.withdrawn_at is not None
    assert _active_ids(store, "b") == [b.entry_id]
    assert [e.id for e in store.iter_entries("b")] == [b.entry_id]
    assert [e.id for e in store.iter_entries("b", include_withdrawn=True)] == [
        a.entry_id,
        b.entry_id,
    ]
    bank = store.get_bank("b")
    assert (bank.active_entries, bank.withdrawn_entries) == (1, 1)


def test_withdraw_is_checked_against_the_bank(store: Store) -> None:
    store.create_bank("b")
    store.create_bank("other")
    [entry] = store.add_entries("b", [NewEntry("pdq", PDQ_A)])
    with pytest.raises(NotFoundError) as info:
        store.withdraw("other", entry.entry_id)
    assert info.value.code == "entry_not_found"


def test_resubmitting_a_withdrawn_signal_reinstates_it(store: Store) -> None:
    store.create_bank("b")
    [entry] = store.add_entries("b", [NewEntry("pdq", PDQ_A)])
    store.withdraw("b", entry.entry_id)
    [again] = store.add_entries("b", [NewEntry("pdq", PDQ_A)])
    assert (again.entry_id, again.status) == (entry.entry_id, "reinstated")
    assert store.get_entry(entry.entry_id).withdrawn_at is None


def test_an_imported_withdrawal_withdraws(store: Store) -> None:
    store.create_bank("b")
    [entry] = store.add_entries("b", [NewEntry("pdq", PDQ_A)])
    [result] = store.add_entries(
        "b", [NewEntry("pdq", PDQ_A, withdrawn_at=datetime(2026, 1, 1, tzinfo=UTC))]
    )
    assert (result.entry_id, result.status) == (entry.entry_id, "withdrawn")
    assert _active_ids(store, "b") == []


def test_entry_ids_are_never_given_out_again(store: Store) -> None:
    """An id kept in an audit note or a partner's records must not come to name another entry,
    even after the newest entries went with their bank."""
    store.create_bank("first")
    added = store.add_entries("first", [NewEntry("pdq", PDQ_A), NewEntry("md5", "0" * 32)])
    highest = max(r.entry_id for r in added)
    store.delete_bank("first")
    store.create_bank("second")
    (again,) = store.add_entries("second", [NewEntry("pdq", PDQ_A)])
    assert again.entry_id > highest


def test_deleting_a_bank_deletes_its_entries(store: Store) -> None:
    store.create_bank("b")
    store.add_entries("b", [NewEntry("pdq", PDQ_A)])
    store.delete_bank("b")
    store.create_bank("b")  # a new bank of the same name starts empty
    assert _active_ids(store, "b") == []


def test_audit_log_records_changes_without_signal_values(store: Store) -> None:
    store.create_bank("b")
    [entry] = store.add_entries("b", [NewEntry("pdq", PDQ_A)])
    store.withdraw("b", entry.entry_id)
    events = store.audit_events()
    assert [e.action for e in events] == ["entry_withdrawn", "entries_added", "bank_created"]
    assert events[0].entry_id == entry.entry_id
    assert PDQ_A not in repr(events)


def test_audit_log_is_append_only(store: Store, store_url: str) -> None:
    store.create_bank("b")
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(sa.exc.DatabaseError), engine.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    assert store.audit_events()[0].action == "bank_created"


def test_reopening_migrates_nothing_and_keeps_data(store_url: str) -> None:
    with Store.open(store_url) as first:
        first.create_bank("kept")
    with Store.open(store_url) as second:
        assert [b.name for b in second.list_banks()] == ["kept"]


def _writer(url: str, start: int, count: int) -> None:
    with Store.open(url) as store:
        for i in range(start, start + count):
            store.add_entries("shared", [NewEntry("pdq", format(i, "064x"))])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_writing_at_once_lose_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    with Store.open(url) as store:
        store.create_bank("shared")
    context = multiprocessing.get_context("spawn")
    # Overlapping ranges: 0-299 and 200-499, so both processes also race on the same values.
    workers = [context.Process(target=_writer, args=(url, s, 300)) for s in (0, 200)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    with Store.open(url) as store:
        values = sorted(int(e.value, 16) for e in store.iter_entries("shared"))
    assert values == list(range(500))


def test_an_unreachable_database_is_unavailable_not_broken() -> None:
    with pytest.raises(UnavailableError) as info:  # retry later: 503 with Retry-After
        Store.open("postgresql://nobody@127.0.0.1:1/none")
    assert info.value.code == "store_unavailable"


def _failing(
    url: str, statement: str, digest: str, caplog: pytest.LogCaptureFixture
) -> DatabaseError:
    """The error a failing statement answers through the store's boundary, its log caught."""
    import logging

    from counterfake.store._db import _engine_for, translated

    engine = _engine_for(url)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="counterfake"),
            pytest.raises(DatabaseError) as info,
            translated(),
            engine.connect() as conn,
        ):
            conn.execute(sa.text(statement), {"digest": digest})
    finally:
        engine.dispose()
    return info.value


def test_a_store_failure_of_no_known_kind_is_told_by_kind_never_with_its_parameters(
    caplog: pytest.LogCaptureFixture, postgres_url: str
) -> None:
    """A driver error that is neither the database away nor a full disk answers
    `database_error`; the answer and the operator's log name the driver's error, never the
    statement, its parameters or the driver's text, which here quotes a parameter."""
    error = _failing(postgres_url, "SELECT CAST(:digest AS integer)", "digest-of-a-key", caplog)
    assert error.code == "database_error"
    assert "InvalidTextRepresentation (SQLSTATE 22P02)" in caplog.text
    assert "InvalidTextRepresentation (SQLSTATE 22P02)" in str(error)
    assert "digest-of-a-key" in str(error.__cause__)  # the driver's text quotes it
    for told in (caplog.text, str(error)):
        assert "digest-of-a-key" not in told
        assert "SELECT" not in told


def test_a_sqlite_failure_of_no_known_kind_is_told_by_its_error_name(
    caplog: pytest.LogCaptureFixture, sqlite_url: str
) -> None:
    """SQLite has no SQLSTATE: its error's name stands in for it."""
    error = _failing(sqlite_url, "SELECT :digest FROM no_such_table", "a-digest", caplog)
    assert str(error).endswith("OperationalError (SQLITE_ERROR)")
    assert "no_such_table" not in str(error) + caplog.text
    assert "SQLITE_ERROR" in caplog.text


def test_an_unwritable_sqlite_folder_is_a_database_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DatabaseError):
        Store.open(f"sqlite:///{blocker / 'sub' / 'store.db'}")


def test_a_store_at_the_newest_schema_opens_without_loading_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store.open(url).close()  # created and migrated
    probe = (
        f"import sys; from counterfake import Store; Store.open({url!r});"
        " print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_older_store_keeps_its_banks_when_names_become_per_tenant(store_url: str) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from counterfake.store import _db

    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    config = Config()
    config.set_main_option("script_location", str(_db._MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")  # names were global then
        for name, tenant in (("x", "acme"), ("y", "default")):
            conn.execute(
                sa.text(
                    "INSERT INTO banks (name, description, pdq_threshold, created_at, tenant)"
                    " VALUES (:name, '', 31, CURRENT_TIMESTAMP, :tenant)"
                ),
                {"name": name, "tenant": tenant},
            )
    engine.dispose()
    with Store.open(store_url) as store:
        assert [(b.name, b.tenant) for b in store.list_banks()] == [
            ("acme:x", "acme"),
            ("y", "default"),
        ]
        assert store.create_bank("x").name == "x"  # the default tenant's own x is free


def test_the_write_ahead_log_stays_bounded_while_readers_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoints cannot restart the log while reads overlap without a break (a
    busy service's workers); the writer then checkpoints and truncates it past WAL_LIMIT."""
    import sqlite3
    import threading
    import time

    from counterfake.store import _db

    monkeypatch.setattr(_db, "WAL_LIMIT", 1_000_000)
    monkeypatch.setattr(_db, "WAL_CHECK_EVERY", 5)
    path = tmp_path / "store.db"
    store = Store.open(f"sqlite:///{path}")
    store.create_bank("b")
    stop = threading.Event()

    def overlapping_reader() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        while not stop.is_set():
            conn.execute("BEGIN")
            conn.execute("SELECT max(seq) FROM changes").fetchall()
            time.sleep(0.002)
            conn.execute("COMMIT")
        conn.close()

    readers = [threading.Thread(target=overlapping_reader) for _ in range(3)]
    for reader in readers:
        reader.start()
    peak = 0
    try:
        for batch in range(400):
            store.add_entries("b", [NewEntry("pdq", f"{batch:04x}{i:060x}") for i in range(50)])
            peak = max(peak, (tmp_path / "store.db-wal").stat().st_size)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        store.close()
    assert peak < 4_000_000, peak  # without the writer's checkpoints: tens of megabytes


def test_a_large_batch_is_added_set_wise_with_the_same_outcome_as_one_by_one(store: Store) -> None:
    """A batch of distinct values takes the set-wise path: existing, withdrawn and reinstated
    values, signatures and the change log come out as the row-by-row path gives them."""
    from counterfake.protect import protect_bytes
    from tests.images import encode, photo_like

    store.create_bank("bulk")
    before = [NewEntry("pdq", f"{i:064x}") for i in range(10)]
    (kept, gone) = store.add_entries("bulk", before[:2])
    store.withdraw("bulk", gone.entry_id)
    photo = protect_bytes(encode(photo_like(seed=3)))
    batch = [
        *before[:2],  # one active already, one withdrawn: both "again"
        *[NewEntry("pdq", f"{i:064x}") for i in range(100, 200)],
        NewEntry("pdq", f"{999:064x}", withdrawn_at=datetime.now(UTC)),
        *photo.entries(),
    ]
    seq = store.last_change()
    results = store.add_entries("bulk", batch)
    assert [r.status for r in results[:2]] == ["existing", "reinstated"]
    assert [r.status for r in results[2:102]] == ["created"] * 100
    assert results[102].status == "withdrawn"
    assert [r.status for r in results[103:]] == ["created", "created"]
    assert len({r.entry_id for r in results}) == len(batch)
    assert results[2].entry_id > kept.entry_id
    logged = store.changes_since(seq)
    assert sorted(c.entry_id for c in logged if c.op == "add") == sorted(
        [gone.entry_id, *(r.entry_id for r in results[2:102]), *(r.entry_id for r in results[103:])]
    )
    derivative = results[-1]
    assert dict(store.signatures("bulk"))[derivative.entry_id] == photo.signature
    again = store.add_entries("bulk", batch[2:102])
    assert {r.status for r in again} == {"existing"}
    # A value twice in one batch: added, then withdrawn, in the batch's order.
    fresh = [NewEntry("pdq", f"{i:064x}") for i in range(300, 400)]
    twice = [*fresh, NewEntry("pdq", f"{300:064x}", withdrawn_at=datetime.now(UTC))]
    outcome = store.add_entries("bulk", twice)
    assert outcome[0].status == "created" and outcome[-1].status == "withdrawn"
    assert outcome[-1].entry_id == outcome[0].entry_id


def test_a_batch_larger_than_one_lookup_finds_every_value_the_bank_holds(store: Store) -> None:
    """The set-wise path looks values up in chunks: a batch spanning several, half of it held,
    reports each held value as existing and adds only the others."""
    store.create_bank("chunks")
    values = [f"{i:064x}" for i in range(12_000)]
    held = store.add_entries("chunks", [NewEntry("pdq", v) for v in values[::2]])
    results = store.add_entries("chunks", [NewEntry("pdq", v) for v in values])
    assert [r.status for r in results[::2]] == ["existing"] * 6_000
    assert [r.entry_id for r in results[::2]] == [r.entry_id for r in held]
    assert {r.status for r in results[1::2]} == {"created"}
    assert store.get_bank("chunks").active_entries == 12_000


def test_a_statement_past_the_timeout_is_store_timeout(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL cancels a statement that waits past `statement_timeout`: an UnavailableError
    with its own code (retry), and the store works once the database answers again."""
    settings = load_settings(home=tmp_path, statement_timeout=0.5)
    blocker = sa.create_engine(postgres_url)
    with Store.open(postgres_url, settings=settings) as store:
        store.create_bank("slow")
        with blocker.connect() as held:
            held.exec_driver_sql("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(UnavailableError) as info:
                store.add_entries("slow", [NewEntry("pdq", "c" * 64)])
            assert info.value.code == "store_timeout"
            held.rollback()
        assert store.add_entries("slow", [NewEntry("pdq", "c" * 64)])[0].status == "created"
    blocker.dispose()


def test_signatures_read_by_id_are_the_named_banks_own_and_found_by_key(store: Store) -> None:
    """Verification reads a handful of signatures by id for every upload: the read is by
    primary key, never a walk through the bank (SQLite's planner took the bank's index for 7
    or more ids), and an id of another bank or a withdrawn one is not returned."""
    rng = np.random.default_rng(5)
    store.create_bank("ours")
    store.create_bank("theirs")
    ours = store.add_entries("ours", [_signature(rng) for _ in range(40)])
    theirs = store.add_entries("theirs", [_signature(rng) for _ in range(10)])
    store.withdraw("ours", ours[0].entry_id)
    asked = [r.entry_id for r in ours[:9]] + [r.entry_id for r in theirs[:3]]
    statements: list[tuple[str, object]] = []

    def seen(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        if "FROM signatures" in statement:
            statements.append((statement, params))

    sa.event.listen(store._db.engine, "before_cursor_execute", seen)
    try:
        read = dict(store.signatures("ours", asked))
    finally:
        sa.event.remove(store._db.engine, "before_cursor_execute", seen)
    assert sorted(read) == sorted(r.entry_id for r in ours[1:9])
    assert statements
    if store._db.engine.dialect.name == "sqlite":
        with store._db.engine.connect() as conn:
            for statement, params in statements:
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
                steps = [str(row[-1]) for row in plan]
                assert not any("bank_id" in step for step in steps), steps


def test_a_shards_part_of_the_signatures_is_read_by_the_same_rule_as_part_of(
    store: Store,
) -> None:
    """A shard reads its photos' signatures with a filter in SQL, and places a photo added
    later with `part_of` in Python: both must deal every photo to exactly one shard, the same
    one, and spread ids that come in strides (a photo adds a PDQ entry and its signature)."""
    from counterfake.store.signatures import part_of

    rng = np.random.default_rng(3)
    store.create_bank("photos")
    ids = []
    for _ in range(40):  # as protecting a photo does: its PDQ entry, then its signature
        pdq = NewEntry("pdq", rng.integers(0, 2**63, 4, dtype=np.int64).tobytes().hex())
        ids.append(store.add_entries("photos", [pdq, _signature(rng)])[1].entry_id)
    assert len({i % 2 for i in ids}) == 1  # one parity: modulo 2 would put all in one
    store.withdraw("photos", ids[0])
    live = sorted(ids[1:])
    for parts in (2, 3):
        held = [sorted(dict(store.signatures("photos", part=(k, parts)))) for k in range(parts)]
        assert sorted(i for part in held for i in part) == live
        for k, part in enumerate(held):
            assert part and all(part_of(i, parts) == k for i in part)
