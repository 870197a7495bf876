"""Several replicas on one database: jobs claimed by one replica at a time, a run's rounds
strictly in order, a killed replica's jobs finished by another, nothing lost or stored twice.

The store rules run on both backends with two :class:`JobStore` of different replicas on one
database; the whole story runs as two real `dces serve` processes on one real PostgreSQL, one
of them killed with SIGKILL in the middle of a round (paused there by fault injection, so that
"in the middle" does not depend on the CPU's speed).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.store.database import Database
from app.store.jobs import JobStore, LeaseLost
from app.store.records import JobStatus
from app.store.rounds import RoundStore
from app.store.runs import RunStore

from .conftest import BACKENDS, NO_LM, DCESServer, needs_postgres, postgres_database

SAMPLES = [{"id": f"s{i}", "text": f"sample number {i}"} for i in range(4)]
RESULT = {"selected": 0, "samples": [], "health": {"alerts": []}}
LONG_AGO = "2000-01-01T00:00:00.000+00:00"


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'dces.sqlite3'}")
        yield database
        database.close()
    else:
        with postgres_database() as url:
            database = Database(url)
            yield database
            database.close()


def stale(db: Database, job_id: str) -> None:
    """The job's owner stopped renewing its lease long ago (as a killed replica does)."""
    with db.engine.begin() as con:
        con.execute(text("UPDATE jobs SET heartbeat_at = :t WHERE id = :id"),
                    {"t": LONG_AGO, "id": job_id})


def test_a_replica_that_lost_its_job_stores_nothing(db: Database) -> None:
    a, b = JobStore(db, "replica-a"), JobStore(db, "replica-b")
    run = RunStore(db).create_run("r", {}, {}).id
    job, _ = a.create_round_job(run, None, "h", 2, None, samples=SAMPLES)
    started = a.start_job(job.id)
    assert started is not None
    assert b.claim_abandoned(lease_s=3600) == []  # a's lease is fresh
    stale(db, job.id)
    claimed = b.claim_abandoned(lease_s=3600)
    assert [(j.id, j.status, j.owner) for j in claimed] == [(job.id, JobStatus.RUNNING,
                                                              "replica-a")]
    b.requeue(job.id, "taken over")
    again = b.start_job(job.id)
    assert again is not None and again.round == 0
    with pytest.raises(LeaseLost):
        a.set_progress(job.id, "embed", 0.5)
    with pytest.raises(LeaseLost):
        a.commit_round(started, RESULT, {"round": 1})
    a.finish_failed(job.id, {"status": 500})  # not a's any more: no effect
    a.requeue(job.id, "no effect either")
    b.commit_round(again, RESULT, {"round": 1})
    assert [(r.round, r.job_id) for r in RoundStore(db).list_rounds(run)] == [(0, job.id)]
    done = a.get_job(job.id)
    assert (done.status, done.owner, done.attempts) == (JobStatus.SUCCEEDED, "replica-b", 2)


def test_a_runs_jobs_start_one_at_a_time_oldest_first(db: Database) -> None:
    a, b = JobStore(db, "replica-a"), JobStore(db, "replica-b")
    run = RunStore(db).create_run("r", {}, {}).id
    first, _ = a.create_round_job(run, None, "h1", 2, None, samples=SAMPLES)
    second, _ = b.create_round_job(run, None, "h2", 2, None, samples=SAMPLES)
    assert b.start_job(second.id) is None and b.waiting(second.id)  # first is older
    assert a.start_job(second.id) is None and not a.waiting(second.id)  # b's job
    inp = a.start_job(first.id)
    assert inp is not None and inp.round == 0
    assert b.start_job(second.id) is None and b.waiting(second.id)  # first is running
    a.commit_round(inp, RESULT, {"round": 1})
    after = b.start_job(second.id)
    assert after is not None and after.round == 1 and after.state == {"round": 1}


def test_renewed_jobs_stay_and_released_jobs_go_at_once(db: Database) -> None:
    a, b = JobStore(db, "replica-a"), JobStore(db, "replica-b")
    run = RunStore(db).create_run("r", {}, {}).id
    job, _ = a.create_round_job(run, None, "h", 2, None, samples=SAMPLES)
    stale(db, job.id)
    a.renew_leases()
    assert b.claim_abandoned(lease_s=3600) == []
    a.release()  # a stops gracefully
    assert [j.id for j in b.claim_abandoned(lease_s=3600)] == [job.id]
    assert a.start_job(job.id) is None and b.start_job(job.id) is not None


