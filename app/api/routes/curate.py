"""``POST /v1/curate``: one stateless round for one-off use; nothing is stored.

It still runs on the model worker (429 when the queue is full). The caller may pass back the
returned ``state`` to curate a next round without a run. If the caller disconnects, the work
stops at the engine's next progress report.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.checks import check_metrics, check_samples, check_strings, check_unique_ids
from app.api.deps import Svc
from app.api.run_config import resolve_config
from app.api.schemas import CurateIn, CurateOut
from curation import RunState

router = APIRouter(prefix="/v1", tags=["curate"])


@router.post("/curate", response_model=CurateOut,
             responses={429: {"description": "Model worker queue full (Retry-After)"}})
async def curate(body: CurateIn, svc: Svc, request: Request) -> dict[str, Any]:
    """Curate ``samples`` with ``config`` overrides, optional ``reference`` and ``state``."""
    check_samples(body.samples, svc.settings)
    check_unique_ids(body.samples)
    check_samples(body.reference, svc.settings, "reference")
    check_unique_ids(body.reference, "reference")
    check_metrics(body.feedback, svc.settings, "feedback")
    check_strings(body.config, "config")
    check_strings(body.state, "state")
    config = resolve_config(svc.settings, body.config)
    if body.state is not None:
        RunState.from_dict(body.state)  # 422 now rather than a failed task
    return await svc.round_service.curate_stateless(
        config, [s.to_engine() for s in body.samples], body.budget,
        [s.to_engine() for s in body.reference], body.state, body.feedback,
        disconnected=request.is_disconnected)
