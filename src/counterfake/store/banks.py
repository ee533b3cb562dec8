"""Banks and their entries: the source of truth every index is derived from.

One `Store` over SQLite (the embedded default) or PostgreSQL; both pass the same contract
tests. Writes are idempotent per (bank, signal type, value); every change is written to the
append-only audit log in the same transaction, without the signal values themselves.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ..errors import ConflictError, DatabaseError, InputError, NotFoundError
from ..settings import Settings, load_settings
from ..signals import get_signal_type
from .schema import audit_log, bank_shares, banks, changes, entries, signatures

if TYPE_CHECKING:
    from .keys import KeyRing

__all__ = [
    "DEFAULT_TENANT",
    "AddResult",
    "AuditEvent",
    "Bank",
    "Change",
    "Entry",
    "NewEntry",
    "Store",
]

_BANK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_TENANT = _BANK_NAME
DEFAULT_TENANT = "default"
_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclasses.dataclass(frozen=True)
class Bank:
    id: int
    name: str
    description: str
    pdq_threshold: int
    created_at: datetime
    active_entries: int = 0
    withdrawn_entries: int = 0
    tenant: str = DEFAULT_TENANT
    #: Other tenants whose match keys may match against this bank.
    shared_with: tuple[str, ...] = ()

    def visible_to(self, tenant: str) -> bool:
        return tenant == self.tenant or tenant in self.shared_with

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "pdq_threshold": self.pdq_threshold,
            "tenant": self.tenant,
            "shared_with": list(self.shared_with),
            "active_entries": self.active_entries,
            "withdrawn_entries": self.withdrawn_entries,
            "created_at": self.created_at.isoformat(),
        }


@dataclasses.dataclass(frozen=True)
class Entry:
    id: int
    bank: str
    signal_type: str
    value: str
    quality: int | None
    source: str
    metadata: dict[str, Any]
    created_at: datetime
    withdrawn_at: datetime | None
    submitted_by: str | None = None
    #: A derivative entry's signature (signals.keypoints); None for every other signal.
    payload: bytes | None = dataclasses.field(default=None, repr=False)

    def to_dict(self, *, with_payload: bool = False) -> dict[str, Any]:
        out = {
            "entry_id": self.id,
            "bank": self.bank,
            "signal": self.signal_type,
            "value": self.value,
            "quality": self.quality,
            "source": self.source,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "submitted_by": self.submitted_by,
        }
        if with_payload and self.payload is not None:
            out["signature"] = base64.b64encode(self.payload).decode("ascii")
        return out


@dataclasses.dataclass(frozen=True)
class NewEntry:
    signal_type: str
    value: str
    quality: int | None = None
    source: str = "hashes"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    withdrawn_at: datetime | None = None
    #: The binary signature of a `derivative` entry (its value is the signature's SHA-256).
    payload: bytes | None = None


@dataclasses.dataclass(frozen=True)
class AddResult:
    entry_id: int
    signal_type: str
    status: Literal["created", "existing", "reinstated", "withdrawn"]


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to what can match. `op` is add, withdraw, bank_create, bank_update or
    bank_delete; for an
    add, the entry's signal as it is now (None if it is gone since)."""

    seq: int
    op: str
    bank: str
    entry_id: int | None
    signal_type: str | None = None
    value: str | None = None
    quality: int | None = None
    withdrawn: bool = False


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    action: str
    bank: str | None
    entry_id: int | None
    detail: dict[str, Any]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _check_threshold(threshold: int) -> None:
    if not 0 <= threshold <= 128:
        raise InputError(
            f"a PDQ threshold is 0-128 bits, not {threshold}", code="invalid_threshold"
        )


def _check_tenants(tenants: list[str]) -> list[str]:
    for tenant in tenants:
        if not isinstance(tenant, str) or not _TENANT.match(tenant):
            raise InputError(
                "a tenant name is 1-100 letters, digits, '.', '_' or '-', starting with a letter"
                f" or digit; got {str(tenant)[:120]!r}",
                code="invalid_tenant",
            )
    return list(dict.fromkeys(tenants))


