"""The objects one app instance shares between requests, and the dependency that hands them out.

Built by :func:`app.main.create_app`, kept on ``app.state.services``; routes get them with
``svc: Svc`` and never reach for globals, so two apps in one process do not share state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from app.metrics import Metrics
from app.service.rounds import RoundService
from app.settings import Settings
from app.store.database import Database
from app.store.feedback import FeedbackStore
from app.store.jobs import JobStore
from app.store.reference import ReferenceStore
from app.store.rounds import RoundStore
from app.store.runs import RunStore
from app.store.uploads import UploadStore
from app.worker.keeper import LeaseKeeper
from app.worker.queue import ModelWorker
from app.worker.runner import RoundRunner


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    runs: RunStore
    reference: ReferenceStore
    feedback: FeedbackStore
    rounds: RoundStore
    uploads: UploadStore
    jobs: JobStore
    worker: ModelWorker
    runner: RoundRunner
    metrics: Metrics
    round_service: RoundService
    keeper: LeaseKeeper
    # Fault injection only: releases of POST /debug/hold-worker and /debug/pause-worker.
    held: list[threading.Event] = field(default_factory=list)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Svc = Annotated[Services, Depends(get_services)]
