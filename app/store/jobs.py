"""Round jobs, and the one-transaction round commit.

A round's input is always stored before any curation starts (as an upload, see
:mod:`app.store.uploads`), so a job can be resumed after a crash. The round's result, the run's
new state, the job's success and the deletion of the staged samples commit together.

Every read-modify-write locks its run, upload or job row first
(:data:`app.store.database.ROW_LOCK`), so concurrent requests for the same one queue and each sees
what the previous one committed.

Several replicas share one database: each job has an ``owner``, the replica that queued or runs
it, which renews the job's ``heartbeat_at`` while it lives (:meth:`JobStore.renew_leases`). A
store acts for one replica, and only ever starts, progresses, commits, requeues or fails a job it
owns; a job whose owner stopped renewing is claimed by another (:meth:`JobStore.claim_abandoned`,
``FOR UPDATE SKIP LOCKED``: replicas claiming at once take different jobs), and the old owner's
late commit is refused (:class:`LeaseLost`). A run's jobs start one at a time, oldest first, under
the run's row lock, so its rounds commit strictly in order whichever replica runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from app.problems import Conflict, NotFound
from app.store.database import ROW_LOCK, Database, new_id, now_iso
from app.store.encoding import dumps, loads
from app.store.feedback import posted_metrics
from app.store.records import FeedbackSource, JobRecord, JobStatus, RoundInput
from app.store.reference import load_reference
from app.store.runs import get_run_row
from app.store.tables import JobRow, RoundRow, RunRow
from app.store.uploads import (
    drop_staged,
    stage_inline,
    staged_count,
    staged_samples,
    submit_upload,
)

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


class LeaseLost(Conflict):
    """The job is no longer this replica's: its lease expired and another replica took it."""


