"""Uploads: a round's input, staged. A client fills one part by part (a round too large for one
request); an inline round becomes a one-part upload. Either way a job curates it as ONE round.

Parts are idempotent: the same part again with the same samples is a no-op, so a client may
retry any PUT. Ids are unique across an upload's parts. Unsubmitted uploads expire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.problems import Conflict, LimitExceeded, NotFound
from app.store.database import ROW_LOCK, Database, new_id, now_iso
from app.store.encoding import chunks, content_hash, row_sample, sample_columns
from app.store.records import PartRecord, SampleJson, UploadRecord, UploadStatus
from app.store.runs import get_run_row
from app.store.tables import UploadPartRow, UploadRow, UploadSampleRow
from curation.types import CurationInputError


class UploadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_upload(self, run_id: str, ttl_s: float) -> UploadRecord:
        with self.db.write() as s:
            get_run_row(s, run_id)
            row = UploadRow(id=new_id("upl"), run_id=run_id, status=UploadStatus.OPEN, parts=0,
                            samples=0, created_at=now_iso(), expires_at=now_iso(ttl_s))
            s.add(row)
        return _upload(row)

    def get_upload(self, run_id: str, upload_id: str) -> UploadRecord:
        with self.db.read() as s:
            return _upload(upload_row(s, run_id, upload_id))

    def delete_upload(self, run_id: str, upload_id: str) -> None:
        with self.db.write() as s:
            row = upload_row(s, run_id, upload_id, lock=True)
            if row.status != UploadStatus.OPEN:
                raise Conflict(f"upload {upload_id!r} belongs to a submitted round job")
            s.delete(row)

    def put_part(self, run_id: str, upload_id: str, part: int,
                 samples: Sequence[Mapping[str, Any]], max_round: int) -> PartRecord:
        """Store part ``part``; the same part again with the same samples is a no-op (a retry).
        The upload stays locked until the commit: parts sent in parallel queue, so each adds to
        the totals the previous one left and checks its ids against the parts stored before."""
        digest = content_hash(list(samples))
        with self.db.write() as s:
            upload = upload_row(s, run_id, upload_id, lock=True)
            existing = s.get(UploadPartRow, (upload_id, part))
            if existing is not None:
                if existing.sha256 != digest:
                    raise Conflict(f"part {part} of upload {upload_id!r} was already stored with "
                                   "other samples")
                return _part(upload, part, existing.samples, unchanged=True)
            if upload.status != UploadStatus.OPEN:
                raise Conflict(f"upload {upload_id!r} was already submitted as a round")
            if upload.samples + len(samples) > max_round:
                raise LimitExceeded(
                    f"samples: the upload would hold {upload.samples + len(samples)} samples, "
                    f"over max_samples_per_round = {max_round}",
                    errors=[{"field": "samples", "message": "upload too large",
                             "limit": max_round}])
            _check_new_ids(s, upload_id, [x["id"] for x in samples])
            s.add(UploadPartRow(upload_id=upload_id, part=part, sha256=digest,
                                samples=len(samples)))
            _insert_samples(s, upload_id, part, samples)
            upload.parts += 1
            upload.samples += len(samples)
            return _part(upload, part, len(samples), unchanged=False)

    def upload_digest(self, run_id: str, upload_id: str) -> str:
        """The hash of an upload's content (its parts' hashes in order), not of its id."""
        with self.db.read() as s:
            upload_row(s, run_id, upload_id)
            hashes = s.scalars(select(UploadPartRow.sha256).where(
                UploadPartRow.upload_id == upload_id).order_by(UploadPartRow.part)).all()
            return content_hash(list(hashes))

    def expire_uploads(self) -> int:
        """Delete open uploads past their expiry (abandoned chunked rounds)."""
        with self.db.write() as s:
            rows = s.scalars(select(UploadRow).where(
                UploadRow.status == UploadStatus.OPEN, UploadRow.expires_at < now_iso())).all()
            for row in rows:
                s.delete(row)
            return len(rows)


# -- a job's staged input, inside the job store's transactions ----------------------------------


def upload_row(session: Session, run_id: str, upload_id: str, lock: bool = False) -> UploadRow:
    get_run_row(session, run_id)
    row = session.get(UploadRow, upload_id, with_for_update=ROW_LOCK if lock else None)
    if row is None or row.run_id != run_id:
        raise NotFound(f"run {run_id!r} has no upload {upload_id!r} (uploads expire when "
                       "not submitted)")
    return row


def stage_inline(session: Session, run_id: str, samples: Sequence[Mapping[str, Any]]) -> str:
    """An inline round's samples as a submitted one-part upload; returns its id."""
    row = UploadRow(id=new_id("upl"), run_id=run_id, status=UploadStatus.SUBMITTED, parts=1,
                    samples=len(samples), created_at=now_iso(), expires_at=now_iso())
    session.add(row)
    session.flush()  # the upload row first: parts and samples reference it
    session.add(UploadPartRow(upload_id=row.id, part=1, sha256=content_hash(list(samples)),
                              samples=len(samples)))
    _insert_samples(session, row.id, 1, samples)
    return row.id


