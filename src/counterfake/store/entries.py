"""Entries: signals added to banks, withdrawn, listed and streamed; idempotent per
(bank, signal type, value)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import InputError, NotFoundError, StoreError
from ..model import AddResult, Entry, NewEntry
from ..signals import get_signal_type
from ._db import now, utc
from ._part import Part
from .schema import banks, changes, entries, id_floors, signatures
from .webhooks import tell_withdrawn

__all__ = ["Entries"]

_Status = Literal["created", "existing", "reinstated", "withdrawn"]
#: What an entry's metadata may be: nested at most this deep, this large as JSON.
METADATA_DEPTH: Final = 8
METADATA_BYTES: Final = 16 * 1024
#: A batch at least this large, of distinct values, is added set-wise (`_add_bulk`).
_BULK: Final = 64
_LOOKUP_CHUNK: Final = 5_000


def _depth(value: Any, limit: int) -> int:
    """How deep `value` nests (stopping past `limit`, so a hostile value costs little)."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)


_COLUMNS: Final = (
    "bank_id",
    "signal_type",
    "value",
    "quality",
    "source",
    "metadata",
    "created_at",
    "withdrawn_at",
    "submitted_by",
)
_INSERTS: dict[str, Any] = {}
_FLOOR: Final = sa.select(
    sa.select(id_floors.c.floor).where(id_floors.c.name == "entries").scalar_subquery(),
    sa.select(sa.func.max(entries.c.id)).scalar_subquery(),
)


def _statements(dialect: str) -> Any:
    """The entry insert, built once per dialect (SQLite names the id: see `_id_floor`)."""
    if dialect not in _INSERTS:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        columns = (*_COLUMNS, "id") if dialect == "sqlite" else _COLUMNS
        _INSERTS[dialect] = (
            insert(entries)
            .values({c: sa.bindparam(c) for c in columns})
            .on_conflict_do_nothing(index_elements=["bank_id", "signal_type", "value"])
            .returning(entries.c.id)
        )
    return _INSERTS[dialect]


def _prepare(new_entries: Iterable[NewEntry]) -> list[NewEntry]:
    """Entries with canonical values, checked before anything is written."""
    prepared = [
        dataclasses.replace(e, value=get_signal_type(e.signal_type).normalize(e.value))
        for e in new_entries
    ]
    for entry in prepared:
        _check_metadata(entry.metadata)
        if (get_signal_type(entry.signal_type).kind == "local") != (entry.payload is not None):
            raise InputError(
                f"a {entry.signal_type} entry {'needs' if entry.payload is None else 'has no'}"
                " signature payload",
                code="invalid_signature",
            )
    return prepared


