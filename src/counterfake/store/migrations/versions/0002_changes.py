"""The change log that in-memory indexes follow: one row per change to what can match.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("seq", _Id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("bank", sa.String(200), nullable=False),
        sa.Column("entry_id", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("changes")
