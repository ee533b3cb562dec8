"""Bank names per tenant: a bank of any tenant but the default one is stored as `tenant:name`.

Names were global, so creating a bank under another tenant's bank name answered `bank_exists`
and revealed it. Each tenant now names its banks independently (model.bank_key); the columns
that hold a stored name widen to fit a tenant (100), ':' and a name (100).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WIDE = 201


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":  # SQLite does not enforce a VARCHAR's length
        op.alter_column("banks", "name", type_=sa.String(_WIDE))
        op.alter_column("changes", "bank", type_=sa.String(_WIDE))
        op.alter_column("audit_log", "bank", type_=sa.String(_WIDE))
    op.execute("UPDATE banks SET name = tenant || ':' || name WHERE tenant <> 'default'")


def downgrade() -> None:
    op.execute("UPDATE banks SET name = substr(name, length(tenant) + 2) WHERE tenant <> 'default'")
