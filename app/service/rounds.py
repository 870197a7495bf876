"""The round service: everything between a round request and its outcome, without HTTP.

A run's next round (:meth:`RoundService.submit`) is stored before any curation starts: the input
and a job first, in a reserved slot of the model worker's queue (:class:`QueueFull` when none is
free), then the service waits for the worker. A small round comes back committed; a large one (over
``sync_max_samples``, or asked for asynchronously, or still running after ``sync_wait_s``) comes
back pending, as its job. With an idempotency key a retried request returns that same job or
round, never a second one; the same key with another body is a :class:`Conflict`; a job that
failed for a server-side reason (status >= 500) is queued again, one that failed on its input
answers every retry with the same problem.

A stateless round (:meth:`RoundService.curate_stateless`) stores nothing: it runs on the worker
too and stops at the engine's next progress report when its caller goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from anyio import to_thread

from app.metrics import Metrics
from app.problems import Conflict
from app.settings import Settings
from app.store.encoding import content_hash
from app.store.jobs import JobStore
from app.store.records import JobRecord, JobStatus, SampleJson
from app.store.rounds import RoundStore
from app.store.uploads import UploadStore
from app.worker.queue import ModelWorker
from app.worker.runner import RoundRunner, stateless_task
from curation import CurationConfig

DISCONNECT_POLL_S = 1.0  # how often a stateless round checks that its caller is still there


@dataclass(frozen=True)
class RoundRequest:
    """A run's next round: inline ``samples`` (the engine's form) or a staged ``upload_id``."""

    run_id: str
    budget: int
    feedback: dict[str, float] | None
    samples: list[SampleJson] | None = None
    upload_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Committed:
    """The round is stored; ``round_json`` is its text. ``replayed``: an earlier request's."""

    job: JobRecord
    round_json: str
    replayed: bool


@dataclass(frozen=True)
class Pending:
    """The job is queued or running: the caller polls it."""

    job: JobRecord


@dataclass(frozen=True)
class Failed:
    """The job failed; its stored problem (``job.error``) is the answer."""

    job: JobRecord


RoundOutcome = Committed | Pending | Failed


