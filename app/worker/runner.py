"""What the model worker runs: round jobs (stored, resumable) and stateless curations.

A round job reads its input and the run's state in the transaction that marks it running,
curates, and commits round + state + job success in one transaction. If the process dies in
between, nothing of the round is stored and the job is still ``running`` in the database, owned
by this replica: :meth:`RoundRunner.recover` at the next startup (with the same
``DCES_REPLICA_ID``), or :meth:`RoundRunner.take_over` on another replica once the job's lease
expired (:mod:`app.worker.keeper`), resumes it (its input is still stored) or, past
``job_max_attempts`` or with ``resume_jobs`` off, marks it failed with the reason.

A job that waits for an older job of its run (on this replica or another) stays queued here and
is tried again at the keeper's next tick (:meth:`RoundRunner.take_over`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from app.metrics import Metrics
from app.problems import Interrupted, problem_document
from app.settings import Settings
from app.store.jobs import JobStore, LeaseLost
from app.store.records import JobRecord, JobStatus, RoundInput
from app.worker.queue import ModelWorker, Reservation, Task, TaskContext
from curation import CurationConfig, RunState

log = logging.getLogger("dces.jobs")
PROGRESS_EVERY_S = 0.5
STORED_POLL_S = 0.5  # how often a long poll reads the status of a job another replica runs


class RoundRunner:
    """Creates round tasks, tracks the ones in this process, recovers the ones left by a crash."""

    def __init__(self, settings: Settings, jobs: JobStore, worker: ModelWorker, metrics: Metrics
                 ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.worker = worker
        self.metrics = metrics
        self._active: dict[str, Future[JobRecord]] = {}
        # Jobs queued here behind an older job of their run, with their run.
        self._waiting: dict[str, str | None] = {}
        self.abandoned = False  # set at shutdown: a late worker writes no job status any more

    # -- submitting -----------------------------------------------------------------------------

    def submit(self, slot: Reservation, job_id: str) -> Future[JobRecord]:
        """Queue job ``job_id`` in a reserved slot; the future resolves with the finished job."""
        task = self._task(job_id, slot.key)
        slot.submit(task)
        return task.future

    def recover(self) -> list[str]:
        """At startup: resume or fail the jobs this replica's previous process left queued or
        running, and those of replicas whose lease expired. On SQLite, a file of one process,
        every unfinished job is a previous process's: all are taken at once."""
        lease = None if self.jobs.db.dialect == "sqlite" else self.settings.job_lease_s
        return self._adopt(self.jobs.claim_abandoned(lease, mine=True),
                           "the service restarted before this job finished",
                           "resumed after a restart (the process stopped during attempt {})")

    def take_over(self) -> list[str]:
        """Resume or fail the jobs of replicas that stopped renewing their lease (or released
        them at shutdown), and try again the jobs that waited here for an older job."""
        taken = self._adopt(
            self.jobs.claim_abandoned(self.settings.job_lease_s),
            "its replica stopped before this job finished",
            "taken over by replica " + self.jobs.replica + " (its replica stopped during "
            "attempt {})")
        for job_id, run_id in list(self._waiting.items()):
            if job_id not in self._active:  # else its first try is still finishing
                del self._waiting[job_id]
                self.worker.submit_recovered(self._task(job_id, run_id))
        return taken

    def _adopt(self, jobs: list[JobRecord], stopped: str, resumed: str) -> list[str]:
        """Queue the claimed ``jobs`` here, or fail them as the settings say."""
        queued = []
        for job in jobs:
            crashed = job.status is JobStatus.RUNNING
            reason = None
            if not self.settings.resume_jobs:
                reason = f"{stopped} and resume_jobs is off"
            elif crashed and job.attempts >= self.settings.job_max_attempts:
                reason = (f"the service process stopped while running this job "
                          f"{job.attempts} times (job_max_attempts = "
                          f"{self.settings.job_max_attempts}); giving up")
            if reason is not None:
                self.jobs.finish_failed(job.id, problem_document(Interrupted(reason)), reason)
                self.metrics.jobs.labels(JobStatus.FAILED).inc()
                log.warning("job not resumed", extra={"job_id": job.id, "reason": reason})
                continue
            if crashed:
                self.jobs.requeue(job.id, resumed.format(job.attempts))
            self.worker.submit_recovered(self._task(job.id, job.run_id))
            queued.append(job.id)
            log.info("job resumed", extra={"job_id": job.id, "was": job.status,
                                           "owner": job.owner})
        return queued

    def requeue_active(self, note: str) -> list[str]:
        """At shutdown, when the worker did not reach a stop point in time: put the job it is
        running back in the queue, so the database says `queued` whatever the CPU's speed. If
        the worker commits the round meanwhile, the job stays `succeeded` (the update is
        conditional on `running`)."""
        self.abandoned = True
        ids = list(self._active)
        for job_id in ids:
            self.jobs.requeue(job_id, note)
        return ids

    def future(self, job_id: str) -> Future[JobRecord] | None:
        """The future of a job queued or running in this process, else None."""
        return self._active.get(job_id)

    async def wait(self, job_id: str, timeout: float) -> None:
        """Wait up to ``timeout`` s for a job to finish (long polling): on its future when it
        runs in this process, else (another replica runs it) on its stored status."""
        future = self.future(job_id)
        if timeout <= 0:
            return
        if future is None:
            deadline = time.monotonic() + timeout
            while not (await asyncio.to_thread(self.jobs.get_job, job_id)).status.finished \
                    and time.monotonic() < deadline:
                await asyncio.sleep(min(STORED_POLL_S, max(0.0, deadline - time.monotonic())))
            return
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except Exception:
            return  # timed out or failed: the caller reads the job's stored status either way

    # -- running (on the worker thread) ---------------------------------------------------------

    def _task(self, job_id: str, run_id: str | None) -> Task[JobRecord]:
        task = Task(f"round job {job_id}", lambda ctx: self._run(ctx, job_id, run_id),
                    key=run_id)
        self._active[job_id] = task.future

        def done(future: Future[JobRecord]) -> None:
            if self._active.get(job_id) is future:
                del self._active[job_id]

        task.future.add_done_callback(done)
        return task

    def _run(self, ctx: TaskContext, job_id: str, run_id: str | None) -> JobRecord:
        try:
            inp = self.jobs.start_job(job_id)
            if inp is None:  # finished, deleted or taken meanwhile, or behind an older job
                if self.jobs.waiting(job_id):
                    self._waiting[job_id] = run_id
                return self.jobs.get_job(job_id)
            log.info("round started", extra={"job_id": job_id, "run_id": inp.run_id,
                                             "round": inp.round, "samples": len(inp.samples)})
            result = self._curate(ctx, inp)
        except LeaseLost as exc:  # another replica runs it now and stores its round
            log.warning("round taken over", extra={"job_id": job_id, "reason": str(exc)})
            return self.jobs.get_job(job_id)
        except Interrupted as exc:
            note = f"interrupted ({exc}); it resumes when the service restarts"
            self.jobs.requeue(job_id, note)
            log.warning("round interrupted", extra={"job_id": job_id, "reason": str(exc)})
            raise Interrupted(note, headers={"Retry-After": "5"}) from exc
        except Exception as exc:
            if self.abandoned:  # requeued by the shutdown: its stored status is already right
                raise
            self.jobs.finish_failed(job_id, problem_document(exc))
            self.metrics.jobs.labels(JobStatus.FAILED).inc()
            log.warning("round failed", extra={"job_id": job_id, "error": str(exc)},
                        exc_info=problem_document(exc)["status"] >= 500)
            raise
        self.metrics.observe_round(result, "run")
        self.metrics.runs.observe(inp.run_id, result)
        self.metrics.jobs.labels(JobStatus.SUCCEEDED).inc()
        log.info("round committed", extra={"job_id": job_id, "run_id": inp.run_id,
                                           "round": inp.round, "selected": result["selected"]})
        return self.jobs.get_job(job_id)

    def _curate(self, ctx: TaskContext, inp: RoundInput) -> dict[str, Any]:
        curator = ctx.models.curator(CurationConfig.from_dict(inp.config))
        state = RunState.from_dict(inp.state) if inp.state is not None else None
        report = ProgressWriter(self.jobs, inp.job_id, ctx)
        result, new_state = curator.curate(
            inp.samples, inp.budget, state=state, reference=inp.reference or None,
            feedback=inp.feedback, progress=report)
        data = result.to_dict()
        self.jobs.commit_round(inp, data, new_state.to_dict())
        return data


