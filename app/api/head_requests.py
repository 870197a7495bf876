"""HEAD wherever GET is answered (RFC 9110 9.3.2): FastAPI routes take GET alone, so a load
balancer's or monitor's ``HEAD /livez`` got a 405. The request runs as GET and the response
keeps its status and headers, ``Content-Length`` included, without its body. No route streams
(every GET body is finite), so running one as GET costs what the GET would. Answers from the
middleware outside this one (401, 413) keep their body here; the server drops it, as it
reads the method the request came with.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: a HEAD request is answered as its GET, minus the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server reads the original scope's method to know it owes no body. The
        # route found goes back to the original, where the request metrics read it.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send_without_body)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]
