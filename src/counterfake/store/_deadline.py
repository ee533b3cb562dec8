"""A deadline of our own on every PostgreSQL call. `statement_timeout` is enforced by the
server and keepalives by the peer's kernel, so a database process that stops answering (frozen,
swapped out) or a half-dead proxy in front of it, whose kernel still acknowledges, would hold a
request forever. Each wait of the driver for the server (a statement, a commit, a page of a
streamed read, the pool's ping) is given a time limit; past it the connection is closed and
the call fails as a lost connection: the request is answered `503 store_unavailable`.

The limit sits in psycopg's one waiting function rather than in SQLAlchemy's statement events:
any of those events takes SQLAlchemy off its fast path (a sixth of single-signal adds a
second, `benchmarks/deadline.py`), and they do not see commits or a streamed read's pages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import errors
from sqlalchemy.engine import Engine

log = logging.getLogger("counterfake")

#: Past `statement_timeout` the server cancels the statement itself; this much later still
#: unanswered, the server is not answering at all.
GRACE = 5.0

#: The pool's ping (an empty statement) of a connection it hands out. A live server answers it
#: in milliseconds; a false alarm costs one new connection, while the ping's failure is
#: followed by a connect attempt (up to 5 s) within the same request.
PING = 2.0


class _Connection(psycopg.Connection[Any]):
    """psycopg's connection, each wait for the server limited to `deadline` seconds (0: none)."""

    deadline: float = 0.0

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is None and self.deadline > 0:
            try:
                return super().wait(gen, interval, self.deadline)
            except errors._WaitTimeout:  # psycopg's own, raised by its waiting function
                log.warning(
                    "a database call went unanswered for %.0f s; its connection was closed",
                    self.deadline,
                )
                self.close()  # mid-protocol: nothing more can be sent on it
                raise
        return super().wait(gen, interval, timeout)


def install(engine: Engine, statement_timeout: float) -> None:
    """Give every call on `engine` (PostgreSQL) `statement_timeout` + GRACE seconds, the pool's
    ping PING; none when `statement_timeout` is 0 (no limit)."""
    if statement_timeout <= 0:
        return
    seconds = statement_timeout + GRACE

    @sa.event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> _Connection:
        connection = _Connection.connect(*cargs, **cparams)
        connection.deadline = seconds
        return connection

    ping = engine.dialect.do_ping  # the pool's ping goes to the dialect without any event

    def do_ping(dbapi_connection: Any) -> bool:
        with limited(dbapi_connection, PING):
            return ping(dbapi_connection)

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]


@contextlib.contextmanager
def limited(dbapi_connection: Any, seconds: float) -> Iterator[None]:
    """Another deadline for the calls within (0: none; migrations build indexes)."""
    if not isinstance(dbapi_connection, _Connection):
        yield
        return
    before, dbapi_connection.deadline = dbapi_connection.deadline, seconds
    try:
        yield
    finally:
        dbapi_connection.deadline = before
