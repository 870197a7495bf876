"""The body guard (ASGI middleware): no request can make the service buffer or parse too much.

It refuses a declared ``Content-Length`` over ``max_body_bytes`` before reading a byte, and counts
a streamed (chunked) body as it arrives. A request that declares both ``Content-Length`` and
``Transfer-Encoding`` is refused unread: a proxy in front may frame it by the other header, and
such a request is how requests are smuggled past one (RFC 9112, section 6.1). It also tracks the
body's JSON nesting as it arrives, so that no parser recurses deeper than ``MAX_JSON_DEPTH``.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problem_responses import send_problem

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


class AmbiguousFraming(HTTPException):
    """A request framed by both Content-Length and Transfer-Encoding."""

    def __init__(self) -> None:
        super().__init__(400, "request declares both Content-Length and Transfer-Encoding; "
                              "send one of them (RFC 9112, section 6.1)")
        self.errors = [{"field": "headers", "message": self.detail}]


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
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared and "transfer-encoding" in headers:
            await send_problem(AmbiguousFraming(), scope, send)
            return
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
