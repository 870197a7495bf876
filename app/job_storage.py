"""Round jobs and their staged input (uploads), and the one-transaction round commit.

A round's input is always stored before any curation starts: an inline batch becomes a one-part
upload, a chunked round is an upload the client filled part by part. So a job can be resumed
after a crash, and a chunked round is curated as ONE round of the run. The round's result, the
run's new state, the job's success and the deletion of the staged samples commit together (the
upload and its parts' hashes remain, so that a retried POST of the same upload still matches).

Every read-modify-write locks its run, upload or job row first (:data:`app.db_models.ROW_LOCK`),
so concurrent requests for the same one queue and each sees what the previous one committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.db_models import (
    ROW_LOCK,
    Database,
    FeedbackRow,
    JobRow,
    RoundRow,
    UploadPartRow,
    UploadRow,
    UploadSampleRow,
    new_id,
    now_iso,
)
from app.problems import Conflict, LimitExceeded, NotFound
from app.storage import RunStore, chunks, dumps, extra_json, get_run_row, loads, row_sample
from curation.types import CurationInputError

ACTIVE = ("queued", "running")


def content_hash(value: Any) -> str:
    """SHA-256 of canonical JSON: equal requests hash equally whatever their key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class RoundInput:
    """Everything the worker needs to curate a round, read in the transaction that starts it."""

    job_id: str
    run_id: str
    round: int
    config: dict[str, Any]
    samples: list[dict[str, Any]]
    reference: list[dict[str, Any]]
    state: dict[str, Any] | None
    feedback: dict[str, float] | None
    feedback_source: str
    budget: int


