"""Exchanges are named per tenant, can be paused, say when their last fetch ended, and take
a tenant's credential for their type (HMA keeps one credential per exchange API).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exchanges") as batch:
        # Named per tenant as banks are (`tenant:name`).
        batch.alter_column("name", type_=sa.String(201), existing_nullable=False)
        batch.add_column(sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("last_complete_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "exchange_credentials",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("type", sa.String(32), primary_key=True),
        sa.Column("credential", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("exchange_credentials")
    with op.batch_alter_table("exchanges") as batch:
        batch.drop_column("last_complete_at")
        batch.drop_column("enabled")
        batch.alter_column("name", type_=sa.String(100), existing_nullable=False)
