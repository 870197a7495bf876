"""Jobs: the status, progress and result link of a round curated in the background."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.auth import Tenant
from app.api.deps import Svc
from app.api.schemas import JobOut
from app.store.records import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, svc: Svc,
                  wait: Annotated[float, Query(ge=0, le=60, description=(
                      "Long poll: wait up to this many seconds for the job to finish."))] = 0
                  ) -> JobOut:
    """A job; when ``succeeded``, ``links.round`` is the committed round."""
    return JobOut.of(await svc.round_service.poll(job_id, wait))


@router.get("", response_model=dict[str, list[JobOut]])
def list_jobs(svc: Svc, tenant: Tenant, run_id: str | None = None,
              status: JobStatus | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Recent jobs, newest first, optionally of one run or in one status (with
    DCES_API_TOKENS_FILE, of the caller's tenant's runs only)."""
    return {"jobs": [JobOut.of(j) for j in svc.jobs.list_jobs(run_id, status, limit, tenant)]}
