"""Problem documents (:mod:`app.problems`) as HTTP responses: exception handlers for routes,
a sender for ASGI middleware, and uvicorn's protocol for requests that cannot even be parsed."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping

import h11
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.problems import PROBLEMS, problem_document

log = logging.getLogger("dces.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"


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
