"""The client's own logic against a stand-in service: retries, uploads, idempotency, jobs, errors.

No torch and no models: these run in a venv with only ``dces-client`` and pytest installed
(scripts/test_client.sh). The client against the real service: tests/service/.
"""

from __future__ import annotations

import json
import pickle
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_service import FakeService, Reply, Request, free_port

import dces_client
from dces_client import DCESClient, DCESError
from dces_client._client import LONG_POLL_S, PROGRESS_POLL_S

REPO = Path(__file__).resolve().parents[2]
ROUNDS = "/v1/runs/r/rounds"


def samples(n: int, text: str = "a sentence") -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "text": f"{text} {i}"} for i in range(n)]


def job(status: str, stage: str | None = None, progress: float = 0.0, round: int | None = None,
        error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "j1", "status": status, "stage": stage, "progress": progress, "round": round,
            "error": error, "note": None}


def keys(service: FakeService) -> list[str]:
    return [r.headers["idempotency-key"] for r in service.sent("POST", ROUNDS)]


# -- retries ------------------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(service: FakeService, client: DCESClient) -> None:
    service.on("GET", "/v1/runs/r",
               Reply(429, {"title": "Too Many Requests"}, {"Retry-After": "1"}),
               Reply(body={"id": "r"}))
    started = time.monotonic()
    assert client.get_run("r") == {"id": "r"}
    assert time.monotonic() - started >= 0.9
    assert len(service.sent("GET", "/v1/runs/r")) == 2


def test_503_is_retried_until_it_clears(service: FakeService, client: DCESClient) -> None:
    service.on("GET", "/v1/runs/r", Reply(503, {"title": "Service Unavailable"}),
               Reply(503, {"title": "Service Unavailable"}), Reply(body={"id": "r"}))
    assert client.get_run("r") == {"id": "r"}
    assert len(service.sent("GET", "/v1/runs/r")) == 3


def test_503_past_retry_for_is_a_dces_error(service: FakeService) -> None:
    service.on("GET", "/v1/runs/r", Reply(503, {"title": "Service Unavailable",
                                                "detail": "draining"}, {"Retry-After": "0"}))
    with DCESClient(service.url, retry_for=0.6) as dces, pytest.raises(DCESError) as err:
        dces.get_run("r")
    assert err.value.status == 503 and err.value.problem["detail"] == "draining"
    assert len(service.sent("GET", "/v1/runs/r")) > 1


def test_connection_refused_is_retried_until_the_service_is_up() -> None:
    port = free_port()
    late: list[FakeService] = []

    def start() -> None:
        fake = FakeService(port)
        fake.on("GET", "/v1/runs/r", Reply(body={"id": "r"}))
        late.append(fake.start())

    timer = threading.Timer(0.7, start)
    timer.start()
    try:
        with DCESClient(f"http://127.0.0.1:{port}", retry_for=10.0) as dces:
            assert dces.get_run("r") == {"id": "r"}
    finally:
        timer.join()
        for fake in late:
            fake.stop()


def test_unreachable_past_retry_for_raises_the_connect_error() -> None:
    with DCESClient(f"http://127.0.0.1:{free_port()}", retry_for=0.3) as dces:
        with pytest.raises(httpx.ConnectError):
            dces.get_run("r")
        assert dces.ready() is False


def test_a_lost_response_is_resent_only_when_that_is_safe(
        service: FakeService, client: DCESClient) -> None:
    service.on("POST", "/v1/runs", Reply(drop=True), Reply(201, {"id": "r"}))
    with pytest.raises(httpx.RemoteProtocolError):
        client.create_run("x")  # a second POST could create a second run
    assert len(service.sent("POST", "/v1/runs")) == 1

    service.on("GET", "/v1/runs/r", Reply(drop=True), Reply(body={"id": "r"}))
    assert client.get_run("r") == {"id": "r"}
    assert len(service.sent("GET", "/v1/runs/r")) == 2


# -- idempotency --------------------------------------------------------------------------------


def test_a_round_is_resent_with_the_same_idempotency_key(
        service: FakeService, client: DCESClient) -> None:
    service.on("POST", ROUNDS, Reply(drop=True), Reply(body={"round": 0}), Reply(drop=True),
               Reply(body={"round": 1}))
    assert client.curate_round("r", samples(3), budget=2, idempotency_key="r-0") == {"round": 0}
    assert keys(service) == ["r-0", "r-0"]

    assert client.curate_round("r", samples(3), budget=2) == {"round": 1}
    generated = keys(service)[2:]
    assert len(generated) == 2 and generated[0] == generated[1] != "r-0"


