"""Which HTTP status answers which error: one table for the JSON routes and the pages."""

from __future__ import annotations

from typing import Final

from ..errors import (
    AccessError,
    ConflictError,
    CounterfakeError,
    DatabaseError,
    NotFoundError,
    UnavailableError,
)

__all__ = ["OMM_PREFIXES", "status_for"]

#: HMA's (OpenMediaMatch's) routes, which answer in HMA's style.
OMM_PREFIXES: Final = ("/m/", "/h/", "/c/")
_STATUS: Final = {
    "missing_key": 401,
    "invalid_key": 401,
    "input_too_large": 413,
    "image_too_large": 413,
    "unsupported_format": 415,
    "body_timeout": 408,
    "too_many_uploads": 429,
    "rate_limited": 429,
    "client_disconnected": 499,
    "store_full": 507,
}


def status_for(exc: CounterfakeError, path: str = "") -> int:
    """The status of an error's answer: by its code where one is fixed, else by its kind."""
    if exc.code == "bank_exists" and path.startswith(OMM_PREFIXES):
        return 403  # HMA answers a duplicate bank with 403
    if exc.code in _STATUS:
        return _STATUS[exc.code]
    if isinstance(exc, AccessError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, UnavailableError | DatabaseError):
        return 503
    return 400
