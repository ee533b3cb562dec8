"""Our own deadline on PostgreSQL calls (the frozen database itself is in
tests/faults/test_database_away.py): a call that outlives it fails as `store_unavailable`, not
as a broken store, and the pool goes on; migrations have none."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from counterfake.errors import UnavailableError
from counterfake.store import _deadline
from counterfake.store._db import Database


@pytest.fixture
def db(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A store whose calls get our deadline of 0.5 + 0.5 = 1 s."""
    monkeypatch.setattr(_deadline, "GRACE", 0.5)
    db = Database.connect(postgres_url, statement_timeout=0.5)
    yield db
    db.close()


def test_a_call_in_progress_past_its_deadline_is_cut_and_answered_unavailable(
    db: Database,
) -> None:
    # A statement the server lets run (no statement_timeout in its session) outlives ours.
    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught, db.read() as conn:
        conn.exec_driver_sql("SET statement_timeout = 0")
        conn.exec_driver_sql("SELECT pg_sleep(8)")
    assert caught.value.code == "store_unavailable"
    assert time.monotonic() - started < 3
    with db.read() as conn:  # the pool goes on with a new connection
        assert conn.execute(sa.text("SELECT 2")).scalar() == 2


def test_a_migration_is_given_no_deadline(db: Database) -> None:
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw.deadline == 1  # type: ignore[union-attr]
        with _deadline.limited(raw, 0):
            assert raw.deadline == 0  # type: ignore[union-attr]
            conn.exec_driver_sql("SET statement_timeout = 0")
            conn.exec_driver_sql("SELECT pg_sleep(2)")  # past the deadline: not cut
        assert raw.deadline == 1  # type: ignore[union-attr]
