"""The tables (SQLAlchemy 2 ORM): one row class per stored thing, portable column types only.

JSON lives in ``Text`` columns (``*_json``) and timestamps in ISO-8601 strings, so the same tables
work on SQLite and PostgreSQL (see :mod:`app.store.database`).

The database gets these tables from the migrations (:mod:`app.store.migrations`), never from
``create_all``: a change here needs a new revision there, and the migration test compares the two.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.settings import DEFAULT_TENANT


def run_fk() -> ForeignKey:
    """Rows of a run go with it when the run is deleted."""
    return ForeignKey("runs.id", ondelete="CASCADE")


class Base(DeclarativeBase):
    pass


class SchemaRow(Base):
    __tablename__ = "dces_schema"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1: a single row
    version: Mapped[int] = mapped_column(Integer)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Whose token created it (DCES_API_TOKENS_FILE); "default" with one token or none.
    tenant: Mapped[str] = mapped_column(String(64), index=True, server_default=DEFAULT_TENANT)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(40))
    overrides_json: Mapped[str] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    state_json: Mapped[str | None] = mapped_column(Text)  # state after the latest round


class ReferenceRow(Base):
    __tablename__ = "reference_samples"
    __table_args__ = (UniqueConstraint("run_id", "sample_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(run_fk(), index=True)
    sample_id: Mapped[str] = mapped_column(String(512))
    text: Mapped[str] = mapped_column(Text)
    extra_json: Mapped[str | None] = mapped_column(Text)


class RoundRow(Base):
    """One committed round. ``report_json`` is the result without its per-sample decisions, which
    sit in ``samples_json``: health and cluster reads never parse the (large) decision list."""

    __tablename__ = "rounds"

    run_id: Mapped[str] = mapped_column(run_fk(), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[str | None] = mapped_column(String(40))
    budget: Mapped[int] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(Integer)
    selected: Mapped[int] = mapped_column(Integer)
    feedback_json: Mapped[str | None] = mapped_column(Text)
    feedback_source: Mapped[str] = mapped_column(String(10))
    report_json: Mapped[str] = mapped_column(Text)
    samples_json: Mapped[str] = mapped_column(Text)
    state_json: Mapped[str] = mapped_column(Text)  # the run state after this round


class FeedbackRow(Base):
    __tablename__ = "feedback"

    run_id: Mapped[str] = mapped_column(run_fk(), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    metrics_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))


class UploadRow(Base):
    """A round's input, staged: chunked uploads from the client, or an inline batch."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(run_fk(), index=True)
    status: Mapped[str] = mapped_column(String(12))  # an UploadStatus
    parts: Mapped[int] = mapped_column(Integer, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))


class UploadPartRow(Base):
    __tablename__ = "upload_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    samples: Mapped[int] = mapped_column(Integer)


class UploadSampleRow(Base):
    __tablename__ = "upload_samples"
    __table_args__ = (UniqueConstraint("upload_id", "sample_id"),)

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(512))
    text: Mapped[str] = mapped_column(Text)
    extra_json: Mapped[str | None] = mapped_column(Text)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("run_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Always "round", the only kind of job; nothing reads it. Kept because version-1 files
    # declare it NOT NULL (dropping it takes a migration, see app.store.migrations).
    kind: Mapped[str] = mapped_column(String(20), default="round")
    run_id: Mapped[str | None] = mapped_column(run_fk(), index=True)
    status: Mapped[str] = mapped_column(String(12), index=True)  # a JobStatus
    stage: Mapped[str | None] = mapped_column(String(40))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    upload_id: Mapped[str | None] = mapped_column(String(40))
    samples: Mapped[int] = mapped_column(Integer)
    budget: Mapped[int] = mapped_column(Integer)
    feedback_json: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    round: Mapped[int | None] = mapped_column(Integer)
    error_json: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[str | None] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40))
    # The replica (DCES_REPLICA_ID) that queued or runs the job, and when it last said it is
    # alive; an unfinished job whose heartbeat is older than the lease is taken over. No owner:
    # any replica may take it (released at shutdown, or written before replicas).
    owner: Mapped[str | None] = mapped_column(String(120))
    heartbeat_at: Mapped[str | None] = mapped_column(String(40))
