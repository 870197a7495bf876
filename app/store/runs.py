"""Runs: created with their resolved config, read with their reference count, deleted with
everything that hangs off them.

A run belongs to a tenant (:mod:`app.api.auth`): ``tenant=None`` means tenants are off and every
run is visible; a name lists that tenant's runs only. Reads by id check the tenant in the API's
one dependency (:meth:`RunStore.run_tenant`), not here.

Round numbers are the engine's: 0-based, round ``n`` is the run's ``n+1``-th committed round and
``run.rounds`` is the next round's number. A run's state changes only with a committed round
(:meth:`app.store.jobs.JobStore.commit_round`).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.problems import NotFound
from app.settings import DEFAULT_TENANT
from app.store.database import ROW_LOCK, Database, new_id, now_iso
from app.store.encoding import dumps, loads
from app.store.records import RunRecord
from app.store.tables import ReferenceRow, RunRow


def get_run_row(session: Session, run_id: str, lock: bool = False) -> RunRow:
    """The run; ``lock`` holds its row until the transaction ends (see :data:`ROW_LOCK`)."""
    run = session.get(RunRow, run_id, with_for_update=ROW_LOCK if lock else None)
    if run is None:
        raise NotFound(f"run {run_id!r} does not exist")
    return run


def reference_count(session: Session, run_id: str) -> int:
    return session.scalar(select(func.count()).select_from(ReferenceRow)
                          .where(ReferenceRow.run_id == run_id)) or 0


class RunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_run(self, name: str | None, overrides: dict[str, Any], config: dict[str, Any],
                   tenant: str | None = None) -> RunRecord:
        row = RunRow(id=new_id("run"), tenant=tenant or DEFAULT_TENANT, name=name,
                     created_at=now_iso(), overrides_json=dumps(overrides),
                     config_json=dumps(config), rounds=0)
        with self.db.write() as s:
            s.add(row)
        return _run(row, 0)

    def get_run(self, run_id: str) -> RunRecord:
        with self.db.read() as s:
            return _run(get_run_row(s, run_id), reference_count(s, run_id))

    def run_tenant(self, run_id: str) -> str | None:
        """The tenant the run belongs to; None when there is no such run."""
        with self.db.read() as s:
            return s.scalar(select(RunRow.tenant).where(RunRow.id == run_id))

    def list_runs(self, limit: int, offset: int, tenant: str | None = None
                  ) -> tuple[list[RunRecord], int]:
        """A page of runs, oldest first, and how many there are: all, or ``tenant``'s."""
        where = [RunRow.tenant == tenant] if tenant is not None else []
        with self.db.read() as s:
            total = s.scalar(select(func.count()).select_from(RunRow).where(*where)) or 0
            rows = s.scalars(select(RunRow).where(*where).order_by(RunRow.created_at, RunRow.id)
                             .limit(limit).offset(offset)).all()
            counts = dict(s.execute(
                select(ReferenceRow.run_id, func.count()).group_by(ReferenceRow.run_id)
                .where(ReferenceRow.run_id.in_([r.id for r in rows]))).tuples().all())
            return [_run(r, counts.get(r.id, 0)) for r in rows], total

    def delete_run(self, run_id: str) -> None:
        with self.db.write() as s:
            s.delete(get_run_row(s, run_id))

    def run_state(self, run_id: str) -> dict[str, Any] | None:
        """The engine state after the latest round; None before the first."""
        with self.db.read() as s:
            state = loads(get_run_row(s, run_id).state_json)
            return dict(state) if state is not None else None


def _run(row: RunRow, reference_samples: int) -> RunRecord:
    return RunRecord(
        id=row.id, name=row.name, created_at=row.created_at, rounds=row.rounds,
        reference_samples=reference_samples, overrides=json.loads(row.overrides_json),
        config=json.loads(row.config_json))
