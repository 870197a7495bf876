"""Faults a probe of the running service found, each seen from outside through HTTP.

A 500 that dropped the connection silently, unstorable text outside ``text``, a traceback on an
unusable data directory, run configs naming any file as a model, malformed or deeply nested
bodies, and bodies read before the bearer token was checked. The settings are the same
everywhere (token, fault injection, one extra allowed model): one app in this process answers
the requests; one real server the tests of what happens on its sockets (a connection closed
after a 500, a request uvicorn cannot parse, a body never sent); the startup ones run
``dces serve`` themselves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.body_limit import JsonDepth
from app.api.run_config import resolve_config
from app.problems import InvalidInput, problem_document
from app.settings import Settings
from app.worker.models import ModelLoader

from .conftest import NO_LM, DCESServer, InProcessServer

TOKEN = "reliability-token"
ALLOWED = "sentence-transformers/all-MiniLM-L6-v2"
SAMPLE = {"id": "r1", "text": "A fine sentence written by a person."}
SETTINGS = {"api_token": TOKEN, "fault_injection": True, "allowed_models": [ALLOWED]}


@pytest.fixture(scope="module")
def server(start_server: Callable[..., DCESServer]) -> DCESServer:
    return start_server(**{**SETTINGS, "allowed_models": json.dumps([ALLOWED])})


@pytest.fixture(scope="module")
def server_http(server: DCESServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture(scope="module")
def app(database_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
        model_loader: ModelLoader) -> Iterator[InProcessServer]:
    """On SQLite, then on PostgreSQL: what a client can send must not depend on the backend.
    Stopped here, before its PostgreSQL database is dropped."""
    app = InProcessServer(tmp_path_factory.mktemp("dces-app"), model_loader,
                          **SETTINGS, **database_settings).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def http(app: InProcessServer) -> Iterator[httpx.Client]:
    with app.http() as client:
        yield client


@pytest.fixture(scope="module")
def run(http: httpx.Client) -> str:
    response = http.post("/v1/runs", json={"name": "reliability", "config": NO_LM})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send_json(http: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    """ASCII JSON, so a lone surrogate travels as its escape, as any JSON encoder sends it."""
    return http.request(method, path, content=json.dumps(body).encode(),
                        headers={"content-type": "application/json"})


def raw_exchange(server: DCESServer, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send bytes as they are, read until the server closes: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return status, headers, body


# -- 1. a 500 says that it closes the connection -----------------------------------------------


def test_a_500_closes_the_connection_and_says_so(server_http: httpx.Client,
                                                 problem: Callable[..., Any]) -> None:
    http = server_http
    response = http.post("/debug/raise-error")
    problem(response, 500, "unexpected RuntimeError")
    assert "injected fault" not in response.text
    assert response.headers["connection"] == "close"
    for _ in range(3):  # the pooled client opens a new connection instead of reusing a dead one
        assert http.get("/v1/runs").status_code == 200


# -- 2. unstorable text anywhere in a sample is refused where it arrives -------------------------


BAD_EXTRAS = [
    ({"source": "\ud800"}, "[0].source", "lone surrogate"),
    ({"meta": {"tags": ["fine", "a\x00b"]}}, "[0].meta.tags[1]", "NUL character"),
    ({"meta": {"\udc80": 1}}, "[0].meta", "a key contains a lone surrogate"),
]


def bad_sample_requests(run: str, upload: str, extra: dict[str, Any]
                        ) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, body, field prefix) of every request that carries samples."""
    sample = {**SAMPLE, **extra}
    other = {"id": "c1", "text": "Another sentence for the stateless call."}
    return [
        ("POST", f"/v1/runs/{run}/reference", {"samples": [sample]}, "samples"),
        ("POST", f"/v1/runs/{run}/rounds", {"samples": [sample], "budget": 1}, "samples"),
        ("PUT", f"/v1/runs/{run}/uploads/{upload}/parts/1", {"samples": [sample]}, "samples"),
        ("POST", "/v1/curate", {"samples": [sample], "budget": 1, "config": NO_LM}, "samples"),
        ("POST", "/v1/curate", {"samples": [other], "reference": [sample], "budget": 1,
                                "config": NO_LM}, "reference"),
    ]


