"""API keys: each belongs to a tenant and carries scopes. Only a SHA-256 of the secret is kept.

A key reads `cfk_<id>_<secret>`. The id is public (audit log, listings); the secret is 32 random
bytes, so a fast hash is enough to store it: there is nothing to brute-force.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from ..errors import AccessError, InputError, NotFoundError
from .banks import _check_tenants, _now, _translated, _utc
from .schema import api_keys

if TYPE_CHECKING:
    from .banks import Store

__all__ = ["SCOPES", "ApiKey", "KeyRing"]

#: submit: add to its tenant's banks and withdraw its own submissions, nothing else.
#: match: look up against banks its tenant owns or that are shared with it.
#: curate: manage its tenant's banks and their entries.  admin: everything, every tenant.
SCOPES: Final = ("submit", "match", "curate", "admin")
_PREFIX: Final = "cfk_"


@dataclasses.dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    scopes: frozenset[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "scopes": sorted(self.scopes, key=SCOPES.index),
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRing:
    """The store's API keys; get it as `store.keys`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, tenant: str, scopes: Iterable[str], *, name: str = "") -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown once and never stored."""
        wanted = frozenset(scopes)
        unknown = wanted - set(SCOPES)
        if not wanted or unknown:
            raise InputError(
                f"scopes are {', '.join(SCOPES)}; got {sorted(unknown) or 'none'}",
                code="invalid_scope",
            )
        _check_tenants([tenant])
        key_id = secrets.token_hex(6)
        secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, tenant, wanted, name[:200], _now())
        with _translated(), self._store._engine.begin() as conn:
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
            self._store._audit(
                conn,
                "key_created",
                detail={"key_id": key_id, "tenant": tenant, "scopes": sorted(wanted)},
            )
        return key, secret

    def authenticate(self, secret: str) -> ApiKey:
        """The live key this secret belongs to; AccessError(invalid_key) otherwise."""
        key_id = secret[len(_PREFIX) :].split("_", 1)[0] if secret.startswith(_PREFIX) else ""
        if key_id:
            with _translated(), self._store._read() as conn:
                row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
            if (
                row is not None
                and row.revoked_at is None
                and hmac.compare_digest(row.secret_sha256, _digest(secret))
            ):
                return self._from_row(row)
        raise AccessError("the API key is unknown or revoked", code="invalid_key")

    def list(self) -> list[ApiKey]:
        with _translated(), self._store._read() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [self._from_row(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key: refused from the next request on (services cache keys for 1 s)."""
        with _translated(), self._store._engine.begin() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
            if row is None:
                raise NotFoundError(f"no API key {key_id!r}", code="key_not_found")
            if row.revoked_at is None:
                conn.execute(
                    api_keys.update().where(api_keys.c.key_id == key_id).values(revoked_at=_now())
                )
                self._store._audit(conn, "key_revoked", detail={"key_id": key_id})
        return next(k for k in self.list() if k.key_id == key_id)

    @staticmethod
    def _from_row(row: Any) -> ApiKey:
        return ApiKey(
            row.key_id,
            row.tenant,
            frozenset(row.scopes.split()),
            row.name,
            _utc(row.created_at) or row.created_at,
            _utc(row.revoked_at),
        )
