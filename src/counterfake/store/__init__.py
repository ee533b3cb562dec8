"""The store: banks, entries, API keys and the audit log on SQLite (default) or PostgreSQL."""

from .banks import DEFAULT_TENANT, AddResult, AuditEvent, Bank, Change, Entry, NewEntry, Store
from .keys import SCOPES, ApiKey, KeyRing

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
