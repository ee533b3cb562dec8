"""Exact digests of the file bytes: a byte-identical copy matches, nothing else does."""

from __future__ import annotations

import hashlib

__all__ = ["md5", "sha256"]


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