class RoundService:
    """Submits, waits for and polls rounds; the API's only way to the worker."""

    def __init__(self, settings: Settings, uploads: UploadStore, jobs: JobStore,
                 rounds: RoundStore, worker: ModelWorker, runner: RoundRunner, metrics: Metrics
                 ) -> None:
        self.settings = settings
        self.uploads = uploads
        self.jobs = jobs
        self.rounds = rounds
        self.worker = worker
        self.runner = runner
        self.metrics = metrics
        self._key_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def submit(self, request: RoundRequest, respond_async: bool) -> RoundOutcome:
        """Curate the run's next round, or find the one an earlier request with the same key
        started. An exception of the job itself (e.g. bad input found by the engine) propagates
        when it happens within the synchronous wait."""
        request_hash = await self._request_hash(request)
        job, future = await self._job_for(request, request_hash)
        if job.status.finished:
            return await self._outcome(job, replayed=True)
        if future is None or respond_async or job.samples > self.settings.sync_max_samples:
            return Pending(job)
        try:
            done = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                          self.settings.sync_wait_s)
        except TimeoutError:
            return Pending(job)
        return await self._outcome(done, replayed=False)

    async def poll(self, job_id: str, wait_s: float) -> JobRecord:
        """The job, after waiting up to ``wait_s`` for it to finish if it runs in this process."""
        await self.runner.wait(job_id, wait_s)
        return await to_thread.run_sync(self.jobs.get_job, job_id)

    async def curate_stateless(
        self, config: CurationConfig, samples: Sequence[Mapping[str, Any]], budget: int,
        reference: Sequence[Mapping[str, Any]], state: dict[str, Any] | None,
        feedback: dict[str, float] | None, disconnected: Callable[[], Awaitable[bool]],
    ) -> dict[str, Any]:
        """One round with nothing stored: ``{"result": ..., "state": ...}``. When
        ``disconnected()`` turns true the task is cancelled at its next stop point."""
        task = stateless_task(self.metrics, config, samples, budget, reference, state, feedback)
        with self.worker.reservation() as slot:
            slot.submit(task)
        waiting = asyncio.wrap_future(task.future)
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            if await disconnected():
                task.cancelled.set()
                return await waiting

    # -- steps of submit --------------------------------------------------------------------

    async def _request_hash(self, request: RoundRequest) -> str:
        """What makes two requests the same round: an upload counts by its content, so a
        re-sent upload matches the first one."""
        if request.upload_id is not None:
            source: Any = await to_thread.run_sync(
                self.uploads.upload_digest, request.run_id, request.upload_id)
        else:
            source = request.samples
        return await to_thread.run_sync(content_hash, {
            "samples": source, "budget": request.budget, "feedback": request.feedback})

    async def _job_for(self, request: RoundRequest, request_hash: str
                       ) -> tuple[JobRecord, Future[JobRecord] | None]:
        """A new job and its future, or the job the key was used for before (a concurrent
        retry may store it first), checked against this request and retried when due."""
        key = request.idempotency_key
        if key is None:
            job, future = await self._create(request, request_hash)
            assert future is not None  # without a key every request is a new job
            return job, future
        # Concurrent retries with one key wait for each other here, so that the first stores
        # the job and the others find it, rather than take a queue slot (a 429 for an accepted
        # round when the queue is full). Across replicas the run's row lock does the same.
        lock = self._key_locks.setdefault((request.run_id, key), asyncio.Lock())
        try:
            async with lock:
                found = await to_thread.run_sync(self.jobs.find_job, request.run_id, key)
                if found is None:
                    job, future = await self._create(request, request_hash)
                    if future is not None:
                        return job, future
                    found = job
        finally:  # a later request finds the stored job; its lock need not outlive this one
            if self._key_locks.get((request.run_id, key)) is lock:
                del self._key_locks[(request.run_id, key)]
        if found.request_hash != request_hash:
            raise Conflict(f"Idempotency-Key {key!r} was already used for a different request "
                           f"(job {found.id}); use a new key for a new round")
        return await self._existing(found, request.samples)

    async def _create(self, request: RoundRequest, request_hash: str
                      ) -> tuple[JobRecord, Future[JobRecord] | None]:
        """Store input + job and queue it; (existing job, None) if a concurrent retry stored it."""
        with self.worker.reservation(request.run_id) as slot:
            job, created = await to_thread.run_sync(partial(
                self.jobs.create_round_job, request.run_id, request.idempotency_key,
                request_hash, request.budget, request.feedback, samples=request.samples,
                upload_id=request.upload_id))
            return job, self.runner.submit(slot, job.id) if created else None

    async def _existing(self, job: JobRecord, samples: list[SampleJson] | None
                        ) -> tuple[JobRecord, Future[JobRecord] | None]:
        """A job found by its key: queued again if it failed for a server-side reason (the
        retry policy), else as it is, with its future when it runs in this process."""
        error = job.error or {}
        if job.status is JobStatus.FAILED and error.get("status", 500) >= 500:
            with self.worker.reservation(job.run_id) as slot:
                job = await to_thread.run_sync(self.jobs.retry_job, job.id, samples)
                return job, self.runner.submit(slot, job.id)
        return job, self.runner.future(job.id)

    async def _outcome(self, job: JobRecord, replayed: bool) -> RoundOutcome:
        """A job as the caller sees it; a job may have been finished by another path (e.g. its
        run was deleted), so its status is checked, not assumed."""
        if job.status is JobStatus.FAILED:
            return Failed(job)
        if job.status is not JobStatus.SUCCEEDED:
            return Pending(job)
        assert job.run_id is not None and job.round is not None
        text = await to_thread.run_sync(self.rounds.round_json, job.run_id, job.round)
        return Committed(job, text, replayed)
