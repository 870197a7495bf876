"""A stand-in for the DCES service on a real loopback socket, for the client's own tests.

It answers each ``(method, path)`` with scripted replies, in order (the last one repeats), and
records every request it gets, so that a test can play a service that throttles, restarts, loses
a response or runs a round as a job, then check what the client sent. The real service is tested
with the client in the repository's tests/service/.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIMITS = {"max_samples_per_request": 1000, "max_body_bytes": 1_000_000}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without an answer: a lost response

    def encode(self) -> bytes:
        return b"" if self.status == 204 else json.dumps(self.body).encode()


Answer = Reply | Callable[[Request], Reply]


class FakeService:
    """``on(method, path, *answers)`` scripts a path; unscripted paths answer 404 problems."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Request] = []
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.limits = dict(LIMITS)
        self.on("GET", "/info", lambda _req: Reply(body={"version": "test",
                                                         "limits": self.limits}))
        self.on("GET", "/readyz", Reply(body={"status": "ready"}))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})  # a quick stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, path)] = list(answers)

    def sent(self, method: str, path: str) -> list[Request]:
        """The requests received for one path, in order."""
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            answers = self.routes.get((request.method, request.path))
            if not answers:
                return Reply(404, {"title": "Not Found", "detail": request.path})
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request) if callable(answer) else answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                reply = service._answer(Request(
                    self.command, url.path,
                    {k: v[-1] for k, v in parse_qs(url.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None))
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json" if reply.status < 400
                                 else "application/problem+json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows the assertions, not an access log."""

        return Handler


def free_port() -> int:
    """A loopback port with nothing listening (for a service that starts later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
