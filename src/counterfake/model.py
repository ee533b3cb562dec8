"""The values every layer passes around: banks, entries, changes, audit events and API keys.

Plain frozen dataclasses, no database: hashing, matching, exchange formats and the faces use
them without loading the store (SQLAlchemy, Alembic).
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from typing import Any, Final, Literal

__all__ = [
    "DEFAULT_TENANT",
    "SCOPES",
    "AddResult",
    "ApiKey",
    "AuditEvent",
    "Bank",
    "Case",
    "Change",
    "Comment",
    "Delivery",
    "Entry",
    "Exchange",
    "NewEntry",
    "Webhook",
    "bank_key",
    "shown_bank",
]

DEFAULT_TENANT: Final = "default"
#: submit: add to its tenant's banks and withdraw its own submissions, nothing else.
#: match: look up against banks its tenant owns or that are shared with it.
#: curate: manage its tenant's banks and their entries.  admin: everything, every tenant.
#: follow: read the change feed of banks its tenant owns or that are shared with it (another
#: Counterfake following this one; exchange/follow.py).
#: review: claim and decide its tenant's review cases (review.py).
SCOPES: Final = ("submit", "match", "curate", "follow", "review", "admin")


def bank_key(name: str, tenant: str = DEFAULT_TENANT) -> str:
    """The name a bank is stored, matched and logged under. Each tenant names its banks
    independently: `name` in the default tenant, `tenant:name` in any other (':' is never part
    of a name). `name` may itself be qualified (`acme:x`), which overrides `tenant`."""
    owner, sep, own_name = name.partition(":")
    if sep:
        tenant, name = owner, own_name
    return name if tenant == DEFAULT_TENANT else f"{tenant}:{name}"


def shown_bank(key: str, viewer: str) -> str:
    """A bank's name as a tenant sees it: its own banks plainly, any other tenant's (one shared
    with it, or every bank for an admin) qualified as `owner:name`."""
    owner, sep, name = key.partition(":")
    if not sep:
        owner, name = DEFAULT_TENANT, key
    return name if owner == viewer else f"{owner}:{name}"


@dataclasses.dataclass(frozen=True)
class Bank:
    id: int
    name: str
    description: str
    pdq_threshold: int
    created_at: datetime
    active_entries: int = 0
    withdrawn_entries: int = 0
    tenant: str = DEFAULT_TENANT
    #: Other tenants whose match keys may match against this bank.
    shared_with: tuple[str, ...] = ()
    #: The share of lookups that search this bank (HMA's matching_enabled_ratio): 1.0 all,
    #: 0.0 none (matching disabled); a lookup's seed decides which ones.
    enabled_ratio: float = 1.0
    #: Every match in this bank opens a review case (not only lookups that ask, review=1).
    review: bool = False
    #: Active entries by where they came from: hashes, protect, import, exchange...
    active_by_source: dict[str, int] = dataclasses.field(
        default_factory=dict, compare=False, hash=False
    )

    def visible_to(self, tenant: str) -> bool:
        return tenant == self.tenant or tenant in self.shared_with

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "pdq_threshold": self.pdq_threshold,
            "tenant": self.tenant,
            "shared_with": list(self.shared_with),
            "enabled_ratio": self.enabled_ratio,
            "review": self.review,
            "active_entries": self.active_entries,
            "withdrawn_entries": self.withdrawn_entries,
            "active_by_source": dict(self.active_by_source),
            "created_at": self.created_at.isoformat(),
        }


@dataclasses.dataclass(frozen=True)
class Entry:
    id: int
    bank: str
    signal_type: str
    value: str
    quality: int | None
    source: str
    metadata: dict[str, Any]
    created_at: datetime
    withdrawn_at: datetime | None
    submitted_by: str | None = None
    #: A derivative entry's signature (signals.keypoints); None for every other signal.
    payload: bytes | None = dataclasses.field(default=None, repr=False)

    def to_dict(self, *, with_payload: bool = False) -> dict[str, Any]:
        out = {
            "entry_id": self.id,
            "bank": self.bank,
            "signal": self.signal_type,
            "value": self.value,
            "quality": self.quality,
            "source": self.source,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "submitted_by": self.submitted_by,
        }
        if with_payload and self.payload is not None:
            out["signature"] = base64.b64encode(self.payload).decode("ascii")
        return out


@dataclasses.dataclass(frozen=True)
class NewEntry:
    signal_type: str
    value: str
    quality: int | None = None
    source: str = "hashes"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    withdrawn_at: datetime | None = None
    #: The binary signature of a `derivative` entry (its value is the signature's SHA-256).
    payload: bytes | None = None


@dataclasses.dataclass(frozen=True)
class AddResult:
    entry_id: int
    signal_type: str
    status: Literal["created", "existing", "reinstated", "withdrawn"]


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to what can match. `op` is add, withdraw, bank_create, bank_update or
    bank_delete; for an add, the entry's signal as it is now (None if it is gone since)."""

    seq: int
    op: str
    bank: str
    entry_id: int | None
    signal_type: str | None = None
    value: str | None = None
    quality: int | None = None
    withdrawn: bool = False


