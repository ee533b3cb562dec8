"""API keys: each belongs to a tenant and carries scopes. Only a SHA-256 of the secret is kept.

A key reads `cfk_<id>_<secret>`. The id is public (audit log, listings); the secret is 32 random
bytes, so a fast hash is enough to store it: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any, Final

import sqlalchemy as sa

from ..errors import AccessError, InputError, NotFoundError
from ..model import SCOPES, ApiKey
from ._db import Database, check_tenants, now, utc
from .schema import api_keys

__all__ = ["KeyRing"]

_PREFIX: Final = "cfk_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRing:
    """The store's API keys; get it as `store.keys`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, tenant: str, scopes: Iterable[str], *, name: str = "") -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown once and never stored."""
        wanted = frozenset(scopes)
        unknown = wanted - set(SCOPES)
        if not wanted or unknown:
            raise InputError(
                f"scopes are {', '.join(SCOPES)}; got {sorted(unknown) or 'none'}",
                code="invalid_scope",
            )
        check_tenants([tenant])
        key_id = secrets.token_hex(6)
        secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, tenant, wanted, name[:200], now())
        with self._db.write() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    secret_sha256=_digest(secret),
                    tenant=tenant,
                    scopes=" ".join(sorted(wanted, key=SCOPES.index)),
                    name=key.name,
                    created_at=key.created_at,
                )
            )
            self._db.audit(
                conn,
                "key_created",
                detail={"key_id": key_id, "tenant": tenant, "scopes": sorted(wanted)},
            )
        return key, secret

    def authenticate(self, secret: str) -> ApiKey:
        """The live key this secret belongs to; AccessError(invalid_key) otherwise."""
        key_id = secret[len(_PREFIX) :].split("_", 1)[0] if secret.startswith(_PREFIX) else ""
        if key_id:
            with self._db.read() as conn:
                row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
            if (
                row is not None
                and row.revoked_at is None
                and hmac.compare_digest(row.secret_sha256, _digest(secret))
            ):
                return self._from_row(row)
        raise AccessError("the API key is unknown or revoked", code="invalid_key")

    def list(self) -> list[ApiKey]:
        with self._db.read() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [self._from_row(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key: refused from the next request on (services cache keys for 1 s)."""
        with self._db.write() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
            if row is None:
                raise NotFoundError(f"no API key {key_id!r}", code="key_not_found")
            if row.revoked_at is None:
                conn.execute(
                    api_keys.update().where(api_keys.c.key_id == key_id).values(revoked_at=now())
                )
                self._db.audit(conn, "key_revoked", detail={"key_id": key_id})
        return next(k for k in self.list() if k.key_id == key_id)

    @staticmethod
    def _from_row(row: Any) -> ApiKey:
        return ApiKey(
            row.key_id,
            row.tenant,
            frozenset(row.scopes.split()),
            row.name,
            utc(row.created_at) or row.created_at,
            utc(row.revoked_at),
        )
