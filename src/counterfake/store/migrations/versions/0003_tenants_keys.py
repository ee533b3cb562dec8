"""Tenants: a bank belongs to one and can be shared for matching; API keys; who submitted.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN: no table rebuild, whatever the number of entries.
    op.add_column(
        "banks", sa.Column("tenant", sa.String(100), nullable=False, server_default="default")
    )
    op.add_column("entries", sa.Column("submitted_by", sa.String(32), nullable=True))
    op.create_table(
        "bank_shares",
        sa.Column("bank_id", _Id, sa.ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("bank_id", "tenant"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("bank_shares")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("submitted_by")
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("tenant")