# -- two `dces serve` processes on one PostgreSQL ---------------------------------------------

LEASE_S = 4.0
RUNS, ROUNDS = 3, 3


@pytest.fixture(scope="module")
def shared_url() -> Iterator[str]:
    """Requested before ``start_server``: the servers stop before the database is dropped."""
    with postgres_database() as url:
        yield url


def rows(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Read the database directly, as another client would."""
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return [tuple(r) for r in con.execute(text(query), params)]
    finally:
        engine.dispose()


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout} s")


@needs_postgres
def test_a_replica_killed_mid_round_loses_nothing_and_duplicates_nothing(
        shared_url: str, start_server: Callable[..., DCESServer],
        fortunes: list[dict[str, Any]]) -> None:
    settings = {"database_url": shared_url, "job_lease_s": LEASE_S, "fault_injection": True,
                "queue_size": 16, "job_max_attempts": 5}
    a = start_server(replica_id="replica-a", **settings)
    b = start_server(replica_id="replica-b", **settings)
    http = {"a": a.http(), "b": b.http()}
    assert http["b"].post("/debug/pause-worker").status_code == 200

    # Every run's rounds alternate between the replicas; all are submitted at once.
    runs = [http["a"].post("/v1/runs", json={"config": NO_LM}).json()["id"] for _ in range(RUNS)]
    acknowledged: dict[str, list[str]] = {run: [] for run in runs}
    for k in range(ROUNDS):
        for r, run in enumerate(runs):
            batch = fortunes[(k * RUNS + r) * 60:(k * RUNS + r + 1) * 60]
            response = http["ab"[(r + k) % 2]].post(
                f"/v1/runs/{run}/rounds", json={"samples": batch, "budget": 10},
                headers={"Prefer": "respond-async"})
            assert response.status_code == 202, response.text
            acknowledged[run].append(response.json()["id"])

    # b starts a round and stops at its first progress report (paused): kill it there.
    killed = wait_for("a round running on replica b", lambda: rows(
        shared_url, "SELECT id FROM jobs WHERE owner = 'replica-b' AND status = 'running'"),
        timeout=120)[0][0]
    b.kill9()
    assert rows(shared_url, "SELECT status, owner FROM jobs WHERE id = :id", id=killed) == [
        ("running", "replica-b")]
    assert rows(shared_url, "SELECT n FROM rounds WHERE job_id = :id", id=killed) == []

    # a takes over b's jobs once their lease expires, and finishes every run.
    every_job = [job for jobs in acknowledged.values() for job in jobs]

    def all_finished() -> bool:
        return all(http["a"].get(f"/v1/jobs/{job}").json()["status"] in {"succeeded", "failed"}
                   for job in every_job)

    wait_for("every job finished", all_finished, timeout=600)
    jobs = {job: http["a"].get(f"/v1/jobs/{job}").json() for job in every_job}
    assert {job: j["status"] for job, j in jobs.items()} == dict.fromkeys(every_job, "succeeded")
    assert "taken over by replica replica-a" in jobs[killed]["note"]
    assert jobs[killed]["attempts"] >= 2
    assert rows(shared_url, "SELECT owner FROM jobs WHERE id = :id", id=killed) == [
        ("replica-a",)]
    assert rows(shared_url, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
                ) == [(0,)]

    # Each acknowledged round is stored exactly once; each run's rounds are 0..n-1, in the
    # order its jobs were created.
    stored = rows(shared_url, "SELECT job_id FROM rounds")
    assert Counter(job for (job,) in stored) == Counter(every_job)
    for run, submitted in acknowledged.items():
        rounds = http["a"].get(f"/v1/runs/{run}/rounds").json()["rounds"]
        assert [r["round"] for r in rounds] == list(range(ROUNDS))
        in_creation_order = [job for (job,) in rows(
            shared_url, "SELECT id FROM jobs WHERE run_id = :run ORDER BY created_at, id",
            run=run)]
        assert sorted(in_creation_order) == sorted(submitted)
        assert [r["job_id"] for r in rounds] == in_creation_order
        assert [jobs[job]["round"] for job in in_creation_order] == list(range(ROUNDS))
        assert http["a"].get(f"/v1/runs/{run}").json()["rounds"] == ROUNDS
    assert "jobs taken over" in a.log(tail=200_000)