def stateless_task(metrics: Metrics, config: CurationConfig, samples: Sequence[Mapping[str, Any]],
                   budget: int, reference: Sequence[Mapping[str, Any]],
                   state: dict[str, Any] | None, feedback: dict[str, float] | None
                   ) -> Task[dict[str, Any]]:
    """A stateless round: nothing stored; the caller keeps the returned state."""
    def run(ctx: TaskContext) -> dict[str, Any]:
        curator = ctx.models.curator(config)
        result, new_state = curator.curate(
            samples, budget, state=RunState.from_dict(state) if state is not None else None,
            reference=reference or None, feedback=feedback, progress=ctx.progress)
        data = result.to_dict()
        metrics.observe_round(data, "stateless")
        return {"result": data, "state": new_state.to_dict()}

    return Task("stateless curate", run)


class ProgressWriter:
    """The engine's progress callback: checks for shutdown, stores progress at most every 0.5 s."""

    def __init__(self, jobs: JobStore, job_id: str, ctx: TaskContext) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.ctx = ctx
        self.stage: str | None = None
        self.written = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        self.ctx.progress(stage, fraction)
        now = time.monotonic()
        if stage != self.stage or now - self.written >= PROGRESS_EVERY_S:
            self.stage, self.written = stage, now
            self.jobs.set_progress(self.job_id, stage, fraction)