@pytest.mark.parametrize(("extra", "field", "message"), BAD_EXTRAS)
def test_unstorable_text_in_extra_fields_is_a_422_naming_the_field(
        http: httpx.Client, run: str, problem: Callable[..., Any], extra: dict[str, Any],
        field: str, message: str) -> None:
    upload = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    for method, path, body, prefix in bad_sample_requests(run, upload, extra):
        doc = problem(send_json(http, method, path, body), 422, message)
        assert doc["errors"][0]["field"] == prefix + field, (path, doc)
    assert http.get(f"/v1/runs/{run}/reference").status_code == 200
    assert http.get(f"/v1/runs/{run}/uploads/{upload}").json()["samples"] == 0


def test_unstorable_text_in_names_config_and_metrics_is_a_422(
        http: httpx.Client, run: str, problem: Callable[..., Any]) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/runs", {"config": {"\ud800": 1}}, "config"),
        ("/v1/runs", {"config": {"ratio": {"r0": "\ud800"}}}, "config.ratio.r0"),
        ("/v1/curate", {"samples": [SAMPLE], "budget": 1, "config": {"\udfff": {}}}, "config"),
        ("/v1/curate", {"samples": [SAMPLE], "budget": 1, "state": {"x": ["\ud800"]}},
         "state.x[0]"),
        (f"/v1/runs/{run}/rounds", {"upload": "\ud800", "budget": 1}, "upload"),
    ]
    for path, body, field in cases:
        doc = problem(send_json(http, "POST", path, body), 422, "lone surrogate")
        assert doc["errors"][0]["field"] == field, (body, doc)
        assert "codec" not in doc["detail"], doc
    # Typed string fields were refused already (by pydantic), before this fix.
    for path, body, field in (("/v1/runs", {"name": "\ud800"}, "name"),
                              (f"/v1/runs/{run}/feedback", {"metrics": {"\ud800": 1.0}},
                               "metrics.")):
        doc = problem(send_json(http, "POST", path, body), 422, "valid string")
        assert doc["errors"][0]["field"].startswith(field), (body, doc)
    assert http.get("/v1/runs").status_code == 200


# -- 3. an unusable data directory stops `dces serve` with one line ----------------------------


@pytest.mark.parametrize("unusable", ["under_a_file", "not_writable"])
def test_an_unusable_data_dir_exits_2_with_one_line(tmp_path: Path, unusable: str) -> None:
    data = tmp_path / "data"
    if unusable == "under_a_file":
        (tmp_path / "afile").write_text("not a directory")
        data = tmp_path / "afile" / "data"
    elif os.geteuid() == 0:  # root writes into a 0o555 directory: block the file itself
        (data / "dces.sqlite3").mkdir(parents=True)
    else:
        data.mkdir()
        data.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "-m", "app.server"],
                              env=DCESServer(data).env(), capture_output=True, text=True,
                              timeout=120)
    finally:
        if data.is_dir():
            data.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "dces serve" in line]
    assert len(lines) == 1 and lines[0].startswith("dces serve: cannot open the database"), lines
    assert f"DCES_DATA_DIR={data}" in lines[0], lines


# -- 4. internal errors are 500s; a run may name only allowed models ---------------------------


