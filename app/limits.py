"""Request limits: the body-size guard (ASGI) and the per-sample checks that name field and limit.

The body guard refuses a declared ``Content-Length`` over the limit before reading a byte, and
counts a streamed (chunked) body as it arrives, so no request can make the service buffer more
than ``max_body_bytes``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import PROBLEM_MEDIA_TYPE, LimitExceeded
from app.settings import Settings
from curation.types import CurationInputError


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit (FastAPI re-raises it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds max_body_bytes = {limit} bytes; "
                              "split the request (the client does this from /info)")


class BodyLimitMiddleware:
    """Answers 413 (problem+json) for bodies over ``max_bytes`` without buffering them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        exc = BodyTooLarge(self.max_bytes)
        body = json.dumps({
            "type": "urn:dces:problem:payload-too-large",
            "title": "Request body too large",
            "status": 413,
            "detail": exc.detail,
            "instance": scope.get("path", ""),
            "errors": [{"field": "body", "message": exc.detail, "limit": self.max_bytes}],
        }).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        })
        await send({"type": "http.response.body", "body": body})


def check_samples(samples: Sequence[Any], settings: Settings, field: str = "samples") -> None:
    """Count, ids and texts of a batch against the settings; the 422 names each offender."""
    limit = settings.max_samples_per_request
    if len(samples) > limit:
        raise LimitExceeded(
            f"{field}: {len(samples)} samples exceed max_samples_per_request = {limit} "
            "(send larger rounds as an upload: the client does this for you)",
            errors=[{"field": field, "message": f"at most {limit} samples", "limit": limit}],
        )
    errors: list[dict[str, Any]] = []
    for i, sample in enumerate(samples):
        for name in ("id", "text"):
            problem = _unstorable(getattr(sample, name))
            if problem:
                errors.append({"field": f"{field}[{i}].{name}", "message": problem})
        if len(sample.id) > settings.max_id_chars:
            errors.append({
                "field": f"{field}[{i}].id",
                "message": f"{len(sample.id)} characters exceed max_id_chars",
                "limit": settings.max_id_chars,
            })
        if len(sample.text) > settings.max_text_chars:
            errors.append({
                "field": f"{field}[{i}].text",
                "message": f"{len(sample.text)} characters exceed max_text_chars",
                "limit": settings.max_text_chars,
            })
        if len(errors) >= 20:
            break
    if errors:
        first = errors[0]
        bound = f" = {first['limit']}" if "limit" in first else ""
        raise LimitExceeded(
            f"{first['field']}: {first['message']}{bound}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            errors=errors,
        )


def check_unique_ids(samples: Sequence[Any], field: str = "samples") -> None:
    """Duplicate ids in one batch are a 422 that names both positions."""
    seen: dict[str, int] = {}
    for i, sample in enumerate(samples):
        if sample.id in seen:
            raise CurationInputError(
                f"{field}[{i}].id: duplicate id {sample.id!r} (first at {field}[{seen[sample.id]}])"
            )
        seen[sample.id] = i


def check_metrics(metrics: Mapping[str, float] | None, settings: Settings, field: str) -> None:
    """At most ``max_feedback_metrics`` training metrics per feedback."""
    limit = settings.max_feedback_metrics
    if metrics is not None and len(metrics) > limit:
        raise LimitExceeded(
            f"{field}: {len(metrics)} metrics exceed max_feedback_metrics = {limit}",
            errors=[{"field": field, "message": "too many metrics", "limit": limit}])


def _unstorable(value: str) -> str | None:
    """NUL and lone surrogates (JSON allows both) break tokenizers and SQL text columns."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None
