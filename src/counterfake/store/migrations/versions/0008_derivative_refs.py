"""Derivative references: what a derivative search of an image found, kept for minutes under
an opaque token, so that an HMA client's second call (`/m/lookup` with the token from
`/h/hash`) can read it on any worker. No image data and no features are kept.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "derivative_refs",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("matches", sa.JSON, nullable=False),
    )
    op.create_index("ix_derivative_refs_created_at", "derivative_refs", ["created_at"])


def downgrade() -> None:
    op.drop_table("derivative_refs")
