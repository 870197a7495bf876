"""Schema migrations (Alembic, app/store/migrations) on a real SQLite file and a real PostgreSQL
database: a database written by the release before the migrations is stamped and upgraded, at
service start and by `dces db upgrade`; the migrated schema is exactly the ORM's tables; a newer
database is refused untouched.

The release before the migrations created its tables with ``Base.metadata.create_all``; its DDL
is captured below as literal SQL (what that call emitted on each backend), with the schema marker
``dces_schema`` at version 1, so the tests do not depend on today's table definitions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from app.store.database import SCHEMA_VERSION, Database, SchemaVersionError
from app.store.jobs import JobStore
from app.store.migrations import MIGRATIONS_DIR
from app.store.reference import ReferenceStore
from app.store.rounds import RoundStore
from app.store.runs import RunStore
from app.store.tables import Base

from .conftest import BACKENDS, REPO, DCESServer, postgres_database

HEAD = "0003"
# `Base.metadata.create_all` of the release before the migrations (schema version 1), as it ran
# on each backend; {serial} is SERIAL on PostgreSQL (an autoincrementing integer key).
VERSION_1_DDL = """
CREATE TABLE dces_schema (id {serial} NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (id));
CREATE TABLE runs (
    id VARCHAR(40) NOT NULL, name VARCHAR(200), created_at VARCHAR(40) NOT NULL,
    overrides_json TEXT NOT NULL, config_json TEXT NOT NULL, rounds INTEGER NOT NULL,
    state_json TEXT, PRIMARY KEY (id));
