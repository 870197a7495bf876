"""Persistence across restarts: graceful (SIGTERM) and hard (``kill -9`` in the middle of a job).

One database for the module, SQLite and then PostgreSQL; the server process is stopped and
started again on it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from .conftest import NO_LM, DCESServer


@pytest.fixture(scope="module")
def server(database_settings: dict[str, str], start_server: Callable[..., DCESServer]
           ) -> Iterator[DCESServer]:
    # A grace far above any round here: "let the running round finish" must not depend on the
    # speed of the CPU (a loaded 2-core machine took over 20 s for the 250-sample round). One
    # replica id across restarts: on PostgreSQL a process takes its own id's jobs at once, a
    # stranger's only after their lease (tests/service/test_replicas.py).
    server = start_server(sync_max_samples=50, shutdown_grace_s=300, replica_id="restarted",
                          fault_injection=True, **database_settings)
    yield server
    server.stop()


def wait_status(http: httpx.Client, job_id: str, wanted: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in wanted:
            return dict(job)
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never reached {wanted}")


def start_job(http: httpx.Client, run: str, samples: list[dict[str, Any]], key: str,
              paused: bool = False) -> str:
    """Submit a round and return once it runs. ``paused``: the worker stops at the round's first
    progress report until the process ends (fault injection), so that a kill lands mid-round on
    any CPU, whatever the round's size."""
    if paused:
        assert http.post("/debug/pause-worker").status_code == 200
    response = http.post(f"/v1/runs/{run}/rounds", json={"samples": samples, "budget": 40},
                         headers={"Idempotency-Key": key})
    assert response.status_code == 202, response.text
    job_id = str(response.json()["id"])
    wait_status(http, job_id, {"running"})
    if not paused:
        time.sleep(0.5)  # well inside the engine's work
    return job_id