class JobStore:
    def __init__(self, db: Database, runs: RunStore) -> None:
        self.db = db
        self.runs = runs

    # -- uploads --------------------------------------------------------------------------------

    def create_upload(self, run_id: str, ttl_s: float) -> dict[str, Any]:
        with self.db.write() as s:
            get_run_row(s, run_id)
            row = UploadRow(id=new_id("upl"), run_id=run_id, status="open", parts=0, samples=0,
                            created_at=now_iso(), expires_at=now_iso(ttl_s))
            s.add(row)
        return _upload(row)

    def get_upload(self, run_id: str, upload_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            return _upload(self._upload_row(s, run_id, upload_id))

    def delete_upload(self, run_id: str, upload_id: str) -> None:
        with self.db.write() as s:
            row = self._upload_row(s, run_id, upload_id, lock=True)
            if row.status != "open":
                raise Conflict(f"upload {upload_id!r} belongs to a submitted round job")
            s.delete(row)

    def put_part(self, run_id: str, upload_id: str, part: int,
                 samples: Sequence[Mapping[str, Any]], max_round: int) -> dict[str, Any]:
        """Store part ``part``; the same part again with the same samples is a no-op (a retry).
        The upload stays locked until the commit: parts sent in parallel queue, so each adds to
        the totals the previous one left and checks its ids against the parts stored before."""
        digest = content_hash(list(samples))
        with self.db.write() as s:
            upload = self._upload_row(s, run_id, upload_id, lock=True)
            existing = s.get(UploadPartRow, (upload_id, part))
            if existing is not None:
                if existing.sha256 != digest:
                    raise Conflict(f"part {part} of upload {upload_id!r} was already stored with "
                                   "other samples")
                return _part(upload, part, existing.samples, unchanged=True)
            if upload.status != "open":
                raise Conflict(f"upload {upload_id!r} was already submitted as a round")
            if upload.samples + len(samples) > max_round:
                raise LimitExceeded(
                    f"samples: the upload would hold {upload.samples + len(samples)} samples, "
                    f"over max_samples_per_round = {max_round}",
                    errors=[{"field": "samples", "message": "upload too large",
                             "limit": max_round}])
            self._check_new_ids(s, upload_id, [x["id"] for x in samples])
            s.add(UploadPartRow(upload_id=upload_id, part=part, sha256=digest,
                                samples=len(samples)))
            _insert_samples(s, upload_id, part, samples)
            upload.parts += 1
            upload.samples += len(samples)
            return _part(upload, part, len(samples), unchanged=False)

    def upload_digest(self, run_id: str, upload_id: str) -> str:
        """The hash of an upload's content (its parts' hashes in order), not of its id."""
        with self.db.read() as s:
            self._upload_row(s, run_id, upload_id)
            hashes = s.scalars(select(UploadPartRow.sha256).where(
                UploadPartRow.upload_id == upload_id).order_by(UploadPartRow.part)).all()
            return content_hash(list(hashes))

    def expire_uploads(self) -> int:
        """Delete open uploads past their expiry (abandoned chunked rounds)."""
        with self.db.write() as s:
            rows = s.scalars(select(UploadRow).where(
                UploadRow.status == "open", UploadRow.expires_at < now_iso())).all()
            for row in rows:
                s.delete(row)
            return len(rows)

    # -- jobs -----------------------------------------------------------------------------------

    def find_job(self, run_id: str, key: str) -> dict[str, Any] | None:
        with self.db.read() as s:
            row = s.scalar(select(JobRow).where(JobRow.run_id == run_id,
                                                JobRow.idempotency_key == key))
            return _job(row) if row else None

    def create_round_job(
        self, run_id: str, key: str | None, request_hash: str, budget: int,
        feedback: dict[str, float] | None, *,
        samples: Sequence[Mapping[str, Any]] | None = None, upload_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """A queued job with its input stored; with ``key`` already used, that job and False.
        The run is locked before the key is looked up, so of concurrent requests with one key
        the first creates the job and the others find it."""
        with self.db.write() as s:
            get_run_row(s, run_id, lock=True)
            if key is not None:
                found = s.scalar(select(JobRow).where(JobRow.run_id == run_id,
                                                      JobRow.idempotency_key == key))
                if found is not None:
                    return _job(found), False
            if samples is not None:
                upload_id, count = self._inline_upload(s, run_id, samples), len(samples)
            else:
                assert upload_id is not None
                count = self._submit_upload(s, run_id, upload_id)
            row = JobRow(
                id=new_id("job"), kind="round", run_id=run_id, status="queued",
                progress=0.0, upload_id=upload_id, samples=count, budget=budget,
                feedback_json=dumps(feedback) if feedback is not None else None,
                idempotency_key=key, request_hash=request_hash, attempts=0,
                created_at=now_iso())
            s.add(row)
        return _job(row), True

    def retry_job(self, job_id: str, samples: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
        """Queue a job that failed for a server-side reason again (an idempotent retry)."""
        with self.db.write() as s:
            row = self._job_row(s, job_id, lock=True)
            if row.status != "failed":
                return _job(row)
            if row.upload_id is None or self._sample_count(s, row.upload_id) == 0:
                if samples is None:
                    raise Conflict(f"job {job_id} failed and its upload is gone; "
                                   "upload the samples again with a new Idempotency-Key")
                assert row.run_id is not None
                row.upload_id = self._inline_upload(s, row.run_id, samples)
            row.status, row.error_json, row.stage, row.progress = "queued", None, None, 0.0
            row.note, row.finished_at = "retried with the same Idempotency-Key", None
            return _job(row)

    def start_job(self, job_id: str) -> RoundInput | None:
        """Mark a queued job running and read its input; None when it is no longer queued."""
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is None or job.status != "queued" or job.run_id is None:
                return None
            run = get_run_row(s, job.run_id)
            if job.upload_id is None or self._sample_count(s, job.upload_id) == 0:
                raise NotFound(f"the input of job {job_id} is no longer stored")
            job.status, job.attempts, job.started_at = "running", job.attempts + 1, now_iso()
            job.stage, job.progress = "load", 0.0
            feedback, source = loads(job.feedback_json), "body"
            if feedback is None:
                posted = s.get(FeedbackRow, (run.id, run.rounds - 1)) if run.rounds else None
                feedback, source = (loads(posted.metrics_json), "posted") if posted else (None, "")
            rows = s.scalars(select(UploadSampleRow).where(UploadSampleRow.upload_id ==
                             job.upload_id).order_by(UploadSampleRow.part, UploadSampleRow.idx))
            return RoundInput(
                job_id=job.id, run_id=run.id, round=run.rounds,
                config=json.loads(run.config_json), samples=[row_sample(r) for r in rows],
                reference=self.runs.load_reference(s, run.id),
                state=loads(run.state_json), feedback=feedback,
                feedback_source=source or "none", budget=job.budget)

    def set_progress(self, job_id: str, stage: str, fraction: float) -> None:
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is not None and job.status == "running":
                job.stage, job.progress = stage, round(float(fraction), 4)

    def commit_round(self, inp: RoundInput, result: dict[str, Any], state: dict[str, Any]) -> None:
        """ONE transaction: the round, the run's new state, the job's success, input deleted."""
        decisions = result.get("samples", [])
        report = {k: v for k, v in result.items() if k != "samples"}
        with self.db.write() as s:
            run = get_run_row(s, inp.run_id, lock=True)
            job = self._job_row(s, inp.job_id, lock=True)
            if run.rounds != inp.round or job.status != "running":
                raise Conflict(f"run {inp.run_id} moved on while job {inp.job_id} ran; "
                               "the round was not stored")
            s.add(RoundRow(
                run_id=run.id, n=inp.round, created_at=now_iso(), job_id=job.id,
                budget=inp.budget, samples=len(decisions), selected=int(result.get("selected", 0)),
                feedback_json=dumps(inp.feedback) if inp.feedback is not None else None,
                feedback_source=inp.feedback_source, report_json=dumps(report),
                samples_json=dumps(decisions), state_json=dumps(state)))
            run.rounds, run.state_json = inp.round + 1, dumps(state)
            job.status, job.round, job.stage, job.progress = "succeeded", inp.round, "done", 1.0
            job.finished_at = now_iso()
            if job.upload_id is not None:  # the parts' hashes stay: a retried POST must match
                s.execute(delete(UploadSampleRow).where(UploadSampleRow.upload_id == job.upload_id))

    def finish_failed(self, job_id: str, error: dict[str, Any], note: str | None = None) -> None:
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is not None and job.status in ACTIVE:
                job.status, job.error_json, job.finished_at = "failed", dumps(error), now_iso()
                job.note = note

    def requeue(self, job_id: str, note: str) -> None:
        """Put an interrupted running job back in the queue (its input is still stored)."""
        with self.db.write() as s:
            job = s.get(JobRow, job_id, with_for_update=ROW_LOCK)
            if job is not None and job.status == "running":
                job.status, job.stage, job.progress, job.note = "queued", None, 0.0, note

    def get_job(self, job_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            return _job(self._job_row(s, job_id))

    def list_jobs(self, run_id: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if run_id is not None:
            query = query.where(JobRow.run_id == run_id)
        if status is not None:
            query = query.where(JobRow.status == status)
        with self.db.read() as s:
            return [_job(r) for r in s.scalars(query)]

    def unfinished_jobs(self) -> list[dict[str, Any]]:
        with self.db.read() as s:
            rows = s.scalars(select(JobRow).where(JobRow.status.in_(ACTIVE))
                             .order_by(JobRow.created_at)).all()
            return [_job(r) for r in rows]

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _job_row(session: Session, job_id: str, lock: bool = False) -> JobRow:
        row = session.get(JobRow, job_id, with_for_update=ROW_LOCK if lock else None)
        if row is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return row

    @staticmethod
    def _sample_count(session: Session, upload_id: str) -> int:
        return session.scalar(select(func.count()).select_from(UploadSampleRow)
                              .where(UploadSampleRow.upload_id == upload_id)) or 0

    @staticmethod
    def _upload_row(session: Session, run_id: str, upload_id: str, lock: bool = False
                    ) -> UploadRow:
        get_run_row(session, run_id)
        row = session.get(UploadRow, upload_id, with_for_update=ROW_LOCK if lock else None)
        if row is None or row.run_id != run_id:
            raise NotFound(f"run {run_id!r} has no upload {upload_id!r} (uploads expire when "
                           "not submitted)")
        return row

    def _inline_upload(self, session: Session, run_id: str,
                       samples: Sequence[Mapping[str, Any]]) -> str:
        row = UploadRow(id=new_id("upl"), run_id=run_id, status="submitted", parts=1,
                        samples=len(samples), created_at=now_iso(), expires_at=now_iso())
        session.add(row)
        session.flush()  # the upload row first: parts and samples reference it
        session.add(UploadPartRow(upload_id=row.id, part=1, sha256=content_hash(list(samples)),
                                  samples=len(samples)))
        _insert_samples(session, row.id, 1, samples)
        return row.id

    def _submit_upload(self, session: Session, run_id: str, upload_id: str) -> int:
        upload = self._upload_row(session, run_id, upload_id, lock=True)
        if upload.status != "open":
            raise Conflict(f"upload {upload_id!r} was already submitted as a round "
                           "(use the same Idempotency-Key to get that round)")
        if upload.samples == 0:
            raise CurationInputError(f"upload: {upload_id!r} has no samples; PUT parts first")
        upload.status = "submitted"
        return upload.samples

    @staticmethod
    def _check_new_ids(session: Session, upload_id: str, ids: Sequence[str]) -> None:
        """Ids must be unique across the upload's parts; the 422 names the first repeat."""
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
        {"upload_id": upload_id, "part": part, "idx": i, "sample_id": x["id"], "text": x["text"],
         "extra_json": extra_json(x)} for i, x in enumerate(samples)])


def _upload(row: UploadRow) -> dict[str, Any]:
    return {"id": row.id, "run_id": row.run_id, "status": row.status, "parts": row.parts,
            "samples": row.samples, "created_at": row.created_at, "expires_at": row.expires_at}


def _part(upload: UploadRow, part: int, count: int, unchanged: bool) -> dict[str, Any]:
    return {"upload": upload.id, "part": part, "samples": count, "total_samples": upload.samples,
            "unchanged": unchanged}


def _job(row: JobRow) -> dict[str, Any]:
    links = {"self": f"/v1/jobs/{row.id}"}
    if row.run_id:
        links["run"] = f"/v1/runs/{row.run_id}"
    if row.round is not None and row.run_id:
        links["round"] = f"/v1/runs/{row.run_id}/rounds/{row.round}"
    return {
        "id": row.id, "kind": row.kind, "status": row.status, "stage": row.stage,
        "progress": row.progress, "run_id": row.run_id, "round": row.round,
        "samples": row.samples, "attempts": row.attempts, "error": loads(row.error_json),
        "note": row.note, "created_at": row.created_at, "started_at": row.started_at,
        "finished_at": row.finished_at, "links": links,
        "request_hash": row.request_hash, "idempotency_key": row.idempotency_key,
    }
