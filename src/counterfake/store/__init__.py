"""The store: banks, entries and the audit log on SQLite (default) or PostgreSQL."""

from .banks import AddResult, AuditEvent, Bank, Change, Entry, NewEntry, Store

__all__ = ["AddResult", "AuditEvent", "Bank", "Change", "Entry", "NewEntry", "Store"]
