"""The service under test: in this process (fast), or as real `dces serve` processes.

In-process (:class:`InProcessServer`, fixture ``start_app``): the app of ``create_app`` with its
lifespan (recovery, the model worker thread, the drain) on an event loop of its own, sent real
ASGI requests (httpx's ASGITransport) through every middleware and route; its own data
directory and SQLite file, real models, faiss and threads. The models are loaded once per
session by the server's own loader (``app.worker.models.load_models``, fixture
``model_loader``) and handed to every app. For what the HTTP API answers.

Real processes (:class:`DCESServer`, fixture ``start_server``): ``python -m app.server`` (what
``dces serve`` runs) on a free loopback port with its own data directory and SQLite file,
killed at teardown. For restarts, signals, kill -9, exit codes, PostgreSQL under concurrent
requests, and what only uvicorn and its sockets do (connection handling, unparsable requests,
a body left unread). Servers are module-scoped: loading the models is the expensive part on a
2-core machine. The ``fortunes`` fixture (real text) is in tests/conftest.py.

PostgreSQL: ``DCES_TEST_DATABASE_URL`` names a server's maintenance database (scripts/test.sh
starts a throwaway server with scripts/postgres.sh and sets it); every user of
:func:`postgres_database` gets a new database of its own there, dropped afterwards. Without the
variable, the PostgreSQL cases of :data:`BACKENDS` are skipped and say why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from dces_client import DCESClient

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal
    from fastapi import FastAPI

    from app.api.deps import Services
    from app.settings import Settings
    from app.worker.models import EngineModels, ModelLoader

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0
# Tests that do not test editing switch the LM off, so rounds only embed, cluster and select.
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}

PG_URL = os.environ.get("DCES_TEST_DATABASE_URL", "")
needs_postgres = pytest.mark.skipif(not PG_URL, reason=(
    "needs PostgreSQL: DCES_TEST_DATABASE_URL is unset (bash scripts/test.sh starts one with "
    "scripts/postgres.sh and sets it)"))
# Parametrize a fixture with these to run its tests on both databases.
BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=needs_postgres)]


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the test server, as a SQLAlchemy URL; dropped afterwards even
    if a server still holds connections to it."""
    admin = make_url(PG_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"dces_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def database_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings that put a module's server on each backend: none (its own SQLite file), then a
    fresh PostgreSQL database. Request it before ``start_server``, so that the servers stop
    before their database is dropped."""
    if request.param == "sqlite":
        yield {}
    else:
        with postgres_database() as url:
            yield {"database_url": url}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DCESServer:
    """One service process; ``settings`` become DCES_* variables."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.settings = {"preload_lm": False, **settings}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "dces.sqlite3"

    @property
    def database_url(self) -> str:
        return str(self.settings.get("database_url") or f"sqlite:///{self.db_path}")

    def env(self) -> dict[str, str]:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
               "DCES_DATA_DIR": str(self.data_dir), "DCES_PORT": str(self.port)}
        for key, value in self.settings.items():
            env[f"DCES_{key.upper()}"] = json.dumps(value) if isinstance(value, bool) \
                else str(value)
        return env

    def start(self, wait: bool = True, **settings: Any) -> DCESServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.settings.update(settings)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "app.server"], cwd=REPO,
                                         env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait (graceful shutdown); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def client(self, token: str | None = None, **kwargs: Any) -> DCESClient:
        return DCESClient(self.url, token or self.settings.get("api_token"), **kwargs)

    def http(self, token: str | None = None) -> httpx.Client:
        token = token or self.settings.get("api_token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Callable[..., DCESServer]]:
    """``start_server(**settings)``: a started server, stopped when the module ends."""
    servers: list[DCESServer] = []

    def start(wait: bool = True, **settings: Any) -> DCESServer:
        server = DCESServer(tmp_path_factory.mktemp("dces"), **settings)
        servers.append(server)
        return server.start(wait=wait)

    yield start
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(30)


class AppTransport(httpx.BaseTransport):
    """Sends each request into an in-process app on the event loop that runs its lifespan, as a
    connection to its server would: the body in the chunks the client sends it in, the whole
    answer back. An unexpected error is the 500 problem a caller gets, not an exception raised
    in the test. Closing a client leaves the app, and its other clients, alone."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self._asgi = httpx.ASGITransport(app, raise_app_exceptions=False)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        inner = httpx.Request(request.method, request.url, headers=request.headers,
                              stream=_Chunks(list(request.stream)))  # headers as they are

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._asgi.handle_async_request(inner)
            return response.status_code, response.headers.raw, await response.aread()

        status, headers, body = self._portal.call(send)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body),
                              request=request)


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class InProcessServer:
    """One app of ``create_app`` in this process, with the same interface as :class:`DCESServer`
    for what the API answers (``http()``, ``client()``, ``url``, ``settings``); ``settings`` are
    :class:`~app.settings.Settings` fields as Python values (DCES_* variables still apply).

    ``start`` runs the app's lifespan on an event loop in a thread of its own (an anyio
    blocking portal): the model worker thread starts and takes its models from
    ``model_loader``. Requests (:class:`AppTransport`) go through every middleware, route and
    exception handler on that loop. ``stop`` ends the lifespan: the worker drains, the database
    closes.
    """

    url = "http://testserver"

    def __init__(self, data_dir: Path, model_loader: ModelLoader, **settings: Any) -> None:
        self.data_dir = data_dir
        self.settings = {"preload_lm": False, **settings}
        self.model_loader = model_loader
        self.app: FastAPI | None = None
        self._running: contextlib.ExitStack | None = None
        self._transport: AppTransport | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "dces.sqlite3"

    @property
    def transport(self) -> AppTransport:
        """What a client of this app sends through (``httpx.Client(transport=...)``)."""
        assert self._transport is not None, "not started"
        return self._transport

    @property
    def services(self) -> Services:
        assert self.app is not None, "not started"
        services: Services = self.app.state.services
        return services

    def start(self, timeout: float = READY_TIMEOUT_S) -> InProcessServer:
        from app.main import create_app
        from app.settings import Settings

        assert self._running is None, "already running"
        app = self.app = create_app(Settings(data_dir=self.data_dir, **self.settings),
                                    self.model_loader)
        with contextlib.ExitStack() as running:
            portal = running.enter_context(anyio.from_thread.start_blocking_portal())
            running.enter_context(portal.wrap_async_context_manager(
                app.router.lifespan_context(app)))
            self._running = running.pop_all()
        self._transport = AppTransport(app, portal)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        with self.http() as http:
            while time.monotonic() < deadline:
                if http.get("/readyz").status_code == 200:
                    return
                worker = self.services.worker
                if worker.status == "dead":
                    raise RuntimeError(f"the model worker died: {worker.reason}")
                time.sleep(0.05)
        raise TimeoutError(f"app not ready after {timeout} s")

    def stop(self) -> None:
        """The lifespan's shutdown: the worker drains, the database closes."""
        if self._running is not None:
            running, self._running = self._running, None
            running.close()

    def client(self, token: str | None = None, **kwargs: Any) -> DCESClient:
        return DCESClient(self.url, token or self.settings.get("api_token"),
                          transport=self.transport, **kwargs)

    def http(self, token: str | None = None) -> httpx.Client:
        token = token or self.settings.get("api_token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120,
                            transport=self.transport)


