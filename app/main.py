"""``create_app(settings, model_loader)``: the FastAPI application, wired from explicit parts.

The lifespan resumes or fails jobs left by a previous process, then starts the model worker,
which loads the models in its own thread with ``model_loader`` (the server's default models
unless told otherwise; the in-process tests pass one that shares the models they loaded once):
the app answers ``/livez`` and ``/readyz`` ("loading") while they load. The lease keeper
(:mod:`app.worker.keeper`) renews this replica's jobs and adopts those of stopped replicas. On
shutdown the worker drains (see :mod:`app.worker.queue`), the keeper stops and this replica's
queued jobs are released to the others before the database closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app import __version__
from app.api.auth import BearerAuthMiddleware, require_token
from app.api.body_limit import BodyLimitMiddleware
from app.api.checks import check_params
from app.api.deps import Services
from app.api.docs import install_docs
from app.api.head_requests import HeadAsGet
from app.api.observe import RequestObserver
from app.api.openapi import install_openapi
from app.api.problem_responses import install_problem_handlers
from app.api.routes import curate, jobs, ops, rounds, runs, uploads
from app.api.ui import install_ui
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
from app.worker.models import ModelLoader, load_models
from app.worker.queue import ModelWorker
from app.worker.runner import RoundRunner

log = logging.getLogger("dces.app")

DESCRIPTION = """Curates synthetic training data between the rounds of a self-training job.

POST a round's candidates to `/v1/runs/{run_id}/rounds` and get back a selection that balances
center samples (token-edited) and edge samples (quality-filtered), with per-cluster ratios and
health. Errors are `application/problem+json` (RFC 9457). See `/info` for the limits.
"""


def build_services(settings: Settings, model_loader: ModelLoader = load_models) -> Services:
    db = Database(settings.resolved_database_url, reserve_bytes=settings.storage_reserve_mb << 20)
    uploads, jobs, rounds = UploadStore(db), JobStore(db, settings.replica_id), RoundStore(db)
    worker = ModelWorker(lambda: model_loader(settings), settings.queue_size,
                         settings.worker_nice, per_key=settings.queue_per_run)
    metrics = Metrics(lambda: worker.depth, lambda: worker.alive, settings.metrics_runs)
    runner = RoundRunner(settings, jobs, worker, metrics)
    return Services(
        settings=settings, db=db, runs=RunStore(db), reference=ReferenceStore(db),
        feedback=FeedbackStore(db), rounds=rounds, uploads=uploads, jobs=jobs, worker=worker,
        runner=runner, metrics=metrics,
        keeper=LeaseKeeper(jobs, worker, runner, settings.job_lease_s),
        round_service=RoundService(settings, uploads, jobs, rounds, worker, runner, metrics))


def create_app(settings: Settings | None = None,
               model_loader: ModelLoader = load_models) -> FastAPI:
    settings = settings or Settings()
    services = build_services(settings, model_loader)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        expired = services.uploads.expire_uploads()
        resumed = services.runner.recover()
        log.info("starting", extra={"resumed_jobs": resumed, "expired_uploads": expired,
                                    "database": services.db.dialect,
                                    "replica": settings.replica_id})
        services.worker.start()
        services.keeper.start()
        yield
        services.worker.drain(settings.shutdown_grace_s)
        stopped = await asyncio.to_thread(services.worker.join, settings.shutdown_grace_s + 5)
        requeued = [] if stopped else services.runner.requeue_active(
            "interrupted by a shutdown before its next stop point; it resumes when the service "
            "restarts")
        services.keeper.stop()
        services.jobs.release()
        log.info("stopped", extra={"worker_stopped": stopped, "requeued_jobs": requeued})
        services.db.close()

    app = FastAPI(title="DCES curation service", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = services
    install_problem_handlers(app)
    install_docs(app)
    install_openapi(app, with_auth=bool(settings.api_tokens()))
    install_ui(app)
    app.include_router(ops.router)
    if settings.fault_injection:
        app.post("/debug/crash-worker", include_in_schema=False)(ops.crash_worker)
        app.post("/debug/hold-worker", include_in_schema=False)(ops.hold_worker)
        app.post("/debug/pause-worker", include_in_schema=False)(ops.pause_worker)
        app.post("/debug/release-worker", include_in_schema=False)(ops.release_worker)
        app.post("/debug/raise-error", include_in_schema=False)(ops.raise_error)
    for module in (runs, rounds, uploads, jobs, curate):
        app.include_router(module.router,
                           dependencies=[Depends(require_token), Depends(check_params)])
    app.add_middleware(HeadAsGet)  # innermost: auth, limits and metrics see the HEAD
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_tokens():  # outside the body limit: a stranger learns no limit
        app.add_middleware(BearerAuthMiddleware, tokens=settings.api_tokens(),
                           tenants=settings.tenants)
    app.add_middleware(RequestObserver, metrics=services.metrics)
    return app
