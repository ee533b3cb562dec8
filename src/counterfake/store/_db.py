"""The one small database handle every part of the store works through: engine set-up for
SQLite and PostgreSQL, transactions, driver errors translated, and the two writes every change
makes in its own transaction (the change log and the audit log)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own lock only
    fcntl = None  # type: ignore[assignment]
from sqlalchemy.engine import Connection, Engine

from ..errors import DatabaseError, InputError, NotFoundError, UnavailableError
from . import _deadline
from .schema import audit_log, banks, changes

# Statements every write runs, built once: SQLAlchemy then skips building and keying them (most
# of the cost of a one-signal add).
_BANK_ID: Final = sa.select(banks.c.id).where(banks.c.name == sa.bindparam("name"))
_CHANGE: Final = changes.insert().values(
    {c: sa.bindparam(c) for c in ("at", "op", "bank", "entry_id")}
)
_AUDIT: Final = audit_log.insert().values(
    {c: sa.bindparam(c) for c in ("at", "action", "bank", "entry_id", "detail")}
)
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_MIGRATIONS: Final = Path(__file__).parent / "migrations"
log = logging.getLogger("counterfake")


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str, *, what: str, code: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"a {what} name is 1-100 letters, digits, '.', '_' or '-', starting with a letter"
            f" or digit; got {str(name)[:120]!r}",
            code=code,
        )
    return name


def check_tenants(tenants: list[str]) -> list[str]:
    for tenant in tenants:
        check_name(tenant, what="tenant", code="invalid_tenant")
    return list(dict.fromkeys(tenants))


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Driver errors become ours at the store's boundary: `store_unavailable` when the database
    cannot be reached (retry), `store_full` when its disk is full, DatabaseError otherwise."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        if _unreachable(exc):
            raise UnavailableError(
                "the database cannot be reached; retry shortly", code="store_unavailable"
            ) from exc
        if _canceled(exc):
            raise UnavailableError(
                "the database did not answer within the statement timeout; retry shortly",
                code="store_timeout",
            ) from exc
        if _full(exc):
            raise DatabaseError(
                "the store's disk is full: nothing more can be written", code="store_full"
            ) from exc
        # Of no known kind: named by the driver's class and SQLSTATE only, in the log and in
        # the answer. The driver's text can quote the statement's parameters or a value of
        # them (keys' digests, signatures), so it goes nowhere.
        driver = getattr(exc, "orig", None) or exc
        kind = f"{type(driver).__module__}.{type(driver).__name__}"
        sqlstate = getattr(driver, "sqlstate", None)
        code = f"SQLSTATE {sqlstate}" if sqlstate else getattr(driver, "sqlite_errorname", "")
        log.warning("a store call failed: %s (%s)", kind, code or "no code")
        raise DatabaseError(f"the store failed: {kind} ({code or 'no code'})") from exc


def _unreachable(exc: sa.exc.SQLAlchemyError) -> bool:
    """Refused, lost mid-statement, shutting down, or no pooled connection came free in
    time: the database, not the statement, is the trouble."""
    if isinstance(exc, sa.exc.TimeoutError):
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not type(exc.orig).__module__.startswith("psycopg"):
        return False
    state = getattr(exc.orig, "sqlstate", None)
    # No state: the connection itself failed; 08: connection exception; 57P: the server is
    # shutting down or starting up.
    connection = state is None or state.startswith(("08", "57P"))
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and connection


def _canceled(exc: sa.exc.SQLAlchemyError) -> bool:
    """PostgreSQL canceled a statement that ran past `statement_timeout` (or waited on a lock
    that long)."""
    return getattr(getattr(exc, "orig", None), "sqlstate", "") == "57014"


def _full(exc: sa.exc.SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    return (
        getattr(orig, "sqlite_errorname", "") == "SQLITE_FULL"
        or getattr(orig, "sqlstate", "") == "53100"  # PostgreSQL: disk_full
    )


def _engine_for(url: str, statement_timeout: float = 0.0) -> Engine:
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
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            # Deleted content is overwritten, not left in free pages: a purged review image
            # must be gone from the file.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            read_only = connection.get_execution_options().get("counterfake_read_only")
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # A database that went away fails a request within seconds instead of hanging: connecting
    # gives up after 5 s, a dead peer is found by keepalives within about 25 s (or once 20 s
    # of sent data go unacknowledged), a request waits at most 10 s for a pooled connection,
    # a statement that runs (or waits on a lock) past `statement_timeout` is canceled, and a
    # call still unanswered 5 s after that has its connection closed by us (`_deadline`).
    connect_args: dict[str, Any] = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 20_000,
    }
    if statement_timeout > 0:
        connect_args["options"] = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
    engine = sa.create_engine(url, pool_pre_ping=True, pool_timeout=10, connect_args=connect_args)
    _deadline.install(engine, statement_timeout)
    return engine


#: SQLite: past this size the write-ahead log is checkpointed and truncated by a writer (every
#: WAL_CHECK_EVERY write transactions it looks). SQLite's own checkpoints cannot restart the log
#: while readers overlap without a break (a busy service), and it then grows without bound.
WAL_LIMIT = 64 * 1024 * 1024
WAL_CHECK_EVERY = 200


class _WriterLock:
    """SQLite allows one writer at a time, and a writer that finds the database locked sleeps
    in steps of up to 100 ms before it tries again: under steady writes from several worker
    processes most of the time goes to sleeping. Writers of this store queue on an advisory
    file lock instead (and on a thread lock within a process), and each wakes the moment the
    one before it commits. Other programs writing the file still meet SQLite's own lock."""

    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + ".writer-lock")
        self._threads = threading.Lock()
        self._file: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self._file is None:
                try:
                    self._file = open(self._path, "a+b")  # noqa: SIM115 (kept open)
                except OSError:  # a read-only folder: SQLite's own lock only
                    self._file = False
            if not self._file:
                yield
                return
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)


