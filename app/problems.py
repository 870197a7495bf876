"""Errors as RFC 9457 ``application/problem+json``, from ONE table of error type → HTTP status.

Routes and the job runner raise plain exceptions (the engine's, the storage's, or the few service
errors below); :data:`PROBLEMS` decides their status, so the same error gets the same status whether
it happens during a request or inside a job (whose stored ``error`` is the same problem document).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from curation.types import CurationInputError

log = logging.getLogger("dces.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"


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


class PayloadTooLarge(ServiceError):
    """The request body is larger than ``max_body_bytes``."""


class QueueFull(ServiceError):
    """The model worker's queue is full; ``headers`` carries ``Retry-After``."""


class Unavailable(ServiceError):
    """The service cannot take work now (models loading, worker dead, shutting down)."""


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
    RequestValidationError: ProblemType(422, "validation-error", "Request validation failed"),
    PayloadTooLarge: ProblemType(413, "payload-too-large", "Request body too large"),
    QueueFull: ProblemType(429, "queue-full", "Too many requests"),
    Unavailable: ProblemType(503, "unavailable", "Service unavailable"),
    Interrupted: ProblemType(503, "interrupted", "Job interrupted"),
    Unauthorized: ProblemType(401, "unauthorized", "Unauthorized"),
    IntegrityError: ProblemType(409, "conflict", "Conflict"),
    OperationalError: ProblemType(503, "database-unavailable", "Database unavailable"),
    ValueError: ProblemType(422, "invalid-input", "Invalid input"),
    # A codec error is a ValueError, but input is checked for unencodable text on arrival
    # (app.limits), so one raised later is a bug: 500, its text kept in the log.
    UnicodeError: INTERNAL,
}


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


def problem_response(exc: BaseException, request: Request) -> JSONResponse:
    """A problem+json response for ``exc`` (headers such as Retry-After included)."""
    request_id = getattr(request.state, "request_id", None)
    doc = problem_document(exc, request.url.path, request_id)
    if doc["status"] >= 500:
        log.error("request failed: %s", doc["detail"], exc_info=exc)
    return JSONResponse(doc, status_code=doc["status"], headers=_headers(exc, doc["status"]),
                        media_type=PROBLEM_MEDIA_TYPE)


async def send_problem(exc: BaseException, scope: Scope, send: Send) -> None:
    """The problem response for ``exc`` from ASGI middleware, before any route runs. It closes
    the connection: the request body is left unread."""
    doc = problem_document(exc, scope.get("path"), scope.get("state", {}).get("request_id"))
    body = json.dumps(doc).encode()
    headers = {**_headers(exc, doc["status"]), "Connection": "close"}
    await send({"type": "http.response.start", "status": doc["status"],
                "headers": _raw_headers(headers, body)})
    await send({"type": "http.response.body", "body": body})


class ProblemH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering a request it cannot parse (``Content-Length: abc``,
    a bad request line) with problem+json naming h11's reason instead of a text/plain 400."""

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this while handling h11's error, which names what was malformed.
        reason = sys.exc_info()[1] or msg
        doc = problem_document(StarletteHTTPException(400, f"malformed HTTP request: {reason}"))
        body = json.dumps(doc).encode()
        headers = _raw_headers({"Connection": "close"}, body)
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def _headers(exc: BaseException, status: int) -> dict[str, str]:
    """``exc``'s own headers, plus what its status needs."""
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if status >= 500:
        # Starlette re-raises an unexpected error after its handler answered, and uvicorn then
        # drops the connection: say so, or a client reusing it gets a reset on its next request.
        headers["Connection"] = "close"
    return headers


def _raw_headers(headers: Mapping[str, str], body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items())]


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error, including FastAPI's own 404/405/422, through the problem table."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(exc, request)

    for exc_type in (*PROBLEMS, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle)


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
