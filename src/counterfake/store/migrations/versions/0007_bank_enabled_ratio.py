"""A bank's matching enabled ratio (HMA's `matching_enabled_ratio`): the share of lookups that
search it, 1.0 for every bank until now.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: no table rebuild.
    op.add_column(
        "banks", sa.Column("enabled_ratio", sa.Float, nullable=False, server_default="1.0")
    )


def downgrade() -> None:
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("enabled_ratio")
