"""Runs and what hangs off them: reference samples, feedback, committed rounds (reads).

Round numbers are the engine's: 0-based, round ``n`` is the run's ``n+1``-th committed round and
``run.rounds`` is the next round's number. Feedback for round ``n`` feeds round ``n+1``.
Writing a round happens in :mod:`app.job_storage` (with its job, in one transaction).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.db_models import (
    ROW_LOCK,
    Database,
    FeedbackRow,
    ReferenceRow,
    RoundRow,
    RunRow,
    new_id,
    now_iso,
)
from app.problems import Conflict, InvalidInput, LimitExceeded, NotFound

IN_CHUNK = 500  # ids per IN (...) clause, well under every database's parameter limit


def dumps(value: Any) -> str:
    """Compact ASCII JSON (storable in any database, whatever the text holds); NaN/inf (e.g. an
    undefined metric) become null instead of invalid JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"))


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def get_run_row(session: Session, run_id: str, lock: bool = False) -> RunRow:
    """The run; ``lock`` holds its row until the transaction ends (see :data:`ROW_LOCK`)."""
    run = session.get(RunRow, run_id, with_for_update=ROW_LOCK if lock else None)
    if run is None:
        raise NotFound(f"run {run_id!r} does not exist")
    return run


class RunStore:
    """CRUD for runs, reference samples and feedback; read access to committed rounds."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- runs -----------------------------------------------------------------------------------

    def create_run(self, name: str | None, overrides: dict[str, Any], config: dict[str, Any]
                   ) -> dict[str, Any]:
        row = RunRow(id=new_id("run"), name=name, created_at=now_iso(),
                     overrides_json=dumps(overrides), config_json=dumps(config), rounds=0)
        with self.db.write() as s:
            s.add(row)
        return self._run_dict(row, 0)

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            run = get_run_row(s, run_id)
            return self._run_dict(run, self._reference_count(s, run_id))

    def list_runs(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self.db.read() as s:
            total = s.scalar(select(func.count()).select_from(RunRow)) or 0
            rows = s.scalars(select(RunRow).order_by(RunRow.created_at, RunRow.id)
                             .limit(limit).offset(offset)).all()
            counts = dict(s.execute(
                select(ReferenceRow.run_id, func.count()).group_by(ReferenceRow.run_id)
                .where(ReferenceRow.run_id.in_([r.id for r in rows]))).tuples().all())
            return [self._run_dict(r, counts.get(r.id, 0)) for r in rows], total

    def delete_run(self, run_id: str) -> None:
        with self.db.write() as s:
            s.delete(get_run_row(s, run_id))

    def run_config(self, run_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            return dict(json.loads(get_run_row(s, run_id).config_json))

    def run_state(self, run_id: str) -> dict[str, Any] | None:
        with self.db.read() as s:
            state = loads(get_run_row(s, run_id).state_json)
            return dict(state) if state is not None else None

    # -- reference ------------------------------------------------------------------------------

    def add_reference(self, run_id: str, samples: Sequence[Mapping[str, Any]], max_total: int
                      ) -> tuple[int, int, int]:
        """Append; a sample already stored with the same id and text is a no-op (retries are
        safe), the same id with another text is a 409. Returns (added, unchanged, total). The run
        stays locked from the read of the stored samples to the commit, so concurrent appends
        see each other's samples and the total's limit holds."""
        with self.db.write() as s:
            get_run_row(s, run_id, lock=True)
            stored: dict[str, str] = {}
            for part in chunks([x["id"] for x in samples]):
                stored.update(s.execute(
                    select(ReferenceRow.sample_id, ReferenceRow.text)
                    .where(ReferenceRow.run_id == run_id, ReferenceRow.sample_id.in_(part))
                ).tuples().all())
            for i, x in enumerate(samples):
                if x["id"] in stored and stored[x["id"]] != x["text"]:
                    raise Conflict(f"samples[{i}].id: reference sample {x['id']!r} is already "
                                   "stored with a different text")
            fresh = [x for x in samples if x["id"] not in stored]
            total = self._reference_count(s, run_id) + len(fresh)
            if total > max_total:
                raise LimitExceeded(
                    f"samples: the run would hold {total} reference samples, over "
                    f"max_reference_samples = {max_total}",
                    errors=[{"field": "samples", "message": "too many reference samples",
                             "limit": max_total}])
            if fresh:
                s.execute(insert(ReferenceRow), [
                    {"run_id": run_id, "sample_id": x["id"], "text": x["text"],
                     "extra_json": extra_json(x)} for x in fresh])
            return len(fresh), len(samples) - len(fresh), total

    def reference_page(self, run_id: str, limit: int, offset: int
                       ) -> tuple[int, list[dict[str, Any]]]:
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.scalars(select(ReferenceRow).where(ReferenceRow.run_id == run_id)
                             .order_by(ReferenceRow.seq).limit(limit).offset(offset)).all()
            return self._reference_count(s, run_id), [row_sample(r) for r in rows]

    def load_reference(self, session: Session, run_id: str) -> list[dict[str, Any]]:
        rows = session.scalars(select(ReferenceRow).where(ReferenceRow.run_id == run_id)
                               .order_by(ReferenceRow.seq)).all()
        return [row_sample(r) for r in rows]

    # -- feedback -------------------------------------------------------------------------------

    def put_feedback(self, run_id: str, round_n: int | None, metrics: dict[str, float]
                     ) -> tuple[dict[str, Any], bool]:
        """Store the metrics of finished round ``round_n`` (default: the latest). They may change
        only until the next round is curated (then they have been used). Returns (feedback,
        created). The run is locked: identical posts find the first one's row, and no round is
        committed between the check of ``run.rounds`` and the write."""
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
            if row is not None and json.loads(row.metrics_json) == metrics:
                return _feedback(row), False
            if n < latest:
                raise Conflict(f"round: round {n + 1} was already curated, so the feedback of "
                               f"round {n} can no longer change")
            if row is None:
                row = FeedbackRow(run_id=run_id, round=n, metrics_json="", created_at="")
                s.add(row)
            row.metrics_json, row.created_at = dumps(metrics), now_iso()
            return _feedback(row), True

    def list_feedback(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.scalars(select(FeedbackRow).where(FeedbackRow.run_id == run_id)
                             .order_by(FeedbackRow.round)).all()
            return [_feedback(r) for r in rows]

    # -- rounds (read) --------------------------------------------------------------------------

    def list_rounds(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.execute(select(
                RoundRow.n, RoundRow.created_at, RoundRow.job_id, RoundRow.budget,
                RoundRow.samples, RoundRow.selected, RoundRow.feedback_source, RoundRow.report_json,
            ).where(RoundRow.run_id == run_id).order_by(RoundRow.n)).all()
        return [{
            "run_id": run_id, "round": r.n, "created_at": r.created_at, "job_id": r.job_id,
            "budget": r.budget, "samples": r.samples, "selected": r.selected,
            "feedback_source": r.feedback_source,
            "alerts": json.loads(r.report_json).get("health", {}).get("alerts", []),
        } for r in rows]

    def round_json(self, run_id: str, n: int, match: Mapping[str, Any] | None = None) -> str:
        """The stored round as JSON text, assembled without re-encoding the decision list; with
        ``match`` ({field: value}), only the samples whose fields equal every value (parsed and
        re-encoded, so only filtered reads pay for it)."""
        with self.db.read() as s:
            get_run_row(s, run_id)
            row = s.get(RoundRow, (run_id, n))
            if row is None:
                raise NotFound(f"run {run_id!r} has no round {n}")
            head = dumps({**_round_meta(row), **json.loads(row.report_json)})
            samples = row.samples_json
        if match:
            samples = dumps([x for x in json.loads(samples)
                             if all(x.get(k) == v for k, v in match.items())])
        return f'{head[:-1]},"samples":{samples}}}'

    def latest_report(self, run_id: str) -> tuple[int, dict[str, Any]]:
        with self.db.read() as s:
            run = get_run_row(s, run_id)
            if run.rounds == 0:
                raise NotFound(f"run {run_id!r} has no round yet")
            report = s.scalar(select(RoundRow.report_json)
                              .where(RoundRow.run_id == run_id, RoundRow.n == run.rounds - 1))
            return run.rounds - 1, json.loads(report or "{}")

    def health_series(self, run_id: str) -> tuple[list[int], dict[str, list[Any]], list[Any]]:
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
        return [r.n for r in rows], series, alerts

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _reference_count(session: Session, run_id: str) -> int:
        return session.scalar(select(func.count()).select_from(ReferenceRow)
                              .where(ReferenceRow.run_id == run_id)) or 0

    @staticmethod
    def _run_dict(run: RunRow, reference_count: int) -> dict[str, Any]:
        return {
            "id": run.id, "name": run.name, "created_at": run.created_at, "rounds": run.rounds,
            "reference_samples": reference_count, "overrides": json.loads(run.overrides_json),
            "config": json.loads(run.config_json),
        }


def _round_meta(row: RoundRow) -> dict[str, Any]:
    return {"run_id": row.run_id, "round": row.n, "created_at": row.created_at,
            "job_id": row.job_id, "feedback": loads(row.feedback_json),
            "feedback_source": row.feedback_source}


def _feedback(row: FeedbackRow) -> dict[str, Any]:
    return {"run_id": row.run_id, "round": row.round, "metrics": json.loads(row.metrics_json),
            "created_at": row.created_at}


def row_sample(row: Any) -> dict[str, Any]:
    return {**(loads(row.extra_json) or {}), "id": row.sample_id, "text": row.text}


def extra_json(sample: Mapping[str, Any]) -> str | None:
    extra = {k: v for k, v in sample.items() if k not in ("id", "text")}
    return dumps(extra) if extra else None


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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