def _engine_for(url: str) -> Engine:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            try:
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the store's folder: {exc}") from exc
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE: two writers then queue on
            # the busy timeout instead of failing with "database is locked" on upgrade.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            read_only = connection.get_execution_options().get("counterfake_read_only")
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Driver errors become DatabaseError at the store's boundary."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"the store failed: {exc.__class__.__name__}: {exc}") from exc


class Store:
    """Banks, entries and audit log over one database. Open with `Store.open()`."""

    def __init__(self, engine: Engine, *, default_threshold: int = 31) -> None:
        self._engine = engine
        self._default_threshold = default_threshold

    @classmethod
    def open(cls, url: str | None = None, *, settings: Settings | None = None) -> Store:
        """Open (creating and migrating if needed) the store named by `url` or the settings."""
        settings = settings or load_settings()
        engine = _engine_for(url or settings.resolved_database_url)
        store = cls(engine, default_threshold=settings.pdq_threshold)
        with _translated():
            store._migrate()
        return store

    @property
    def keys(self) -> KeyRing:
        """API keys for the service."""
        from .keys import KeyRing

        return KeyRing(self)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self._engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(724011)")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    # banks ---------------------------------------------------------------------------------

    def create_bank(
        self,
        name: str,
        *,
        description: str = "",
        threshold: int | None = None,
        tenant: str = DEFAULT_TENANT,
        shared_with: Iterable[str] = (),
    ) -> Bank:
        """A new empty bank owned by `tenant`, matchable by the tenants in `shared_with`."""
        if not _BANK_NAME.match(name):
            raise InputError(
                "a bank name is 1-100 letters, digits, '.', '_' or '-', starting with a letter"
                f" or digit; got {name[:120]!r}",
                code="invalid_bank_name",
            )
        threshold = self._default_threshold if threshold is None else threshold
        _check_threshold(threshold)
        shares = _check_tenants([tenant, *shared_with])[1:]
        with _translated(), self._engine.begin() as conn:
            exists = conn.execute(sa.select(banks.c.id).where(banks.c.name == name)).first()
            if exists:
                raise ConflictError(f"bank {name!r} already exists", code="bank_exists", bank=name)
            bank_id = conn.execute(
                banks.insert()
                .values(
                    name=name,
                    description=description,
                    pdq_threshold=threshold,
                    created_at=_now(),
                    tenant=tenant,
                )
                .returning(banks.c.id)
            ).scalar_one()
            for other in shares:
                conn.execute(bank_shares.insert().values(bank_id=bank_id, tenant=other))
            self._audit(
                conn,
                "bank_created",
                bank=name,
                detail={"pdq_threshold": threshold, "tenant": tenant, "shared_with": shares},
            )
            self._change(conn, "bank_create", name)
        return self.get_bank(name)

    def update_bank(
        self,
        name: str,
        *,
        description: str | None = None,
        threshold: int | None = None,
        shared_with: Iterable[str] | None = None,
    ) -> Bank:
        """Change what a bank says, its threshold, or who may match against it."""
        if threshold is not None:
            _check_threshold(threshold)
        shares = None if shared_with is None else _check_tenants(list(shared_with))
        with _translated(), self._engine.begin() as conn:
            bank_id = self._bank_id(conn, name)
            values: dict[str, Any] = {}
            if description is not None:
                values["description"] = description
            if threshold is not None:
                values["pdq_threshold"] = threshold
            if values:
                conn.execute(banks.update().where(banks.c.id == bank_id).values(**values))
            if shares is not None:
                conn.execute(bank_shares.delete().where(bank_shares.c.bank_id == bank_id))
                for other in shares:
                    conn.execute(bank_shares.insert().values(bank_id=bank_id, tenant=other))
                values["shared_with"] = shares
            self._audit(conn, "bank_updated", bank=name, detail=values)
            self._change(conn, "bank_update", name)
        return self.get_bank(name)

    def list_banks(self, *, counts: bool = True, tenant: str | None = None) -> list[Bank]:
        """Banks by name (those `tenant` owns, if given); `counts=False` skips counting entries
        (a scan of each bank)."""
        query = sa.select(banks).order_by(banks.c.name)
        if tenant is not None:
            query = query.where(banks.c.tenant == tenant)
        with _translated(), self._read() as conn:
            return [
                self._bank_from_row(conn, row, counts=counts) for row in conn.execute(query).all()
            ]

    def get_bank(self, name: str) -> Bank:
        with _translated(), self._read() as conn:
            row = conn.execute(sa.select(banks).where(banks.c.name == name)).first()
            if row is None:
                raise NotFoundError(f"no bank named {name!r}", code="bank_not_found", bank=name)
            return self._bank_from_row(conn, row)

    def delete_bank(self, name: str) -> None:
        """Delete a bank and all its entries; the audit log keeps that it happened."""
        with _translated(), self._engine.begin() as conn:
            bank_id = self._bank_id(conn, name)
            count = conn.execute(
                sa.select(sa.func.count()).where(entries.c.bank_id == bank_id)
            ).scalar_one()
            conn.execute(entries.delete().where(entries.c.bank_id == bank_id))
            conn.execute(banks.delete().where(banks.c.id == bank_id))
            self._audit(conn, "bank_deleted", bank=name, detail={"entries": count})
            self._change(conn, "bank_delete", name)

    # entries -------------------------------------------------------------------------------

    def add_entries(
        self, bank: str, new_entries: Iterable[NewEntry], *, submitted_by: str | None = None
    ) -> list[AddResult]:
        """Add signals to a bank in one transaction. Adding a value again changes nothing;
        adding a withdrawn value again reinstates it (unless the new entry is itself withdrawn).
        `submitted_by` (an API key id) is kept on new entries: who may withdraw them.
        """
        prepared = [
            dataclasses.replace(e, value=get_signal_type(e.signal_type).normalize(e.value))
            for e in new_entries
        ]
        for entry in prepared:
            if (get_signal_type(entry.signal_type).kind == "local") != (entry.payload is not None):
                raise InputError(
                    f"a {entry.signal_type} entry {'needs' if entry.payload is None else 'has no'}"
                    " signature payload",
                    code="invalid_signature",
                )
        results: list[AddResult] = []
        with _translated(), self._engine.begin() as conn:
            bank_id = self._bank_id(conn, bank)
            insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            for entry in prepared:
                now = _now()
                row = conn.execute(
                    insert(entries)
                    .values(
                        bank_id=bank_id,
                        signal_type=entry.signal_type,
                        value=entry.value,
                        quality=entry.quality,
                        source=entry.source,
                        metadata=entry.metadata,
                        created_at=now,
                        withdrawn_at=entry.withdrawn_at,
                        submitted_by=submitted_by,
                    )
                    .on_conflict_do_nothing(index_elements=["bank_id", "signal_type", "value"])
                    .returning(entries.c.id)
                ).first()
                if row is not None:
                    status: Literal["created", "existing", "reinstated", "withdrawn"] = (
                        "withdrawn" if entry.withdrawn_at else "created"
                    )
                    if entry.payload is not None:
                        conn.execute(
                            signatures.insert().values(entry_id=row.id, data=entry.payload)
                        )
                    results.append(AddResult(row.id, entry.signal_type, status))
                    if status == "created":
                        self._change(conn, "add", bank, row.id)
                    continue
                existing = conn.execute(
                    sa.select(entries.c.id, entries.c.withdrawn_at).where(
                        entries.c.bank_id == bank_id,
                        entries.c.signal_type == entry.signal_type,
                        entries.c.value == entry.value,
                    )
                ).one()
                if existing.withdrawn_at is not None and entry.withdrawn_at is None:
                    conn.execute(
                        entries.update()
                        .where(entries.c.id == existing.id)
                        .values(withdrawn_at=None)
                    )
                    results.append(AddResult(existing.id, entry.signal_type, "reinstated"))
                    self._change(conn, "add", bank, existing.id)
                elif existing.withdrawn_at is None and entry.withdrawn_at is not None:
                    conn.execute(
                        entries.update()
                        .where(entries.c.id == existing.id)
                        .values(withdrawn_at=entry.withdrawn_at)
                    )
                    results.append(AddResult(existing.id, entry.signal_type, "withdrawn"))
                    self._change(conn, "withdraw", bank, existing.id)
                else:
                    results.append(AddResult(existing.id, entry.signal_type, "existing"))
            counts: dict[str, Any] = {}
            for result in results:
                counts[result.status] = counts.get(result.status, 0) + 1
            if submitted_by:
                counts["submitted_by"] = submitted_by
            self._audit(conn, "entries_added", bank=bank, detail=counts)
        return results

    def withdraw(self, bank: str, entry_id: int) -> Entry:
        """Withdraw an entry: from this commit on it never matches. Withdrawing twice is a no-op."""
        with _translated(), self._engine.begin() as conn:
            bank_id = self._bank_id(conn, bank)
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
                    entries.update().where(entries.c.id == entry_id).values(withdrawn_at=_now())
                )
                self._audit(conn, "entry_withdrawn", bank=bank, entry_id=entry_id, detail={})
                self._change(conn, "withdraw", bank, entry_id)
        return self.get_entry(entry_id)

    def get_entry(self, entry_id: int) -> Entry:
        with _translated(), self._read() as conn:
            row = conn.execute(self._entry_select().where(entries.c.id == entry_id)).first()
        if row is None:
            raise NotFoundError(f"no entry {entry_id}", code="entry_not_found", entry_id=entry_id)
        return self._entry_from_row(row)

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
        with _translated(), self._read() as conn:
            bank_id = self._bank_id(conn, bank)
            query = self._entry_select().where(entries.c.bank_id == bank_id, entries.c.id > after)
            if signal_type is not None:
                query = query.where(entries.c.signal_type == signal_type)
            if source is not None:
                query = query.where(entries.c.source == source)
            if withdrawn is not None:
                column = entries.c.withdrawn_at
                query = query.where(column.is_not(None) if withdrawn else column.is_(None))
            rows = conn.execute(query.order_by(entries.c.id).limit(limit))
            return [self._entry_from_row(row) for row in rows]

    def iter_entries(
        self,
        bank: str,
        *,
        include_withdrawn: bool = False,
        signal_type: str | None = None,
    ) -> Iterator[Entry]:
        """Entries of a bank in id order, streamed."""
        with _translated(), self._read() as conn:
            bank_id = self._bank_id(conn, bank)
            query = self._entry_select().where(entries.c.bank_id == bank_id)
            if not include_withdrawn:
                query = query.where(entries.c.withdrawn_at.is_(None))
            if signal_type is not None:
                query = query.where(entries.c.signal_type == signal_type)
            result = conn.execution_options(yield_per=2000).execute(query.order_by(entries.c.id))
            for row in result:
                yield self._entry_from_row(row)

    def active_columns(
        self, bank: str, *, size: int = 200_000
    ) -> Iterator[tuple[str, list[int], list[str], list[int | None]]]:
        """A bank's active entries as (signal type, ids, values, qualities) chunks, in no
        particular order: how an index loads millions of entries quickly."""
        # `bank_id + 0` keeps the planner off the (bank, type, value) index: loading a whole bank
        # is fastest as one sequential scan, not ten million lookups in index order.
        marker = "%(bank_id)s" if self.dialect == "postgresql" else ":bank_id"
        sql = (
            "SELECT signal_type, id, value, quality FROM entries"
            f" WHERE bank_id + 0 = {marker} AND withdrawn_at IS NULL"
        )
        with _translated(), self._read() as conn:
            bank_id = self._bank_id(conn, bank)
            # The driver's own cursor: millions of SQLAlchemy rows would cost more than the scan.
            raw: Any = conn.connection.driver_connection
            if self.dialect == "postgresql":
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

    def signatures(
        self, bank: str, entry_ids: Iterable[int] | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """(entry id, signature) of a bank's active `derivative` entries (or of those ids)."""
        query = (
            sa.select(signatures.c.entry_id, signatures.c.data)
            .join(entries, entries.c.id == signatures.c.entry_id)
            .where(entries.c.withdrawn_at.is_(None))
        )
        if entry_ids is not None:
            query = query.where(signatures.c.entry_id.in_(list(entry_ids)))
        with _translated(), self._read() as conn:
            bank_id = self._bank_id(conn, bank)
            result = conn.execution_options(yield_per=1000).execute(
                query.where(entries.c.bank_id == bank_id)
            )
            for row in result:
                yield int(row.entry_id), bytes(row.data)

    def last_change(self) -> int:
        """The newest change's sequence number (0 when there is none)."""
        with _translated(), self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(changes.c.seq))).scalar() or 0)

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """Changes after `seq`, oldest first. Under concurrent writers a lower number can
        commit after a higher one: followers re-read a window (see matching.Matcher)."""
        query = (
            sa.select(
                changes.c.seq,
                changes.c.op,
                changes.c.bank,
                changes.c.entry_id,
                entries.c.signal_type,
                entries.c.value,
                entries.c.quality,
                entries.c.withdrawn_at,
            )
            .outerjoin(entries, entries.c.id == changes.c.entry_id)
            .where(changes.c.seq > seq)
            .order_by(changes.c.seq)
            .limit(limit)
        )
        with _translated(), self._read() as conn:
            return [
                Change(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7] is not None)
                for r in conn.execute(query)
            ]

    def audit_events(self, *, limit: int = 100) -> list[AuditEvent]:
        """The latest audit events, newest first."""
        with _translated(), self._read() as conn:
            rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            return [
                AuditEvent(r.id, _utc(r.at) or r.at, r.action, r.bank, r.entry_id, r.detail)
                for r in rows
            ]

    # internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(counterfake_read_only=True)
            yield conn

    def _bank_id(self, conn: Connection, name: str) -> int:
        bank_id = conn.execute(sa.select(banks.c.id).where(banks.c.name == name)).scalar()
        if bank_id is None:
            raise NotFoundError(f"no bank named {name!r}", code="bank_not_found", bank=name)
        return int(bank_id)

    def _bank_from_row(self, conn: Connection, row: Any, *, counts: bool = True) -> Bank:
        shared = conn.execute(
            sa.select(bank_shares.c.tenant)
            .where(bank_shares.c.bank_id == row.id)
            .order_by(bank_shares.c.tenant)
        ).scalars()
        active = withdrawn = 0
        if counts:
            counted = conn.execute(
                sa.select(
                    sa.func.count().filter(entries.c.withdrawn_at.is_(None)),
                    sa.func.count().filter(entries.c.withdrawn_at.is_not(None)),
                ).where(entries.c.bank_id == row.id)
            ).one()
            active, withdrawn = int(counted[0]), int(counted[1])
        return Bank(
            id=row.id,
            name=row.name,
            description=row.description,
            pdq_threshold=row.pdq_threshold,
            created_at=_utc(row.created_at) or row.created_at,
            active_entries=active,
            withdrawn_entries=withdrawn,
            tenant=row.tenant,
            shared_with=tuple(shared),
        )

    @staticmethod
    def _entry_select() -> sa.Select[Any]:
        return (
            sa.select(entries, banks.c.name.label("bank_name"), signatures.c.data.label("payload"))
            .join(banks, banks.c.id == entries.c.bank_id)
            .outerjoin(signatures, signatures.c.entry_id == entries.c.id)
        )

    @staticmethod
    def _entry_from_row(row: Any) -> Entry:
        return Entry(
            id=row.id,
            bank=row.bank_name,
            signal_type=row.signal_type,
            value=row.value,
            quality=row.quality,
            source=row.source,
            metadata=dict(row.metadata or {}),
            created_at=_utc(row.created_at) or row.created_at,
            withdrawn_at=_utc(row.withdrawn_at),
            submitted_by=row.submitted_by,
            payload=bytes(row.payload) if row.payload is not None else None,
        )

    @staticmethod
    def _change(conn: Connection, op: str, bank: str, entry_id: int | None = None) -> None:
        conn.execute(changes.insert().values(at=_now(), op=op, bank=bank, entry_id=entry_id))

    @staticmethod
    def _audit(
        conn: Connection,
        action: str,
        *,
        bank: str | None = None,
        entry_id: int | None = None,
        detail: dict[str, Any],
    ) -> None:
        conn.execute(
            audit_log.insert().values(
                at=_now(), action=action, bank=bank, entry_id=entry_id, detail=detail
            )
        )
