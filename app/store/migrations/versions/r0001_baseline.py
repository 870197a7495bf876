"""Baseline: the schema of DCES before the migrations (schema version 1).

A database written by that release has exactly these tables and a ``dces_schema`` row with
version 1 (or, older still, no ``dces_schema`` table): it is stamped with this revision, not run
through it. On an empty database this creates them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("runs.id", ondelete="CASCADE")


def upload_fk() -> sa.ForeignKey:
    return sa.ForeignKey("uploads.id", ondelete="CASCADE")


def upgrade() -> None:
    schema = op.create_table(
        "dces_schema",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False))
    op.bulk_insert(schema, [{"id": 1, "version": 1}])
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("overrides_json", sa.Text, nullable=False),
        sa.Column("config_json", sa.Text, nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("state_json", sa.Text))
    op.create_table(
        "reference_samples",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), run_fk(), nullable=False),
        sa.Column("sample_id", sa.String(512), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("extra_json", sa.Text),
        sa.UniqueConstraint("run_id", "sample_id"))
    op.create_index("ix_reference_samples_run_id", "reference_samples", ["run_id"])
    op.create_table(
        "rounds",
        sa.Column("run_id", sa.String(40), run_fk(), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("job_id", sa.String(40)),
        sa.Column("budget", sa.Integer, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("selected", sa.Integer, nullable=False),
        sa.Column("feedback_json", sa.Text),
        sa.Column("feedback_source", sa.String(10), nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.Column("samples_json", sa.Text, nullable=False),
        sa.Column("state_json", sa.Text, nullable=False))
    op.create_table(
        "feedback",
        sa.Column("run_id", sa.String(40), run_fk(), primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False))
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), run_fk(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False))
    op.create_index("ix_uploads_run_id", "uploads", ["run_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(40), run_fk()),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("stage", sa.String(40)),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("upload_id", sa.String(40)),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("budget", sa.Integer, nullable=False),
        sa.Column("feedback_json", sa.Text),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer),
        sa.Column("error_json", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
        sa.UniqueConstraint("run_id", "idempotency_key"))
    op.create_index("ix_jobs_run_id", "jobs", ["run_id"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "upload_parts",
        sa.Column("upload_id", sa.String(40), upload_fk(), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False))
    op.create_table(
        "upload_samples",
        sa.Column("upload_id", sa.String(40), upload_fk(), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sample_id", sa.String(512), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("extra_json", sa.Text),
        sa.UniqueConstraint("upload_id", "sample_id"))


def downgrade() -> None:
    for table in ("upload_samples", "upload_parts", "jobs", "uploads", "feedback", "rounds",
                  "reference_samples", "runs", "dces_schema"):
        op.drop_table(table)