@pytest.fixture(scope="session")
def model_loader() -> ModelLoader:
    """The server's model loader, run once per session for each set of model settings: every
    in-process app gets the same loaded models (and their embedding cache), as every request
    to one server does. The first app to start loads them, in its model worker thread. Apps
    live one module at a time (``start_app`` is module-scoped), so one worker thread at a time
    uses them, as in a server."""
    from app.worker.models import load_models

    loaded: dict[tuple[Any, ...], EngineModels] = {}
    lock = threading.Lock()

    def load(settings: Settings) -> EngineModels:
        key = (settings.embedding_model, settings.embedding_dtype, settings.embedding_backend,
               settings.device, settings.lm_model, settings.max_loaded_models,
               settings.preload_lm)
        with lock:
            if key not in loaded:
                loaded[key] = load_models(settings)
            return loaded[key]

    return load


@pytest.fixture(scope="module")
def start_app(tmp_path_factory: pytest.TempPathFactory, model_loader: ModelLoader
              ) -> Iterator[Callable[..., InProcessServer]]:
    """``start_app(**settings)``: a started in-process app with its own data directory and
    SQLite file, stopped when the module ends."""
    apps: list[InProcessServer] = []

    def start(**settings: Any) -> InProcessServer:
        app = InProcessServer(tmp_path_factory.mktemp("dces-app"), model_loader, **settings)
        apps.append(app)
        return app.start()

    yield start
    for app in apps:
        app.stop()


def assert_problem(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status whose detail mentions every needle."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:dces:problem:")
    assert body["title"] and body["detail"]
    for needle in needles:
        assert needle in json.dumps(body), (needle, body)
    return dict(body)


@pytest.fixture(scope="session")
def problem() -> Callable[..., dict[str, Any]]:
    return assert_problem