def stored(server: DCESServer, run: str) -> dict[str, Any]:
    """The database as the dead process left it, read directly."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as con:
            def rows(query: str) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in con.execute(text(query), {"run": run})]

            return {
                "rounds": rows("SELECT count(*) FROM rounds WHERE run_id = :run")[0][0],
                "run": rows("SELECT rounds, state_json FROM runs WHERE id = :run")[0],
                "jobs": dict(rows("SELECT id, status FROM jobs WHERE run_id = :run")),
            }
    finally:
        engine.dispose()


def test_restart_keeps_everything(server: DCESServer, fortunes: list[dict[str, Any]]) -> None:
    http = server.http()
    run = http.post("/v1/runs", json={"name": "durable", "config": NO_LM}).json()["id"]
    http.post(f"/v1/runs/{run}/reference", json={"samples": fortunes[:100]})
    first = {"samples": fortunes[100:140], "budget": 10}
    assert http.post(f"/v1/runs/{run}/rounds", json=first,
                     headers={"Idempotency-Key": "r0"}).status_code == 200
    http.post(f"/v1/runs/{run}/feedback", json={"metrics": {"eval_loss": 2.0}})
    assert http.post(f"/v1/runs/{run}/rounds",
                     json={"samples": fortunes[140:180], "budget": 10}).status_code == 200
    http.post(f"/v1/runs/{run}/feedback", json={"metrics": {"eval_loss": 2.2}})
    upload = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    http.put(f"/v1/runs/{run}/uploads/{upload}/parts/1", json={"samples": fortunes[180:200]})
    paths = ["/v1/runs", f"/v1/runs/{run}", f"/v1/runs/{run}/rounds", f"/v1/runs/{run}/rounds/0",
             f"/v1/runs/{run}/rounds/1", f"/v1/runs/{run}/feedback", f"/v1/runs/{run}/state",
             f"/v1/runs/{run}/reference?limit=1000", f"/v1/runs/{run}/clusters",
             f"/v1/runs/{run}/health", f"/v1/jobs?run_id={run}",
             f"/v1/runs/{run}/uploads/{upload}"]
    before = {path: http.get(path).json() for path in paths}
    assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert '"msg": "stopped"' in server.log()

    server.start(wait=False)
    with server.client() as client:  # connection refused while it starts: the client retries
        assert client.get_run(run)["rounds"] == 2
    server.wait_ready()
    assert {path: http.get(path).json() for path in paths} == before
    # The run goes on from the stored state, with the stored feedback; keys still replay.
    third = http.post(f"/v1/runs/{run}/rounds", json={"upload": upload, "budget": 5}).json()
    assert third["round"] == 2 and third["feedback"] == {"eval_loss": 2.2}
    assert third["feedback_signal"]["g"] != 0
    replay = http.post(f"/v1/runs/{run}/rounds", json=first, headers={"Idempotency-Key": "r0"})
    assert replay.json() == before[f"/v1/runs/{run}/rounds/0"]


def test_kill9_mid_job_leaves_no_half_round(server: DCESServer,
                                            fortunes: list[dict[str, Any]]) -> None:
    """Killed mid-round: nothing of the round is stored. With resume_jobs off the job fails
    with the reason and a retry by the same key runs it again; with it on, it resumes."""
    http = server.http()
    run = http.post("/v1/runs", json={"config": NO_LM}).json()["id"]
    body = fortunes[200:320]
    job = start_job(http, run, body, "k9", paused=True)
    server.kill9()
    assert stored(server, run) == {"rounds": 0, "run": (0, None), "jobs": {job: "running"}}

    server.start(resume_jobs=False)
    failed = http.get(f"/v1/jobs/{job}").json()
    assert failed["status"] == "failed" and failed["error"]["status"] == 503
    assert failed["error"]["type"] == "urn:dces:problem:interrupted"
    assert "restarted" in failed["error"]["detail"]
    assert http.get(f"/v1/runs/{run}/rounds").json()["rounds"] == []
    retry = http.post(f"/v1/runs/{run}/rounds", json={"samples": body, "budget": 40},
                      headers={"Idempotency-Key": "k9"})
    assert retry.status_code == 202 and retry.json()["id"] == job
    assert wait_status(http, job, {"succeeded", "failed"})["status"] == "succeeded"
    rounds = http.get(f"/v1/runs/{run}/rounds").json()["rounds"]
    assert [(r["round"], r["samples"]) for r in rounds] == [(0, 120)]

    second = start_job(http, run, fortunes[600:720], "k9-2", paused=True)
    server.kill9()
    assert stored(server, run)["rounds"] == 1
    server.start(resume_jobs=True)
    resumed = wait_status(http, second, {"succeeded", "failed"})
    assert resumed["status"] == "succeeded" and resumed["attempts"] == 2
    assert "resumed after a restart" in resumed["note"]
    rounds = http.get(f"/v1/runs/{run}/rounds").json()["rounds"]
    assert [(r["round"], r["samples"]) for r in rounds] == [(0, 120), (1, 120)]
    assert http.get(f"/v1/runs/{run}/state").json()["round"] == 2


def test_sigterm_lets_the_running_round_finish(server: DCESServer,
                                               fortunes: list[dict[str, Any]]) -> None:
    http = server.http()
    run = http.post("/v1/runs", json={"config": NO_LM}).json()["id"]
    job = start_job(http, run, fortunes[1000:1250], "term")
    probe: dict[str, int] = {}

    def watch() -> None:  # while draining, /readyz says so (503) but still answers
        with httpx.Client(base_url=server.url, timeout=5) as c:
            for _ in range(50):
                try:
                    probe["readyz"] = c.get("/readyz").status_code
                except httpx.TransportError:
                    return
                time.sleep(0.05)

    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    watcher = threading.Thread(target=watch)
    watcher.start()
    assert server.proc.wait(300) in (0, -15)
    watcher.join()
    assert probe.get("readyz") in (503, None)
    after = stored(server, run)
    assert after["rounds"] == 1 and after["run"][0] == 1 and after["run"][1] is not None
    assert after["jobs"] == {job: "succeeded"}
    server.start()
    assert http.get(f"/v1/jobs/{job}").json()["status"] == "succeeded"
    assert len(http.get(f"/v1/runs/{run}/rounds").json()["rounds"]) == 1


def test_sigterm_with_no_grace_stops_a_round_while_it_embeds(
        start_server: Callable[..., DCESServer], fortunes: list[dict[str, Any]]) -> None:
    """The engine reports progress after every embedding chunk, so the worker's stop point
    comes mid-stage: the job is requeued with its progress inside `embed`, not left to finish."""
    server = start_server(sync_max_samples=50, shutdown_grace_s=0)
    http = server.http()
    run = http.post("/v1/runs", json={"config": NO_LM}).json()["id"]
    # Repeated text would hit the embedding cache: make every sample new to this process. ~1,500
    # texts: the first chunk is one batch (64), the next ones about a second each, so the first
    # reports fall well inside `embed` on any CPU.
    samples = [{"id": f"s{i}", "text": f"{f['text']} (variant {i})"}
               for i, f in enumerate(fortunes)]
    response = http.post(f"/v1/runs/{run}/rounds", json={"samples": samples, "budget": 40})
    assert response.status_code == 202, response.text
    job_id = str(response.json()["id"])
    deadline = time.monotonic() + 120
    while (job := http.get(f"/v1/jobs/{job_id}").json())["progress"] == 0:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["stage"] == "embed" and 0 < job["progress"] < 0.3, job
    assert server.proc is not None
    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) in (0, -15)
    assert time.monotonic() - stopped < 30  # it stopped at a chunk, not at the round's end
    left = stored(server, run)
    assert left["rounds"] == 0 and left["jobs"] == {job_id: "queued"}
    server.start()
    assert wait_status(http, job_id, {"succeeded", "failed"}, timeout=300)["status"] == "succeeded"