def test_a_replayed_round_discards_this_calls_upload(
        service: FakeService, client: DCESClient) -> None:
    service.limits["max_samples_per_request"] = 2
    service.on("POST", "/v1/runs/r/uploads", Reply(201, {"id": "u1"}))
    service.on("PUT", "/v1/runs/r/uploads/u1/parts/1", Reply(body={}))
    service.on("PUT", "/v1/runs/r/uploads/u1/parts/2", Reply(body={}))
    service.on("POST", ROUNDS, Reply(body={"round": 0}, headers={"Idempotent-Replayed": "true"}))
    service.on("DELETE", "/v1/runs/r/uploads/u1", Reply(204))
    assert client.curate_round("r", samples(3), budget=2, idempotency_key="r-0") == {"round": 0}
    assert len(service.sent("DELETE", "/v1/runs/r/uploads/u1")) == 1


# -- splitting by the limits /info reports ------------------------------------------------------


def upload_script(service: FakeService, parts: int) -> None:
    service.on("POST", "/v1/runs/r/uploads", Reply(201, {"id": "u1"}))
    for number in range(1, parts + 1):
        service.on("PUT", f"/v1/runs/r/uploads/u1/parts/{number}",
                   lambda req: Reply(body={"samples": len(req.body["samples"])}))
    service.on("POST", ROUNDS, Reply(body={"round": 0}))


def uploaded(service: FakeService) -> list[list[str]]:
    parts = [r for r in service.requests if r.method == "PUT"]
    assert [r.path.rsplit("/", 1)[1] for r in parts] == [str(n) for n in range(1, len(parts) + 1)]
    return [[s["id"] for s in r.body["samples"]] for r in parts]


def test_a_round_over_max_samples_is_one_upload_and_one_round(
        service: FakeService, client: DCESClient) -> None:
    service.limits["max_samples_per_request"] = 3
    upload_script(service, parts=3)
    assert client.curate_round("r", samples(7), budget=2) == {"round": 0}
    assert uploaded(service) == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]
    (round_post,) = service.sent("POST", ROUNDS)
    assert round_post.body == {"budget": 2, "upload": "u1"}
    assert not service.sent("DELETE", "/v1/runs/r/uploads/u1")


def test_a_round_over_max_body_bytes_is_split_by_size(
        service: FakeService, client: DCESClient) -> None:
    service.limits["max_body_bytes"] = 400
    upload_script(service, parts=3)
    client.curate_round("r", samples(5, "x" * 150), budget=2)
    assert uploaded(service) == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    for part in service.sent("PUT", "/v1/runs/r/uploads/u1/parts/1"):
        assert len(json.dumps(part.body).encode()) <= 400


def test_a_round_within_the_limits_is_sent_inline(
        service: FakeService, client: DCESClient) -> None:
    service.on("POST", ROUNDS, Reply(body={"round": 0}))
    client.curate_round("r", samples(3), budget=2, feedback={"heldout_perplexity": 9.5})
    (round_post,) = service.sent("POST", ROUNDS)
    assert round_post.body == {"budget": 2, "samples": samples(3),
                               "feedback": {"heldout_perplexity": 9.5}}
    assert not service.sent("POST", "/v1/runs/r/uploads")


def test_reference_chunks_add_up(service: FakeService, client: DCESClient) -> None:
    service.limits["max_samples_per_request"] = 2
    totals = iter([1, 3, 4])
    service.on("POST", "/v1/runs/r/reference", lambda req: Reply(body={
        "added": len(req.body["samples"]) - 1, "unchanged": 1, "total": next(totals)}))
    assert client.add_reference("r", samples(5)) == {"added": 2, "unchanged": 3, "total": 4}


# -- 202 jobs -----------------------------------------------------------------------------------


def test_a_202_job_is_waited_for_and_reports_its_progress(
        service: FakeService, client: DCESClient) -> None:
    service.on("POST", ROUNDS, Reply(202, job("queued")))
    service.on("GET", "/v1/jobs/j1", Reply(body=job("queued")),
               Reply(body=job("running", "embed", 0.25)),
               Reply(body=job("running", "select", 0.75)),
               Reply(body=job("succeeded", "done", 1.0, round=3)))
    service.on("GET", "/v1/runs/r/rounds/3", Reply(body={"round": 3, "samples": []}))
    seen: list[tuple[str, float]] = []
    result = client.curate_round("r", samples(3), budget=2,
                                 on_progress=lambda stage, fraction: seen.append((stage, fraction)))
    assert result == {"round": 3, "samples": []}
    assert seen == [("queued", 0.0), ("embed", 0.25), ("select", 0.75), ("done", 1.0)]
    assert all(0 < float(r.query["wait"]) <= PROGRESS_POLL_S
               for r in service.sent("GET", "/v1/jobs/j1"))


