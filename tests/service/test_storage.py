"""Storage on a real SQLite file and a real PostgreSQL database (a new one for every test):
transactions, idempotency, feedback rules, staged uploads, the schema version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db_models import SCHEMA_VERSION, Database, SchemaVersionError
from app.job_storage import JobStore, content_hash
from app.problems import Conflict, InvalidInput, LimitExceeded, NotFound
from app.storage import RunStore, dumps
from curation.types import CurationInputError

from .conftest import BACKENDS, postgres_database

SAMPLES = [{"id": f"s{i}", "text": f"sample number {i} has some words", "tag": i}
           for i in range(6)]
# Refuses a job's success inside the database, as a failing disk or constraint would.
REFUSE_SUCCESS = {
    "sqlite": ["CREATE TRIGGER refuse BEFORE UPDATE OF status ON jobs WHEN NEW.status = "
               "'succeeded' BEGIN SELECT RAISE(ABORT, 'refused'); END"],
    "postgresql": ["CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'refused' USING ERRCODE = 'integrity_constraint_violation'; "
                   "END $$",
                   "CREATE TRIGGER refuse BEFORE UPDATE OF status ON jobs FOR EACH ROW "
                   "WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION refuse()"],
}
ALLOW_SUCCESS = {"sqlite": ["DROP TRIGGER refuse"], "postgresql": ["DROP TRIGGER refuse ON jobs"]}


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dces.sqlite3'}"
    else:
        with postgres_database() as pg_url:
            yield pg_url


@pytest.fixture
def stores(url: str) -> Iterator[tuple[Database, RunStore, JobStore]]:
    db = Database(url)
    runs = RunStore(db)
    yield db, runs, JobStore(db, runs)
    db.close()


def sql(db: Database, *statements: str) -> Any:
    """Run statements outside the stores, as another client of the database would; returns
    the last one's first column of its first row (if it returns rows)."""
    with db.engine.begin() as con:
        for statement in statements:
            result = con.execute(text(statement))
        return result.scalar() if result.returns_rows else None


def fake_result(n: int) -> dict[str, Any]:
    samples = [{"id": s["id"], "selected": True, "text": s["text"]} for s in SAMPLES[:n]]
    return {"round": 0, "selected": n, "samples": samples, "health": {"vendi": 1.5, "alerts": []},
            "clusters": [{"cluster": 0}]}


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'dces.sqlite3'}")
    with db.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.close()


def test_a_round_commits_in_one_transaction(stores: tuple[Any, ...]) -> None:
    db, runs, jobs = stores
    run = runs.create_run("r", {}, {})["id"]
    job, created = jobs.create_round_job(run, "k", "h", 3, None, samples=SAMPLES)
    assert created
    inp = jobs.start_job(job["id"])
    assert inp is not None and [s["id"] for s in inp.samples] == [s["id"] for s in SAMPLES]
    assert inp.samples[0]["tag"] == 0  # extra fields travel with the samples
    # Make the last statement of the commit fail inside the database: nothing may remain.
    sql(db, *REFUSE_SUCCESS[db.dialect])
    with pytest.raises(IntegrityError):
        jobs.commit_round(inp, fake_result(6), {"round": 1})
    assert runs.list_rounds(run) == [] and runs.run_state(run) is None
    assert runs.get_run(run)["rounds"] == 0 and jobs.get_job(job["id"])["status"] == "running"
    assert sql(db, *ALLOW_SUCCESS[db.dialect], "SELECT count(*) FROM upload_samples") == 6
    jobs.commit_round(inp, fake_result(6), {"round": 1})
    assert runs.run_state(run) == {"round": 1} and jobs.get_job(job["id"])["round"] == 0
    assert sql(db, "SELECT count(*) FROM upload_samples") == 0  # the staged samples are gone
    with pytest.raises(Conflict):  # the same input can never make a second round
        jobs.commit_round(inp, fake_result(6), {"round": 1})


def test_round_json_is_the_stored_result(stores: tuple[Any, ...]) -> None:
    _, runs, jobs = stores
    run = runs.create_run(None, {}, {})["id"]
    job, _ = jobs.create_round_job(run, None, "h", 2, {"loss": 1.0}, samples=SAMPLES[:2])
    inp = jobs.start_job(job["id"])
    assert inp is not None and inp.feedback == {"loss": 1.0} and inp.feedback_source == "body"
    result = {**fake_result(2), "health": {"vendi": float("nan"), "alerts": ["a"]}}
    jobs.commit_round(inp, result, {"round": 1})
    import json

    stored = json.loads(runs.round_json(run, 0))
    assert stored["samples"] == result["samples"] and stored["health"]["vendi"] is None
    assert stored["run_id"] == run and stored["feedback"] == {"loss": 1.0}
    assert runs.list_rounds(run)[0]["alerts"] == ["a"]
    rounds, series, alerts = runs.health_series(run)
    assert rounds == [0] and series == {} and alerts == ["a"]  # NaN stored as null: no series
    with pytest.raises(NotFound):
        runs.round_json(run, 1)


def test_idempotency_key_finds_the_first_job(stores: tuple[Any, ...]) -> None:
    _, runs, jobs = stores
    run = runs.create_run(None, {}, {})["id"]
    first, created = jobs.create_round_job(run, "key", "h1", 2, None, samples=SAMPLES)
    again, created_again = jobs.create_round_job(run, "key", "h2", 2, None, samples=SAMPLES)
    assert created and not created_again and again["id"] == first["id"]
    assert again["request_hash"] == "h1"  # the caller compares and answers 409
    other_run = runs.create_run(None, {}, {})["id"]
    assert jobs.create_round_job(other_run, "key", "h1", 2, None, samples=SAMPLES)[1]


