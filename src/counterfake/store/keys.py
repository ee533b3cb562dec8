"""API keys: each belongs to a tenant and carries scopes. Only a SHA-256 of the secret is kept.

A key reads `cfk_<id>_<secret>`. The id is public (audit log, listings); the secret is 32 random
bytes, so a fast hash is enough to store it: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa

from ..errors import AccessError, InputError, NotFoundError
from ..model import SCOPES, ApiKey
from ._db import Database, check_tenants, now, utc
from .schema import api_keys, sessions

__all__ = ["KeyRing"]

_PREFIX: Final = "cfk_"
#: A review session ends this long after sign-in (a shift), or when its key is revoked.
SESSION_SECONDS: Final = 8 * 3600


def _check_rate(rate_limit: float | None) -> None:
    if rate_limit is not None and not 0 <= rate_limit <= 1_000_000:
        raise InputError(
            f"a key's rate limit is 0-1,000,000 requests a second; got {rate_limit}",
            code="invalid_rate_limit",
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRing:
    """The store's API keys; get it as `store.keys`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        tenant: str,
        scopes: Iterable[str],
        *,
        name: str = "",
        rate_limit: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown once and never stored. `rate_limit`:
        requests a second in place of the service's default (0: none)."""
        wanted = frozenset(scopes)
        unknown = wanted - set(SCOPES)
        if not wanted or unknown:
            raise InputError(
                f"scopes are {', '.join(SCOPES)}; got {sorted(unknown) or 'none'}",
                code="invalid_scope",
            )
        check_tenants([tenant])
        _check_rate(rate_limit)
        key_id = secrets.token_hex(6)
        secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, tenant, wanted, name[:200], now(), rate_limit=rate_limit)
        with self._db.write() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    secret_sha256=_digest(secret),
                    tenant=tenant,
                    scopes=" ".join(sorted(wanted, key=SCOPES.index)),
                    name=key.name,
                    created_at=key.created_at,
                    rate_limit=rate_limit,
                )
            )
            self._db.audit(
                conn,
                "key_created",
                detail={
                    "key_id": key_id,
                    "tenant": tenant,
                    "scopes": sorted(wanted),
                    "rate_limit": rate_limit,
                },
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

    def open_session(self, secret: str) -> tuple[ApiKey, str, str]:
        """Sign in with a key: the key, a new session's token (for a cookie; only its SHA-256
        is kept) and the token its forms carry. Ended sessions are cleared here."""
        key = self.authenticate(secret)
        token, form_token = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        at = now()
        with self._db.write() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at < at))
            conn.execute(
                sessions.insert().values(
                    token_sha256=_digest(token),
                    key_id=key.key_id,
                    form_token=form_token,
                    created_at=at,
                    expires_at=at + timedelta(seconds=SESSION_SECONDS),
                )
            )
            self._db.audit(conn, "signed_in", detail={"key_id": key.key_id})
        return key, token, form_token

    def session(self, token: str) -> tuple[ApiKey, str]:
        """The live key behind a session token and its form token; AccessError(no_session)
        when the session is unknown, ended, or its key revoked."""
        if token:
            query = (
                sa.select(api_keys, sessions.c.form_token, sessions.c.expires_at)
                .join(sessions, sessions.c.key_id == api_keys.c.key_id)
                .where(sessions.c.token_sha256 == _digest(token))
            )
            with self._db.read() as conn:
                row = conn.execute(query).first()
            ends = None if row is None else utc(row.expires_at)
            if row is not None and row.revoked_at is None and ends is not None and ends > now():
                return self._from_row(row), row.form_token
        raise AccessError("sign in again: the session has ended", code="no_session")

    def close_session(self, token: str) -> None:
        """Sign out: the session's token is refused from now on."""
        with self._db.write() as conn:
            conn.execute(sessions.delete().where(sessions.c.token_sha256 == _digest(token)))

    def list(self) -> list[ApiKey]:
        with self._db.read() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [self._from_row(row) for row in rows]

    def set_rate_limit(self, key_id: str, rate_limit: float | None) -> ApiKey:
        """Give a key its own rate (requests a second; 0: none), or back the service's default
        (None). Services see it within a second, as they see a revocation."""
        _check_rate(rate_limit)
        with self._db.write() as conn:
            done = conn.execute(
                api_keys.update().where(api_keys.c.key_id == key_id).values(rate_limit=rate_limit)
            )
            if not done.rowcount:
                raise NotFoundError(f"no API key {key_id!r}", code="key_not_found")
            self._db.audit(
                conn, "key_rate_changed", detail={"key_id": key_id, "rate_limit": rate_limit}
            )
        return next(k for k in self.list() if k.key_id == key_id)

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
            row.rate_limit,
        )
