"""A run's reference samples: real (human) text, appended by id and read back in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.problems import Conflict, LimitExceeded
from app.store.database import Database
from app.store.encoding import chunks, row_sample, sample_columns
from app.store.records import ReferenceAppend, SampleJson
from app.store.runs import get_run_row, reference_count
from app.store.tables import ReferenceRow


def load_reference(session: Session, run_id: str) -> list[SampleJson]:
    """Every reference sample of the run, in the order they were added."""
    rows = session.scalars(select(ReferenceRow).where(ReferenceRow.run_id == run_id)
                           .order_by(ReferenceRow.seq)).all()
    return [row_sample(r) for r in rows]


class ReferenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_reference(self, run_id: str, samples: Sequence[Mapping[str, Any]], max_total: int
                      ) -> ReferenceAppend:
        """Append; a sample already stored with the same id and text is a no-op (retries are
        safe), the same id with another text is a :class:`Conflict`. The run stays locked from
        the read of the stored samples to the commit, so concurrent appends see each other's
        samples and the total's limit holds."""
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
            total = reference_count(s, run_id) + len(fresh)
            if total > max_total:
                raise LimitExceeded(
                    f"samples: the run would hold {total} reference samples, over "
                    f"max_reference_samples = {max_total}",
                    errors=[{"field": "samples", "message": "too many reference samples",
                             "limit": max_total}])
            if fresh:
                s.execute(insert(ReferenceRow),
                          [{"run_id": run_id, **sample_columns(x)} for x in fresh])
            return ReferenceAppend(len(fresh), len(samples) - len(fresh), total)

    def reference_page(self, run_id: str, limit: int, offset: int
                       ) -> tuple[int, list[SampleJson]]:
        """(total, the samples from ``offset`` on, at most ``limit``)."""
        with self.db.read() as s:
            get_run_row(s, run_id)
            rows = s.scalars(select(ReferenceRow).where(ReferenceRow.run_id == run_id)
                             .order_by(ReferenceRow.seq).limit(limit).offset(offset)).all()
            return reference_count(s, run_id), [row_sample(r) for r in rows]