def test_feedback_can_change_only_until_it_is_used(stores: tuple[Any, ...]) -> None:
    _, runs, jobs = stores
    run = runs.create_run(None, {}, {})["id"]
    with pytest.raises(InvalidInput):
        runs.put_feedback(run, None, {"loss": 1.0})
    for n in range(2):
        job, _ = jobs.create_round_job(run, None, "h", 2, None, samples=SAMPLES)
        inp = jobs.start_job(job["id"])
        assert inp is not None and inp.round == n
        jobs.commit_round(inp, fake_result(2), {"round": n + 1})
        assert runs.put_feedback(run, None, {"loss": 1.0 + n})[1] is True
    assert runs.put_feedback(run, 1, {"loss": 5.0})[1] is True  # latest: may be replaced
    assert runs.put_feedback(run, 0, {"loss": 1.0})[1] is False  # used, unchanged: a no-op
    with pytest.raises(Conflict):
        runs.put_feedback(run, 0, {"loss": 9.0})
    with pytest.raises(InvalidInput):
        runs.put_feedback(run, 2, {"loss": 9.0})
    assert [f["metrics"] for f in runs.list_feedback(run)] == [{"loss": 1.0}, {"loss": 5.0}]


def test_reference_appends_by_id(stores: tuple[Any, ...]) -> None:
    _, runs, _ = stores
    run = runs.create_run(None, {}, {})["id"]
    assert runs.add_reference(run, SAMPLES[:4], 10) == (4, 0, 4)
    assert runs.add_reference(run, SAMPLES[2:], 10) == (2, 2, 6)
    with pytest.raises(Conflict, match="s0"):
        runs.add_reference(run, [{"id": "s0", "text": "changed"}], 10)
    with pytest.raises(LimitExceeded, match="max_reference_samples = 7"):
        runs.add_reference(run, [{"id": "x", "text": "a"}, {"id": "y", "text": "b"}], 7)
    total, page = runs.reference_page(run, 2, 4)
    assert total == 6 and page == SAMPLES[4:6]


def test_upload_parts_are_idempotent_and_ids_unique_across_parts(stores: tuple[Any, ...]) -> None:
    _, runs, jobs = stores
    run = runs.create_run(None, {}, {})["id"]
    upload = jobs.create_upload(run, 60)["id"]
    assert jobs.put_part(run, upload, 1, SAMPLES[:3], 5)["unchanged"] is False
    digest = jobs.upload_digest(run, upload)
    assert jobs.put_part(run, upload, 1, SAMPLES[:3], 5)["unchanged"] is True
    assert jobs.upload_digest(run, upload) == digest
    with pytest.raises(Conflict):
        jobs.put_part(run, upload, 1, SAMPLES[3:], 5)
    with pytest.raises(CurationInputError, match=r"samples\[1\]\.id: duplicate id 's2'"):
        jobs.put_part(run, upload, 2, [SAMPLES[5], SAMPLES[2]], 5)
    with pytest.raises(LimitExceeded, match="max_samples_per_round = 5"):
        jobs.put_part(run, upload, 2, SAMPLES[3:], 5)
    jobs.put_part(run, upload, 2, SAMPLES[3:5], 5)
    job, _ = jobs.create_round_job(run, None, "h", 2, None, upload_id=upload)
    assert job["samples"] == 5
    with pytest.raises(Conflict):  # a submitted upload takes no more parts
        jobs.put_part(run, upload, 3, SAMPLES[5:], 10)
    inp = jobs.start_job(job["id"])
    assert inp is not None and [s["id"] for s in inp.samples] == [f"s{i}" for i in range(5)]


def test_expired_uploads_are_removed(stores: tuple[Any, ...]) -> None:
    _, runs, jobs = stores
    run = runs.create_run(None, {}, {})["id"]
    stale = jobs.create_upload(run, -1)["id"]
    fresh = jobs.create_upload(run, 3600)["id"]
    assert jobs.expire_uploads() == 1
    with pytest.raises(NotFound):
        jobs.get_upload(run, stale)
    assert jobs.get_upload(run, fresh)["status"] == "open"


def test_deleting_a_run_deletes_everything_under_it(stores: tuple[Any, ...]) -> None:
    db, runs, jobs = stores
    run = runs.create_run(None, {}, {})["id"]
    runs.add_reference(run, SAMPLES, 10)
    job, _ = jobs.create_round_job(run, "k", "h", 2, None, samples=SAMPLES)
    runs.delete_run(run)
    for table in ("reference_samples", "jobs", "uploads", "upload_samples", "rounds"):
        assert sql(db, f"SELECT count(*) FROM {table}") == 0, table
    with pytest.raises(NotFound):
        jobs.get_job(job["id"])


def test_the_schema_version_is_recorded_and_a_newer_file_is_refused(url: str) -> None:
    db = Database(url)
    run = RunStore(db).create_run("kept", {}, {})["id"]
    assert sql(db, "SELECT version FROM dces_schema") == SCHEMA_VERSION
    sql(db, "DROP TABLE dces_schema")  # as a database from before the version was recorded
    db.close()
    db = Database(url)
    assert db.schema_version == 1 and RunStore(db).get_run(run)["name"] == "kept"
    sql(db, f"UPDATE dces_schema SET version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1} was "
                                                 f"written by a newer DCES"):
        Database(url)


def test_hashing_and_json_helpers() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert dumps({"x": float("inf"), "t": "é\ud800"}) == '{"x":null,"t":"\\u00e9\\ud800"}'
