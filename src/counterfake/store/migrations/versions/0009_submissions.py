"""Submissions through the protect page's intake, the entries each one added, and the
installation's own secrets (the key that hashes client addresses).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("bank_id", _Id, sa.ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("address_key", sa.String(64), nullable=False),
        sa.Column("photos", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_submissions_created_at", "submissions", ["created_at"])
    op.create_index("ix_submissions_address_key", "submissions", ["address_key", "created_at"])
    op.create_table(
        "submission_entries",
        sa.Column(
            "submission_id",
            sa.String(32),
            sa.ForeignKey("submissions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "entry_id", _Id, sa.ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_index("ix_submission_entries_entry_id", "submission_entries", ["entry_id"])
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_secrets")
    op.drop_table("submission_entries")
    op.drop_table("submissions")
