"""The highest id of a deleted bank's entries, so that SQLite never gives one out again.

SQLite's rowids without AUTOINCREMENT reuse the ids of the newest rows once they are deleted
(a deleted bank's entries); an id kept in an audit note, a withdrawal list or a partner's
records would then name another entry. PostgreSQL's sequences never go back; this table is
used on SQLite only.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "id_floors",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("floor", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO id_floors (name, floor) SELECT 'entries', COALESCE(MAX(id), 0) FROM entries"
    )


def downgrade() -> None:
    op.drop_table("id_floors")
