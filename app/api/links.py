"""The service's URLs, built in this one place: the floors below hand out ids, never links."""

from __future__ import annotations

from app.store.records import JobRecord


def run_url(run_id: str) -> str:
    return f"/v1/runs/{run_id}"


def round_url(run_id: str, n: int) -> str:
    return f"{run_url(run_id)}/rounds/{n}"


def upload_url(run_id: str, upload_id: str) -> str:
    return f"{run_url(run_id)}/uploads/{upload_id}"


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_links(job: JobRecord) -> dict[str, str]:
    """``self``, and the job's ``run`` and committed ``round`` once it has them."""
    links = {"self": job_url(job.id)}
    if job.run_id:
        links["run"] = run_url(job.run_id)
        if job.round is not None:
            links["round"] = round_url(job.run_id, job.round)
    return links
