"""The service's errors and ONE table of error type → HTTP status, as RFC 9457 problem documents.

Routes, stores and the job runner raise plain exceptions (the engine's, the storage's, or the few
service errors below); :data:`PROBLEMS` decides their status, so the same error gets the same
status whether it happens during a request or inside a job (whose stored ``error`` is the same
problem document). Every floor raises these; turning them into HTTP responses is
:mod:`app.api.problem_responses`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from curation.bounds import ConfigError
from curation.types import CurationInputError

log = logging.getLogger("dces.problems")


class ServiceError(Exception):
    """An error with a message for the caller; ``errors`` lists fields, ``headers`` adds some."""

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors or [])
        self.headers = dict(headers or {})


class NotFound(ServiceError):
    """An unknown run, round, job or upload."""


class Conflict(ServiceError):
    """The request contradicts stored state (idempotency key reuse, changed reference text...)."""


class InvalidInput(ServiceError):
    """A request field is well-formed JSON but not acceptable; ``errors`` names the fields."""


class LimitExceeded(ServiceError):
    """A configured limit (samples per request, text length...) was exceeded; 422 names it."""


class QueueFull(ServiceError):
    """The model worker's queue is full; ``headers`` carries ``Retry-After``."""


class Unavailable(ServiceError):
    """The service cannot take work now (models loading, worker dead, shutting down)."""


class StorageFull(Unavailable):
    """The database's disk is full; deleting runs (which the disk reserve allows) frees space."""


class Interrupted(Unavailable):
    """A job stopped before it finished (shutdown, restart); it resumes or fails with a reason."""


class Unauthorized(ServiceError):
    """Missing or wrong bearer token."""


@dataclass(frozen=True)
class ProblemType:
    status: int
    slug: str
    title: str


INTERNAL = ProblemType(500, "internal-error", "Internal server error")

# The one mapping table. Looked up along the exception's MRO: the most specific entry wins.
PROBLEMS: dict[type[BaseException], ProblemType] = {
    NotFound: ProblemType(404, "not-found", "Not found"),
    Conflict: ProblemType(409, "conflict", "Conflict"),
    LimitExceeded: ProblemType(422, "limit-exceeded", "Limit exceeded"),
    InvalidInput: ProblemType(422, "invalid-input", "Invalid input"),
    CurationInputError: ProblemType(422, "invalid-input", "Invalid input"),
    ConfigError: ProblemType(422, "invalid-input", "Invalid input"),
    RequestValidationError: ProblemType(422, "validation-error", "Request validation failed"),
    QueueFull: ProblemType(429, "queue-full", "Too many requests"),
    Unavailable: ProblemType(503, "unavailable", "Service unavailable"),
    StorageFull: ProblemType(503, "storage-full", "Insufficient storage"),
    Interrupted: ProblemType(503, "interrupted", "Job interrupted"),
    Unauthorized: ProblemType(401, "unauthorized", "Unauthorized"),
    IntegrityError: ProblemType(409, "conflict", "Conflict"),
    OperationalError: ProblemType(503, "database-unavailable", "Database unavailable"),
}
# A bare ValueError is not a client error: what a client can get wrong is raised as one of the
# types above (CurationInputError, ConfigError, InvalidInput), anything else is a bug and a 500.


# Starlette's own HTTP errors (unknown route, wrong method, body limit) keep their status.
HTTP_SLUGS = {400: "bad-request", 404: "not-found", 405: "method-not-allowed",
              413: "payload-too-large"}


def problem_type(exc: BaseException) -> ProblemType:
    """The table entry for ``exc`` (by MRO), or 500 for anything unexpected."""
    if isinstance(exc, StarletteHTTPException):
        status = HTTPStatus(exc.status_code)
        return ProblemType(status.value, HTTP_SLUGS.get(status.value, "http-error"), status.phrase)
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return INTERNAL


def problem_document(
    exc: BaseException, instance: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The RFC 9457 body for ``exc``; stored as a failed job's ``error`` too."""
    kind = problem_type(exc)
    doc: dict[str, Any] = {
        "type": f"urn:dces:problem:{kind.slug}",
        "title": kind.title,
        "status": kind.status,
        "detail": _detail(exc, kind),
    }
    if instance:
        doc["instance"] = instance
    if request_id:
        doc["request_id"] = request_id
    errors = getattr(exc, "errors", None)
    if isinstance(exc, RequestValidationError):
        errors = [_validation_item(e) for e in exc.errors()]
        doc["detail"] = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if errors:
        doc["errors"] = errors
    return doc


def _detail(exc: BaseException, kind: ProblemType) -> str:
    if isinstance(exc, StarletteHTTPException):
        return str(exc.detail)
    if isinstance(exc, IntegrityError | OperationalError):
        # The driver message may quote SQL and parameters: keep it in the log only.
        log.warning("storage error: %s", exc)
        return "the database rejected the change" if kind.status == 409 else (
            "the database is unavailable or locked; retry shortly")
    if kind is INTERNAL:
        return f"unexpected {type(exc).__name__}; see the server log"
    return str(exc)


def _validation_item(error: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic error as {field, message, limit?}; field is a path like 'samples[3].id'."""
    loc = [p for p in error.get("loc", ()) if p != "body"]
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    item: dict[str, Any] = {"field": field or "body", "message": error.get("msg", "invalid")}
    ctx = error.get("ctx") or {}
    for key in ("ge", "gt", "le", "lt", "min_length", "max_length", "expected"):
        if key in ctx:
            item["limit" if key != "expected" else "expected"] = _plain(ctx[key])
    return item


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)
