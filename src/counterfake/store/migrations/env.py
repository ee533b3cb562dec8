"""Alembic environment: the store passes its own connection; no URL is read here."""

from alembic import context

from counterfake.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
