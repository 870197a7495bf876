"""The lease keeper: a thread that keeps this replica's jobs its own and adopts abandoned ones.

Every third of ``DCES_JOB_LEASE_S`` it renews the heartbeat of every unfinished job this replica
owns (while its model worker lives: a replica whose worker died lets its jobs go), then, while
the worker takes work, claims the jobs of replicas that stopped renewing theirs and retries the
jobs that waited for an older job of their run (:meth:`app.worker.runner.RoundRunner.take_over`).
A failed tick (e.g. the database briefly away) is logged and the next one tries again.
"""

from __future__ import annotations

import logging
import threading

from app.store.jobs import JobStore
from app.worker.queue import ModelWorker
from app.worker.runner import RoundRunner

log = logging.getLogger("dces.jobs")


class LeaseKeeper:
    def __init__(self, jobs: JobStore, worker: ModelWorker, runner: RoundRunner, lease_s: float
                 ) -> None:
        self.jobs = jobs
        self.worker = worker
        self.runner = runner
        self.every_s = lease_s / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dces-lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def tick(self) -> None:
        if not self.worker.alive:
            return
        self.jobs.renew_leases()
        if self.worker.ready:
            taken = self.runner.take_over()
            if taken:
                log.info("jobs taken over", extra={"jobs": taken})

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception:
                log.exception("lease keeper tick failed")
