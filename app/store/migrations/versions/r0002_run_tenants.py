"""Tenants: every run belongs to one (schema version 2).

``runs.tenant`` names the tenant whose token created the run (``DCES_API_TOKENS_FILE``); runs
from before belong to the default tenant, as do all runs of a server with one token or none.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A constant default fills the existing rows, on SQLite as a plain ADD COLUMN.
    op.add_column("runs", sa.Column("tenant", sa.String(64), nullable=False,
                                    server_default="default"))
    op.create_index("ix_runs_tenant", "runs", ["tenant"])
    op.execute("UPDATE dces_schema SET version = 2")


def downgrade() -> None:
    op.drop_index("ix_runs_tenant", "runs")
    op.drop_column("runs", "tenant")
    op.execute("UPDATE dces_schema SET version = 1")
