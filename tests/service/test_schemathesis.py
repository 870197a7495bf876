"""Schemathesis against the live OpenAPI of a real ``dces serve``, with and without a token.

Every documented operation is exercised by generated requests (examples, coverage, fuzzing and
stateful sequences, a bounded number of each); the service must answer none of them with a 5xx
and every answer must match the schema documented for its status.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import DCESServer

TOKEN = "fuzz-token"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def run_schemathesis(server: DCESServer, workdir: Path, *headers: str
                     ) -> subprocess.CompletedProcess[str]:
    command = [str(SCHEMATHESIS), "run", f"{server.url}/openapi.json",
               "--checks", "not_a_server_error,response_schema_conformance",
               "--max-examples", "3", "--workers", "1", "--seed", "1",
               "--request-timeout", "600",  # a round takes what the CPU takes: no speed bar
               *(arg for header in headers for arg in ("-H", header))]
    # Its database of examples and crashes goes to a directory of this run's own, not to the
    # repository, nor shared with another run (which could replay this one's failures).
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=workdir)


@pytest.fixture(scope="module")
def token_server(start_server: Callable[..., DCESServer]) -> DCESServer:
    """One server with a bearer token, fuzzed by a client that has it and by one that has not."""
    return start_server(api_token=TOKEN)


def assert_passed(done: subprocess.CompletedProcess[str]) -> None:
    report = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1], report


def test_no_server_error_and_no_schema_violation_without_auth(
        start_server: Callable[..., DCESServer], tmp_path: Path) -> None:
    assert_passed(run_schemathesis(start_server(), tmp_path))


def test_no_server_error_and_no_schema_violation_with_the_token(
        token_server: DCESServer, tmp_path: Path) -> None:
    assert_passed(run_schemathesis(token_server, tmp_path, f"Authorization: Bearer {TOKEN}"))


def test_without_the_token_every_v1_operation_is_401_in_schema(token_server: DCESServer,
                                                               tmp_path: Path) -> None:
    """The token server fuzzed by a client that has none: 401s, documented, never a 5xx."""
    done = run_schemathesis(token_server, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