@dataclasses.dataclass(frozen=True)
class Exchange:
    """A source this installation fetches signals from, and how far it has read. Its
    credential is not here: only the fetcher reads it from the store."""

    name: str
    type: str
    bank: str
    config: dict[str, Any]
    has_credential: bool
    cursor: str
    interval_seconds: float
    created_at: datetime
    next_fetch_at: datetime
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    applied: int = 0
    #: Fetched on its schedule (a paused exchange keeps its cursor).
    enabled: bool = True
    #: A fetcher holds it now.
    fetching: bool = False
    last_complete_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    action: str
    bank: str | None
    entry_id: int | None
    detail: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """Who calls the service: a tenant and scopes. The core takes it as the principal."""

    key_id: str
    tenant: str
    scopes: frozenset[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    rate_limit: float | None = None  # requests/s in place of the service's default; 0: none

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def submit_only(self) -> bool:
        """A key that may add and withdraw its own entries, and read nothing back."""
        return self.scopes <= {"submit"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "scopes": sorted(self.scopes, key=SCOPES.index),
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "rate_limit": self.rate_limit,
        }


def _iso(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


@dataclasses.dataclass(frozen=True)
class Case:
    """A match waiting for (or given) a person's decision. It holds the evidence and the
    platform's own content id and URL, never the image."""

    id: int
    tenant: str
    #: The bank of the strongest match: the queue it waits in.
    bank: str
    signal: str
    #: open, escalated, appeal (each a queue), or decided.
    status: str
    opened_at: datetime
    content_id: str | None
    content_url: str | None
    #: The matches: bank, entry_id, signal, distance, and for a derivative its score, changed
    #: fraction and the matched part.
    evidence: list[dict[str, Any]]
    claimed_by: str | None = None
    claim_until: datetime | None = None
    decision: str | None = None
    action: str | None = None
    policy: str | None = None
    reason: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    appeal_reason: str | None = None
    #: high, medium or low: how strong the best match is (`counterfake.review.band`).
    band: str = "medium"

    def to_dict(self) -> dict[str, Any]:
        return _iso(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Comment:
    """A note on a case by a reviewer or a curator (their key id)."""

    id: int
    case_id: int
    author: str
    body: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _iso(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Webhook:
    """Where a tenant's review events go. Its signing secret is shown once, when made."""

    id: int
    tenant: str
    url: str
    events: tuple[str, ...]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _iso({**dataclasses.asdict(self), "events": list(self.events)})


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One event on its way to one webhook: pending (retried with backoff), delivered, or
    dead (given up on; it can be replayed)."""

    id: int
    webhook_id: int
    event_id: str
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    delivered_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _iso(dataclasses.asdict(self))
