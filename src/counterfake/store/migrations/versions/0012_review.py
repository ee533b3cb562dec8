"""Review: cases a platform's moderators decide, the images kept for them (only under a review
retention), pairs they found not to match, webhooks and the outbox of their deliveries.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("banks") as batch:
        batch.add_column(sa.Column("review", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "cases",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("bank", sa.String(201), nullable=False),
        sa.Column("signal", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_id", sa.String(200), nullable=True),
        sa.Column("content_url", sa.String(2000), nullable=True),
        sa.Column("query", sa.String(200), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("action", sa.String(64), nullable=True),
        sa.Column("policy", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("appeal_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_cases_queue", "cases", ["tenant", "status", "opened_at", "id"])
    op.create_index("ix_cases_bank_queue", "cases", ["tenant", "bank", "status", "opened_at", "id"])
    op.create_table(
        "case_images",
        sa.Column("case_id", _Id, sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "case_comments",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("case_id", _Id, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_case_comments_case", "case_comments", ["case_id", "id"])
    op.create_table(
        "review_settings",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("reviewer", sa.String(64), primary_key=True),
        sa.Column("settings", sa.JSON, nullable=False),
    )
    op.create_table(
        "case_rejections",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("entry_id", sa.BigInteger, primary_key=True),
        sa.Column("query", sa.String(200), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column(
            "webhook_id", _Id, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_webhook", "deliveries", ["webhook_id", "id"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("webhooks")
    op.drop_table("case_rejections")
    op.drop_table("case_images")
    op.drop_table("case_comments")
    op.drop_table("review_settings")
    op.drop_table("cases")
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("review")
