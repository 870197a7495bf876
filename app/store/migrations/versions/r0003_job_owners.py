"""Replicas: every unfinished job has an owner and a heartbeat (schema version 3).

``jobs.owner`` is the replica (``DCES_REPLICA_ID``) that queued or runs the job and
``jobs.heartbeat_at`` when it last renewed its lease; another replica takes over a job whose
heartbeat is older than ``DCES_JOB_LEASE_S``. Jobs from before have neither: any replica may
take them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("owner", sa.String(120)))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.String(40)))
    op.execute("UPDATE dces_schema SET version = 3")


def downgrade() -> None:
    op.drop_column("jobs", "heartbeat_at")
    op.drop_column("jobs", "owner")
    op.execute("UPDATE dces_schema SET version = 2")
