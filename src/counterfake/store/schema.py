"""Tables of the store. Changing them needs a migration in `migrations/versions`."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

metadata = MetaData()

_Id = BigInteger().with_variant(Integer(), "sqlite")

banks = Table(
    "banks",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(201), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("pdq_threshold", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("tenant", String(100), nullable=False, server_default="default"),
    Column("enabled_ratio", Float, nullable=False, server_default="1.0"),
    #: Every match in this bank opens a review case.
    Column("review", Boolean, nullable=False, server_default=false()),
)

bank_shares = Table(
    "bank_shares",
    metadata,
    Column("bank_id", _Id, ForeignKey("banks.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant", String(100), primary_key=True),
)

entries = Table(
    "entries",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("bank_id", _Id, ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
    Column("signal_type", String(32), nullable=False),
    Column("value", String(256), nullable=False),
    Column("quality", Integer, nullable=True),
    Column("source", String(32), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("submitted_by", String(32), nullable=True),
    UniqueConstraint("bank_id", "signal_type", "value", name="uq_entries_bank_signal_value"),
    Index("ix_entries_signal_value", "signal_type", "value"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(64), nullable=False),
    Column("bank", String(201), nullable=True),
    Column("entry_id", BigInteger, nullable=True),
    Column("detail", JSON, nullable=False),
)

changes = Table(
    "changes",
    metadata,
    Column("seq", _Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("op", String(16), nullable=False),
    Column("bank", String(201), nullable=False),
    Column("entry_id", BigInteger, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("tenant", String(100), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("rate_limit", Float, nullable=True),  # requests/s; NULL: the service's default
)

#: Signed-in reviewers of the review pages: a SHA-256 of each session cookie's token, the key it
#: stands for, and the token its forms must carry (against cross-site requests).
sessions = Table(
    "sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("key_id", String(32), ForeignKey("api_keys.key_id", ondelete="CASCADE"), nullable=False),
    Column("form_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sessions_expiry", "expires_at"),
)

signatures = Table(
    "signatures",
    metadata,
    Column("entry_id", _Id, ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

#: SQLite only: the highest id ever given out per table, so that ids are never reused.
id_floors = Table(
    "id_floors",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("floor", BigInteger, nullable=False),
)

#: What a derivative search found, for minutes, under an opaque token (store/refs.py).
derivative_refs = Table(
    "derivative_refs",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("matches", JSON, nullable=False),
    Index("ix_derivative_refs_created_at", "created_at"),
)

#: Signature files sent through the protect page's intake: who may withdraw what. The
#: withdrawal code is kept only as its SHA-256; the client address only as a keyed hash.
submissions = Table(
    "submissions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("bank_id", _Id, ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
    Column("code_sha256", String(64), nullable=False, unique=True),
    Column("address_key", String(64), nullable=False),
    Column("photos", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Index("ix_submissions_created_at", "created_at"),
    Index("ix_submissions_address_key", "address_key", "created_at"),
)

submission_entries = Table(
    "submission_entries",
    metadata,
    Column(
        "submission_id",
        String(32),
        ForeignKey("submissions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("entry_id", _Id, ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_submission_entries_entry_id", "entry_id"),
)

#: Secrets this installation made for itself (the key that hashes intake client addresses).
instance_secrets = Table(
    "instance_secrets",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(64), nullable=False),
)

#: Exchanges this installation fetches from: where, into which bank, how far it has read.
#: The credential is kept for the fetcher only: no route, command or log shows it.
exchanges = Table(
    "exchanges",
    metadata,
    Column("name", String(201), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("bank_id", _Id, ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
    Column("config", JSON, nullable=False),
    Column("credential", Text, nullable=True),
    Column("cursor", String(200), nullable=False, server_default=""),
    Column("interval_seconds", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_fetch_at", DateTime(timezone=True), nullable=False),
    Column("last_fetch_at", DateTime(timezone=True), nullable=True),
    Column("last_success_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("applied", BigInteger, nullable=False, server_default="0"),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("last_complete_at", DateTime(timezone=True), nullable=True),
)

#: A tenant's credential for every exchange of a type that has none of its own (HMA keeps one
#: per exchange API), with settings that go with it (a StopNCII base URL override).
exchange_credentials = Table(
    "exchange_credentials",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("type", String(32), primary_key=True),
    Column("credential", Text, nullable=False),
    Column("config", JSON, nullable=False),
)

#: Review cases: a match a platform's moderators confirm or reject. `query` names what was
#: looked up (its SHA-256, or `signal:value`), never its bytes; `evidence` is the matches.
cases = Table(
    "cases",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("bank", String(201), nullable=False),
    Column("signal", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("content_id", String(200), nullable=True),
    Column("content_url", String(2000), nullable=True),
    Column("query", String(200), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claim_until", DateTime(timezone=True), nullable=True),
    Column("decision", String(16), nullable=True),
    Column("action", String(64), nullable=True),
    Column("policy", String(200), nullable=True),
    Column("reason", Text, nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("appeal_reason", Text, nullable=True),
    #: high, medium or low: how strong the best match is (counterfake.review.band).
    Column("band", String(8), nullable=False, server_default="medium"),
    Index("ix_cases_queue", "tenant", "status", "opened_at", "id"),
    Index("ix_cases_bank_queue", "tenant", "bank", "status", "opened_at", "id"),
)

#: The image of an open case, kept only when the operator sets a review retention; deleted on
#: decision or at `expires_at` (SQLite overwrites deleted content: secure_delete).
case_images = Table(
    "case_images",
    metadata,
    Column("case_id", _Id, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

#: Reviewers' and curators' comments on a case, oldest first.
case_comments = Table(
    "case_comments",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", _Id, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("author", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_case_comments_case", "case_id", "id"),
)

#: How a reviewer sees cases (blur, grey, a confirmed reveal); reviewer "" holds the tenant's
#: defaults.
review_settings = Table(
    "review_settings",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("reviewer", String(64), primary_key=True),
    Column("settings", JSON, nullable=False),
)

#: Pairs a reviewer found not to match, remembered so that they do not open a case again.
case_rejections = Table(
    "case_rejections",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("entry_id", BigInteger, primary_key=True),
    Column("query", String(200), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

#: A tenant's webhooks: where its events go, signed with `secret` (shown once, when made).
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("events", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: The outbox: one row per event and webhook, written in the transaction that made the event,
#: delivered (and retried with backoff) by whichever worker leases it.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("webhook_id", _Id, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("event", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_webhook", "webhook_id", "id"),
)
