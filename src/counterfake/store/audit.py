"""The audit log: append-only, written in the same transaction as each change, without the
signal values themselves."""

from __future__ import annotations

import sqlalchemy as sa

from ..model import AuditEvent
from ._db import utc
from ._part import Part
from .schema import audit_log

__all__ = ["AuditLog"]


class AuditLog(Part):
    """The store's audit log (a part of `Store`)."""

    def audit_events(self, *, limit: int = 100) -> list[AuditEvent]:
        """The latest audit events, newest first."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            return [
                AuditEvent(r.id, utc(r.at) or r.at, r.action, r.bank, r.entry_id, r.detail)
                for r in rows
            ]