def test_without_a_progress_callback_a_poll_waits_long(
        service: FakeService, client: DCESClient) -> None:
    service.on("GET", "/v1/jobs/j1", Reply(body=job("succeeded", "done", 1.0, round=0)))
    assert client.wait_job("j1")["round"] == 0
    (poll,) = service.sent("GET", "/v1/jobs/j1")
    assert float(poll.query["wait"]) == LONG_POLL_S


def test_with_wait_false_the_job_is_returned(service: FakeService, client: DCESClient) -> None:
    service.on("POST", ROUNDS, Reply(202, job("queued")))
    assert client.curate_round("r", samples(3), budget=2, wait=False)["id"] == "j1"
    assert not service.sent("GET", "/v1/jobs/j1")


def test_a_job_failed_by_the_service_is_rerun_by_the_same_key(
        service: FakeService, client: DCESClient) -> None:
    service.on("POST", ROUNDS, Reply(202, job("queued")), Reply(body={"round": 0}))
    service.on("GET", "/v1/jobs/j1", Reply(body=job("failed", error={
        "status": 500, "title": "Internal Server Error", "detail": "worker died"})))
    assert client.curate_round("r", samples(3), budget=2, idempotency_key="r-0") == {"round": 0}
    assert keys(service) == ["r-0", "r-0"]


def test_a_job_failed_by_its_input_raises(service: FakeService, client: DCESClient) -> None:
    service.on("POST", ROUNDS, Reply(202, job("queued")))
    service.on("GET", "/v1/jobs/j1", Reply(body=job("failed", error={
        "status": 422, "title": "Unprocessable Content", "detail": "budget too large"})))
    with pytest.raises(DCESError) as err:
        client.curate_round("r", samples(3), budget=2)
    assert err.value.status == 422 and err.value.problem["job"] == "j1"
    assert len(service.sent("POST", ROUNDS)) == 1


# -- errors, auth, readiness --------------------------------------------------------------------


def test_dces_error_carries_the_problem_and_survives_pickling(
        service: FakeService, client: DCESClient) -> None:
    problem = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no run x"}
    service.on("GET", "/v1/runs/x", Reply(404, problem))
    with pytest.raises(DCESError) as err:
        client.get_run("x")
    assert err.value.status == 404 and err.value.problem == problem
    assert str(err.value) == "404 Not Found: no run x"
    copy = pickle.loads(pickle.dumps(err.value))
    assert (copy.status, copy.problem, str(copy)) == (404, problem, str(err.value))


def test_an_error_body_that_is_not_a_problem_still_makes_a_dces_error(
        service: FakeService, client: DCESClient) -> None:
    service.on("GET", "/v1/runs/x", Reply(500, ["oops"]))
    with pytest.raises(DCESError) as err:
        client.get_run("x")
    assert err.value.status == 500
    assert err.value.problem == {"detail": "['oops']", "title": "Internal Server Error"}


def test_the_token_is_sent_as_a_bearer(service: FakeService) -> None:
    service.on("GET", "/v1/runs/r", Reply(body={"id": "r"}))
    with DCESClient(service.url, "s3cret") as dces:
        dces.get_run("r")
    (request,) = service.sent("GET", "/v1/runs/r")
    assert request.headers["authorization"] == "Bearer s3cret"


def test_wait_ready_polls_readyz(service: FakeService, client: DCESClient) -> None:
    def loading(_req: Request) -> Reply:
        return Reply(503, {"title": "Service Unavailable", "detail": "loading models"})

    service.on("GET", "/readyz", loading, loading, Reply(body={"status": "ready"}))
    client.wait_ready(timeout=10, interval=0.05)
    assert len(service.sent("GET", "/readyz")) == 3


# -- packaging ----------------------------------------------------------------------------------


def test_the_client_is_released_with_the_service_under_its_version() -> None:
    """The service pins dces-client to its own version; pip would look for any other on an index."""
    service = (REPO / "pyproject.toml").read_text()
    version = pyproject_version(service)
    assert pyproject_version((REPO / "client" / "pyproject.toml").read_text()) == version
    assert f'"dces-client=={version}"' in service
    assert dces_client.__version__ == version


def pyproject_version(text: str) -> str:
    """``[project] version`` without tomllib, which Python 3.10 lacks."""
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert match is not None
    return match[1]
