"""Exchanges: sources the service fetches signals from on a schedule. One worker fetches a
given exchange at a time (a lease in the row, so any number of workers can share the
schedule), its cursor advances only after a page is applied, and a failing source is retried
with exponential backoff. The credential is read only by `exchange_credential`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa

from ..errors import ConflictError, NotFoundError
from ..model import Exchange
from ._db import check_name, now, utc
from ._part import Part
from .schema import banks, entries, exchange_credentials, exchanges

__all__ = ["Exchanges"]

#: The longest wait between attempts on a failing exchange.
_BACKOFF_CAP: Final = 300.0


def _exchange(row: Any) -> Exchange:
    at = now()
    return Exchange(
        name=row.name,
        type=row.type,
        bank=row.bank,
        config=dict(row.config),
        has_credential=row.credential is not None,
        cursor=row.cursor,
        interval_seconds=float(row.interval_seconds),
        created_at=utc(row.created_at) or row.created_at,
        next_fetch_at=utc(row.next_fetch_at) or row.next_fetch_at,
        last_fetch_at=utc(row.last_fetch_at),
        last_success_at=utc(row.last_success_at),
        last_error=row.last_error,
        failures=int(row.failures),
        applied=int(row.applied),
        enabled=bool(row.enabled),
        fetching=(utc(row.lease_until) or at) > at,
        last_complete_at=utc(row.last_complete_at),
    )


_SELECT: Final = sa.select(
    exchanges.c.name,
    exchanges.c.type,
    banks.c.name.label("bank"),
    exchanges.c.config,
    exchanges.c.credential,
    exchanges.c.cursor,
    exchanges.c.interval_seconds,
    exchanges.c.created_at,
    exchanges.c.next_fetch_at,
    exchanges.c.last_fetch_at,
    exchanges.c.last_success_at,
    exchanges.c.last_error,
    exchanges.c.failures,
    exchanges.c.applied,
    exchanges.c.enabled,
    exchanges.c.lease_until,
    exchanges.c.last_complete_at,
).join(banks, banks.c.id == exchanges.c.bank_id)


class Exchanges(Part):
    """The store's exchanges (a part of `Store`)."""

    def add_exchange(
        self,
        name: str,
        *,
        type: str,
        bank: str,
        config: dict[str, Any],
        credential: str | None,
        interval_seconds: float,
    ) -> Exchange:
        check_name(name.partition(":")[2] or name, what="exchange", code="invalid_exchange_name")
        at = now()
        with self._db.write() as conn:
            if conn.execute(sa.select(exchanges.c.name).where(exchanges.c.name == name)).first():
                raise ConflictError(f"exchange {name!r} exists", code="exchange_exists")
            conn.execute(
                exchanges.insert().values(
                    name=name,
                    type=type,
                    bank_id=self._db.bank_id(conn, bank),
                    config=config,
                    credential=credential,
                    cursor="",
                    interval_seconds=interval_seconds,
                    created_at=at,
                    next_fetch_at=at,
                )
            )
            self._db.audit(
                conn, "exchange_added", bank=bank, detail={"exchange": name, "type": type}
            )
        return self.get_exchange(name)

    def get_exchange(self, name: str) -> Exchange:
        with self._db.read() as conn:
            row = conn.execute(_SELECT.where(exchanges.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no exchange named {name!r}", code="exchange_not_found")
        return _exchange(row)

    def list_exchanges(self, *, tenant: str | None = None) -> list[Exchange]:
        """Every exchange, or those that fetch into `tenant`'s banks."""
        query = _SELECT.order_by(exchanges.c.name)
        if tenant is not None:
            query = query.where(banks.c.tenant == tenant)
        with self._db.read() as conn:
            return [_exchange(r) for r in conn.execute(query)]

    def enable_exchange(self, name: str, enabled: bool) -> Exchange:
        """Resume or pause an exchange's scheduled fetches (a paused one keeps its cursor)."""
        with self._db.write() as conn:
            changed = conn.execute(
                exchanges.update().where(exchanges.c.name == name).values(enabled=enabled)
            ).rowcount
            if not changed:
                raise NotFoundError(f"no exchange named {name!r}", code="exchange_not_found")
            self._db.audit(
                conn,
                "exchange_resumed" if enabled else "exchange_paused",
                detail={"exchange": name},
            )
        return self.get_exchange(name)

    def set_type_credential(
        self, tenant: str, type: str, credential: str | None, config: dict[str, Any]
    ) -> None:
        """Set (or, with None, clear) `tenant`'s credential for its exchanges of `type` that
        have none of their own."""
        where = (exchange_credentials.c.tenant == tenant, exchange_credentials.c.type == type)
        with self._db.write() as conn:
            conn.execute(exchange_credentials.delete().where(*where))
            if credential is not None:
                conn.execute(
                    exchange_credentials.insert().values(
                        tenant=tenant, type=type, credential=credential, config=config
                    )
                )
            self._db.audit(
                conn,
                "exchange_credential_set" if credential else "exchange_credential_cleared",
                detail={"tenant": tenant, "type": type},
            )

    def audit_exchange_feedback(self, name: str, feedback: str, count: int) -> None:
        """Feedback was sent to an exchange's source: which, what, on how many hashes."""
        with self._db.write() as conn:
            self._db.audit(
                conn,
                "exchange_feedback_sent",
                detail={"exchange": name, "feedback": feedback, "hashes": count},
            )

    def has_type_credential(self, tenant: str, type: str) -> bool:
        with self._db.read() as conn:
            return (
                conn.execute(
                    sa.select(exchange_credentials.c.type).where(
                        exchange_credentials.c.tenant == tenant,
                        exchange_credentials.c.type == type,
                    )
                ).first()
                is not None
            )

    def remove_exchange(self, name: str) -> None:
        """Stop fetching; what it brought stays in its bank."""
        with self._db.write() as conn:
            gone = conn.execute(exchanges.delete().where(exchanges.c.name == name)).rowcount
            if not gone:
                raise NotFoundError(f"no exchange named {name!r}", code="exchange_not_found")
            self._db.audit(conn, "exchange_removed", detail={"exchange": name})

    def exchange_credential(self, name: str) -> tuple[str | None, dict[str, Any]]:
        """For the fetcher only, never shown, never logged: the exchange's own credential, or
        else its bank's tenant's credential for its type with the settings that go with it."""
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(exchanges.c.credential, exchanges.c.type, banks.c.tenant)
                .join(banks, banks.c.id == exchanges.c.bank_id)
                .where(exchanges.c.name == name)
            ).first()
            if row is None or row.credential is not None:
                return (None if row is None else str(row.credential)), {}
            shared = conn.execute(
                sa.select(exchange_credentials.c.credential, exchange_credentials.c.config).where(
                    exchange_credentials.c.tenant == row.tenant,
                    exchange_credentials.c.type == row.type,
                )
            ).first()
        return (None, {}) if shared is None else (str(shared.credential), dict(shared.config))

    def claim_exchange(self, name: str | None, *, lease_seconds: float) -> str | None:
        """Lease an exchange for one fetch: `name`, or the most overdue one that is due; None
        when it is leased by another fetcher (or, without a name, when none is due)."""
        at = now()
        free = sa.or_(exchanges.c.lease_until.is_(None), exchanges.c.lease_until < at)
        if name is None:  # looked for in a read first: most polls find nothing due
            with self._db.read() as conn:
                name = conn.execute(
                    sa.select(exchanges.c.name)
                    .where(exchanges.c.next_fetch_at <= at, exchanges.c.enabled, free)
                    .order_by(exchanges.c.next_fetch_at)
                    .limit(1)
                ).scalar_one_or_none()
            if name is None:
                return None
        with self._db.write() as conn:
            if not conn.execute(
                sa.select(exchanges.c.name).where(exchanges.c.name == name)
            ).first():
                raise NotFoundError(f"no exchange named {name!r}", code="exchange_not_found")
            claimed = conn.execute(
                exchanges.update()
                .where(exchanges.c.name == name, free)
                .values(lease_until=at + timedelta(seconds=lease_seconds), last_fetch_at=at)
            ).rowcount
        return name if claimed else None

    def advance_exchange(
        self, name: str, cursor: str, applied: int, *, withdrawn: int = 0, lease_seconds: float
    ) -> None:
        """A page is applied: the cursor moves past it and the lease is renewed. Withdrawals
        it made are audited under the exchange's name."""
        with self._db.write() as conn:
            if withdrawn:
                bank = conn.execute(
                    sa.select(banks.c.name)
                    .join(exchanges, banks.c.id == exchanges.c.bank_id)
                    .where(exchanges.c.name == name)
                ).scalar_one_or_none()
                self._db.audit(
                    conn,
                    "exchange_withdrew",
                    bank=bank,
                    detail={"exchange": name, "withdrawn": withdrawn, "cursor": cursor},
                )
            conn.execute(
                exchanges.update()
                .where(exchanges.c.name == name)
                .values(
                    cursor=cursor,
                    applied=exchanges.c.applied + applied,
                    lease_until=now() + timedelta(seconds=lease_seconds),
                )
            )

    def release_exchange(self, name: str, *, error: str | None = None) -> None:
        """The fetch is over: the next is due after the interval, or after a backoff that
        doubles with each failure in a row (capped at five minutes)."""
        at = now()
        with self._db.write() as conn:
            row = conn.execute(
                sa.select(exchanges.c.interval_seconds, exchanges.c.failures).where(
                    exchanges.c.name == name
                )
            ).first()
            if row is None:
                return
            failures = 0 if error is None else int(row.failures) + 1
            interval = float(row.interval_seconds)
            wait = min(_BACKOFF_CAP, max(1.0, interval) * 2**failures) if failures else interval
            values: dict[str, Any] = {
                "lease_until": None,
                "failures": failures,
                "last_error": error,
                "next_fetch_at": at + timedelta(seconds=wait),
                "last_complete_at": at,
            }
            if error is None:
                values["last_success_at"] = at
            conn.execute(exchanges.update().where(exchanges.c.name == name).values(**values))

    def brought_by(
        self, bank: str, exchange: str, remote_ids: Sequence[str]
    ) -> list[tuple[str, str]]:
        """(signal type, value) of the active entries `exchange` brought into `bank` for
        these remote ids (what a source's tombstone withdraws)."""
        out: list[tuple[str, str]] = []
        with self._db.read() as conn:
            bank_id = self._db.bank_id(conn, bank)
            for start in range(0, len(remote_ids), 500):
                rows = conn.execute(
                    sa.select(entries.c.signal_type, entries.c.value).where(
                        entries.c.bank_id == bank_id,
                        entries.c.withdrawn_at.is_(None),
                        entries.c.metadata["exchange"].as_string() == exchange,
                        entries.c.metadata["remote_id"]
                        .as_string()
                        .in_(list(remote_ids[start : start + 500])),
                    )
                )
                out += [(r.signal_type, r.value) for r in rows]
        return out
