"""The database engine and its transaction rules; the tables are in :mod:`app.store.tables`.

Portable column types only (strings, integers, floats, text holding JSON), so the same code runs
on the embedded SQLite file and on PostgreSQL. Timestamps are UTC ISO-8601 strings: they sort
lexicographically and read the same in every database.

SQLite runs in WAL mode (readers never wait for the model worker's commit) with
``synchronous=FULL`` (a committed round survives a power cut, not only ``kill -9``), and write
transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of
failing on a stale snapshot.

PostgreSQL runs write transactions concurrently (READ COMMITTED), so every write that reads a
row's state and then changes it or what hangs off it (an upload's totals, a run's reference count
and round number, a job's status) first locks that row with :data:`ROW_LOCK`: writers of the
same run, upload or job queue there as they do on SQLite, and every check they make holds until
they commit. Unique constraints stay as the last line, never as the mechanism.

The file records its schema version (table ``dces_schema``): a DCES older than the file refuses
to open it instead of failing later on a missing column. A database created before the version
was recorded has the version-1 tables and is stamped 1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from app.store.tables import Base, SchemaRow

# Version 1 is the only schema so far, and there is no migration code: ``create_all`` adds missing
# tables but never changes existing ones. A change to the tables must bump this number AND teach
# :meth:`Database._stamp_schema` to migrate files of every older version.
SCHEMA_VERSION = 1

# ``with_for_update`` argument of a read-modify-write: SELECT ... FOR NO KEY UPDATE on PostgreSQL,
# which queues other writers of the row but not inserts of rows referencing it (their foreign key
# check takes a KEY SHARE lock); nothing on SQLite, whose write transactions queue anyway.
ROW_LOCK: dict[str, Any] = {"key_share": True}


class SchemaVersionError(RuntimeError):
    """The database was written by a newer DCES."""


def now_iso(delta_s: float = 0.0) -> str:
    """UTC now (+ ``delta_s``) as a fixed-width ISO string (sorts as time does)."""
    moment = datetime.now(UTC) + timedelta(seconds=delta_s)
    return moment.isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Database:
    """The engine plus ``read()`` / ``write()`` transactions; safe to share across threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._writer = self.engine.execution_options(dces_write=True)
        Base.metadata.create_all(self.engine)
        self.schema_version = self._stamp_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: everything inside commits together or not at all."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def _stamp_schema(self) -> int:
        with self.write() as session:
            row = session.get(SchemaRow, 1)
            if row is None:
                session.add(SchemaRow(id=1, version=SCHEMA_VERSION))
                return SCHEMA_VERSION
            if row.version > SCHEMA_VERSION:
                self.close()
                raise SchemaVersionError(
                    f"database {self.engine.url!r}: schema version {row.version} was written by "
                    f"a newer DCES; this one reads up to version {SCHEMA_VERSION}. Run the newer "
                    f"DCES, or point DCES_DATABASE_URL / DCES_DATA_DIR at another database.")
            return row.version


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cursor = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("dces_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
