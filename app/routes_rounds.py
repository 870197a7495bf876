"""Rounds of a run: curate (sync or as a job), chunked uploads, stored results, clusters, health.

``POST /rounds`` stores the input and a job first, then waits for the model worker: a small
round answers 200 with the committed round; a large one (over ``sync_max_samples``, or with
``Prefer: respond-async``, or still running after ``sync_wait_s``) answers 202 with the job.
With an ``Idempotency-Key`` a retried POST returns that same job/round, never a second one, and
the same key with a different body is a 409.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.job_storage import content_hash
from app.limits import check_metrics, check_samples, check_strings, check_unique_ids
from app.problems import PROBLEM_MEDIA_TYPE, Conflict
from app.schemas import (
    MAX_INT,
    ClustersOut,
    HealthOut,
    JobOut,
    PartIn,
    PartOut,
    RoundIn,
    RoundList,
    RoundOut,
    SampleFilter,
    UploadOut,
)
from app.services import Services, Svc

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["rounds"])

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="Makes the POST safe to retry: the same key returns the same round.")]
Prefer = Annotated[str | None, Header(description="'respond-async': always answer 202 + job.")]
JobFuture = Future[dict[str, Any]]


@router.post("/rounds", responses={
    200: {"model": RoundOut, "description": "The committed round"},
    202: {"model": JobOut, "description": "Accepted: poll the job (Location header)"},
    409: {"description": "Idempotency-Key reused with a different body"},
    429: {"description": "Model worker queue full (Retry-After)"}})
async def post_round(run_id: str, body: RoundIn, svc: Svc, idempotency_key: IdempotencyKey = None,
                     prefer: Prefer = None) -> Response:
    """Curate the run's next round from ``samples`` (inline) or ``upload`` (chunked), with the
    run's state, all its reference samples and the previous round's feedback (or ``feedback``)."""
    samples = None
    if body.samples is not None:
        check_samples(body.samples, svc.settings)
        check_unique_ids(body.samples)
        samples = [s.to_engine() for s in body.samples]
    check_metrics(body.feedback, svc.settings, "feedback")
    check_strings(body.upload, "upload")
    if body.upload is not None:  # by content, so a re-sent upload matches the first one
        source: Any = await run_in_threadpool(svc.jobs.upload_digest, run_id, body.upload)
    else:
        source = samples
    request_hash = await run_in_threadpool(content_hash, {
        "samples": source, "budget": body.budget, "feedback": body.feedback})
    found = None
    if idempotency_key is not None:
        found = await run_in_threadpool(svc.jobs.find_job, run_id, idempotency_key)
    if found is None:
        job, future = await _submit(svc, run_id, body, idempotency_key, request_hash, samples)
    else:
        job, future = found, None
    if future is None:  # the key was used before
        if job["request_hash"] != request_hash:
            raise Conflict(f"Idempotency-Key {idempotency_key!r} was already used for a different "
                           f"request (job {job['id']}); use a new key for a new round")
        job, future = await _existing(svc, job, samples)
    if job["status"] == "failed":
        return _stored_problem(job)
    if job["status"] == "succeeded":
        return await _round_response(svc, job, replayed=True)
    wants_async = (prefer or "").lower().find("respond-async") >= 0
    if future is not None and not wants_async and job["samples"] <= svc.settings.sync_max_samples:
        try:
            done = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                          svc.settings.sync_wait_s)
        except TimeoutError:
            pass
        else:
            return await _round_response(svc, done, replayed=False)
    return _accepted(job)


async def _submit(svc: Services, run_id: str, body: RoundIn, key: str | None, request_hash: str,
                  samples: list[dict[str, Any]] | None) -> tuple[dict[str, Any], JobFuture | None]:
    """Store input + job and queue it; (existing job, None) if a concurrent retry stored it."""
    with svc.worker.reservation() as slot:
        job, created = await run_in_threadpool(partial(
            svc.jobs.create_round_job, run_id, key, request_hash, body.budget, body.feedback,
            samples=samples, upload_id=body.upload))
        return job, svc.runner.submit(slot, job["id"]) if created else None


async def _existing(svc: Services, job: dict[str, Any], samples: list[dict[str, Any]] | None
                    ) -> tuple[dict[str, Any], JobFuture | None]:
    """A job found by its key: retried if it failed for a server-side reason, else as it is."""
    error = job.get("error") or {}
    if job["status"] == "failed" and error.get("status", 500) >= 500:
        with svc.worker.reservation() as slot:
            job = await run_in_threadpool(svc.jobs.retry_job, job["id"], samples)
            return job, svc.runner.submit(slot, job["id"])
    return job, svc.runner.active.get(job["id"])


async def _round_response(svc: Services, job: dict[str, Any], replayed: bool) -> Response:
    if job["status"] != "succeeded":  # the job was finished by another path (e.g. deleted run)
        return _stored_problem(job) if job["status"] == "failed" else _accepted(job)
    assert job["run_id"] is not None and job["round"] is not None
    text = await run_in_threadpool(svc.runs.round_json, job["run_id"], job["round"])
    headers = {"Location": f"/v1/runs/{job['run_id']}/rounds/{job['round']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(text, media_type="application/json", headers=headers)


def _accepted(job: dict[str, Any]) -> JSONResponse:
    return JSONResponse(public_job(job), status_code=status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/v1/jobs/{job['id']}"})


def _stored_problem(job: dict[str, Any]) -> JSONResponse:
    """A job that failed on its input answers every retry with the same problem."""
    doc = job["error"] or {"status": 500, "title": "Job failed", "detail": job.get("note")}
    return JSONResponse({**doc, "job": job["id"]}, status_code=int(doc["status"]),
                        media_type=PROBLEM_MEDIA_TYPE)


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    return JobOut.model_validate(job).model_dump()


@router.get("/rounds", response_model=RoundList)
def list_rounds(run_id: str, svc: Svc) -> dict[str, Any]:
    """Every committed round, without its per-sample decisions."""
    return {"rounds": svc.runs.list_rounds(run_id)}


@router.get("/rounds/{n}", responses={200: {"model": RoundOut}})
def get_round(run_id: str, n: Annotated[int, Path(ge=0, le=MAX_INT)], svc: Svc,
              filters: Annotated[SampleFilter, Query()]) -> Response:
    """A committed round (0-based, as the engine counts) with every sample's decision, or only
    the samples that match the given filters (the rest of the round is unchanged)."""
    return Response(svc.runs.round_json(run_id, n, filters.active()),
                    media_type="application/json")


@router.get("/clusters", response_model=ClustersOut)
def get_clusters(run_id: str, svc: Svc) -> dict[str, Any]:
    """The latest round's clusters: size, share, dispersion and its reference, the edge ratio
    with every input of its decision, quota, selected center/edge and rejected counts."""
    n, report = svc.runs.latest_report(run_id)
    return {"run_id": run_id, "round": n, "clusters": report.get("clusters", [])}


@router.get("/health", response_model=HealthOut)
def get_health(run_id: str, svc: Svc) -> dict[str, Any]:
    """Every round's health metrics as series over rounds, and the latest round's alerts."""
    rounds, series, alerts = svc.runs.health_series(run_id)
    return {"run_id": run_id, "rounds": rounds, "series": series, "alerts": alerts}


# -- uploads: one round sent in several requests ------------------------------------------------


@router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadOut,
             tags=["uploads"])
def create_upload(run_id: str, svc: Svc, response: Response) -> dict[str, Any]:
    """Stage a round too large for one request: PUT its parts, then POST /rounds with
    ``{"upload": id}``. The parts become ONE round. Unsubmitted uploads expire."""
    upload = svc.jobs.create_upload(run_id, svc.settings.upload_ttl_s)
    response.headers["Location"] = f"/v1/runs/{run_id}/uploads/{upload['id']}"
    return upload


@router.get("/uploads/{upload_id}", response_model=UploadOut, tags=["uploads"])
def get_upload(run_id: str, upload_id: str, svc: Svc) -> dict[str, Any]:
    return svc.jobs.get_upload(run_id, upload_id)


@router.put("/uploads/{upload_id}/parts/{part}", response_model=PartOut, tags=["uploads"])
def put_part(run_id: str, upload_id: str, part: Annotated[int, Path(ge=1, le=1_000_000)],
             body: PartIn, svc: Svc) -> dict[str, Any]:
    """Store part ``part`` (1, 2, ...; samples keep part order). Idempotent: the same part with
    the same samples is a no-op, with other samples a 409. Ids must be unique across parts."""
    check_samples(body.samples, svc.settings)
    check_unique_ids(body.samples)
    return svc.jobs.put_part(run_id, upload_id, part, [s.to_engine() for s in body.samples],
                             svc.settings.max_samples_per_round)


@router.delete("/uploads/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["uploads"])
def delete_upload(run_id: str, upload_id: str, svc: Svc) -> Response:
    svc.jobs.delete_upload(run_id, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
