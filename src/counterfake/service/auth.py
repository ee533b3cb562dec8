"""Who is calling and what they may touch: API keys, scopes and tenants.

Every route declares the scopes that admit it (`admin` admits everything). Which banks a key's
tenant may see is the core object's rule (`Counterfake.bank`, `Counterfake.searchable`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Final

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..core import Counterfake
from ..errors import AccessError
from ..model import ApiKey
from ..store import Store

__all__ = [
    "Admin",
    "AnyKey",
    "Curate",
    "Follow",
    "Hashing",
    "KeyCache",
    "MatchKey",
    "Review",
    "ReviewOrCurate",
    "Submit",
    "authenticate",
    "core_of",
    "require",
    "secret_of",
]

#: A revoked key is refused at most this long after its revocation.
_KEY_TTL: Final = 1.0


class KeyCache:
    """Authenticates secrets against the store, remembering good ones for `_KEY_TTL` s."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, tuple[ApiKey, float]] = {}

    def authenticate(self, secret: str) -> ApiKey:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        now = time.monotonic()
        hit = self._known.get(digest)
        if hit is not None and now - hit[1] < _KEY_TTL:
            return hit[0]
        if len(self._known) > 10_000:
            self._known.clear()
        key = self._store.keys.authenticate(secret)
        self._known[digest] = (key, now)
        return key


def secret_of(headers: Mapping[bytes, bytes]) -> str:
    """The key a request carries: `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    header = headers.get(b"authorization", b"").decode("latin-1")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return headers.get(b"x-api-key", b"").decode("latin-1").strip()


def authenticate(cache: KeyCache, secret: str) -> ApiKey:
    """The live key behind `secret`; AccessError missing_key or invalid_key otherwise."""
    if not secret:
        raise AccessError(
            "send an API key: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            code="missing_key",
        )
    return cache.authenticate(secret)


# Declared so that the OpenAPI document names both ways of sending a key (and /docs offers
# "Authorize"); the key itself is checked in `require`, before the body is read (app._Edge).
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer")


def require(*scopes: str) -> Callable[..., Awaitable[ApiKey]]:
    """A FastAPI dependency: the caller's key, if it holds one of `scopes` (or admin)."""
    admitted = frozenset(scopes) | {"admin"}

    async def dependency(
        request: Request,
        _header: Annotated[str | None, Security(_KEY_HEADER)],
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    ) -> ApiKey:
        # async: FastAPI would run a plain function on a thread, one hop per request.
        key = getattr(request.state, "api_key", None)
        if not isinstance(key, ApiKey):
            cache: KeyCache = request.app.state.keys
            key = authenticate(cache, secret_of(dict(request.scope["headers"])))
        if not key.scopes & admitted:
            raise AccessError(
                f"this key's scopes ({', '.join(sorted(key.scopes))}) do not allow this;"
                f" it needs one of: {', '.join(sorted(admitted))}",
                code="forbidden",
            )
        return key

    dependency.scopes = admitted  # type: ignore[attr-defined]
    return dependency


def core_of(request: Request) -> Counterfake:
    """The worker's core object: every route calls it and holds no rule of its own."""
    core: Counterfake = request.app.state.core
    return core


# The scopes each kind of route admits, as parameter types: `key: Curate`.
Submit = Annotated[ApiKey, Depends(require("submit", "curate"))]
Curate = Annotated[ApiKey, Depends(require("curate"))]
MatchKey = Annotated[ApiKey, Depends(require("match"))]
Follow = Annotated[ApiKey, Depends(require("follow", "curate"))]
Hashing = Annotated[ApiKey, Depends(require("match", "curate"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]
AnyKey = Annotated[ApiKey, Depends(require("submit", "match", "curate"))]
Review = Annotated[ApiKey, Depends(require("review"))]
ReviewOrCurate = Annotated[ApiKey, Depends(require("review", "curate"))]
