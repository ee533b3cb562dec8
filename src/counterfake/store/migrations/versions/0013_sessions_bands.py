"""Sessions: a reviewer signed in to the review pages with an API key holds a session cookie;
only a SHA-256 of its token is kept, with the key it stands for and when it ends. Cases get
their score band (high, medium, low), by which a queue can be worked.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column(
            "key_id",
            sa.String(32),
            sa.ForeignKey("api_keys.key_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("form_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sessions_expiry", "sessions", ["expires_at"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("band", sa.String(8), nullable=False, server_default="medium"))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("band")
    op.drop_table("sessions")
