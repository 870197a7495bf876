"""The one table from errors to HTTP status, and the problem documents built from it."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from app.problems import (
    Conflict,
    Interrupted,
    InvalidInput,
    LimitExceeded,
    NotFound,
    QueueFull,
    Unauthorized,
    Unavailable,
    problem_document,
)
from curation.bounds import ConfigError
from curation.types import CurationInputError


@pytest.mark.parametrize(("exc", "status", "slug"), [
    (NotFound("run 'x' does not exist"), 404, "not-found"),
    (Conflict("key reused"), 409, "conflict"),
    (LimitExceeded("too many"), 422, "limit-exceeded"),
    (InvalidInput("bad config"), 422, "invalid-input"),
    (CurationInputError("budget: must be >= 1"), 422, "invalid-input"),
    (ConfigError("config.x", "unknown setting"), 422, "invalid-input"),
    (QueueFull("full", headers={"Retry-After": "3"}), 429, "queue-full"),
    (Unavailable("loading"), 503, "unavailable"),
    (Interrupted("restarted"), 503, "interrupted"),
    (Unauthorized("no token"), 401, "unauthorized"),
    (IntegrityError("INSERT ...", {}, Exception("UNIQUE")), 409, "conflict"),
    (OperationalError("SELECT ...", {}, Exception("database is locked")), 503,
     "database-unavailable"),
    (HTTPException(405), 405, "method-not-allowed"),
    (KeyError("bug"), 500, "internal-error"),
    # An internal fault that happens to be a ValueError is not the client's: not a 422.
    (ValueError("operands could not be broadcast"), 500, "internal-error"),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), 500,
     "internal-error"),
])
def test_status_by_error_type(exc: Exception, status: int, slug: str) -> None:
    doc = problem_document(exc, "/v1/x", "req-1")
    assert doc["status"] == status and doc["type"] == f"urn:dces:problem:{slug}"
    assert doc["instance"] == "/v1/x" and doc["request_id"] == "req-1" and doc["title"]


def test_no_internal_detail_leaks() -> None:
    sql = IntegrityError("INSERT INTO jobs VALUES (?)", {"secret": 1}, Exception("UNIQUE"))
    assert "INSERT" not in problem_document(sql)["detail"]
    assert "bug-text" not in problem_document(KeyError("bug-text"))["detail"]


def test_validation_errors_name_field_and_limit() -> None:
    exc = RequestValidationError([
        {"type": "greater_than_equal", "loc": ("body", "budget"), "msg": "too small",
         "ctx": {"ge": 1}},
        {"type": "missing", "loc": ("body", "samples", 3, "text"), "msg": "Field required"},
    ])
    doc = problem_document(exc)
    assert doc["status"] == 422
    assert doc["errors"] == [{"field": "budget", "message": "too small", "limit": 1},
                             {"field": "samples[3].text", "message": "Field required"}]
    assert doc["detail"] == "budget: too small; samples[3].text: Field required"
