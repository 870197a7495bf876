"""Rounds of a run: curate (sync or as a job), stored results, clusters, health.

``POST /rounds`` hands the round to :class:`app.service.rounds.RoundService` and translates its
outcome: 200 with the committed round, 202 with the job to poll, or the failed job's stored
problem. With an ``Idempotency-Key`` a retried POST returns that same job/round, never a second
one, and the same key with a different body is a 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from app.api.checks import check_metrics, check_samples, check_strings, check_unique_ids
from app.api.deps import Svc
from app.api.links import job_url, round_url
from app.api.problem_responses import PROBLEM_MEDIA_TYPE
from app.api.schemas import (
    MAX_INT,
    ClustersOut,
    HealthOut,
    JobOut,
    RoundIn,
    RoundList,
    RoundOut,
    SampleFilter,
)
from app.service.rounds import Committed, Failed, Pending, RoundOutcome, RoundRequest

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["rounds"])

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="Makes the POST safe to retry: the same key returns the same round.")]
Prefer = Annotated[str | None, Header(description="'respond-async': always answer 202 + job.")]


@router.post("/rounds", responses={
    200: {"model": RoundOut, "description": "The committed round"},
    202: {"model": JobOut, "description": "Accepted: poll the job (Location header)"},
    409: {"description": "Idempotency-Key reused with a different body"},
    429: {"description": "Model worker queue full (Retry-After)"}})
async def post_round(run_id: str, body: RoundIn, svc: Svc, idempotency_key: IdempotencyKey = None,
                     prefer: Prefer = None) -> Response:
    """Curate the run's next round from ``samples`` (inline) or ``upload`` (chunked), with the
    run's state, all its reference samples and the previous round's feedback (or ``feedback``)."""
    if body.samples is not None:
        check_samples(body.samples, svc.settings)
        check_unique_ids(body.samples)
    check_metrics(body.feedback, svc.settings, "feedback")
    check_strings(body.upload, "upload")
    request = RoundRequest(
        run_id, body.budget, body.feedback, upload_id=body.upload, idempotency_key=idempotency_key,
        samples=[s.to_engine() for s in body.samples] if body.samples is not None else None)
    respond_async = "respond-async" in (prefer or "").lower()
    return round_response(await svc.round_service.submit(request, respond_async))


def round_response(outcome: RoundOutcome) -> Response:
    """200 with the committed round, 202 with the pending job, or the failed job's problem."""
    job = outcome.job
    match outcome:
        case Committed(round_json=text, replayed=replayed):
            assert job.run_id is not None and job.round is not None
            headers = {"Location": round_url(job.run_id, job.round)}
            if replayed:
                headers["Idempotent-Replayed"] = "true"
            return Response(text, media_type="application/json", headers=headers)
        case Pending():
            return JSONResponse(JobOut.of(job).model_dump(mode="json"),
                                status_code=status.HTTP_202_ACCEPTED,
                                headers={"Location": job_url(job.id)})
        case Failed():  # a job that failed on its input answers every retry the same
            doc = job.error or {"status": 500, "title": "Job failed", "detail": job.note}
            return JSONResponse({**doc, "job": job.id}, status_code=int(doc["status"]),
                                media_type=PROBLEM_MEDIA_TYPE)


@router.get("/rounds", response_model=RoundList)
def list_rounds(run_id: str, svc: Svc) -> dict[str, Any]:
    """Every committed round, without its per-sample decisions."""
    return {"rounds": svc.rounds.list_rounds(run_id)}


@router.get("/rounds/{n}", responses={200: {"model": RoundOut, "headers": {"X-Total-Count": {
    "description": "How many samples matched the filters, before offset and limit.",
    "schema": {"type": "integer"}}}}})
def get_round(run_id: str, n: Annotated[int, Path(ge=0, le=MAX_INT)], svc: Svc,
              filters: Annotated[SampleFilter, Query()]) -> Response:
    """A committed round (0-based, as the engine counts) with every sample's decision, or only
    the samples that match the given filters, paged by ``offset``/``limit`` (the rest of the
    round is unchanged)."""
    text, total = svc.rounds.round_page(run_id, n, filters.active(), filters.offset,
                                        filters.limit)
    return Response(text, media_type="application/json", headers={"X-Total-Count": str(total)})


@router.get("/clusters", response_model=ClustersOut)
def get_clusters(run_id: str, svc: Svc) -> dict[str, Any]:
    """The latest round's clusters: size, share, dispersion and its reference, the edge ratio
    with every input of its decision, quota, selected center/edge and rejected counts."""
    n, report = svc.rounds.latest_report(run_id)
    return {"run_id": run_id, "round": n, "clusters": report.get("clusters", [])}


@router.get("/health", response_model=HealthOut)
def get_health(run_id: str, svc: Svc) -> dict[str, Any]:
    """Every round's health metrics as series over rounds, and the latest round's alerts."""
    rounds, series, alerts = svc.rounds.health_series(run_id)
    return {"run_id": run_id, "rounds": rounds, "series": series, "alerts": alerts}
