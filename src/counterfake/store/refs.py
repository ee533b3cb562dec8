"""Derivative references: the derivative matches of one image, kept for `REF_TTL` seconds
under an unguessable token (HMA's two-call flow: `/h/hash`, then `/m/lookup` per signal
type, possibly on another worker). Bank names and entry ids only: no image, no features."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa

from ._db import now
from ._part import Part
from .schema import derivative_refs

__all__ = ["REF_TTL", "References"]

#: Seconds a reference can be read after it was made.
REF_TTL: Final = 600


class References(Part):
    """The store's derivative references (a part of `Store`)."""

    def remember(self, tenant: str, matches: list[dict[str, Any]]) -> str:
        """Keep `matches` (JSON-ready) for `tenant`; returns the token. Expired ones go."""
        token = secrets.token_urlsafe(24)
        at = now()
        with self._db.write() as conn:
            conn.execute(
                derivative_refs.delete().where(
                    derivative_refs.c.created_at < at - timedelta(seconds=REF_TTL)
                )
            )
            conn.execute(
                derivative_refs.insert().values(
                    token=token, tenant=tenant, created_at=at, matches=matches
                )
            )
        return token

    def recall(self, token: str, tenant: str) -> list[dict[str, Any]] | None:
        """What `remember` kept under `token` for `tenant`, if it has not expired."""
        if not isinstance(token, str) or len(token) > 64:
            return None
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(derivative_refs.c.matches).where(
                    derivative_refs.c.token == token,
                    derivative_refs.c.tenant == tenant,
                    derivative_refs.c.created_at >= now() - timedelta(seconds=REF_TTL),
                )
            ).first()
        return None if row is None else list(row.matches)
