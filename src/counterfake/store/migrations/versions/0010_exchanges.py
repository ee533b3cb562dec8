"""Exchanges: other sources this installation fetches signals from, with their cursors.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("bank_id", _Id, sa.ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("credential", sa.Text, nullable=True),
        sa.Column("cursor", sa.String(200), nullable=False, server_default=""),
        sa.Column("interval_seconds", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_fetch_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("applied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("exchanges")
