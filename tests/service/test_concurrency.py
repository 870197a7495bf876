"""Concurrent writes and unstorable ids against a real `dces serve`, on SQLite and PostgreSQL.

Eight threads, each with its own connection, send their requests at the same moment, as a
client's parallel uploader or its retries do. Every request must get its documented answer, and
the database must hold what one sequential client would have left. A NUL in a run name, a path
id or a query parameter is a 422 naming it (PostgreSQL text cannot hold NUL), never a 500.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .conftest import NO_LM, DCESServer

N = 8
Send = Callable[[httpx.Client, int], httpx.Response]


@pytest.fixture(scope="module")
def server(database_settings: dict[str, str], start_server: Callable[..., DCESServer]
           ) -> Iterator[DCESServer]:
    server = start_server(**database_settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(server: DCESServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


def new_run(http: httpx.Client) -> str:
    response = http.post("/v1/runs", json={"config": NO_LM})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def at_once(server: DCESServer, send: Send) -> list[httpx.Response]:
    """``send(client, i)`` for i in 0..N-1 from N threads released together."""
    barrier = threading.Barrier(N)

    def one(i: int) -> httpx.Response:
        with server.http() as client:
            client.get("/livez")  # connect before the barrier: the requests leave together
            barrier.wait()
            return send(client, i)

    with ThreadPoolExecutor(N) as pool:
        return list(pool.map(one, range(N)))


def finished_job(http: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        if job["status"] in ("succeeded", "failed"):
            return dict(job)
    raise TimeoutError(f"job {job_id} did not finish")


def test_parts_put_in_parallel_all_count(server: DCESServer, http: httpx.Client,
                                         fortunes: list[dict[str, Any]]) -> None:
    """Parts 1..8 at once: the upload has 8 parts and 200 samples, and one POST of it with one
    key from 8 threads is one job whose round has all 200 samples, in part order."""
    run = new_run(http)
    upload = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    parts = [fortunes[i * 25:(i + 1) * 25] for i in range(N)]
    answers = at_once(server, lambda c, i: c.put(f"/v1/runs/{run}/uploads/{upload}/parts/{i + 1}",
                                                  json={"samples": parts[i]}))
    assert [a.status_code for a in answers] == [200] * N, [a.text for a in answers]
    assert not any(a.json()["unchanged"] for a in answers)
    stored = http.get(f"/v1/runs/{run}/uploads/{upload}").json()
    assert (stored["parts"], stored["samples"]) == (N, 200)

    answers = at_once(server, lambda c, i: c.post(
        f"/v1/runs/{run}/rounds", json={"upload": upload, "budget": 20},
        headers={"Idempotency-Key": "all-parts", "Prefer": "respond-async"}))
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
    jobs = {a.json()["id"] if a.status_code == 202 else a.json()["job_id"] for a in answers}
    assert len(jobs) == 1
    job = finished_job(http, jobs.pop())
    assert job["status"] == "succeeded" and job["samples"] == 200, job
    decided = http.get(f"/v1/runs/{run}/rounds/0").json()["samples"]
    assert [x["id"] for x in decided] == [x["id"] for part in parts for x in part]
    assert len(http.get(f"/v1/runs/{run}/rounds").json()["rounds"]) == 1


def test_the_same_part_eight_times_is_stored_once(server: DCESServer, http: httpx.Client,
                                                  fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    upload = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    body = {"samples": fortunes[800:900]}
    answers = at_once(server, lambda c, _: c.put(f"/v1/runs/{run}/uploads/{upload}/parts/1",
                                                 json=body))
    assert [a.status_code for a in answers] == [200] * N, [a.text for a in answers]
    assert sorted(a.json()["unchanged"] for a in answers) == [False] + [True] * (N - 1)
    assert {a.json()["total_samples"] for a in answers} == {100}
    stored = http.get(f"/v1/runs/{run}/uploads/{upload}").json()
    assert (stored["parts"], stored["samples"]) == (1, 100)


def test_identical_reference_appends_store_the_samples_once(
        server: DCESServer, http: httpx.Client, fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    body = {"samples": fortunes[900:1100]}
    answers = at_once(server, lambda c, _: c.post(f"/v1/runs/{run}/reference", json=body))
    assert [a.status_code for a in answers] == [200] * N, [a.text for a in answers]
    assert sorted(a.json()["added"] for a in answers) == [0] * (N - 1) + [200]
    assert {a.json()["total"] for a in answers} == {200}
    page = http.get(f"/v1/runs/{run}/reference", params={"limit": 1000}).json()
    assert page["total"] == 200 and page["samples"] == body["samples"]
    assert http.get(f"/v1/runs/{run}").json()["reference_samples"] == 200


def test_identical_feedback_is_one_record(server: DCESServer, http: httpx.Client,
                                          fortunes: list[dict[str, Any]]) -> None:
    """The first post stores it (201), the others find it stored unchanged (200)."""
    run = new_run(http)
    first = http.post(f"/v1/runs/{run}/rounds",
                      json={"samples": fortunes[1100:1130], "budget": 5})
    assert first.status_code == 200, first.text
    metrics = {"eval_loss": 2.5, "heldout_perplexity": 40.0}
    answers = at_once(server, lambda c, _: c.post(f"/v1/runs/{run}/feedback",
                                                  json={"metrics": metrics}))
    assert sorted(a.status_code for a in answers) == [200] * (N - 1) + [201], \
        [a.text for a in answers]
    assert {a.json()["round"] for a in answers} == {0}
    stored = http.get(f"/v1/runs/{run}/feedback").json()["feedback"]
    assert [(f["round"], f["metrics"]) for f in stored] == [(0, metrics)]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/runs/run_%00"),
    ("DELETE", "/v1/runs/run_%00"),
    ("GET", "/v1/runs/run_%00/rounds"),
    ("GET", "/v1/runs/{run}/uploads/upl_%00"),
    ("DELETE", "/v1/runs/{run}/uploads/upl_%00"),
    ("GET", "/v1/jobs/job_%00"),
    ("GET", "/v1/jobs?run_id=run_%00"),
    ("GET", "/v1/runs/{run}/rounds/0?reason=a%00"),
])
def test_a_nul_in_a_path_id_or_query_is_a_422(http: httpx.Client, problem: Callable[..., Any],
                                               method: str, path: str) -> None:
    run = new_run(http)
    doc = problem(http.request(method, path.format(run=run)), 422, "NUL")
    field = "query" if "?" in path else "path"
    assert doc["errors"][0]["field"].startswith(f"{field}.")


def test_a_nul_in_a_body_string_is_a_422_naming_it(http: httpx.Client,
                                                    problem: Callable[..., Any]) -> None:
    problem(http.post("/v1/runs", json={"name": "a\x00b"}), 422, '"field": "name"', "NUL")
    run = new_run(http)
    problem(http.put(f"/v1/runs/{run}/uploads/upl_%00/parts/1",
                     json={"samples": [{"id": "a", "text": "b"}]}), 422, "path.upload_id")
    problem(http.post(f"/v1/runs/{run}/rounds", json={"upload": "upl_\x00", "budget": 1}),
            422, '"field": "upload"')
    problem(http.post(f"/v1/runs/{run}/reference",
                      json={"samples": [{"id": "a\x00", "text": "b"}]}), 422, "samples[0].id")
    problem(http.get("/v1/runs/run_unknown"), 404, "does not exist")
    assert http.get(f"/v1/runs/{run}").json()["reference_samples"] == 0
