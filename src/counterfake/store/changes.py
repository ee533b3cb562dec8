"""The change log: every write appends to it in its own transaction; indexes follow it."""

from __future__ import annotations

import sqlalchemy as sa

from ..model import Change
from ._part import Part
from .schema import changes, entries

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