def submit_upload(session: Session, run_id: str, upload_id: str) -> int:
    """Mark a client's upload as taken by a round job; returns its sample count."""
    upload = upload_row(session, run_id, upload_id, lock=True)
    if upload.status != UploadStatus.OPEN:
        raise Conflict(f"upload {upload_id!r} was already submitted as a round "
                       "(use the same Idempotency-Key to get that round)")
    if upload.samples == 0:
        raise CurationInputError(f"upload: {upload_id!r} has no samples; PUT parts first")
    upload.status = UploadStatus.SUBMITTED
    return upload.samples


def staged_count(session: Session, upload_id: str) -> int:
    """How many samples are still staged (0 once their round was committed)."""
    return session.scalar(select(func.count()).select_from(UploadSampleRow)
                          .where(UploadSampleRow.upload_id == upload_id)) or 0


def staged_samples(session: Session, upload_id: str) -> list[SampleJson]:
    """The staged samples in part order, each part in the order it was sent."""
    rows = session.scalars(select(UploadSampleRow).where(UploadSampleRow.upload_id == upload_id)
                           .order_by(UploadSampleRow.part, UploadSampleRow.idx))
    return [row_sample(r) for r in rows]


def drop_staged(session: Session, upload_id: str) -> None:
    """Delete the staged samples; the parts' hashes stay, so a retried POST still matches."""
    session.execute(delete(UploadSampleRow).where(UploadSampleRow.upload_id == upload_id))


def _check_new_ids(session: Session, upload_id: str, ids: Sequence[str]) -> None:
    """Ids must be unique across the upload's parts; the error names the first repeat."""
    stored: dict[str, int] = {}
    for part in chunks(ids):
        stored.update(session.execute(
            select(UploadSampleRow.sample_id, UploadSampleRow.part)
            .where(UploadSampleRow.upload_id == upload_id, UploadSampleRow.sample_id.in_(part))
        ).tuples().all())
    for i, sid in enumerate(ids):
        if sid in stored:
            raise CurationInputError(f"samples[{i}].id: duplicate id {sid!r} (already "
                                     f"uploaded in part {stored[sid]})")


def _insert_samples(session: Session, upload_id: str, part: int,
                    samples: Sequence[Mapping[str, Any]]) -> None:
    session.execute(insert(UploadSampleRow), [
        {"upload_id": upload_id, "part": part, "idx": i, **sample_columns(x)}
        for i, x in enumerate(samples)])


def _upload(row: UploadRow) -> UploadRecord:
    return UploadRecord(id=row.id, run_id=row.run_id, status=UploadStatus(row.status),
                        parts=row.parts, samples=row.samples, created_at=row.created_at,
                        expires_at=row.expires_at)


def _part(upload: UploadRow, part: int, count: int, unchanged: bool) -> PartRecord:
    return PartRecord(upload=upload.id, part=part, samples=count, total_samples=upload.samples,
                      unchanged=unchanged)
