"""The change log: every write appends to it in its own transaction; indexes follow it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa

from ..model import Change
from ._db import now
from ._part import Part
from .schema import changes, entries, signatures

#: A bank's feed serves changes at least this old: on PostgreSQL a lower sequence number can
#: commit after a higher one, and a follower's cursor must never pass a change still to come.
FEED_LAG: Final = timedelta(seconds=0.5)

__all__ = ["ChangeLog"]


class ChangeLog(Part):
    """The store's change log (a part of `Store`)."""

    def last_change(self) -> int:
        """The newest change's sequence number (0 when there is none)."""
        with self._db.read() as conn:
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
        with self._db.read() as conn:
            return [
                Change(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7] is not None)
                for r in conn.execute(query)
            ]

    def bank_feed(self, bank: str, after: int, *, limit: int) -> list[dict[str, Any]]:
        """A bank's adds and withdrawals after `after`, oldest first, each with its entry's
        signal, value, quality and signature (never its metadata, which may name a person):
        what another Counterfake needs to follow the bank."""
        query = (
            sa.select(
                changes.c.seq,
                changes.c.op,
                entries.c.id,
                entries.c.signal_type,
                entries.c.value,
                entries.c.quality,
                signatures.c.data,
            )
            .join(entries, entries.c.id == changes.c.entry_id)
            .outerjoin(signatures, signatures.c.entry_id == entries.c.id)
            .where(
                changes.c.bank == bank,
                changes.c.seq > after,
                changes.c.op.in_(("add", "withdraw")),
                changes.c.at <= now() - FEED_LAG,
            )
            .order_by(changes.c.seq)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [
                {
                    "seq": int(r.seq),
                    "op": r.op,
                    "entry_id": int(r.id),
                    "signal_type": r.signal_type,
                    "value": r.value,
                    "quality": r.quality,
                    "signature": bytes(r.data) if r.data is not None else None,
                }
                for r in conn.execute(query)
            ]
