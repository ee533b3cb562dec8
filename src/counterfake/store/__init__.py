"""The store: banks, entries, signatures, the change log, the audit log and API keys, on SQLite
(default) or PostgreSQL. One module per concern, each over the same small database handle
(`_db.Database`); `Store` puts them together. Both backends pass the same contract tests.
"""

from __future__ import annotations

from ..model import (
    DEFAULT_TENANT,
    SCOPES,
    AddResult,
    ApiKey,
    AuditEvent,
    Bank,
    Change,
    Entry,
    NewEntry,
)
from ..settings import Settings, load_settings
from ._db import Database
from .audit import AuditLog
from .banks import Banks
from .cases import Cases
from .changes import ChangeLog
from .entries import Entries
from .exchanges import Exchanges
from .keys import KeyRing
from .refs import References
from .signatures import Signatures
from .submissions import Submissions
from .webhooks import Webhooks

__all__ = [
    "DEFAULT_TENANT",
    "SCOPES",
    "AddResult",
    "ApiKey",
    "AuditEvent",
    "Bank",
    "Change",
    "Entry",
    "KeyRing",
    "NewEntry",
    "Store",
]


class Store(
    Banks,
    Entries,
    Signatures,
    ChangeLog,
    AuditLog,
    References,
    Submissions,
    Exchanges,
    Cases,
    Webhooks,
):
    """Banks, entries, signatures, change log, audit log, keys, derivative references and
    intake submissions, exchanges, review cases and webhooks over one database.
    Open with `Store.open()`; writes are idempotent per (bank, signal type, value)."""

    def __init__(self, db: Database, *, default_threshold: int) -> None:
        super().__init__(db)
        self._default_threshold = default_threshold
        self.keys = KeyRing(db)
        """API keys for the service."""

    @classmethod
    def open(cls, url: str | None = None, *, settings: Settings | None = None) -> Store:
        """Open (creating and migrating if needed) the store named by `url` or the settings."""
        settings = settings or load_settings()
        db = Database.connect(
            url or settings.resolved_database_url, statement_timeout=settings.statement_timeout
        )
        db.migrate()
        return cls(db, default_threshold=settings.pdq_threshold)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
