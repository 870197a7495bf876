"""The OpenAPI document as the service behaves, not as FastAPI guesses it.

FastAPI documents every 422 as its own ``HTTPValidationError`` and knows nothing of the other
errors, which the service answers as problem+json (:mod:`app.problems`); the config sections are
dataclasses whose bounds live in :mod:`curation.bounds`, invisible to pydantic. This module
rewrites the generated document once, from those two single sources:

- every error status an operation can answer is documented with the :class:`Problem` schema:
  500 everywhere; 422 and 503 under ``/v1``, and 401 there when the server has tokens; 404
  where the path names a resource; 413 where there is a body; whatever a route declares itself
  (409, 429);
- with tokens, every ``/v1`` operation names the bearer scheme;
- every config setting carries its bound (``minimum``/``maximum`` and their exclusive forms,
  ``enum``), so ``/docs`` shows ``ratio.r_max`` with its default and limits.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.problem_responses import PROBLEM_MEDIA_TYPE
from app.api.schemas import Problem
from curation.bounds import Bound, Section, iter_bounds
from curation.config import CurationConfig

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")
V1 = (422, 500, 503)  # every /v1 operation validates input and touches the database
WHY = {
    401: "Missing or wrong bearer token",
    404: "No such resource (or it belongs to another tenant)",
    413: "Request body over the server's limit",
    422: "A field is missing, malformed or outside its limit; `errors` names each field",
    500: "Internal error (a bug); the detail names no internals, the log has them",
    503: "Not ready, shutting down, storage full or the database unavailable (Retry-After)",
}


def install_openapi(app: FastAPI, with_auth: bool) -> None:
    """Replace ``app.openapi`` by the rewritten document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            document_problems(schema, with_auth)
            if with_auth:
                document_auth(schema)
            document_bounds(schema["components"]["schemas"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def document_problems(schema: dict[str, Any], with_auth: bool) -> None:
    """Every error status of every operation as problem+json with the :class:`Problem` schema."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_ERROR_SCHEMAS:
        components.pop(name, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            statuses = {500}
            if path.startswith("/v1/"):
                statuses |= {*V1, *([401] if with_auth else [])}
            if "{" in path:
                statuses.add(404)
            if "requestBody" in operation:
                statuses.add(413)
            responses = operation.setdefault("responses", {})
            statuses |= {int(code) for code in responses if code[0] in "45"}
            for status in statuses:
                _document_problem(responses, status)
            operation["responses"] = dict(sorted(responses.items()))


def document_auth(schema: dict[str, Any]) -> None:
    """The bearer token as a security scheme of every /v1 operation (``/docs`` then offers
    "Authorize")."""
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]


def _document_problem(responses: dict[str, Any], status: int) -> None:
    entry = responses.setdefault(str(status), {})
    declared = entry.get("content", {}).get("application/json", {}).get("schema", {})
    if entry.get("content") and not declared.get("$ref", "").endswith(FASTAPI_ERROR_SCHEMAS):
        return  # a documented answer of its own (e.g. /readyz's 503 body): kept as declared
    entry["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
    if entry.get("description") in (None, "", "Validation Error"):
        entry["description"] = WHY.get(status, HTTPStatus(status).phrase)


def document_bounds(components: dict[str, Any]) -> None:
    """Each config section's properties with the limits their :class:`Bound` declares."""
    names = {section.path: section.__name__ for section in _sections(CurationConfig)}
    for dotted, bound in iter_bounds(CurationConfig):
        section_path, name = dotted.rsplit(".", 1)
        properties = components.get(names[section_path], {}).get("properties", {})
        if name in properties:
            properties[name] = _bounded(properties[name], bound)


def _sections(cls: type[Section]) -> list[type[Section]]:
    """``cls`` and every section nested in it."""
    found = [cls]
    for f in fields(cls):  # type: ignore[arg-type]  # every section is a dataclass
        if isinstance(f.default_factory, type) and issubclass(f.default_factory, Section):
            found += _sections(f.default_factory)
    return found


def _bounded(prop: dict[str, Any], bound: Bound) -> dict[str, Any]:
    """``prop`` with ``bound``'s limits on its non-null branch, and its text as the description."""
    prop = copy.deepcopy(prop)
    branches = prop.get("anyOf", [prop])
    for branch in branches:
        if branch.get("type") not in ("integer", "number", "string"):
            continue
        if bound.choices:
            branch["enum"] = list(bound.choices)
        low = bound.low if bound.low_without is None else bound.low_without[1]  # the looser
        if isinstance(low, int | float):
            branch["exclusiveMinimum" if bound.low_open else "minimum"] = low
        if bound.high is not None:
            branch["exclusiveMaximum" if bound.high_open else "maximum"] = bound.high
    prop["description"] = (prop.get("description", "") + " " if prop.get("description") else
                           "") + f"Must be {bound.text}."
    return prop