def _check_metadata(metadata: dict[str, Any]) -> None:
    if not isinstance(metadata, dict):
        raise InputError("metadata is a JSON object", code="invalid_metadata")
    if _depth(metadata, METADATA_DEPTH + 1) > METADATA_DEPTH:
        raise InputError(
            f"metadata may nest at most {METADATA_DEPTH} levels", code="invalid_metadata"
        )
    try:
        size = len(json.dumps(metadata, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata is not JSON ({exc})", code="invalid_metadata") from None
    if size > METADATA_BYTES:
        raise InputError(
            f"metadata is {size} bytes as JSON; the limit is {METADATA_BYTES}",
            code="invalid_metadata",
        )


def _processor(column: sa.Column[Any], dialect: Any) -> Callable[[Any], Any]:
    """The column type's own conversion to what the driver stores (SQLAlchemy's, so rows
    written around it read back the same)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


_ENTRY_ROW: Final = (
    "INSERT INTO entries (id, bank_id, signal_type, value, quality, source, metadata,"
    " created_at, withdrawn_at, submitted_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CHANGE_ROW: Final = "INSERT INTO changes (at, op, bank, entry_id) VALUES (?, 'add', ?, ?)"


def _insert_sqlite(
    conn: Any,
    bank_id: int,
    fresh: list[NewEntry],
    at: datetime,
    submitted_by: str | None,
    floor: int,
) -> dict[tuple[str, str], int]:
    """SQLite: the rows straight to the driver's executemany (SQLAlchemy's per-row parameter
    work was most of a large add). The writer holds the database, and the values were looked
    up in this transaction, so none can conflict; ids follow `floor`."""
    dialect = conn.dialect
    as_json = _processor(entries.c.metadata, dialect)
    as_time = _processor(entries.c.created_at, dialect)
    created_at = as_time(at)
    rows = [
        (
            floor + 1 + number,
            bank_id,
            entry.signal_type,
            entry.value,
            entry.quality,
            entry.source,
            as_json(entry.metadata),
            created_at,
            None if entry.withdrawn_at is None else as_time(entry.withdrawn_at),
            submitted_by,
        )
        for number, entry in enumerate(fresh)
    ]
    conn.exec_driver_sql(_ENTRY_ROW, rows)
    return {(e.signal_type, e.value): floor + 1 + n for n, e in enumerate(fresh)}


def _existing(dialect: str, bank_id: int, signal_type: str) -> sa.Select[Any]:
    """Which of `:values` the bank holds. On PostgreSQL the values are an array joined to the
    unique index: an `IN` list there is planned from statistics that a bulk load has made
    stale, and was filtered row by row (seconds per 500 values at 150,000 entries)."""
    if dialect != "postgresql":
        return sa.select(entries.c.value).where(
            entries.c.bank_id == bank_id,
            entries.c.signal_type == signal_type,
            entries.c.value.in_(sa.bindparam("values", expanding=True)),
        )
    wanted = (
        sa.func.unnest(sa.bindparam("values", type_=postgresql.ARRAY(sa.String)))
        .table_valued("value")
        .render_derived(name="wanted")
    )
    return sa.select(entries.c.value).join_from(
        wanted,
        entries,
        sa.and_(
            entries.c.bank_id == bank_id,
            entries.c.signal_type == signal_type,
            entries.c.value == wanted.c.value,
        ),
    )


def _log_adds(conn: Any, bank: str, entry_ids: list[int], at: datetime) -> None:
    """The change-log rows of new entries, in one statement."""
    if conn.dialect.name == "sqlite":
        stamp = _processor(changes.c.at, conn.dialect)(at)
        conn.exec_driver_sql(_CHANGE_ROW, [(stamp, bank, entry_id) for entry_id in entry_ids])
    else:
        conn.execute(
            changes.insert(),
            [{"at": at, "op": "add", "bank": bank, "entry_id": e} for e in entry_ids],
        )


class Entries(Part):
    """The store's entries (a part of `Store`)."""

    def add_entries(
        self, bank: str, new_entries: Iterable[NewEntry], *, submitted_by: str | None = None
    ) -> list[AddResult]:
        """Add signals to a bank in one transaction. Adding a value again changes nothing;
        adding a withdrawn value again reinstates it (unless the new entry is itself withdrawn).
        `submitted_by` (an API key id) is kept on new entries: who may withdraw them.
        """
        (outcome,) = self.add_many([(bank, list(new_entries), submitted_by)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def add_many(
        self, requests: Sequence[tuple[str, Sequence[NewEntry], str | None]]
    ) -> list[list[AddResult] | StoreError | InputError]:
        """Several `add_entries` calls (bank, entries, submitted_by) in one transaction: how
        concurrent adds share a commit. Each gets its results, or its own error (a bad value,
        a bank that is gone) without failing the others; a database failure fails them all."""
        outcomes: list[list[AddResult] | StoreError | InputError] = []
        prepared: list[list[NewEntry] | None] = []
        for _, entries_, _ in requests:
            try:
                prepared.append(_prepare(entries_))
                outcomes.append([])
            except InputError as exc:
                prepared.append(None)
                outcomes.append(exc)
        db = self._db
        insert = _statements(db.dialect)
        with db.write() as conn:
            floor = self._id_floor(conn) if db.dialect == "sqlite" else None
            for number, (bank, _, submitted_by) in enumerate(requests):
                ready = prepared[number]
                if ready is None:
                    continue
                try:
                    bank_id = db.bank_id(conn, bank)
                except StoreError as exc:
                    outcomes[number] = exc
                    continue
                results: list[AddResult] = []
                withdrawn: list[int] = []  # entries that were active and are withdrawn now
                if len(ready) >= _BULK:
                    results, floor = self._add_bulk(
                        conn, bank, bank_id, ready, submitted_by, floor, withdrawn
                    )
                    ready = []
                for entry in ready:
                    values = {
                        "bank_id": bank_id,
                        "signal_type": entry.signal_type,
                        "value": entry.value,
                        "quality": entry.quality,
                        "source": entry.source,
                        "metadata": entry.metadata,
                        "created_at": now(),
                        "withdrawn_at": entry.withdrawn_at,
                        "submitted_by": submitted_by,
                    }
                    if floor is not None:
                        values["id"] = floor + 1
                    row = conn.execute(insert, values).first()
                    if row is not None:
                        if floor is not None:
                            floor = int(row.id)
                        status: _Status = "withdrawn" if entry.withdrawn_at else "created"
                        if entry.payload is not None:
                            conn.execute(
                                signatures.insert().values(entry_id=row.id, data=entry.payload)
                            )
                        results.append(AddResult(row.id, entry.signal_type, status))
                        if status == "created":
                            db.change(conn, "add", bank, row.id)
                        continue
                    results.append(self._again(conn, bank, bank_id, entry, withdrawn))
                tell_withdrawn(conn, bank, withdrawn)
                counts: dict[str, Any] = {}
                for result in results:
                    counts[result.status] = counts.get(result.status, 0) + 1
                if submitted_by:
                    counts["submitted_by"] = submitted_by
                db.audit(conn, "entries_added", bank=bank, detail=counts)
                outcomes[number] = results
        return outcomes

    def _add_bulk(
        self,
        conn: Any,
        bank: str,
        bank_id: int,
        ready: list[NewEntry],
        submitted_by: str | None,
        floor: int | None,
        withdrawn: list[int],
    ) -> tuple[list[AddResult], int | None]:
        """`add_many`'s row-by-row work done set-wise, for a large batch (a page of an
        exchange, an import): values already in the bank are found first, each other value's
        first occurrence is inserted in one statement (a conflict with a concurrent writer is
        skipped, then treated as found), their change-log rows and signatures in one statement
        each; found values and later occurrences (an add, then its withdrawal) then go one by
        one, in the batch's order."""
        first: dict[tuple[str, str], NewEntry] = {}
        for entry in ready:
            first.setdefault((entry.signal_type, entry.value), entry)
        found: set[tuple[str, str]] = set()
        by_type: dict[str, list[str]] = {}
        for signal_type, value in first:
            by_type.setdefault(signal_type, []).append(value)
        for signal_type, values in by_type.items():
            for start in range(0, len(values), _LOOKUP_CHUNK):
                rows = conn.execute(
                    _existing(conn.dialect.name, bank_id, signal_type),
                    {"values": values[start : start + _LOOKUP_CHUNK]},
                )
                found.update((signal_type, r.value) for r in rows)
        fresh = [e for key, e in first.items() if key not in found]
        created: dict[tuple[str, str], int] = {}
        if fresh:
            at = now()
            if floor is not None:
                created = _insert_sqlite(conn, bank_id, fresh, at, submitted_by, floor)
                floor = floor + len(fresh)
            else:
                created = self._insert_returning(conn, bank_id, fresh, at, submitted_by)
            by_key = {(e.signal_type, e.value): e for e in fresh}
            added = [
                entry_id for key, entry_id in created.items() if by_key[key].withdrawn_at is None
            ]
            if added:
                _log_adds(conn, bank, added, at)
            payloads = [
                {"entry_id": entry_id, "data": by_key[key].payload}
                for key, entry_id in created.items()
                if by_key[key].payload is not None
            ]
            if payloads:
                conn.execute(signatures.insert(), payloads)
        results: list[AddResult] = []
        for entry in ready:
            key = (entry.signal_type, entry.value)
            if key in created and first.get(key) is entry:
                status: _Status = "withdrawn" if entry.withdrawn_at else "created"
                results.append(AddResult(created[key], entry.signal_type, status))
                del first[key]  # a later occurrence is applied to the row now there
            else:
                results.append(self._again(conn, bank, bank_id, entry, withdrawn))
        return results, floor

    @staticmethod
    def _insert_returning(
        conn: Any, bank_id: int, fresh: list[NewEntry], at: datetime, submitted_by: str | None
    ) -> dict[tuple[str, str], int]:
        """PostgreSQL: one multi-row insert; a value a concurrent writer added meanwhile is
        skipped (and then treated as found)."""
        rows_in = [
            {
                "bank_id": bank_id,
                "signal_type": entry.signal_type,
                "value": entry.value,
                "quality": entry.quality,
                "source": entry.source,
                "metadata": entry.metadata,
                "created_at": at,
                "withdrawn_at": entry.withdrawn_at,
                "submitted_by": submitted_by,
            }
            for entry in fresh
        ]
        returned = conn.execute(
            postgresql.insert(entries)
            .on_conflict_do_nothing(index_elements=["bank_id", "signal_type", "value"])
            .returning(entries.c.id, entries.c.signal_type, entries.c.value),
            rows_in,
        )
        return {(r.signal_type, r.value): int(r.id) for r in returned}

    def _again(
        self, conn: Any, bank: str, bank_id: int, entry: NewEntry, withdrawn: list[int]
    ) -> AddResult:
        """A value the bank holds already: reinstated, withdrawn, or left as it is."""
        existing = conn.execute(
            sa.select(entries.c.id, entries.c.withdrawn_at).where(
                entries.c.bank_id == bank_id,
                entries.c.signal_type == entry.signal_type,
                entries.c.value == entry.value,
            )
        ).one()
        if existing.withdrawn_at is not None and entry.withdrawn_at is None:
            conn.execute(
                entries.update().where(entries.c.id == existing.id).values(withdrawn_at=None)
            )
            self._db.change(conn, "add", bank, existing.id)
            return AddResult(existing.id, entry.signal_type, "reinstated")
        if existing.withdrawn_at is None and entry.withdrawn_at is not None:
            conn.execute(
                entries.update()
                .where(entries.c.id == existing.id)
                .values(withdrawn_at=entry.withdrawn_at)
            )
            self._db.change(conn, "withdraw", bank, existing.id)
            withdrawn.append(existing.id)
            return AddResult(existing.id, entry.signal_type, "withdrawn")
        return AddResult(existing.id, entry.signal_type, "existing")

    @staticmethod
    def _id_floor(conn: Any) -> int:
        """SQLite: the highest entry id ever given out: the newest entry's, or a deleted
        bank's (recorded by `delete_bank`)."""
        recorded, present = conn.execute(_FLOOR).one()
        return max(int(recorded or 0), int(present or 0))

    def withdraw(self, bank: str, entry_id: int) -> Entry:
        """Withdraw an entry: from this commit on it never matches. Withdrawing twice is a no-op."""
        with self._db.write() as conn:
            bank_id = self._db.bank_id(conn, bank)
            row = conn.execute(
                sa.select(entries.c.id, entries.c.withdrawn_at).where(
                    entries.c.id == entry_id, entries.c.bank_id == bank_id
                )
            ).first()
            if row is None:
                raise NotFoundError(
                    f"bank {bank!r} has no entry {entry_id}",
                    code="entry_not_found",
                    bank=bank,
                    entry_id=entry_id,
                )
            if row.withdrawn_at is None:
                conn.execute(
                    entries.update().where(entries.c.id == entry_id).values(withdrawn_at=now())
                )
                self._db.audit(conn, "entry_withdrawn", bank=bank, entry_id=entry_id, detail={})
                self._db.change(conn, "withdraw", bank, entry_id)
                tell_withdrawn(conn, bank, [entry_id])
        return self.get_entry(entry_id)

    def get_entry(self, entry_id: int) -> Entry:
        with self._db.read() as conn:
            row = conn.execute(_entry_select().where(entries.c.id == entry_id)).first()
        if row is None:
            raise NotFoundError(f"no entry {entry_id}", code="entry_not_found", entry_id=entry_id)
        return _entry(row)

    def list_entries(
        self,
        bank: str,
        *,
        after: int = 0,
        limit: int = 100,
        signal_type: str | None = None,
        source: str | None = None,
        withdrawn: bool | None = None,
    ) -> list[Entry]:
        """One page of a bank's entries in id order, after entry id `after` (keyset paging:
        stable while entries are added)."""
        with self._db.read() as conn:
            bank_id = self._db.bank_id(conn, bank)
            query = _entry_select().where(entries.c.bank_id == bank_id, entries.c.id > after)
            if signal_type is not None:
                query = query.where(entries.c.signal_type == signal_type)
            if source is not None:
                query = query.where(entries.c.source == source)
            if withdrawn is not None:
                column = entries.c.withdrawn_at
                query = query.where(column.is_not(None) if withdrawn else column.is_(None))
            rows = conn.execute(query.order_by(entries.c.id).limit(limit))
            return [_entry(row) for row in rows]

    def iter_entries(
        self,
        bank: str,
        *,
        include_withdrawn: bool = False,
        signal_type: str | None = None,
    ) -> Iterator[Entry]:
        """Entries of a bank in id order, streamed."""
        with self._db.read() as conn:
            bank_id = self._db.bank_id(conn, bank)
            query = _entry_select().where(entries.c.bank_id == bank_id)
            if not include_withdrawn:
                query = query.where(entries.c.withdrawn_at.is_(None))
            if signal_type is not None:
                query = query.where(entries.c.signal_type == signal_type)
            result = conn.execution_options(yield_per=2000).execute(query.order_by(entries.c.id))
            for row in result:
                yield _entry(row)

    def active_columns(
        self, bank: str, *, size: int = 200_000
    ) -> Iterator[tuple[str, list[int], list[str], list[int | None]]]:
        """A bank's active entries as (signal type, ids, values, qualities) chunks, in no
        particular order: how an index loads millions of entries quickly."""
        # `bank_id + 0` keeps the planner off the (bank, type, value) index: loading a whole bank
        # is fastest as one sequential scan, not ten million lookups in index order.
        marker = "%(bank_id)s" if self._db.dialect == "postgresql" else ":bank_id"
        sql = (
            "SELECT signal_type, id, value, quality FROM entries"
            f" WHERE bank_id + 0 = {marker} AND withdrawn_at IS NULL"
        )
        with self._db.read() as conn:
            bank_id = self._db.bank_id(conn, bank)
            # The driver's own cursor: millions of SQLAlchemy rows would cost more than the scan.
            raw: Any = conn.connection.driver_connection
            if self._db.dialect == "postgresql":
                cursor = raw.cursor(name="counterfake_active_columns")  # streamed server-side
            else:
                cursor = raw.cursor()
            cursor.execute(sql, {"bank_id": bank_id})
            while part := cursor.fetchmany(size):
                types, ids, values, qualities = zip(*part, strict=True)
                kinds = set(types)
                if len(kinds) == 1:
                    yield types[0], list(ids), list(values), list(qualities)
                    continue
                for kind in sorted(kinds):
                    rows = [i for i, t in enumerate(types) if t == kind]
                    yield (
                        kind,
                        [ids[i] for i in rows],
                        [values[i] for i in rows],
                        [qualities[i] for i in rows],
                    )
            cursor.close()


def _entry_select() -> sa.Select[Any]:
    return (
        sa.select(entries, banks.c.name.label("bank_name"), signatures.c.data.label("payload"))
        .join(banks, banks.c.id == entries.c.bank_id)
        .outerjoin(signatures, signatures.c.entry_id == entries.c.id)
    )


def _entry(row: Any) -> Entry:
    return Entry(
        id=row.id,
        bank=row.bank_name,
        signal_type=row.signal_type,
        value=row.value,
        quality=row.quality,
        source=row.source,
        metadata=_readable(row.metadata),
        created_at=utc(row.created_at) or row.created_at,
        withdrawn_at=utc(row.withdrawn_at),
        submitted_by=row.submitted_by,
        payload=bytes(row.payload) if row.payload is not None else None,
    )


def _readable(metadata: Any) -> dict[str, Any]:
    # Written before its limits existed, an entry's metadata may not serialise: one entry must
    # not break a listing.
    if not isinstance(metadata, dict):
        return {}
    if _depth(metadata, METADATA_DEPTH + 1) > METADATA_DEPTH:
        return {"unreadable": f"metadata nested deeper than {METADATA_DEPTH} levels"}
    return dict(metadata)