def test_a_codec_error_is_internal_not_invalid_input() -> None:
    doc = problem_document(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert doc["status"] == 500 and "codec" not in doc["detail"], doc


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/curate"])
def test_a_run_may_name_only_the_servers_models(http: httpx.Client, problem: Callable[..., Any],
                                                path: str) -> None:
    extra = {"samples": [SAMPLE], "budget": 1} if path == "/v1/curate" else {}
    for section, given in (("edit", "/etc/passwd"), ("embed", "/etc"), ("embed", "gpt2"),
                           ("edit", "../../models/x")):
        body = {**extra, "config": {**NO_LM, section: {"model": given}}}
        doc = problem(http.post(path, json=body), 422, f"config.{section}.model")
        message = f'not an allowed model (allowed: null (bundled), "{ALLOWED}")'
        assert doc["detail"] == f"config.{section}.model: {message}", doc
        assert doc["errors"] == [{"field": f"config.{section}.model", "message": message}]
        assert given not in json.dumps(doc) and "directory" not in doc["detail"], doc
    for section in ("embed", "edit"):
        if path == "/v1/runs":  # a listed model is accepted (and loaded only by a round)
            config = {**NO_LM, section: {"model": ALLOWED}}
            assert http.post(path, json={"config": config}).status_code == 201


def test_any_model_only_when_allowed_by_the_operator() -> None:
    overrides = {"edit": {"model": "/models/my-lm"}}
    assert resolve_config(Settings(allow_any_model=True), overrides).edit.model == "/models/my-lm"
    assert resolve_config(Settings(allowed_models=["/models/my-lm"]), overrides).edit.model
    with pytest.raises(InvalidInput, match=r"config\.edit\.model: not an allowed model"):
        resolve_config(Settings(), overrides)


# -- 5. malformed headers and deep nesting get problems that name them -------------------------


def test_a_malformed_content_length_is_a_problem_naming_the_header(server: DCESServer) -> None:
    status, headers, body = raw_exchange(server, (
        b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: abc\r\n\r\n{}"))
    assert status.startswith("HTTP/1.1 400"), (status, body)
    assert headers["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == 400 and doc["type"] == "urn:dces:problem:bad-request"
    assert "Content-Length" in doc["detail"], doc


def test_a_body_framed_two_ways_is_refused_naming_both_headers(server: DCESServer) -> None:
    token = server.settings.get("api_token")
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    status, headers, body = raw_exchange(server, (
        b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
    assert status.startswith("HTTP/1.1 400"), (status, body)
    assert headers["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert "Content-Length and Transfer-Encoding" in doc["detail"], doc
    assert doc["errors"][0]["field"] == "headers"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_deep_nesting_is_refused_naming_the_limit(http: httpx.Client, run: str,
                                                  problem: Callable[..., Any]) -> None:
    headers = {"content-type": "application/json"}
    for deep in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        doc = problem(http.post("/v1/runs", content=deep, headers=headers), 400,
                      "max_json_depth = 64")
        assert doc["errors"] == [{"field": "body", "message": "nested too deep", "limit": 64}]
    path = f"/v1/runs/{run}/reference"
    # body, samples, sample: 3 levels; then the extra field's own
    problem(http.post(path, json={"samples": [{**SAMPLE, "meta": nested(62)}]}), 400,
            "max_json_depth")
    brackets = 'brackets in text: "[[[{{{" \\ [' * 40  # inside strings: not nesting
    ok = {"samples": [{"id": "n1", "text": brackets, "meta": nested(61)}]}
    assert http.post(path, json=ok).status_code == 200
    assert http.get(path).json()["samples"][-1]["meta"] == nested(61)


def test_json_depth_is_counted_across_chunk_boundaries() -> None:
    text = json.dumps({"a": ['x"[[[\\', {"b": [[['\\"{']]]}], "c": "]]]"}).encode()
    for chunks in ([text[:i], text[i:]] for i in range(len(text) + 1)):
        within, over = JsonDepth(6), JsonDepth(5)
        assert all(within.feed(c) for c in chunks) and within.depth == 0, chunks
        assert not all(over.feed(c) for c in chunks), chunks
    one_by_one = JsonDepth(6)
    assert all(one_by_one.feed(text[i:i + 1]) for i in range(len(text)))
    assert one_by_one.depth == 0 and not one_by_one.in_string


# -- 6. the token is checked before the body is read -------------------------------------------


def test_a_request_without_the_token_is_refused_before_its_body(
        server: DCESServer, problem: Callable[..., Any]) -> None:
    for authorization in (None, "Bearer wrong", f"Basic {TOKEN}"):
        conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("POST", "/v1/runs/x/rounds")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(30 * 1024 * 1024))
        if authorization:
            conn.putheader("Authorization", authorization)
        # The other 30 MiB never come: a server that waited for the body would never answer
        # (the connection's timeout would raise), whatever the speed of the machine.
        conn.endheaders(b'{"samples": [')
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 401, body
        assert response.getheader("content-type") == "application/problem+json"
        assert response.getheader("www-authenticate") == "Bearer"
        doc = json.loads(body)
        assert doc["instance"] == "/v1/runs/x/rounds" and "bearer token" in doc["detail"]
    with httpx.Client(base_url=server.url) as anon:
        problem(anon.post("/v1/curate", json={}), 401, "bearer token")
        for open_path in ("/livez", "/readyz", "/info", "/metrics", "/docs"):
            assert anon.get(open_path).status_code == 200, open_path
