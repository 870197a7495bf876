"""Tenants (DCES_API_TOKENS_FILE) against a real `dces serve`, on SQLite and PostgreSQL.

Tenant alpha creates a run with reference samples, a committed round (and so a job), feedback
and a staged upload. Tenant beta gets, on every path of that run and its job, the same 404 as
for a run that does not exist, sees none of it in any list, and changes nothing by trying;
alpha still sees all of it. A bad tokens file stops the server with exit 2 and one line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import DEFAULT_TENANT, Settings

from .conftest import NO_LM, DCESServer

TOKENS = {"alpha": "alpha-token-1", "beta": "beta-token-2"}
TOKENS_FILE = """# teams sharing this DCES
alpha: alpha-token-1

beta:beta-token-2
"""
NOBODY = "run_" + "0" * 32  # a run id that does not exist
NO_JOB = "job_" + "0" * 32


@pytest.fixture(scope="module")
def server(database_settings: dict[str, str], start_server: Callable[..., DCESServer],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[DCESServer]:
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens_file.write_text(TOKENS_FILE)
    server = start_server(api_tokens_file=str(tokens_file), **database_settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alpha(server: DCESServer) -> Iterator[httpx.Client]:
    with server.http(TOKENS["alpha"]) as client:
        yield client


@pytest.fixture(scope="module")
def beta(server: DCESServer) -> Iterator[httpx.Client]:
    with server.http(TOKENS["beta"]) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def alphas(alpha: httpx.Client, fortunes: list[dict[str, Any]]) -> dict[str, str]:
    """Alpha's run with everything that hangs off it: reference, a round, its job, feedback
    and an upload with one part."""
    run = ok(alpha.post("/v1/runs", json={"name": "alpha's", "config": NO_LM}), 201)["id"]
    ok(alpha.post(f"/v1/runs/{run}/reference", json={"samples": fortunes[100:103]}))
    round_ = ok(alpha.post(f"/v1/runs/{run}/rounds", json={"samples": fortunes[:40],
                                                            "budget": 10}))
    ok(alpha.post(f"/v1/runs/{run}/feedback", json={"metrics": {"eval_loss": 2.0}}), 201)
    upload = ok(alpha.post(f"/v1/runs/{run}/uploads"), 201)["id"]
    ok(alpha.put(f"/v1/runs/{run}/uploads/{upload}/parts/1", json={"samples": fortunes[40:45]}))
    return {"run": run, "job": round_["job_id"], "upload": upload}


def run_paths(run: str, upload: str, job: str, few: list[dict[str, Any]]
              ) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, JSON body) of every route that names a run or a job."""
    runs, uploads = f"/v1/runs/{run}", f"/v1/runs/{run}/uploads"
    return [
        ("GET", runs, None), ("GET", f"{runs}/state", None),
        ("POST", f"{runs}/reference", {"samples": few}), ("GET", f"{runs}/reference", None),
        ("POST", f"{runs}/feedback", {"round": 0, "metrics": {"eval_loss": 9.0}}),
        ("GET", f"{runs}/feedback", None),
        ("POST", f"{runs}/rounds", {"samples": few, "budget": 1}),
        ("POST", f"{runs}/rounds", {"upload": upload, "budget": 1}),
        ("GET", f"{runs}/rounds", None), ("GET", f"{runs}/rounds/0", None),
        ("GET", f"{runs}/clusters", None), ("GET", f"{runs}/health", None),
        ("POST", uploads, None), ("GET", f"{uploads}/{upload}", None),
        ("PUT", f"{uploads}/{upload}/parts/2", {"samples": few}),
        ("DELETE", f"{uploads}/{upload}", None),
        ("GET", f"/v1/jobs/{job}", None), ("GET", f"/v1/jobs/{job}?wait=1", None),
        ("DELETE", runs, None),
    ]


def test_another_tenant_gets_404_on_every_path_of_the_run_and_lists_none(
        alpha: httpx.Client, beta: httpx.Client, alphas: dict[str, str],
        fortunes: list[dict[str, Any]], problem: Callable[..., Any]) -> None:
    run, upload, job = alphas["run"], alphas["upload"], alphas["job"]
    few = fortunes[200:202]
    theirs = run_paths(run, upload, job, few)
    nobodys = run_paths(NOBODY, upload, NO_JOB, few)
    for (method, path, body), (_, missing_path, _) in zip(theirs, nobodys, strict=True):
        answer = problem(beta.request(method, path, json=body), 404, "does not exist")
        missing = problem(beta.request(method, missing_path, json=body), 404)
        # Exactly what a run that does not exist gets: nothing tells that it is there.
        assert answer["detail"] == missing["detail"].replace(NOBODY, run).replace(NO_JOB, job), \
            (method, path)
    assert ok(beta.get("/v1/runs")) == {"runs": [], "total": 0}
    assert ok(beta.get("/v1/jobs")) == {"jobs": []}
    assert ok(beta.get("/v1/jobs", params={"run_id": run})) == {"jobs": []}

    # Alpha still sees all of it, unchanged by beta's tries.
    got = ok(alpha.get(f"/v1/runs/{run}"))
    assert (got["name"], got["rounds"], got["reference_samples"]) == ("alpha's", 1, 3)
    listed = ok(alpha.get("/v1/runs"))
    assert listed["total"] == 1 and [r["id"] for r in listed["runs"]] == [run]
    assert [j["id"] for j in ok(alpha.get("/v1/jobs"))["jobs"]] == [job]
    assert [j["id"] for j in ok(alpha.get("/v1/jobs", params={"run_id": run}))["jobs"]] == [job]
    assert ok(alpha.get(f"/v1/jobs/{job}"))["status"] == "succeeded"
    assert ok(alpha.get(f"/v1/runs/{run}/reference"))["total"] == 3
    assert [f["metrics"] for f in ok(alpha.get(f"/v1/runs/{run}/feedback"))["feedback"]] == [
        {"eval_loss": 2.0}]
    assert [r["round"] for r in ok(alpha.get(f"/v1/runs/{run}/rounds"))["rounds"]] == [0]
    assert ok(alpha.get(f"/v1/runs/{run}/rounds/0"))["job_id"] == job
    assert ok(alpha.get(f"/v1/runs/{run}/clusters"))["round"] == 0
    assert ok(alpha.get(f"/v1/runs/{run}/health"))["rounds"] == [0]
    assert ok(alpha.get(f"/v1/runs/{run}/state")) is not None
    staged = ok(alpha.get(f"/v1/runs/{run}/uploads/{upload}"))
    assert (staged["parts"], staged["samples"]) == (1, 5)


