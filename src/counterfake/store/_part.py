"""What each concern of the store shares: the database handle."""

from __future__ import annotations

from ._db import Database


class Part:
    """Base of the store's concerns (banks, entries, signatures, change log, audit log)."""

    def __init__(self, db: Database) -> None:
        self._db = db