class Database:
    """An engine and the few things every concern of the store does with it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer: _WriterLock | None = None
        self._wal: Path | None = None
        self._writes = 0
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        if path and path != ":memory:":
            self._wal = Path(path).expanduser().with_name(Path(path).name + "-wal")
            if fcntl is not None:
                self._writer = _WriterLock(Path(path).expanduser())

    @classmethod
    def connect(cls, url: str, *, statement_timeout: float = 0.0) -> Database:
        """`statement_timeout` (seconds, PostgreSQL; 0: none) cancels a statement that runs
        longer: a request then fails with `store_timeout` instead of holding its worker."""
        return cls(_engine_for(url, statement_timeout))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision. A store already there is recognised with
        one query, without loading Alembic (a fifth of a CLI command's start-up)."""
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with (
            translated(),
            self.engine.begin() as connection,
            _deadline.limited(connection.connection.dbapi_connection, 0),  # index builds
        ):
            if self.dialect == "postgresql":
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(724011)")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _at_head(self) -> bool:
        head = max(p.name.split("_", 1)[0] for p in (_MIGRATIONS / "versions").glob("0*.py"))
        try:
            with self.engine.connect() as conn:
                conn.execution_options(counterfake_read_only=True)
                found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except sa.exc.SQLAlchemyError:
            return False  # a new store, or an unreachable one: Alembic reports it
        return [row[0] for row in found] == [head]

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction (BEGIN IMMEDIATE on SQLite), driver errors translated."""
        if self._writer is None:
            with translated(), self.engine.begin() as conn:
                yield conn
            return
        with self._writer.held():
            with translated(), self.engine.begin() as conn:
                yield conn
            self._writes += 1
            if self._writes % WAL_CHECK_EVERY == 0:
                self._bound_wal()

    def scrub(self) -> None:
        """SQLite: checkpoint and truncate the write-ahead log now, so that content just
        deleted (overwritten in the database by secure_delete) is not left in older WAL frames.
        PostgreSQL reclaims deleted rows by VACUUM."""
        if self._wal is None:
            return
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()
        except Exception as exc:  # the size bound checkpoints it later
            log.warning("checkpointing the write-ahead log failed: %s", exc)
        finally:
            raw.close()

    def _bound_wal(self) -> None:
        """Checkpoint and truncate an oversized write-ahead log (between writes: the writer
        lock is held). Readers are waited for a second at most; if they outlast it, the next
        look tries again."""
        try:
            if self._wal is None or self._wal.stat().st_size <= WAL_LIMIT:
                return
            raw = self.engine.raw_connection()
        except (OSError, sa.exc.SQLAlchemyError):
            return
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA busy_timeout=1000")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()
        except Exception as exc:  # the next look tries again
            log.warning("checkpointing the write-ahead log failed: %s", exc)
        finally:
            raw.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with translated(), self.engine.connect() as conn:
            conn.execution_options(counterfake_read_only=True)
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def bank_id(conn: Connection, name: str) -> int:
        bank_id = conn.execute(_BANK_ID, {"name": name}).scalar()
        if bank_id is None:
            raise NotFoundError(f"no bank named {name!r}", code="bank_not_found", bank=name)
        return int(bank_id)

    @staticmethod
    def change(conn: Connection, op: str, bank: str, entry_id: int | None = None) -> None:
        """Append to the change log that every index follows."""
        conn.execute(_CHANGE, {"at": now(), "op": op, "bank": bank, "entry_id": entry_id})

    @staticmethod
    def audit(
        conn: Connection,
        action: str,
        *,
        bank: str | None = None,
        entry_id: int | None = None,
        detail: dict[str, Any],
    ) -> None:
        conn.execute(
            _AUDIT,
            {"at": now(), "action": action, "bank": bank, "entry_id": entry_id, "detail": detail},
        )
