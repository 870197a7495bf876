"""Alembic's environment for DCES: migrations run on the connection that
:class:`app.store.database.Database` hands over (``config.attributes["connection"]``), inside its
transaction, so a whole upgrade commits or rolls back as one on SQLite and PostgreSQL alike.

Run by the ``alembic`` command (authoring a revision, ``--sql`` scripts), it connects to DCES's
own database, as the ``DCES_*`` settings name it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from app.store.tables import Base


def run_on(connection: Connection) -> None:
    # SQLite runs DDL in transactions too (Database begins them itself), so never commit halfway.
    context.configure(connection=connection, target_metadata=Base.metadata,
                      transactional_ddl=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def settings_url() -> str:
    from app.settings import Settings

    return context.config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
elif context.is_offline_mode():
    context.configure(url=settings_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(settings_url())
    with engine.begin() as connection:
        run_on(connection)
    engine.dispose()
