"""Committed rounds, read: summaries, the stored result, the latest clusters, health over time.

A round is written with its job, in one transaction (:meth:`app.store.jobs.JobStore.commit_round`);
only a filtered or paged :meth:`RoundStore.round_page` parses its (large) decision list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import select

from app.problems import NotFound
from app.store.database import Database
from app.store.encoding import dumps, loads
from app.store.records import FeedbackSource, HealthSeries, RoundRecord
from app.store.runs import get_run_row
from app.store.tables import RoundRow


class RoundStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list_rounds(self, run_id: str) -> list[RoundRecord]:
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.execute(select(
                RoundRow.n, RoundRow.created_at, RoundRow.job_id, RoundRow.budget,
                RoundRow.samples, RoundRow.selected, RoundRow.feedback_source, RoundRow.report_json,
            ).where(RoundRow.run_id == run_id).order_by(RoundRow.n)).all()
        return [RoundRecord(
            run_id=run_id, round=r.n, created_at=r.created_at, job_id=r.job_id, budget=r.budget,
            samples=r.samples, selected=r.selected,
            feedback_source=cast(FeedbackSource, r.feedback_source),
            alerts=json.loads(r.report_json).get("health", {}).get("alerts", []),
        ) for r in rows]

    def round_json(self, run_id: str, n: int) -> str:
        """The stored round as JSON text, assembled without re-encoding the decision list."""
        return self.round_page(run_id, n)[0]

    def round_page(self, run_id: str, n: int, match: Mapping[str, Any] | None = None,
                   offset: int = 0, limit: int | None = None) -> tuple[str, int]:
        """(the round as JSON text with only the samples whose fields equal every value of
        ``match``, from ``offset`` on and at most ``limit`` of them; how many matched). Only a
        filtered or paged read parses and re-encodes the decision list."""
        with self.db.read() as s:
            get_run_row(s, run_id)
            row = s.get(RoundRow, (run_id, n))
            if row is None:
                raise NotFound(f"run {run_id!r} has no round {n}")
            head = dumps({**_round_meta(row), **json.loads(row.report_json)})
            samples, total = row.samples_json, row.samples
        if match or offset or limit is not None:
            kept = [x for x in json.loads(samples)
                    if all(x.get(k) == v for k, v in (match or {}).items())]
            total = len(kept)
            samples = dumps(kept[offset:None if limit is None else offset + limit])
        return f'{head[:-1]},"samples":{samples}}}', total

    def latest_report(self, run_id: str) -> tuple[int, dict[str, Any]]:
        """(n, the report of round n) for the run's latest round."""
        with self.db.read() as s:
            run = get_run_row(s, run_id)
            if run.rounds == 0:
                raise NotFound(f"run {run_id!r} has no round yet")
            report = s.scalar(select(RoundRow.report_json)
                              .where(RoundRow.run_id == run_id, RoundRow.n == run.rounds - 1))
            return run.rounds - 1, json.loads(report or "{}")

    def health_series(self, run_id: str) -> HealthSeries:
        """Every scalar health metric as a series over rounds, and the latest round's alerts."""
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.execute(select(RoundRow.n, RoundRow.report_json)
                             .where(RoundRow.run_id == run_id).order_by(RoundRow.n)).all()
        healths = [_flat_scalars(json.loads(r.report_json).get("health", {})) for r in rows]
        names = sorted({k for h in healths for k in h})
        series = {k: [h.get(k) for h in healths] for k in names}
        latest = json.loads(rows[-1].report_json) if rows else {}
        alerts = latest.get("health", {}).get("alerts", [])
        return HealthSeries([r.n for r in rows], series, alerts)


def _round_meta(row: RoundRow) -> dict[str, Any]:
    return {"run_id": row.run_id, "round": row.n, "created_at": row.created_at,
            "job_id": row.job_id, "feedback": loads(row.feedback_json),
            "feedback_source": row.feedback_source}


def _flat_scalars(health: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in health.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            out[name] = value
        elif isinstance(value, Mapping) and not prefix:
            out.update(_flat_scalars(value, f"{name}."))
    return out
