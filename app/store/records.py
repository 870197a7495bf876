"""What the stores hand out: frozen records and the status enums, never rows or loose dicts.

Rows stay inside a store's transaction; a record is a snapshot that is safe to pass between
threads. The enums are the one spelling of each status, shared by the tables, the worker and the
API's schemas and query parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NamedTuple

# A sample as JSON: "id", "text", and whatever other fields the caller sent (carried through).
SampleJson = dict[str, Any]
# Where a round's training metrics came from: its request, the run's posted feedback, or none.
FeedbackSource = Literal["body", "posted", "none"]


class JobStatus(StrEnum):
    """A round job's life: queued → running → succeeded or failed. A running job goes back to
    queued when the process stops before it finishes (it resumes at the next start, or on
    another replica once its lease expires)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class UploadStatus(StrEnum):
    """Open while parts arrive; submitted once a round job took it (it then takes no parts)."""

    OPEN = "open"
    SUBMITTED = "submitted"


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str | None
    created_at: str
    rounds: int  # committed rounds, so also the next round's number
    reference_samples: int
    overrides: dict[str, Any]
    config: dict[str, Any]  # the resolved config every round of the run uses


class ReferenceAppend(NamedTuple):
    added: int
    unchanged: int  # already stored with the same text (a retried append)
    total: int


@dataclass(frozen=True)
class FeedbackRecord:
    run_id: str
    round: int
    metrics: dict[str, float]
    created_at: str


@dataclass(frozen=True)
class RoundRecord:
    """A committed round without its per-sample decisions."""

    run_id: str
    round: int
    created_at: str
    job_id: str | None
    budget: int
    samples: int
    selected: int
    feedback_source: FeedbackSource
    alerts: list[Any]


class HealthSeries(NamedTuple):
    rounds: list[int]
    series: dict[str, list[Any]]  # every scalar health metric, one value per round
    alerts: list[Any]  # the latest round's


@dataclass(frozen=True)
class UploadRecord:
    id: str
    run_id: str
    status: UploadStatus
    parts: int
    samples: int
    created_at: str
    expires_at: str


@dataclass(frozen=True)
class PartRecord:
    upload: str
    part: int
    samples: int
    total_samples: int
    unchanged: bool  # the part was already stored (a retry)


@dataclass(frozen=True)
class JobRecord:
    id: str
    status: JobStatus
    stage: str | None
    progress: float
    run_id: str | None
    round: int | None  # the committed round, once succeeded
    samples: int
    attempts: int
    error: dict[str, Any] | None  # the problem document, once failed
    note: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    idempotency_key: str | None
    request_hash: str
    owner: str | None  # the replica that queued or runs it (None: any may take it)


@dataclass(frozen=True)
class RoundInput:
    """Everything the worker needs to curate a round, read in the transaction that starts it."""

    job_id: str
    run_id: str
    round: int
    config: dict[str, Any]
    samples: list[SampleJson]
    reference: list[SampleJson]
    state: dict[str, Any] | None
    feedback: dict[str, float] | None
    feedback_source: FeedbackSource
    budget: int
