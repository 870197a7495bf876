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

The schema comes from the migrations (:mod:`app.store.migrations`, Alembic): opening a database
upgrades it to the newest revision, in one transaction that concurrent starters queue on. A
database written before the migrations (the version-1 tables, with or without the ``dces_schema``
marker) is stamped with the baseline revision first, then upgraded. The ``dces_schema`` version
moves with the revisions, so a DCES older than the file refuses to open it instead of failing
later on a missing column, and so does this one when the file has a revision it does not know.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.problems import StorageFull
from app.store.disk import DiskGuard, is_disk_full
from app.store.migrations import BASELINE, MIGRATIONS_DIR
from app.store.tables import Base

log = logging.getLogger("dces.store")

# The ``dces_schema`` version of the newest revision in app/store/migrations/versions (each
# revision sets its own): 1 is the schema from before the migrations, 2 added tenants, 3 job
# owners (replicas).
SCHEMA_VERSION = 3
# Serialises schema upgrades on PostgreSQL (pg_advisory_xact_lock): two processes starting at
# once on an empty database must not both create the tables.
_MIGRATION_LOCK = 0x0DCE5_5C4E

# ``with_for_update`` argument of a read-modify-write: SELECT ... FOR NO KEY UPDATE on PostgreSQL,
# which queues other writers of the row but not inserts of rows referencing it (their foreign key
# check takes a KEY SHARE lock); nothing on SQLite, whose write transactions queue anyway.
ROW_LOCK: dict[str, Any] = {"key_share": True}
STORAGE_RETRY_S = 30  # Retry-After of a write refused for a full disk


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

    def __init__(self, url: str, reserve_bytes: int = 0) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.disk = DiskGuard(_sqlite_dir(url), reserve_bytes)
        self._writer = self.engine.execution_options(dces_write=True)
        try:
            upgrade = self._upgrade_schema()
        except BaseException:
            self.close()
            raise
        self.upgraded_from: int | None = upgrade.before
        self.schema_version, self.revision = upgrade.version, upgrade.revision

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: everything inside commits together or not at all. A full disk is
        :class:`StorageFull` (and releases the disk reserve, see :mod:`app.store.disk`)."""
        try:
            with Session(self._writer, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self.disk.on_full()
            raise StorageFull(
                f"the database's disk is full; delete runs that are no longer needed "
                f"(DELETE /v1/runs/{{id}} works on a full disk) or free space, then retry after "
                f"{STORAGE_RETRY_S} s", headers={"Retry-After": str(STORAGE_RETRY_S)}) from exc
        self.disk.on_write()

    def close(self) -> None:
        self.engine.dispose()

    def _upgrade_schema(self) -> SchemaUpgrade:
        """Upgrade to the newest revision in one write transaction (a failure leaves the
        database as it was); a database of a newer DCES is refused untouched."""
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            tables = set(inspect(conn).get_table_names())
            before = conn.scalar(text("SELECT version FROM dces_schema WHERE id = 1")) \
                if "dces_schema" in tables else None
            if before is not None and before > SCHEMA_VERSION:
                raise self._newer(f"schema version {before}")
            script = ScriptDirectory(str(MIGRATIONS_DIR))
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None:
                try:
                    script.get_revision(current)
                except CommandError:
                    raise self._newer(f"schema revision {current!r}") from None
            elif "runs" in tables:  # written before the migrations: the baseline's tables
                if before is None:  # ... and before the version was recorded
                    Base.metadata.tables["dces_schema"].create(conn, checkfirst=True)
                    conn.execute(text("INSERT INTO dces_schema (id, version) VALUES (1, 1)"))
                    before = 1
                MigrationContext.configure(conn).stamp(script, BASELINE)
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            version = conn.scalar(text("SELECT version FROM dces_schema WHERE id = 1"))
            revision = MigrationContext.configure(conn).get_current_revision()
            # The newest revision must set SCHEMA_VERSION (else nothing commits).
            assert revision is not None and revision == script.get_current_head(), revision
            assert version == SCHEMA_VERSION, (version, revision)
        if before != version:
            log.info("database schema upgraded", extra={
                "from_version": before, "to_version": version, "revision": revision})
        return SchemaUpgrade(before, version, revision)

    def _newer(self, what: str) -> SchemaVersionError:
        return SchemaVersionError(
            f"database {self.engine.url!r}: {what} was written by a newer DCES; this one reads "
            f"up to version {SCHEMA_VERSION}. Run the newer DCES, or point DCES_DATABASE_URL / "
            f"DCES_DATA_DIR at another database.")


class SchemaUpgrade(NamedTuple):
    before: int | None  # the version found; None: an empty database
    version: int
    revision: str


def _sqlite_dir(url: str) -> Path | None:
    """The directory of a SQLite file database (where its disk reserve goes), else None."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1]
    return None if not path or path == ":memory:" else Path(path).parent


SQLITE_BUSY_TIMEOUT_S = 30


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the database is locked: on a new file another
    process creating it at the same time (replicas starting together) makes the switch fail at
    once, without SQLite's busy handler (1 start in ~15 of four concurrent ones here)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cursor = dbapi_conn.cursor()
        _use_wal(cursor)
        # secure_delete=FAST: Debian builds SQLite to zero every freed page, which makes a
        # delete write as much as it frees (a run could not be deleted on a full disk); FAST
        # zeroes what costs no extra I/O, so freed overflow pages keep their bytes until reused.
        for pragma in ("synchronous=FULL", "foreign_keys=ON",
                       f"busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}", "secure_delete=FAST"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("dces_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