CREATE TABLE reference_samples (
    seq {serial} NOT NULL, run_id VARCHAR(40) NOT NULL, sample_id VARCHAR(512) NOT NULL,
    text TEXT NOT NULL, extra_json TEXT, PRIMARY KEY (seq), UNIQUE (run_id, sample_id),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
CREATE INDEX ix_reference_samples_run_id ON reference_samples (run_id);
CREATE TABLE rounds (
    run_id VARCHAR(40) NOT NULL, n INTEGER NOT NULL, created_at VARCHAR(40) NOT NULL,
    job_id VARCHAR(40), budget INTEGER NOT NULL, samples INTEGER NOT NULL,
    selected INTEGER NOT NULL, feedback_json TEXT, feedback_source VARCHAR(10) NOT NULL,
    report_json TEXT NOT NULL, samples_json TEXT NOT NULL, state_json TEXT NOT NULL,
    PRIMARY KEY (run_id, n), FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
CREATE TABLE feedback (
    run_id VARCHAR(40) NOT NULL, round INTEGER NOT NULL, metrics_json TEXT NOT NULL,
    created_at VARCHAR(40) NOT NULL, PRIMARY KEY (run_id, round),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
CREATE TABLE uploads (
    id VARCHAR(40) NOT NULL, run_id VARCHAR(40) NOT NULL, status VARCHAR(12) NOT NULL,
    parts INTEGER NOT NULL, samples INTEGER NOT NULL, created_at VARCHAR(40) NOT NULL,
    expires_at VARCHAR(40) NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
CREATE INDEX ix_uploads_run_id ON uploads (run_id);
CREATE TABLE jobs (
    id VARCHAR(40) NOT NULL, kind VARCHAR(20) NOT NULL, run_id VARCHAR(40),
    status VARCHAR(12) NOT NULL, stage VARCHAR(40), progress FLOAT NOT NULL,
    upload_id VARCHAR(40), samples INTEGER NOT NULL, budget INTEGER NOT NULL,
    feedback_json TEXT, idempotency_key VARCHAR(255), request_hash VARCHAR(64) NOT NULL,
    attempts INTEGER NOT NULL, round INTEGER, error_json TEXT, note TEXT,
    created_at VARCHAR(40) NOT NULL, started_at VARCHAR(40), finished_at VARCHAR(40),
    PRIMARY KEY (id), UNIQUE (run_id, idempotency_key),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
CREATE INDEX ix_jobs_run_id ON jobs (run_id);
CREATE INDEX ix_jobs_status ON jobs (status);
CREATE TABLE upload_parts (
    upload_id VARCHAR(40) NOT NULL, part INTEGER NOT NULL, sha256 VARCHAR(64) NOT NULL,
    samples INTEGER NOT NULL, PRIMARY KEY (upload_id, part),
    FOREIGN KEY(upload_id) REFERENCES uploads (id) ON DELETE CASCADE);
CREATE TABLE upload_samples (
    upload_id VARCHAR(40) NOT NULL, part INTEGER NOT NULL, idx INTEGER NOT NULL,
    sample_id VARCHAR(512) NOT NULL, text TEXT NOT NULL, extra_json TEXT,
    PRIMARY KEY (upload_id, part, idx), UNIQUE (upload_id, sample_id),
    FOREIGN KEY(upload_id) REFERENCES uploads (id) ON DELETE CASCADE)
"""
RUN = "run_0123456789abcdef0123456789abcdef"
JOB = "job_0123456789abcdef0123456789abcdef"
T0 = "2025-01-02T03:04:05.678+00:00"
# A run with a reference sample, one committed round (its job) and feedback, as that release
# stored them.
VERSION_1_ROWS = [
    f"INSERT INTO runs VALUES ('{RUN}', 'before migrations', '{T0}', '{{}}', "
    """'{"seed": 7}', 1, '{"round": 1}')""",
    f"""INSERT INTO reference_samples (run_id, sample_id, text, extra_json) VALUES
        ('{RUN}', 'r1', 'a real reference text', '{{"tag": 1}}')""",
    f"""INSERT INTO jobs (id, kind, run_id, status, stage, progress, samples, budget,
        request_hash, attempts, round, created_at, finished_at) VALUES
        ('{JOB}', 'round', '{RUN}', 'succeeded', 'done', 1.0, 3, 2, 'h', 1, 0, '{T0}', '{T0}')""",
    f"""INSERT INTO rounds VALUES ('{RUN}', 0, '{T0}', '{JOB}', 2, 3, 2, NULL, 'none',
        '{{"selected": 2, "health": {{"alerts": [], "distinct_2": 0.5}}}}', '[]',
        '{{"round": 1}}')""",
    f"""INSERT INTO feedback VALUES ('{RUN}', 0, '{{"eval_loss": 1.5}}', '{T0}')""",
]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dces.sqlite3'}"
    else:
        with postgres_database() as pg_url:
            yield pg_url


def write_version_1(url: str, marker: bool = True) -> None:
    """The database as the release before the migrations left it: its tables, a run, and the
    ``dces_schema`` marker at version 1 (``marker=False``: from before the marker existed)."""
    engine = create_engine(url)
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as con:
        for statement in VERSION_1_DDL.format(serial=serial).split(";"):
            con.execute(text(statement))
        if marker:
            con.execute(text("INSERT INTO dces_schema (id, version) VALUES (1, 1)"))
        else:
            con.execute(text("DROP TABLE dces_schema"))
        for statement in VERSION_1_ROWS:
            con.execute(text(statement))
    engine.dispose()


def scalar(url: str, statement: str) -> object:
    """Run one statement as another client of the database would; its first value, if any."""
    engine = create_engine(url)
    with engine.begin() as con:
        result = con.execute(text(statement))
        value = result.scalar() if result.returns_rows else None
    engine.dispose()
    return value


def schema_differences(db: Database) -> list[object]:
    """What Alembic's autogenerate would change to make the database match the ORM tables."""
    with db.engine.connect() as con:
        context = MigrationContext.configure(con, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def assert_run_readable(db: Database) -> None:
    run = RunStore(db).get_run(RUN)
    assert (run.name, run.rounds, run.reference_samples, run.config) == (
        "before migrations", 1, 1, {"seed": 7})
    assert [r.round for r in RoundStore(db).list_rounds(RUN)] == [0]
    assert json.loads(RoundStore(db).round_json(RUN, 0))["health"]["distinct_2"] == 0.5
    assert ReferenceStore(db).reference_page(RUN, 10, 0)[1][0]["tag"] == 1
    job = JobStore(db, "test").get_job(JOB)
    assert job.round == 0 and job.owner is None  # written before replicas
    # It belongs to the default tenant: the one of a server with one token or none.
    assert RunStore(db).run_tenant(RUN) == "default"
    assert RunStore(db).list_runs(10, 0, "default")[1] == 1
    assert RunStore(db).list_runs(10, 0, "someone-else") == ([], 0)


@pytest.mark.parametrize("marker", [True, False], ids=["version-1", "before-the-marker"])
def test_a_database_of_the_previous_release_is_upgraded_and_its_run_kept(
        url: str, marker: bool) -> None:
    write_version_1(url, marker)
    db = Database(url)
    assert (db.upgraded_from, db.schema_version, db.revision) == (1, SCHEMA_VERSION, HEAD)
    assert_run_readable(db)
    assert schema_differences(db) == []
    new = RunStore(db).create_run("after", {}, {}, tenant="alpha").id
    assert RunStore(db).run_tenant(new) == "alpha"
    db.close()
    db = Database(url)  # opening again changes nothing
    assert (db.upgraded_from, db.schema_version, db.revision) == (SCHEMA_VERSION,) * 2 + (HEAD,)
    assert_run_readable(db)
    db.close()


def test_an_empty_database_gets_the_tables_and_downgrades_and_upgrades_again(url: str) -> None:
    db = Database(url)
    assert (db.upgraded_from, db.schema_version, db.revision) == (None, SCHEMA_VERSION, HEAD)
    assert schema_differences(db) == []
    assert scalar(url, "SELECT version FROM dces_schema") == SCHEMA_VERSION
    run = RunStore(db).create_run("kept", {}, {}, tenant="alpha").id
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as con:
        config.attributes["connection"] = con
        command.downgrade(config, "0001")
    db.close()
    assert scalar(url, "SELECT version FROM dces_schema") == 1
    db = Database(url)
    assert (db.upgraded_from, db.revision) == (1, HEAD) and schema_differences(db) == []
    assert RunStore(db).run_tenant(run) == "default"  # the downgrade forgot it
    db.close()


def test_an_unfinished_job_of_revision_0002_is_taken_by_any_replica_after_the_upgrade(
        url: str) -> None:
    """A job queued or running before jobs had owners has none after the upgrade to 0003: the
    first replica to look claims it at once, however long its lease."""
    write_version_1(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = create_engine(url)
    with engine.begin() as con:
        MigrationContext.configure(con).stamp(ScriptDirectory(str(MIGRATIONS_DIR)), "0001")
        config.attributes["connection"] = con
        command.upgrade(config, "0002")
        con.execute(text(f"UPDATE jobs SET status = 'running', round = NULL WHERE id = '{JOB}'"))
    engine.dispose()
    db = Database(url)
    assert (db.upgraded_from, db.revision) == (2, HEAD) and schema_differences(db) == []
    claimed = JobStore(db, "replica-a").claim_abandoned(lease_s=3600)
    assert [(j.id, j.status, j.owner) for j in claimed] == [(JOB, "running", None)]
    assert JobStore(db, "replica-a").get_job(JOB).owner == "replica-a"
    assert JobStore(db, "replica-b").claim_abandoned(lease_s=3600) == []  # its lease is fresh
    db.close()


def test_concurrent_starts_on_an_empty_database_migrate_once(url: str) -> None:
    def start(_: int) -> int | None:
        db = Database(url)
        db.close()
        return db.upgraded_from

    with ThreadPoolExecutor(4) as pool:
        found = sorted(pool.map(start, range(4)), key=str)
    assert found == [SCHEMA_VERSION] * 3 + [None]
    assert scalar(url, "SELECT count(*) FROM alembic_version") == 1


def test_a_newer_database_is_refused_untouched(url: str) -> None:
    Database(url).close()
    for update, message in [
            ("UPDATE alembic_version SET version_num = '0099'", "schema revision '0099'"),
            (f"UPDATE dces_schema SET version = {SCHEMA_VERSION + 1}",
             f"schema version {SCHEMA_VERSION + 1}")]:
        scalar(url, update)
        with pytest.raises(SchemaVersionError, match=f"{message} was written by a newer DCES"):
            Database(url)
    assert scalar(url, "SELECT version_num FROM alembic_version") == "0099"
    assert scalar(url, "SELECT version FROM dces_schema") == SCHEMA_VERSION + 1


def db_upgrade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_dces_db_upgrade_upgrades_once_then_changes_nothing(url: str) -> None:
    write_version_1(url)
    first = db_upgrade("--database-url", url)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from schema version 1 to schema version {SCHEMA_VERSION} (revision " \
           f"{HEAD})" in first.stdout
    for _ in range(2):
        again = db_upgrade("--database-url", url)
        assert again.returncode == 0, again.stderr
        assert f"already at schema version {SCHEMA_VERSION} (revision {HEAD})" in again.stdout
    db = Database(url)
    assert_run_readable(db)
    db.close()
    scalar(url, f"UPDATE dces_schema SET version = {SCHEMA_VERSION + 3}")
    newer = db_upgrade("--database-url", url)
    assert newer.returncode == 2 and "Traceback" not in newer.stderr, newer.stderr
    assert newer.stderr.startswith("dces db upgrade: ") and "newer DCES" in newer.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_service_upgrades_a_database_of_the_previous_release_at_start(
        backend: str, tmp_path: Path) -> None:
    sqlite = nullcontext(f"sqlite:///{tmp_path / 'previous-release.sqlite3'}")
    with postgres_database() if backend == "postgresql" else sqlite as url:
        write_version_1(url)
        server = DCESServer(tmp_path, database_url=url)
        try:
            server.start()
            with server.http() as http:
                run = http.get(f"/v1/runs/{RUN}")
                assert run.status_code == 200, run.text
                assert (run.json()["name"], run.json()["reference_samples"]) == (
                    "before migrations", 1)
                assert http.get("/v1/runs").json()["total"] == 1
                rounds = http.get(f"/v1/runs/{RUN}/rounds").json()["rounds"]
                assert [r["round"] for r in rounds] == [0]
                assert http.get(f"/v1/runs/{RUN}/feedback").json()["feedback"][0]["metrics"] \
                    == {"eval_loss": 1.5}
                assert http.get(f"/v1/jobs/{JOB}").json()["status"] == "succeeded"
            assert "database schema upgraded" in server.log()
        finally:
            if server.proc is not None:
                server.stop()
        assert scalar(url, "SELECT version_num FROM alembic_version") == HEAD


def test_migrations_ship_with_the_package() -> None:
    """The wheel holds the Alembic environment: env.py and the revisions are modules of the
    app.store.migrations package, the rest is package data."""
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "store/migrations/script.py.mako" in data["package-data"]["app"]
    for package in (MIGRATIONS_DIR, MIGRATIONS_DIR / "versions"):
        assert (package / "__init__.py").exists()
