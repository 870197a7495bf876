"""Request limits: the body-size guard (ASGI) and the per-sample checks that name field and limit.

The body guard refuses a declared ``Content-Length`` over the limit before reading a byte, and
counts a streamed (chunked) body as it arrives, so no request can make the service buffer more
than ``max_body_bytes``. It also tracks the body's JSON nesting as it arrives, so that no parser
recurses deeper than ``MAX_JSON_DEPTH``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import InvalidInput, LimitExceeded, send_problem
from app.settings import Settings
from curation.types import CurationInputError

MAX_JSON_DEPTH = 64  # arrays and objects inside each other; real bodies use fewer than 10
_STRING_REST = rb'[^"\\]*(?:\\.[^"\\]*)*'  # up to a string's closing quote or a lone \
_STRING_TAIL = re.compile(_STRING_REST, re.DOTALL)
_STRINGS = re.compile(rb'"' + _STRING_REST + rb'"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit (FastAPI re-raises it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds max_body_bytes = {limit} bytes; "
                              "split the request (the client does this from /info)")
        self.errors = [{"field": "body", "message": self.detail, "limit": limit}]


class BodyTooDeep(HTTPException):
    """Raised from ``receive`` once the body nests deeper than the limit, before it is parsed."""

    def __init__(self, limit: int) -> None:
        super().__init__(400, f"request body: JSON nested deeper than max_json_depth = {limit}")
        self.errors = [{"field": "body", "message": "nested too deep", "limit": limit}]


class JsonDepth:
    """The nesting depth of a JSON text fed in chunks; brackets inside strings do not count."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last chunk ended on a backslash inside a string

    def feed(self, chunk: bytes) -> bool:
        """False once the text has nested deeper than the limit."""
        pos, end = 0, len(chunk)
        if self.escaped and chunk:
            pos, self.escaped = 1, False
        if self.in_string:
            tail = _STRING_TAIL.match(chunk, pos)
            assert tail is not None  # it matches the empty string
            pos = tail.end()
            if pos == end:
                return True
            if chunk[pos] == ord("\\"):  # the chunk's last byte: it escapes the next one
                self.escaped = True
                return True
            self.in_string, pos = False, pos + 1
        # Complete strings go; a quote left over opens a string that the chunk cuts off.
        rest = _STRINGS.sub(b"", chunk[pos:])
        cut = rest.find(b'"')
        if cut >= 0:
            rest, self.in_string = rest[:cut], True
            self.escaped = (end - len(chunk.rstrip(b"\\"))) % 2 == 1
        for byte in rest.translate(None, _NOT_BRACKETS):
            if byte in b"[{":
                self.depth += 1
                if self.depth > self.limit:
                    return False
            else:
                self.depth -= 1
        return True


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
            await send_problem(BodyTooLarge(self.max_bytes), scope, send)
            return
        received = 0
        started = False
        depth = JsonDepth(MAX_JSON_DEPTH)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                if not depth.feed(chunk):
                    raise BodyTooDeep(MAX_JSON_DEPTH)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await send_problem(exc, scope, send)


def check_samples(samples: Sequence[Any], settings: Settings, field: str = "samples") -> None:
    """Count, ids, texts and extra fields of a batch against the settings; the 422 names each
    offender."""
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
        errors.extend(islice(_unstorable_strings(sample.model_extra or {}, f"{field}[{i}]"), 20))
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
        raise LimitExceeded(_summary(errors), errors=errors)


def check_strings(value: Any, field: str) -> None:
    """A 422 naming each string nested in ``value`` (a run's config, a state, an upload id, a
    run's name) that cannot be stored or sent back: keys included, since errors and stored JSON
    repeat them. Pydantic refuses a lone surrogate in a typed string field, but not a NUL."""
    errors = list(islice(_unstorable_strings(value, field), 20))
    if errors:
        raise InvalidInput(_summary(errors), errors=errors)


async def check_params(request: Request) -> None:
    """A 422 naming each path or query parameter that cannot be stored, before any route looks
    it up: PostgreSQL text cannot hold a NUL, so a lookup by such an id would fail, not miss.
    Fields are named as FastAPI names them (``path.run_id``, ``query.run_id``)."""
    errors = list(_unstorable_strings(dict(request.path_params), "path"))
    for key, value in request.query_params.multi_items():
        errors.extend(_unstorable_strings({key: value}, "query"))
    if errors:
        raise InvalidInput(_summary(errors), errors=errors[:20])


def _summary(errors: Sequence[Mapping[str, Any]]) -> str:
    first = errors[0]
    bound = f" = {first['limit']}" if "limit" in first else ""
    return (f"{first['field']}: {first['message']}{bound}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


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


def _unstorable_strings(value: Any, field: str) -> Iterator[dict[str, str]]:
    """Each string nested in ``value``, keys included, that :func:`_unstorable` refuses, as an
    error naming its field (a bad key names the object holding it: the key itself can't be
    quoted). Bodies nest at most ``MAX_JSON_DEPTH`` deep, which bounds the recursion."""
    if isinstance(value, str):
        if problem := _unstorable(value):
            yield {"field": field, "message": problem}
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if problem := _unstorable(key):
                yield {"field": field, "message": f"a key {problem}"}
            else:
                yield from _unstorable_strings(item, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unstorable_strings(item, f"{field}[{i}]")
