"""Uploads: one round sent in several requests, staged part by part, then curated as ONE round."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.api.checks import check_samples, check_unique_ids
from app.api.deps import Svc
from app.api.links import upload_url
from app.api.schemas import PartIn, PartOut, UploadOut
from app.store.records import PartRecord, UploadRecord

router = APIRouter(prefix="/v1/runs/{run_id}/uploads", tags=["uploads"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UploadOut)
def create_upload(run_id: str, svc: Svc, response: Response) -> UploadRecord:
    """Stage a round too large for one request: PUT its parts, then POST /rounds with
    ``{"upload": id}``. The parts become ONE round. Unsubmitted uploads expire."""
    upload = svc.uploads.create_upload(run_id, svc.settings.upload_ttl_s)
    response.headers["Location"] = upload_url(run_id, upload.id)
    return upload


@router.get("/{upload_id}", response_model=UploadOut)
def get_upload(run_id: str, upload_id: str, svc: Svc) -> UploadRecord:
    return svc.uploads.get_upload(run_id, upload_id)


@router.put("/{upload_id}/parts/{part}", response_model=PartOut)
def put_part(run_id: str, upload_id: str, part: Annotated[int, Path(ge=1, le=1_000_000)],
             body: PartIn, svc: Svc) -> PartRecord:
    """Store part ``part`` (1, 2, ...; samples keep part order). Idempotent: the same part with
    the same samples is a no-op, with other samples a 409. Ids must be unique across parts."""
    check_samples(body.samples, svc.settings)
    check_unique_ids(body.samples)
    return svc.uploads.put_part(run_id, upload_id, part, [s.to_engine() for s in body.samples],
                             svc.settings.max_samples_per_round)


@router.delete("/{upload_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_upload(run_id: str, upload_id: str, svc: Svc) -> Response:
    svc.uploads.delete_upload(run_id, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