class JobStore:
    """The jobs, as replica ``replica`` (``DCES_REPLICA_ID``) sees and changes them."""

    def __init__(self, db: Database, replica: str) -> None:
        self.db = db
        self.replica = replica

    def find_job(self, run_id: str, key: str) -> JobRecord | None:
        """The run's job created with idempotency key ``key``, if any."""
        with self.db.read() as s:
            row = s.scalar(select(JobRow).where(JobRow.run_id == run_id,
                                                JobRow.idempotency_key == key))
            return _job(row) if row else None

    def create_round_job(
        self, run_id: str, key: str | None, request_hash: str, budget: int,
        feedback: dict[str, float] | None, *,
        samples: Sequence[Mapping[str, Any]] | None = None, upload_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A queued job with its input stored; with ``key`` already used, that job and False.
        The run is locked before the key is looked up, so of concurrent requests with one key
        the first creates the job and the others find it."""
        with self.db.write() as s:
            get_run_row(s, run_id, lock=True)
            if key is not None:
                found = s.scalar(select(JobRow).where(JobRow.run_id == run_id,
                                                      JobRow.idempotency_key == key))
                if found is not None:
                    return _job(found), False
            if samples is not None:
                upload_id, count = stage_inline(s, run_id, samples), len(samples)
            else:
                assert upload_id is not None
                count = submit_upload(s, run_id, upload_id)
            row = JobRow(
                id=new_id("job"), run_id=run_id, status=JobStatus.QUEUED,
                progress=0.0, upload_id=upload_id, samples=count, budget=budget,
                feedback_json=dumps(feedback) if feedback is not None else None,
                idempotency_key=key, request_hash=request_hash, attempts=0,
                created_at=now_iso(), owner=self.replica, heartbeat_at=now_iso())
            s.add(row)
        return _job(row), True

    def retry_job(self, job_id: str, samples: Sequence[Mapping[str, Any]] | None) -> JobRecord:
        """Queue a failed job again (an idempotent retry); its input is staged anew from
        ``samples`` when the first attempt's is gone."""
        with self.db.write() as s:
            row = _job_row(s, job_id, lock=True)
            if row.status != JobStatus.FAILED:
                return _job(row)
            if row.upload_id is None or staged_count(s, row.upload_id) == 0:
                if samples is None:
                    raise Conflict(f"job {job_id} failed and its upload is gone; "
                                   "upload the samples again with a new Idempotency-Key")
                assert row.run_id is not None
                row.upload_id = stage_inline(s, row.run_id, samples)
            row.status, row.error_json, row.stage, row.progress = JobStatus.QUEUED, None, None, 0.0
            row.note, row.finished_at = "retried with the same Idempotency-Key", None
            row.owner, row.heartbeat_at = self.replica, now_iso()
            return _job(row)

    def start_job(self, job_id: str) -> RoundInput | None:
        """Mark a queued job of this replica (or of none) running and read its input; None when
        it is no longer queued, is another replica's, or waits for an older job of its run
        (:meth:`waiting`). The run is locked first, as :meth:`commit_round` does, so two
        replicas never start two jobs of one run."""
        with self.db.write() as s:
            run_id = s.scalar(select(JobRow.run_id).where(JobRow.id == job_id))
            if run_id is None:
                return None
            run = get_run_row(s, run_id, lock=True)
            job = _job_row(s, job_id, lock=True)
            if job.status != JobStatus.QUEUED or job.owner not in (self.replica, None) \
                    or _ahead(s, job) is not None:
                return None
            if job.upload_id is None or staged_count(s, job.upload_id) == 0:
                raise NotFound(f"the input of job {job_id} is no longer stored")
            job.status, job.stage, job.progress = JobStatus.RUNNING, "load", 0.0
            job.attempts, job.started_at = job.attempts + 1, now_iso()
            job.owner, job.heartbeat_at = self.replica, now_iso()
            feedback = loads(job.feedback_json)
            source: FeedbackSource = "body"
            if feedback is None:
                feedback = posted_metrics(s, run.id, run.rounds - 1) if run.rounds else None
                source = "none" if feedback is None else "posted"
            return RoundInput(
                job_id=job.id, run_id=run.id, round=run.rounds, config=loads(run.config_json),
                samples=staged_samples(s, job.upload_id), reference=load_reference(s, run.id),
                state=loads(run.state_json), feedback=feedback,
                feedback_source=source, budget=job.budget)

    def waiting(self, job_id: str) -> bool:
        """Whether the job is this replica's, queued, and waits for an older job of its run (so
        :meth:`start_job` must be tried again once that one finishes)."""
        with self.db.read() as s:
            job = s.get(JobRow, job_id)
            return job is not None and job.status == JobStatus.QUEUED \
                and job.owner == self.replica and _ahead(s, job) is not None

    def set_progress(self, job_id: str, stage: str, fraction: float) -> None:
        """Store the running job's progress; :class:`LeaseLost` once another replica took it
        (the round stops: its result could not be stored)."""
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is None:  # its run was deleted: the commit says so
                return
            if job.owner != self.replica:
                raise LeaseLost(f"job {job_id} was taken over by replica {job.owner}")
            if job.status == JobStatus.RUNNING:
                job.stage, job.progress = stage, round(float(fraction), 4)
                job.heartbeat_at = now_iso()

    def commit_round(self, inp: RoundInput, result: dict[str, Any], state: dict[str, Any]) -> None:
        """ONE transaction: the round, the run's new state, the job's success, input deleted."""
        decisions = result.get("samples", [])
        report = {k: v for k, v in result.items() if k != "samples"}
        with self.db.write() as s:
            run = get_run_row(s, inp.run_id, lock=True)
            job = _job_row(s, inp.job_id, lock=True)
            if job.owner != self.replica:
                raise LeaseLost(f"job {inp.job_id} was taken over by replica {job.owner}; "
                                "this replica's result was not stored")
            if run.rounds != inp.round or job.status != JobStatus.RUNNING:
                raise Conflict(f"run {inp.run_id} moved on while job {inp.job_id} ran; "
                               "the round was not stored")
            s.add(RoundRow(
                run_id=run.id, n=inp.round, created_at=now_iso(), job_id=job.id,
                budget=inp.budget, samples=len(decisions), selected=int(result.get("selected", 0)),
                feedback_json=dumps(inp.feedback) if inp.feedback is not None else None,
                feedback_source=inp.feedback_source, report_json=dumps(report),
                samples_json=dumps(decisions), state_json=dumps(state)))
            run.rounds, run.state_json = inp.round + 1, dumps(state)
            job.status, job.round, job.finished_at = JobStatus.SUCCEEDED, inp.round, now_iso()
            job.stage, job.progress = "done", 1.0
            if job.upload_id is not None:
                drop_staged(s, job.upload_id)

    def finish_failed(self, job_id: str, error: dict[str, Any], note: str | None = None) -> None:
        """Fail an unfinished job of this replica's (or of none)."""
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is not None and job.status in UNFINISHED \
                    and job.owner in (self.replica, None):
                job.status, job.note = JobStatus.FAILED, note
                job.error_json, job.finished_at = dumps(error), now_iso()

    def requeue(self, job_id: str, note: str) -> None:
        """Put an interrupted running job of this replica's back in the queue (its input is still
        stored)."""
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is not None and job.status == JobStatus.RUNNING \
                    and job.owner == self.replica:
                job.status, job.stage, job.progress, job.note = JobStatus.QUEUED, None, 0.0, note

    def get_job(self, job_id: str) -> JobRecord:
        with self.db.read() as s:
            return _job(_job_row(s, job_id))

    def job_tenant(self, job_id: str) -> str | None:
        """The tenant of the job's run; None when there is no such job (or it has no run)."""
        with self.db.read() as s:
            return s.scalar(select(RunRow.tenant).join(JobRow, JobRow.run_id == RunRow.id)
                            .where(JobRow.id == job_id))

    def list_jobs(self, run_id: str | None, status: JobStatus | None, limit: int,
                  tenant: str | None = None) -> list[JobRecord]:
        """The newest jobs: of every run, or of ``tenant``'s runs only."""
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if tenant is not None:
            query = query.join(RunRow, JobRow.run_id == RunRow.id).where(RunRow.tenant == tenant)
        if run_id is not None:
            query = query.where(JobRow.run_id == run_id)
        if status is not None:
            query = query.where(JobRow.status == status)
        with self.db.read() as s:
            return [_job(r) for r in s.scalars(query)]

    def renew_leases(self) -> None:
        """This replica is alive: every unfinished job it owns gets a fresh heartbeat. Nothing is
        written when it owns none (an empty write would count as proof that a full disk has
        room again, see :mod:`app.store.disk`)."""
        mine = and_(JobRow.owner == self.replica, JobRow.status.in_(UNFINISHED))
        if not self._any(mine):
            return
        with self.db.write() as s:
            s.execute(update(JobRow).where(mine).values(heartbeat_at=now_iso()))

    def claim_abandoned(self, lease_s: float | None, mine: bool = False) -> list[JobRecord]:
        """Make this replica the owner of every unfinished job that has none or whose heartbeat
        is older than ``lease_s`` (None: of every unfinished job), and with ``mine`` of its own
        (left by a previous process with this replica's id); the jobs as they were found, oldest
        first. Rows another replica has locked are skipped: it is using them. Nothing is
        written (or locked) when there is nothing to claim."""
        claimable: ColumnElement[bool] = JobRow.status.in_(UNFINISHED)
        if lease_s is not None:
            abandoned = [JobRow.owner.is_(None), and_(JobRow.owner != self.replica,
                                                      JobRow.heartbeat_at < now_iso(-lease_s))]
            if mine:
                abandoned.append(JobRow.owner == self.replica)
            claimable = and_(claimable, or_(*abandoned))
        if not self._any(claimable):
            return []
        with self.db.write() as s:
            rows = s.scalars(select(JobRow).where(claimable)
                             .order_by(JobRow.created_at, JobRow.id)
                             .with_for_update(skip_locked=True, key_share=True)).all()
            found = [_job(r) for r in rows]
            for row in rows:
                row.owner, row.heartbeat_at = self.replica, now_iso()
            return found

    def release(self) -> None:
        """At shutdown: this replica's queued jobs get no owner, so another replica (or the
        next process) takes them at once instead of after the lease."""
        queued = and_(JobRow.owner == self.replica, JobRow.status == JobStatus.QUEUED)
        if not self._any(queued):
            return
        with self.db.write() as s:
            s.execute(update(JobRow).where(queued).values(owner=None, heartbeat_at=None))

    def _any(self, where: ColumnElement[bool]) -> bool:
        with self.db.read() as s:
            return s.scalar(select(JobRow.id).where(where).limit(1)) is not None


def _ahead(session: Session, job: JobRow) -> str | None:
    """Another job of the run that must finish before ``job`` starts: one running, or one
    queued before it; None when there is none."""
    return session.scalar(select(JobRow.id).where(
        JobRow.run_id == job.run_id, JobRow.id != job.id, JobRow.status.in_(UNFINISHED),
        or_(JobRow.status == JobStatus.RUNNING, JobRow.created_at < job.created_at,
            and_(JobRow.created_at == job.created_at, JobRow.id < job.id))).limit(1))


def _job_row(session: Session, job_id: str, lock: bool = False) -> JobRow:
    row = session.get(JobRow, job_id, with_for_update=ROW_LOCK if lock else None)
    if row is None:
        raise NotFound(f"job {job_id!r} does not exist")
    return row


def _job(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id, status=JobStatus(row.status), stage=row.stage, progress=row.progress,
        run_id=row.run_id, round=row.round, samples=row.samples, attempts=row.attempts,
        error=loads(row.error_json), note=row.note, created_at=row.created_at,
        started_at=row.started_at, finished_at=row.finished_at,
        idempotency_key=row.idempotency_key, request_hash=row.request_hash, owner=row.owner)
