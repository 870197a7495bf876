"""The database's schema migrations (Alembic): ``env.py`` and one file per revision in
``versions/``, applied by :class:`app.store.database.Database` whenever it opens a database, and by
``dces db upgrade``.

Revisions are written out in full (``op.create_table`` with literal columns), never derived from
:mod:`app.store.tables`: a revision must build the schema of its day even after the tables move on.
Each revision also sets the ``dces_schema`` version that it corresponds to (see
:data:`app.store.database.SCHEMA_VERSION`), so a DCES from before the migrations still refuses a
database that a newer one upgraded.

A new revision: ``alembic -c app/store/migrations/alembic.ini revision --rev-id 0004 -m "what"``
(the URL is DCES's own, from the ``DCES_*`` settings), then write its ``upgrade`` and
``downgrade`` by hand, bump ``SCHEMA_VERSION`` and the ORM tables, and check that
``tests/service/test_migrations.py`` finds the migrated schema equal to the tables on both
databases.
"""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent
# The revision equal to the schema of DCES before the migrations (schema version 1): a database
# written by that release is stamped with it, then upgraded.
BASELINE = "0001"
