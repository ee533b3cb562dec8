"""A deadline of our own on every PostgreSQL call. `statement_timeout` is enforced by the
server and keepalives by the peer's kernel, so a database process that stops answering (frozen,
swapped out) or a half-dead proxy in front of it, whose kernel still acknowledges, holds a
request forever. A watchdog thread shuts down the socket of a connection still waiting on one
call past its deadline: the driver then fails at once, and the request is answered
`503 store_unavailable`."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger("counterfake")

#: Past `statement_timeout` the server cancels the statement itself; this much later still
#: unanswered, the server is not answering at all.
GRACE = 5.0

#: The pool's ping (SELECT 1) of a connection it hands out. A live server answers it in
#: milliseconds; a false alarm costs one new connection, while the ping's failure is followed by
#: a connect attempt (up to 5 s) within the same request.
PING = 2.0

#: An execution option that exempts a connection (migrations build indexes without a limit).
EXEMPT = "counterfake_no_deadline"


class _Watchdog:
    """Armed connections by id: (deadline, socket fd, the DBAPI connection). One per engine."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._armed: dict[int, tuple[float, int, Any]] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self, dbapi_connection: Any, seconds: float | None = None) -> None:
        try:
            fd = dbapi_connection.pgconn.socket
        except Exception:  # already closed: the driver reports it
            return
        with self._wake:
            if not self._armed:
                self._wake.notify()
            self._armed[id(dbapi_connection)] = (
                time.monotonic() + (seconds or self._seconds),
                fd,
                dbapi_connection,
            )
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._watch, name="counterfake-store-deadline", daemon=True
                )
                self._thread.start()

    def disarm(self, dbapi_connection: Any) -> None:
        with self._wake:
            self._armed.pop(id(dbapi_connection), None)

    def _watch(self) -> None:
        with self._wake:
            while True:
                if not self._armed:
                    self._wake.wait()
                    continue
                now = time.monotonic()
                for key, (deadline, fd, dbapi_connection) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[key]
                        _cut_if_waiting(dbapi_connection, fd)
                earliest = min((d for d, _, _ in self._armed.values()), default=now + 60)
                self._wake.wait(timeout=max(0.05, earliest - now))


def _cut_if_waiting(dbapi_connection: Any, fd: int) -> None:
    """Shut the socket down if a command is still in progress on it (called with the lock
    held, so the connection cannot be closed and its fd reused meanwhile)."""
    try:
        from psycopg.pq import TransactionStatus

        if dbapi_connection.pgconn.transaction_status != TransactionStatus.ACTIVE:
            return  # answered; only the disarming event has not come yet
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # closed meanwhile: nothing left to cut
        return
    log.warning("a database call went unanswered past its deadline; its connection was closed")


def install(engine: Engine, statement_timeout: float) -> None:
    """Give every call on `engine` (PostgreSQL) `statement_timeout` + GRACE seconds; none
    when `statement_timeout` is 0 (no limit)."""
    if statement_timeout <= 0:
        return
    watchdog = _Watchdog(statement_timeout + GRACE)

    def exempt(conn: sa.Connection) -> bool:
        return bool(conn.get_execution_options().get(EXEMPT))

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn: sa.Connection, cursor: Any, *_: Any) -> None:
        if not exempt(conn):
            watchdog.arm(cursor.connection)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn: sa.Connection, cursor: Any, *_: Any) -> None:
        watchdog.disarm(cursor.connection)

    @sa.event.listens_for(engine, "handle_error")
    def _failed(context: sa.engine.ExceptionContext) -> None:
        # (`context.cursor` is never set by SQLAlchemy 2.1; the execution context has it.)
        cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:  # else the pool's events disarm it
            watchdog.disarm(cursor.connection)

    # COMMIT and ROLLBACK are sent without a cursor: armed here, disarmed at the next statement
    # or when the connection goes back to the pool (a command no longer in progress is left).
    @sa.event.listens_for(engine, "commit")
    @sa.event.listens_for(engine, "rollback")
    def _ending(conn: sa.Connection) -> None:
        # An invalidated connection has nothing to send (and `.connection` would reconnect).
        if not (conn.invalidated or conn.closed or exempt(conn)):
            watchdog.arm(conn.connection.dbapi_connection)

    # The pool's ping of a connection it hands out goes to the dialect without any event.
    ping = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        watchdog.arm(dbapi_connection, PING)
        try:
            return ping(dbapi_connection)
        finally:
            watchdog.disarm(dbapi_connection)

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]

    def _released(dbapi_connection: Any, *_: Any) -> None:
        watchdog.disarm(dbapi_connection)

    for name in ("checkin", "invalidate", "close", "close_detached", "detach"):
        sa.event.listen(engine, name, _released)
