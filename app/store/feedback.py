"""Training metrics a job reports for a finished round; round ``n``'s feed round ``n+1``."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.problems import Conflict, InvalidInput, LimitExceeded
from app.store.database import Database, now_iso
from app.store.encoding import dumps
from app.store.records import FeedbackRecord
from app.store.runs import get_run_row
from app.store.tables import FeedbackRow


def posted_metrics(session: Session, run_id: str, n: int) -> dict[str, Any] | None:
    """The metrics posted for round ``n``, if any."""
    row = session.get(FeedbackRow, (run_id, n))
    return None if row is None else dict(json.loads(row.metrics_json))


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put_feedback(self, run_id: str, round_n: int | None, metrics: dict[str, float],
                     max_metrics: int) -> tuple[FeedbackRecord, bool, list[str]]:
        """Merge the metrics of finished round ``round_n`` (default: the latest) into what the
        round has: a metric posted again takes the new value, one not named keeps its own. They
        may change only until the next round is curated (then they have been used). Returns
        (feedback, created, the metrics whose value changed). The run is locked: identical posts
        find the first one's row, and no round is committed between the check of
        ``run.rounds`` and the write."""
        with self.db.write() as s:
            run = get_run_row(s, run_id, lock=True)
            latest = run.rounds - 1
            n = latest if round_n is None else round_n
            if n < 0 or n > latest:
                raise InvalidInput(
                    "round: the run has no committed round yet" if latest < 0 else
                    f"round: {n} is not a committed round of this run (latest is {latest})",
                    errors=[{"field": "round", "message": "no such round", "limit": latest}])
            row = s.get(FeedbackRow, (run_id, n))
            before: dict[str, float] = {} if row is None else json.loads(row.metrics_json)
            merged = {**before, **metrics}
            replaced = sorted(k for k in metrics if k in before and before[k] != metrics[k])
            if row is not None and merged == before:
                return _feedback(row), False, []
            if n < latest:
                raise Conflict(f"round: round {n + 1} was already curated, so the feedback of "
                               f"round {n} can no longer change")
            if len(merged) > max_metrics:
                raise LimitExceeded(
                    f"metrics: round {n} would have {len(merged)} metrics with these, over "
                    f"max_feedback_metrics = {max_metrics}",
                    errors=[{"field": "metrics", "message": "too many metrics",
                             "limit": max_metrics}])
            created = row is None
            if row is None:
                row = FeedbackRow(run_id=run_id, round=n, metrics_json="", created_at="")
                s.add(row)
            row.metrics_json, row.created_at = dumps(merged), now_iso()
            return _feedback(row), created, replaced

    def list_feedback(self, run_id: str) -> list[FeedbackRecord]:
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.scalars(select(FeedbackRow).where(FeedbackRow.run_id == run_id)
                             .order_by(FeedbackRow.round)).all()
            return [_feedback(r) for r in rows]


def _feedback(row: FeedbackRow) -> FeedbackRecord:
    return FeedbackRecord(run_id=row.run_id, round=row.round,
                          metrics=json.loads(row.metrics_json), created_at=row.created_at)
