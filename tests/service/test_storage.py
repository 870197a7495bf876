"""Storage on a real SQLite file and a real PostgreSQL database (a new one for every test):
transactions, idempotency, feedback rules, staged uploads, the schema version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.problems import Conflict, InvalidInput, LimitExceeded, NotFound
from app.store.database import SCHEMA_VERSION, Database, SchemaVersionError
from app.store.encoding import content_hash, dumps
from app.store.feedback import FeedbackStore
from app.store.jobs import JobStore
from app.store.records import JobStatus, UploadStatus
from app.store.reference import ReferenceStore
from app.store.rounds import RoundStore
from app.store.runs import RunStore
from app.store.uploads import UploadStore
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


@dataclass(frozen=True)
class Stores:
    db: Database
    runs: RunStore
    reference: ReferenceStore
    feedback: FeedbackStore
    rounds: RoundStore
    uploads: UploadStore
    jobs: JobStore


@pytest.fixture
def stores(url: str) -> Iterator[Stores]:
    db = Database(url)
    yield Stores(db, RunStore(db), ReferenceStore(db), FeedbackStore(db), RoundStore(db),
                 UploadStore(db), JobStore(db, "test"))
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


def test_a_round_commits_in_one_transaction(stores: Stores) -> None:
    db = stores.db
    run = stores.runs.create_run("r", {}, {}).id
    job, created = stores.jobs.create_round_job(run, "k", "h", 3, None, samples=SAMPLES)
    assert created
    inp = stores.jobs.start_job(job.id)
    assert inp is not None and [s["id"] for s in inp.samples] == [s["id"] for s in SAMPLES]
    assert inp.samples[0]["tag"] == 0  # extra fields travel with the samples
    # Make the last statement of the commit fail inside the database: nothing may remain.
    sql(db, *REFUSE_SUCCESS[db.dialect])
    with pytest.raises(IntegrityError):
        stores.jobs.commit_round(inp, fake_result(6), {"round": 1})
    assert stores.rounds.list_rounds(run) == [] and stores.runs.run_state(run) is None
    assert stores.runs.get_run(run).rounds == 0
    assert stores.jobs.get_job(job.id).status is JobStatus.RUNNING
    assert sql(db, *ALLOW_SUCCESS[db.dialect], "SELECT count(*) FROM upload_samples") == 6
    stores.jobs.commit_round(inp, fake_result(6), {"round": 1})
    assert stores.runs.run_state(run) == {"round": 1} and stores.jobs.get_job(job.id).round == 0
    assert sql(db, "SELECT count(*) FROM upload_samples") == 0  # the staged samples are gone
    with pytest.raises(Conflict):  # the same input can never make a second round
        stores.jobs.commit_round(inp, fake_result(6), {"round": 1})


def test_round_json_is_the_stored_result(stores: Stores) -> None:
    run = stores.runs.create_run(None, {}, {}).id
    job, _ = stores.jobs.create_round_job(run, None, "h", 2, {"loss": 1.0}, samples=SAMPLES[:2])
    inp = stores.jobs.start_job(job.id)
    assert inp is not None and inp.feedback == {"loss": 1.0} and inp.feedback_source == "body"
    result = {**fake_result(2), "health": {"vendi": float("nan"), "alerts": ["a"]}}
    stores.jobs.commit_round(inp, result, {"round": 1})
    import json

    stored = json.loads(stores.rounds.round_json(run, 0))
    assert stored["samples"] == result["samples"] and stored["health"]["vendi"] is None
    assert stored["run_id"] == run and stored["feedback"] == {"loss": 1.0}
    assert stores.rounds.list_rounds(run)[0].alerts == ["a"]
    rounds, series, alerts = stores.rounds.health_series(run)
    assert rounds == [0] and series == {} and alerts == ["a"]  # NaN stored as null: no series
    with pytest.raises(NotFound):
        stores.rounds.round_json(run, 1)


def test_idempotency_key_finds_the_first_job(stores: Stores) -> None:
    run = stores.runs.create_run(None, {}, {}).id
    first, created = stores.jobs.create_round_job(run, "key", "h1", 2, None, samples=SAMPLES)
    again, created_again = stores.jobs.create_round_job(run, "key", "h2", 2, None,
                                                        samples=SAMPLES)
    assert created and not created_again and again.id == first.id
    assert again.request_hash == "h1"  # the caller compares and answers 409
    other_run = stores.runs.create_run(None, {}, {}).id
    assert stores.jobs.create_round_job(other_run, "key", "h1", 2, None, samples=SAMPLES)[1]


def test_feedback_merges_until_it_is_used(stores: Stores) -> None:
    run = stores.runs.create_run(None, {}, {}).id
    feedback = stores.feedback

    def put(n: int | None, metrics: dict[str, float]) -> tuple[bool, list[str]]:
        _, created, replaced = feedback.put_feedback(run, n, metrics, max_metrics=3)
        return created, replaced

    with pytest.raises(InvalidInput):
        put(None, {"loss": 1.0})
    for n in range(2):
        job, _ = stores.jobs.create_round_job(run, None, "h", 2, None, samples=SAMPLES)
        inp = stores.jobs.start_job(job.id)
        assert inp is not None and inp.round == n
        stores.jobs.commit_round(inp, fake_result(2), {"round": n + 1})
        assert put(None, {"loss": 1.0 + n}) == (True, [])
    assert put(1, {"loss": 5.0, "ece": 0.1}) == (False, ["loss"])  # latest: merged
    assert put(1, {"entropy": 3.0}) == (False, [])  # a new metric joins the others
    with pytest.raises(LimitExceeded, match="round 1 would have 4 metrics with these, over "
                                            "max_feedback_metrics = 3"):
        put(1, {"distinct_2": 0.9})
    assert put(0, {"loss": 1.0}) == (False, [])  # used, unchanged: a no-op
    with pytest.raises(Conflict):
        put(0, {"loss": 9.0})
    with pytest.raises(Conflict):
        put(0, {"ece": 9.0})  # a new metric changes a used round too
    with pytest.raises(InvalidInput):
        put(2, {"loss": 9.0})
    assert [f.metrics for f in feedback.list_feedback(run)] == [
        {"loss": 1.0}, {"loss": 5.0, "ece": 0.1, "entropy": 3.0}]


def test_reference_appends_by_id(stores: Stores) -> None:
    run = stores.runs.create_run(None, {}, {}).id
    assert stores.reference.add_reference(run, SAMPLES[:4], 10) == (4, 0, 4)
    assert stores.reference.add_reference(run, SAMPLES[2:], 10) == (2, 2, 6)
    with pytest.raises(Conflict, match="s0"):
        stores.reference.add_reference(run, [{"id": "s0", "text": "changed"}], 10)
    with pytest.raises(LimitExceeded, match="max_reference_samples = 7"):
        stores.reference.add_reference(run, [{"id": "x", "text": "a"}, {"id": "y", "text": "b"}], 7)
    total, page = stores.reference.reference_page(run, 2, 4)
    assert total == 6 and page == SAMPLES[4:6]


def test_upload_parts_are_idempotent_and_ids_unique_across_parts(stores: Stores) -> None:
    run = stores.runs.create_run(None, {}, {}).id
    upload = stores.uploads.create_upload(run, 60).id
    assert stores.uploads.put_part(run, upload, 1, SAMPLES[:3], 5).unchanged is False
    digest = stores.uploads.upload_digest(run, upload)
    assert stores.uploads.put_part(run, upload, 1, SAMPLES[:3], 5).unchanged is True
    assert stores.uploads.upload_digest(run, upload) == digest
    with pytest.raises(Conflict):
        stores.uploads.put_part(run, upload, 1, SAMPLES[3:], 5)
    with pytest.raises(CurationInputError, match=r"samples\[1\]\.id: duplicate id 's2'"):
        stores.uploads.put_part(run, upload, 2, [SAMPLES[5], SAMPLES[2]], 5)
    with pytest.raises(LimitExceeded, match="max_samples_per_round = 5"):
        stores.uploads.put_part(run, upload, 2, SAMPLES[3:], 5)
    stores.uploads.put_part(run, upload, 2, SAMPLES[3:5], 5)
    job, _ = stores.jobs.create_round_job(run, None, "h", 2, None, upload_id=upload)
    assert job.samples == 5
    with pytest.raises(Conflict):  # a submitted upload takes no more parts
        stores.uploads.put_part(run, upload, 3, SAMPLES[5:], 10)
    inp = stores.jobs.start_job(job.id)
    assert inp is not None and [s["id"] for s in inp.samples] == [f"s{i}" for i in range(5)]


def test_expired_uploads_are_removed(stores: Stores) -> None:
    run = stores.runs.create_run(None, {}, {}).id
    stale = stores.uploads.create_upload(run, -1).id
    fresh = stores.uploads.create_upload(run, 3600).id
    assert stores.uploads.expire_uploads() == 1
    with pytest.raises(NotFound):
        stores.uploads.get_upload(run, stale)
    assert stores.uploads.get_upload(run, fresh).status is UploadStatus.OPEN


def test_deleting_a_run_deletes_everything_under_it(stores: Stores) -> None:
    db = stores.db
    run = stores.runs.create_run(None, {}, {}).id
    stores.reference.add_reference(run, SAMPLES, 10)
    job, _ = stores.jobs.create_round_job(run, "k", "h", 2, None, samples=SAMPLES)
    stores.runs.delete_run(run)
    for table in ("reference_samples", "jobs", "uploads", "upload_samples", "rounds"):
        assert sql(db, f"SELECT count(*) FROM {table}") == 0, table
    with pytest.raises(NotFound):
        stores.jobs.get_job(job.id)


def test_the_schema_version_is_recorded_and_a_newer_file_is_refused(url: str) -> None:
    """(Upgrades from older files: tests/service/test_migrations.py.)"""
    db = Database(url)
    run = RunStore(db).create_run("kept", {}, {}).id
    assert sql(db, "SELECT version FROM dces_schema") == SCHEMA_VERSION
    assert sql(db, "SELECT version_num FROM alembic_version") == db.revision
    db.close()
    db = Database(url)
    assert db.schema_version == SCHEMA_VERSION and RunStore(db).get_run(run).name == "kept"
    sql(db, f"UPDATE dces_schema SET version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1} was "
                                                 f"written by a newer DCES"):
        Database(url)


def test_hashing_and_json_helpers() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert dumps({"x": float("inf"), "t": "é\ud800"}) == '{"x":null,"t":"\\u00e9\\ud800"}'
