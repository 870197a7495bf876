"""Runs, their reference samples, their feedback and their current state.

Plain ``def`` handlers: FastAPI runs them in its thread pool, so database I/O never blocks the
event loop that answers ``/readyz``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app.api.auth import Tenant
from app.api.checks import check_metrics, check_samples, check_strings, check_unique_ids
from app.api.deps import Svc
from app.api.links import run_url
from app.api.run_config import resolve_config
from app.api.schemas import (
    MAX_INT,
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    ReferenceIn,
    ReferenceOut,
    ReferencePage,
    RunCreate,
    RunList,
    RunOut,
)
from app.store.records import RunRecord
from curation.ratio import FEEDBACK_DIRECTIONS

router = APIRouter(prefix="/v1/runs", tags=["runs"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunOut)
def create_run(body: RunCreate, svc: Svc, response: Response, tenant: Tenant) -> RunRecord:
    """Create a run. ``config`` overrides are validated now: an unknown key or a wrong type is a
    422 naming it. The resolved config is stored, so later server upgrades do not change it."""
    check_strings(body.name, "name")
    check_strings(body.config, "config")
    config = resolve_config(svc.settings, body.config)
    run = svc.runs.create_run(body.name, body.config, config.to_dict(), tenant)
    response.headers["Location"] = run_url(run.id)
    return run


@router.get("", response_model=RunList)
def list_runs(svc: Svc, tenant: Tenant, limit: Limit = 100, offset: Offset = 0
              ) -> dict[str, Any]:
    """Runs, oldest first: with DCES_API_TOKENS_FILE, the caller's tenant's only."""
    runs, total = svc.runs.list_runs(limit, offset, tenant)
    return {"runs": runs, "total": total}


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: str, svc: Svc) -> RunRecord:
    return svc.runs.get_run(run_id)


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_run(run_id: str, svc: Svc) -> Response:
    """Delete a run with its reference, rounds, feedback, uploads and jobs."""
    svc.runs.delete_run(run_id)
    svc.metrics.runs.forget(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/state")
def get_state(run_id: str, svc: Svc) -> dict[str, Any] | None:
    """The engine state after the latest round (null before the first): what ``dces curate
    --state`` reads, so a run can move between the service and the CLI."""
    return svc.runs.run_state(run_id)


@router.post("/{run_id}/reference", response_model=ReferenceOut)
def add_reference(run_id: str, body: ReferenceIn, svc: Svc) -> dict[str, Any]:
    """Append real (human) reference samples. Re-sending a stored sample is a no-op, so a
    retried or chunked append is safe; the same id with another text is a 409."""
    check_samples(body.samples, svc.settings)
    check_unique_ids(body.samples)
    return svc.reference.add_reference(
        run_id, [s.to_engine() for s in body.samples], svc.settings.max_reference_samples
    )._asdict()


@router.get("/{run_id}/reference", response_model=ReferencePage)
def list_reference(run_id: str, svc: Svc, limit: Limit = 100, offset: Offset = 0
                   ) -> dict[str, Any]:
    total, samples = svc.reference.reference_page(run_id, limit, offset)
    return {"total": total, "samples": samples}


@router.post("/{run_id}/feedback", response_model=FeedbackOut,
             responses={200: {"description": "Merged into the round's metrics, or unchanged"},
                        201: {"description": "Stored (the round's first feedback)"}})
def post_feedback(run_id: str, body: FeedbackIn, svc: Svc, response: Response
                  ) -> dict[str, Any]:
    """Training metrics of a finished round (default: the latest), e.g. ``heldout_perplexity``,
    ``generation_entropy``, ``eval_loss``, ``ece`` (``/info`` lists the names the signal
    reads). The next round's edge ratios use them. A second post for the round merges into the
    first (``replaced`` names the metrics it changed) until the next round is curated; then it
    is a 409. The answer says which metrics are used and which are ignored."""
    check_metrics(body.metrics, svc.settings, "metrics")
    feedback, created, replaced = svc.feedback.put_feedback(
        run_id, body.round, body.metrics, svc.settings.max_feedback_metrics)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return {**asdict(feedback),
            "used": sorted(k for k in body.metrics if k in FEEDBACK_DIRECTIONS),
            "ignored": sorted(k for k in body.metrics if k not in FEEDBACK_DIRECTIONS),
            "replaced": replaced}


@router.get("/{run_id}/feedback", response_model=FeedbackList)
def list_feedback(run_id: str, svc: Svc) -> dict[str, Any]:
    return {"feedback": svc.feedback.list_feedback(run_id)}
