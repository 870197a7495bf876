"""Jobs: the status, progress and result link of a round curated in the background."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from app.routes_rounds import public_job
from app.schemas import JobOut
from app.services import Svc

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, svc: Svc,
                  wait: Annotated[float, Query(ge=0, le=60, description=(
                      "Long poll: wait up to this many seconds for the job to finish."))] = 0
                  ) -> dict[str, Any]:
    """A job; when ``succeeded``, ``links.round`` is the committed round."""
    await svc.runner.wait(job_id, wait)
    return public_job(await run_in_threadpool(svc.jobs.get_job, job_id))


@router.get("", response_model=dict[str, list[JobOut]])
def list_jobs(svc: Svc, run_id: str | None = None,
              status: Literal["queued", "running", "succeeded", "failed"] | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Recent jobs, newest first, optionally of one run or in one status."""
    return {"jobs": [public_job(j) for j in svc.jobs.list_jobs(run_id, status, limit)]}
