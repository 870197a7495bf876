"""The one model worker: a thread that owns the models and runs CPU-bound tasks from a queue.

The event loop never curates: it reserves a queue slot (429 with ``Retry-After`` when none is
free, or when the run already has ``per_key`` jobs waiting), stores the job, hands the task
over and awaits its future. Tasks wait in one lane per run, served round-robin
(:mod:`.fair_queue`). The worker loads the models first (``/readyz`` says "loading" meanwhile),
and if the thread ever dies, ``alive`` turns False and every waiting task fails with 503:
readiness follows the thread, not a flag set at startup.

On SIGTERM, :meth:`ModelWorker.drain` stops it taking new tasks; the running task may finish
within the grace period, after which its next progress report raises ``Interrupted``.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from app.problems import Interrupted, QueueFull, Unavailable
from app.worker.fair_queue import FairQueue

log = logging.getLogger("dces.worker")
T = TypeVar("T")


class WorkerCrash(BaseException):
    """Escapes the per-task error handling and ends the worker thread (fault injection)."""


class TaskContext:
    """What a task gets: the loaded models and a progress hook that is also its stop point."""

    def __init__(self, worker: ModelWorker, task: Task[Any]) -> None:
        self.models = worker.models
        self._worker = worker
        self._task = task

    def progress(self, stage: str, fraction: float) -> None:
        self._worker.wait_while_paused()
        if self._task.cancelled.is_set():
            raise Interrupted("the caller went away")
        if self._worker.past_deadline():
            raise Interrupted("the service is shutting down")


class Task(Generic[T]):
    """A unit of model work; ``future`` resolves with ``fn``'s return value or exception.
    ``key`` is its lane in the queue (a run id; tasks of no run share one lane)."""

    def __init__(self, name: str, fn: Callable[[TaskContext], T], key: str | None = None
                 ) -> None:
        self.name = name
        self.fn = fn
        self.key = key
        self.future: Future[T] = Future()
        self.cancelled = threading.Event()


class Reservation:
    """A queue slot held while the job is stored; released unless a task is submitted."""

    def __init__(self, worker: ModelWorker, key: str | None) -> None:
        self._worker = worker
        self.key = key
        self.used = False

    def submit(self, task: Task[Any]) -> None:
        self.used = True
        task.key = self.key
        self._worker._put(task)


_STOP = object()
_NO_KEY = ""  # the lane of tasks of no run (stateless rounds) and of the stop signal


class ModelWorker:
    def __init__(self, load: Callable[[], Any], capacity: int, nice: int = 0,
                 per_key: int | None = None) -> None:
        self._load = load
        self.capacity = capacity
        self.per_key = per_key or capacity  # tasks one run may have waiting
        self.nice = nice
        self.models: Any = None
        self.status = "starting"  # starting → loading → ready → (dead | stopped)
        self.reason: str | None = None
        self._queue: FairQueue[Any] = FairQueue()
        self._lock = threading.Lock()
        self._pending = 0  # queued + reserved tasks
        self._pending_by_key: dict[str, int] = {}
        # Runs refused a slot recently: (first, latest refusal), monotonic. The longest
        # waiting go first when slots free up.
        self._refused: dict[str, tuple[float, float]] = {}
        self._mean_task_s = 5.0
        self._deadline: float | None = None
        self._paused: threading.Event | None = None  # fault injection, see pause()
        self._thread = threading.Thread(target=self._run, name="dces-model-worker", daemon=True)

    # -- state ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.status != "dead"

    @property
    def ready(self) -> bool:
        return self.alive and self.status == "ready" and self._deadline is None

    @property
    def phase(self) -> str:
        """What /readyz reports: starting, loading, ready, draining, stopped or dead."""
        if self.alive and self._deadline is not None:
            return "draining"
        return self.status

    @property
    def depth(self) -> int:
        """Tasks waiting (queued or being stored), not counting the running one."""
        return self._pending

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: about one mean task, at least 1."""
        return max(1, min(300, math.ceil(self._mean_task_s)))

    def past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    # -- submitting -----------------------------------------------------------------------------

    @contextmanager
    def reservation(self, key: str | None = None) -> Iterator[Reservation]:
        """A slot in the queue for a task of run ``key`` (None: of no run), or
        :class:`QueueFull` (429) / :class:`Unavailable` (503)."""
        self._check_accepting()
        retry = {"Retry-After": str(self.retry_after())}
        with self._lock:
            ahead = self._runs_ahead(key)
            if self._pending >= self.capacity or self.capacity - self._pending <= ahead:
                self._refuse(key)
                raise QueueFull(
                    f"the model worker queue is full ({self.capacity} jobs waiting, "
                    f"queue_size = {self.capacity}"
                    + (f"; {ahead} runs refused earlier go first" if ahead else "")
                    + f"); retry after {self.retry_after()} s", headers=retry)
            if key is not None and self._pending_by_key.get(key, 0) >= self.per_key:
                raise QueueFull(
                    f"run {key} already has {self.per_key} jobs waiting (queue_per_run = "
                    f"{self.per_key}); retry after {self.retry_after()} s", headers=retry)
            self._refused.pop(key or "", None)
            self._count(key, +1)
        slot = Reservation(self, key)
        try:
            yield slot
        finally:
            if not slot.used:
                with self._lock:
                    self._count(key, -1)

    def submit_recovered(self, task: Task[Any]) -> None:
        """Queue a job accepted before a restart (beyond capacity: it was already accepted)."""
        with self._lock:
            self._count(task.key, +1)
        self._put(task)

    def _runs_ahead(self, key: str | None) -> int:
        """Under ``_lock``: how many runs refused a slot before ``key`` was (all of them when
        it was not) and still retrying. Free slots go to the longest waiting first: a client
        whose round just finished would otherwise win the slot it freed every time, and the
        busiest client every slot (Jain's fairness 0.82 with 32 clients, bench/load.py)."""
        if key is None:
            return 0
        now = time.monotonic()
        horizon = now - 2 * self.retry_after() - 1
        for stale in [k for k, (_, latest) in self._refused.items() if latest < horizon]:
            del self._refused[stale]
        first = self._refused.get(key, (now, now))[0]
        return sum(1 for k, (since, _) in self._refused.items() if k != key and since < first)

    def _refuse(self, key: str | None) -> None:
        if key is not None:
            now = time.monotonic()
            self._refused[key] = (self._refused.get(key, (now, now))[0], now)

    def _count(self, key: str | None, change: int) -> None:
        """Under ``_lock``: one task more or fewer waiting, in all and for its run."""
        self._pending += change
        if key is not None:
            left = self._pending_by_key.get(key, 0) + change
            if left > 0:
                self._pending_by_key[key] = left
            else:
                self._pending_by_key.pop(key, None)

    def _put(self, task: Task[Any]) -> None:
        self._queue.put(task.key or _NO_KEY, task)
        if self.status == "dead":  # died between the check and the put
            self._fail_waiting()

    def _check_accepting(self) -> None:
        if not self.alive:
            raise Unavailable(f"the model worker is not running ({self.reason or self.status})")
        if self._deadline is not None:
            raise Unavailable("the service is shutting down", headers={"Retry-After": "5"})

    # -- shutdown -------------------------------------------------------------------------------

    def drain(self, grace_s: float) -> None:
        """Take no new task; the running one may finish within ``grace_s``."""
        if self._deadline is None:
            self._deadline = time.monotonic() + grace_s
            self._queue.put(_NO_KEY, _STOP)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def hold(self) -> threading.Event:
        """Fault injection: the worker runs a task that waits until the returned event is set
        (at most 10 minutes), so that a test can fill the queue behind it on any CPU."""
        release = threading.Event()
        with self.reservation() as slot:
            slot.submit(Task("hold", lambda _ctx: release.wait(600)))
        return release

    def pause(self) -> threading.Event:
        """Fault injection: the running task, or the next, stops at its next progress report
        until the returned event is set (at most 10 minutes), so that a test can kill the
        process in the middle of a round on any CPU."""
        self._paused = threading.Event()
        return self._paused

    def wait_while_paused(self) -> None:
        paused = self._paused
        if paused is not None:
            paused.wait(600)

    def crash(self) -> None:
        """Fault injection: the worker raises :class:`WorkerCrash` and its thread ends."""
        def boom(_ctx: TaskContext) -> None:
            raise WorkerCrash("fault injection: POST /debug/crash-worker")

        with self.reservation() as slot:
            slot.submit(Task("crash", boom))

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        self._lower_priority()
        try:
            self.status = "loading"
            started = time.perf_counter()
            self.models = self._load()
            # Torch, transformers and friends leave millions of long-lived objects; a full
            # garbage collection walks them all, holding the GIL for ~0.5 s and stalling the
            # event loop mid-round. Freezing them out of the collector removes those pauses.
            gc.collect()
            gc.freeze()
            self.status = "ready"
            log.info("models loaded", extra={"seconds": round(time.perf_counter() - started, 2)})
            while True:
                task = self._queue.get()
                if task is _STOP:
                    break
                with self._lock:
                    self._count(task.key, -1)
                if self._deadline is not None:
                    task.future.set_exception(Unavailable(
                        "the service is shutting down; the job stays queued and resumes after "
                        "the restart", headers={"Retry-After": "5"}))
                    continue
                self._execute(task)
            self.status = "stopped"
        except BaseException as exc:
            self.status, self.reason = "dead", f"{type(exc).__name__}: {exc}"
            log.critical("model worker died", exc_info=exc)
        finally:
            self._fail_waiting()

    def _lower_priority(self) -> None:
        """Run curation at a higher nice value than the event loop: the OpenMP threads torch
        starts from this thread inherit it, so probes and reads get the CPU first (Linux sets
        nice per thread; elsewhere this is skipped)."""
        if self.nice <= 0 or not sys.platform.startswith("linux"):
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except OSError as exc:
            log.warning("could not lower the worker's priority", extra={"error": str(exc)})

    def _execute(self, task: Task[Any]) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        started = time.perf_counter()
        try:
            task.future.set_result(task.fn(TaskContext(self, task)))
        except Exception as exc:
            task.future.set_exception(exc)
        except BaseException:
            task.future.set_exception(Unavailable("the model worker died during this task"))
            log.critical("task killed the model worker", extra={"task": task.name})
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._mean_task_s = 0.7 * self._mean_task_s + 0.3 * elapsed

    def _fail_waiting(self) -> None:
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                return
            if task is not _STOP and not task.future.done():
                task.future.set_exception(Unavailable(
                    f"the model worker is not running ({self.reason or self.status})"))
