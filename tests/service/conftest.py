"""Real `dces serve` processes for the service tests, on SQLite or on a real PostgreSQL.

Every server is ``python -m app.server`` (what ``dces serve`` runs) on a free loopback port with
its own data directory and SQLite file, started by :class:`DCESServer` and killed at teardown.
Servers are module-scoped: a module starts one and shares it, because loading the models is the
expensive part on a 2-core machine. The ``fortunes`` fixture (real text) is in tests/conftest.py.

PostgreSQL: ``DCES_TEST_DATABASE_URL`` names a server's maintenance database (scripts/test.sh
starts a throwaway server with scripts/postgres.sh and sets it); every user of
:func:`postgres_database` gets a new database of its own there, dropped afterwards. Without the
variable, the PostgreSQL cases of :data:`BACKENDS` are skipped and say why.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from dces_client import DCESClient

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
