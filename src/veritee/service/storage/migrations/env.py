"""Alembic environment for veritee: runs only on the connection Storage.migrate() hands over.

There is no alembic.ini: :meth:`veritee.service.storage.Storage.migrate` builds the Config in
code, points ``script_location`` at this folder and passes its open connection (already inside a
transaction, holding the migration lock on PostgreSQL) as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("veritee migrations run only through Storage.migrate()")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
