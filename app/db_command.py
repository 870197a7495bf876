"""``dces db upgrade``: migrate the service's database to this DCES's schema without serving.

The same upgrade :class:`app.store.database.Database` runs at every ``dces serve`` start, so an
operator can run it first (e.g. as a deploy step, or to see that a PostgreSQL URL works); running
it again changes nothing. Errors exit 2 with one line, as ``dces serve``'s do.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.server import database_problem, settings_problems
from app.settings import Settings
from app.store.database import Database, SchemaVersionError


def upgrade_database(database_url: str | None) -> None:
    """Upgrade the database at ``database_url`` (default: the settings' one) and say what
    changed on stdout."""
    try:
        settings = Settings(database_url=database_url) if database_url else Settings()
    except ValidationError as exc:
        _refuse(settings_problems(exc))
    try:
        db = Database(settings.resolved_database_url)
    except SchemaVersionError as exc:
        _refuse(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        _refuse(database_problem(settings, exc))
    db.close()
    where = make_url(db.url).render_as_string()  # the password hidden
    now = f"schema version {db.schema_version} (revision {db.revision})"
    if db.upgraded_from == db.schema_version:
        print(f"{where}: already at {now}")
    elif db.upgraded_from is None:
        print(f"{where}: created at {now}")
    else:
        print(f"{where}: upgraded from schema version {db.upgraded_from} to {now}")


def _refuse(message: str) -> NoReturn:
    print(f"dces db upgrade: {message}", file=sys.stderr)
    sys.exit(2)
