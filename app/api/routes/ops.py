"""Operations: liveness, readiness, service info, Prometheus metrics (no auth, no /v1 prefix).

``/readyz`` is 200 only while the models are loaded, the worker thread is alive and the service
is not draining; ``/livez`` fails only when the worker has died, which no request can repair, so
an orchestrator restarts the process.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from app import __version__
from app.api.deps import Svc
from app.api.schemas import InfoOut, ReadyOut
from curation.ratio import FEEDBACK_DIRECTIONS

router = APIRouter(tags=["ops"])


@router.get("/livez")
def livez(svc: Svc) -> JSONResponse:
    dead = svc.worker.status == "dead"
    return JSONResponse({"alive": not dead, "detail": svc.worker.reason},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE if dead else 200)


@router.get("/readyz", response_model=ReadyOut,
            responses={503: {"model": ReadyOut, "description": "Not ready (see status)"}})
async def readyz(svc: Svc) -> JSONResponse:
    """Async on purpose: it answers from the event loop, whatever the thread pool is doing."""
    worker = svc.worker
    body = {"ready": worker.ready, "status": worker.phase, "detail": worker.reason,
            "queue_depth": worker.depth}
    if worker.ready and svc.db.disk.full:
        body.update(ready=False, status="storage-full",
                    detail="the database's disk is full: delete runs or free space")
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/info", response_model=InfoOut)
def info(svc: Svc) -> dict[str, Any]:
    """Version, models, and the limits a client must respect (it splits its requests by them)."""
    settings = svc.settings
    return {
        "version": __version__,
        "models": {
            "embedding": settings.embedding_model or "all-MiniLM-L6-v2 (bundled)",
            "lm": settings.lm_model or "SmolLM2-135M-Instruct (bundled)",
            "loaded": svc.worker.models.loaded if svc.worker.models is not None else None,
        },
        "limits": settings.limits(),
        "feedback_metrics": {name: "rise" if direction > 0 else "fall"
                             for name, direction in FEEDBACK_DIRECTIONS.items()},
        "auth": bool(settings.api_tokens()),
        "database": svc.db.dialect,
    }


@router.get("/metrics", include_in_schema=False)
def metrics(svc: Svc) -> Response:
    body, content_type = svc.metrics.render()
    return Response(body, media_type=content_type)


def raise_error() -> None:
    """Fault injection (DCES_FAULT_INJECTION=true only): an unexpected error, so tests can see
    what a client gets from the catch-all 500."""
    raise RuntimeError("injected fault")


def hold_worker(svc: Svc) -> dict[str, str]:
    """Fault injection: keep the worker busy until POST /debug/release-worker."""
    svc.held.append(svc.worker.hold())
    return {"status": "worker held"}


def pause_worker(svc: Svc) -> dict[str, str]:
    """Fault injection: the running round, or the next, stops at its next progress report
    until POST /debug/release-worker."""
    svc.held.append(svc.worker.pause())
    return {"status": "worker paused"}


def release_worker(svc: Svc) -> dict[str, str]:
    """Fault injection: end every hold and pause."""
    while svc.held:
        svc.held.pop().set()
    return {"status": "worker released"}


def crash_worker(svc: Svc) -> dict[str, str]:
    """Fault injection (DCES_FAULT_INJECTION=true only): end the worker thread."""
    svc.worker.crash()
    return {"status": "crash requested"}