def test_each_tenant_sees_only_its_own_runs(
        server: DCESServer, alpha: httpx.Client, beta: httpx.Client, alphas: dict[str, str],
        problem: Callable[..., Any]) -> None:
    mine = ok(beta.post("/v1/runs", json={"name": "beta's", "config": NO_LM}), 201)["id"]
    listed = ok(beta.get("/v1/runs"))
    assert listed["total"] == 1 and [r["id"] for r in listed["runs"]] == [mine]
    assert mine not in [r["id"] for r in ok(alpha.get("/v1/runs"))["runs"]]
    problem(alpha.get(f"/v1/runs/{mine}"), 404, "does not exist")
    # An upload id of another tenant's run does not cross over into one's own round.
    problem(beta.post(f"/v1/runs/{mine}/rounds", json={"upload": alphas["upload"], "budget": 1}),
            404, "has no upload")
    ok(beta.delete(f"/v1/runs/{mine}"), 204)
    # Without one of the file's tokens: 401, naming the tokens file.
    with httpx.Client(base_url=server.url) as nobody:
        problem(nobody.get("/v1/runs"), 401, "DCES_API_TOKENS_FILE")
        problem(nobody.get("/v1/runs", headers={"Authorization": "Bearer alpha-token-"}), 401)
        assert nobody.get("/info").json()["auth"] is True


def serve_fails(tmp_path: Path, **settings: Any) -> tuple[int, str]:
    server = DCESServer(tmp_path, **settings)
    proc = subprocess.run([sys.executable, "-m", "app.cli", "serve"], env=server.env(),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("alpha: a-token\nbeta b-token\n", "line 2: expected 'tenant: token'"),
    ("alpha: a-token\nbeta: \n", "line 2: the token is empty"),
    ("# nobody\n\n", "no 'tenant: token' line"),
    ("alpha: same\nbeta: x\n\nbeta: same\n", "line 4: this token is also on line 1"),
    ("al pha: a-token\n", "line 1: the tenant must be"),
    ("alpha: a token\n", "line 1: the token must be printable ASCII without spaces"),
], ids=["no-colon", "empty-token", "no-line", "token-twice", "bad-tenant", "token-with-space"])
def test_a_bad_tokens_file_stops_the_server_with_exit_2(
        tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(content)
    code, err = serve_fails(tmp_path, api_tokens_file=str(path))
    assert code == 2 and "Traceback" not in err, err
    lines = err.splitlines()
    where = f"{path} " if message.startswith("line") else f"{path}: "
    assert lines[0] == "dces serve: invalid settings:" and len(lines) == 2, err
    assert lines[1].startswith(f"  DCES_API_TOKENS_FILE: {where}{message}"), err


def test_a_missing_tokens_file_or_two_token_settings_stop_the_server(tmp_path: Path) -> None:
    code, err = serve_fails(tmp_path, api_tokens_file=str(tmp_path / "absent.txt"))
    assert code == 2 and "Traceback" not in err, err
    assert f"DCES_API_TOKENS_FILE: {tmp_path / 'absent.txt'}: cannot read it" in err
    (tmp_path / "tokens.txt").write_text(TOKENS_FILE)
    code, err = serve_fails(tmp_path, api_tokens_file=str(tmp_path / "tokens.txt"),
                            api_token="single")
    assert code == 2 and "set DCES_API_TOKEN or DCES_API_TOKENS_FILE, not both" in err, err


def test_one_token_or_none_means_one_default_tenant(tmp_path: Path) -> None:
    """Today's behaviour: no tenant check, every run visible, new runs the default tenant's
    (the one that runs from before tenants belong to)."""
    assert Settings().api_tokens() == [] and not Settings().tenants
    single = Settings(api_token="only")
    assert [(t.get_secret_value(), n) for t, n in single.api_tokens()] == [
        ("only", DEFAULT_TENANT)] and not single.tenants
    (tmp_path / "tokens.txt").write_text(TOKENS_FILE + "alpha: alpha-token-2\n")
    many = Settings(api_tokens_file=tmp_path / "tokens.txt")
    assert many.tenants and [(t.get_secret_value(), n) for t, n in many.api_tokens()] == [
        ("alpha-token-1", "alpha"), ("beta-token-2", "beta"), ("alpha-token-2", "alpha")]
