"""The HTTP API against one app in this process (small limits, so every limit is reachable)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dces_client import DCESClient, DCESError

from .conftest import NO_LM, REPO, InProcessServer

LIMITS = {
    "max_samples_per_request": 200, "max_text_chars": 5000, "max_id_chars": 64,
    "max_body_bytes": 256 * 1024, "sync_max_samples": 150, "max_reference_samples": 1000,
    "max_feedback_metrics": 4, "max_samples_per_round": 2000,
}


@pytest.fixture(scope="module")
def server(start_app: Callable[..., InProcessServer]) -> InProcessServer:
    return start_app(**LIMITS)


@pytest.fixture(scope="module")
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture(scope="module")
def client(server: InProcessServer) -> Iterator[DCESClient]:
    with server.client() as c:
        yield c


def new_run(http: httpx.Client, **config: Any) -> str:
    response = http.post("/v1/runs", json={"name": "t", "config": {**NO_LM, **config}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# -- ops and docs -------------------------------------------------------------------------------


def test_probes_info_and_openapi(http: httpx.Client) -> None:
    assert http.get("/livez").json()["alive"] is True
    assert http.get("/readyz").json() == {"ready": True, "status": "ready", "detail": None,
                                          "queue_depth": 0}
    info = http.get("/info").json()
    assert {k: info["limits"][k] for k in LIMITS} == LIMITS
    assert info["database"] == "sqlite" and info["auth"] is False
    assert info["models"]["loaded"]["embedders"]
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/reference",
                 "/v1/runs/{run_id}/rounds", "/v1/runs/{run_id}/rounds/{n}",
                 "/v1/runs/{run_id}/feedback", "/v1/runs/{run_id}/clusters",
                 "/v1/runs/{run_id}/health", "/v1/jobs/{job_id}", "/v1/curate",
                 "/v1/runs/{run_id}/uploads/{upload_id}/parts/{part}", "/livez", "/readyz",
                 "/info"):
        assert path in paths, path
    assert "swagger" in http.get("/docs").text.lower()


def test_client_imports_without_torch_or_engine() -> None:
    code = ("import sys, dces_client, app; "
            "bad = [m for m in ('torch', 'curation', 'fastapi', 'sqlalchemy', 'numpy') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# -- runs ---------------------------------------------------------------------------------------


def test_run_lifecycle(http: httpx.Client, problem: Callable[..., Any]) -> None:
    created = http.post("/v1/runs", json={"name": "life", "config": {"ratio": {"r0": 0.4}}})
    assert created.status_code == 201
    run = created.json()
    assert created.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["config"]["ratio"]["r0"] == 0.4 and run["overrides"] == {"ratio": {"r0": 0.4}}
    assert run["rounds"] == 0 and run["reference_samples"] == 0
    assert http.get(f"/v1/runs/{run['id']}").json() == run
    assert run["id"] in [r["id"] for r in http.get("/v1/runs?limit=1000").json()["runs"]]
    assert http.get(f"/v1/runs/{run['id']}/state").json() is None
    assert http.delete(f"/v1/runs/{run['id']}").status_code == 204
    problem(http.get(f"/v1/runs/{run['id']}"), 404, run["id"])


@pytest.mark.parametrize(("config", "field"), [
    ({"ratio": {"r9": 1}}, "config.ratio.r9"),
    ({"nonsense": {}}, "config.nonsense"),
    ({"ratio": {"r0": "high"}}, "config.ratio.r0"),
    ({"edit": {"enabled": "yes"}}, "config.edit.enabled"),
    ({"cluster": {"k": 2.5}}, "config.cluster.k"),
    ({"cluster": {"k": 10**400}}, "config.cluster.k"),
    ({"cluster": {"k": 65_537}}, "config.cluster.k"),
    ({"embed": {"dtype": "fp8"}}, "config.embed.dtype"),
    ({"edit": {"threshold": 1.5}}, "config.edit.threshold"),
    ({"edit": {"top_k": 0}}, "config.edit.top_k"),
    ({"score": {"lm_fallback": "maybe"}}, "config.score.lm_fallback"),
])
def test_bad_config_is_422_naming_the_key(http: httpx.Client, problem: Callable[..., Any],
                                          config: dict[str, Any], field: str) -> None:
    body = problem(http.post("/v1/runs", json={"config": config}), 422, field)
    assert any(e["field"] == field for e in body["errors"])


# -- errors: every one is problem+json with the field and the limit -----------------------------


def test_errors_name_field_and_limit(http: httpx.Client, fortunes: list[dict[str, Any]],
                                     problem: Callable[..., Any]) -> None:
    run = new_run(http)
    rounds = f"/v1/runs/{run}/rounds"
    few = fortunes[:3]
    problem(http.get("/v1/runs/run_nope"), 404, "run_nope")
    problem(http.get("/v1/jobs/job_nope"), 404, "job_nope")
    problem(http.get(f"{rounds}/7"), 404, "no round 7")
    problem(http.get("/v1/nowhere"), 404)
    problem(http.put("/v1/runs"), 405)
    body = problem(http.post(rounds, json={"samples": few, "budget": 0}), 422, "budget")
    assert body["errors"][0] == {"field": "budget", "message": body["errors"][0]["message"],
                                 "limit": 1}
    problem(http.post(rounds, json={"samples": [], "budget": 1}), 422, "samples")
    problem(http.post(rounds, json={"budget": 1}), 422, "exactly one of 'samples' or 'upload'")
    problem(http.post(rounds, json={"samples": [*few, few[0]], "budget": 1}), 422,
            "samples[3].id", "duplicate id")
    problem(http.post(rounds, json={"samples": fortunes[:201], "budget": 1}), 422,
            "max_samples_per_request = 200")
    long_text = {"id": "long", "text": "word " * 1001}
    body = problem(http.post(rounds, json={"samples": [long_text], "budget": 1}), 422,
                   "samples[0].text", "max_text_chars")
    assert body["errors"][0]["limit"] == 5000
    problem(http.post(rounds, json={"samples": [{"id": "x" * 65, "text": "a b c d"}],
                                    "budget": 1}), 422, "samples[0].id", "max_id_chars")
    problem(http.post(rounds, json={"samples": [{"id": "n", "text": "a\u0000b"}], "budget": 1}),
            422, "NUL")
    problem(http.post(rounds, content=b'{"samples": [{"id": "s", "text": "\\ud800"}], "budget": 1}',
                      headers={"content-type": "application/json"}), 422, "surrogate")
    problem(http.post(rounds, json={"samples": few, "budget": 1, "feedback": {"loss": "low"}}),
            422, "feedback.loss")
    problem(http.post(rounds, content=b'{"samples": ', headers={"content-type":
                                                                "application/json"}), 422)
    problem(http.post(f"/v1/runs/{run}/feedback", json={"metrics": {"loss": 1.0}}), 422,
            "no committed round")
    problem(http.post(f"/v1/runs/{run}/feedback", json={
        "round": 0, "metrics": {f"m{i}": 1.0 for i in range(5)}}), 422, "max_feedback_metrics")
    problem(http.post(f"/v1/runs/{run}/feedback", content=b'{"metrics": {"loss": NaN}}',
                      headers={"content-type": "application/json"}), 422, "metrics.loss")
    problem(http.post("/v1/runs/run_nope/rounds", json={"samples": few, "budget": 1}), 404)
    problem(http.post("/v1/runs", content=b'{"config": {"edit": {"threshold": NaN}}}',
                      headers={"content-type": "application/json"}), 422, "config.edit.threshold")


@pytest.mark.parametrize(("scores", "field", "message"), [
    ({"logprob": 0.5, "tokens": 3}, "samples[1]", "'logprob' must be <= 0"),
    ({"logprob": -3.0, "tokens": 0}, "samples[1].tokens", "greater than or equal to 1"),
    ({"logprob": -3.0}, "samples[1]", "'tokens' is missing"),
    ({"token_logprobs": [-1.0, -2.0], "tokens": 3, "logprob": -3.0}, "samples[1]",
     "'token_logprobs' has 2 values but 'tokens' is 3"),
])
def test_bad_generator_scores_are_422_naming_the_sample(
        http: httpx.Client, fortunes: list[dict[str, Any]], problem: Callable[..., Any],
        scores: dict[str, Any], field: str, message: str) -> None:
    run = new_run(http)
    samples = [fortunes[0], {**fortunes[1], **scores}]
    for path, body in ((f"/v1/runs/{run}/rounds", {"samples": samples, "budget": 1}),
                       ("/v1/curate", {"samples": samples, "budget": 1})):
        problem(http.post(path, json=body), 422, field, message)
    upload = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    problem(http.put(f"/v1/runs/{run}/uploads/{upload}/parts/1", json={"samples": samples}),
            422, field, message)
    assert http.get(f"/v1/runs/{run}/rounds").json()["rounds"] == []
    nan = (b'{"budget": 1, "samples": [{"id": "a", "text": "some text here", "logprob": NaN, '
           b'"tokens": 2}]}')
    problem(http.post(f"/v1/runs/{run}/rounds", content=nan,
                      headers={"content-type": "application/json"}), 422, "samples[0]",
            "finite number")


def test_generator_scores_steer_the_round(http: httpx.Client,
                                          fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    samples = [{**f, "logprob": -float(i % 7 + 1) * 10, "tokens": 10}
               for i, f in enumerate(fortunes[:80])]
    result = http.post(f"/v1/runs/{run}/rounds", json={"samples": samples, "budget": 20}).json()
    assert result["scores"]["source"] == "generator"
    confidence = {s["id"]: s["logprob"] / s["tokens"] for s in samples}
    edges = [confidence[s["id"]] for s in result["samples"] if s["role"] == "edge"]
    passed = [confidence[s["id"]] for s in result["samples"] if s["reason"] == "quota_filled"]
    assert edges and passed and sum(edges) / len(edges) < sum(passed) / len(passed)


def test_with_a_reference_the_round_reports_its_affinity(http: httpx.Client,
                                                         fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    assert http.post(f"/v1/runs/{run}/reference",
                     json={"samples": fortunes[200:400]}).status_code == 200
    samples = [{**f, "logprob": -float(i % 7 + 1) * 10, "tokens": 10}
               for i, f in enumerate(fortunes[:80])]
    scores = http.post(f"/v1/runs/{run}/rounds",
                       json={"samples": samples, "budget": 20}).json()["scores"]
    assert scores["source"] == "generator" and scores["reference_weight"] == 0.5
    assert set(scores["affinity"]) == {"candidates", "selected"}
    assert scores["matching"]["steps"] == 20 and scores["matching"]["per_step"] == 1
    assert set(scores["matching"]["kl_to_reference"]) == {"selected", "random"}
    off = new_run(http, score={"lm_fallback": False, "reference_weight": 0.0})
    http.post(f"/v1/runs/{off}/reference", json={"samples": fortunes[200:400]})
    scores = http.post(f"/v1/runs/{off}/rounds",
                       json={"samples": samples, "budget": 20}).json()["scores"]
    assert scores["reference_weight"] is None and "affinity" not in scores
    assert "matching" not in scores


def test_body_limit_is_413_without_reading_the_body(http: httpx.Client,
                                                    problem: Callable[..., Any]) -> None:
    big = json.dumps({"samples": [{"id": "a", "text": "x" * 300_000}], "budget": 1}).encode()
    body = problem(http.post("/v1/runs/any/rounds", content=big,
                             headers={"content-type": "application/json"}), 413,
                   "max_body_bytes = 262144")
    assert body["errors"][0]["limit"] == 262144

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(30):
            yield b" " * 10_000
    problem(http.post("/v1/runs/any/rounds", content=chunked(),
                      headers={"content-type": "application/json"}), 413, "max_body_bytes")


def test_reference_append_is_idempotent_and_limited(http: httpx.Client,
                                                    fortunes: list[dict[str, Any]],
                                                    problem: Callable[..., Any]) -> None:
    run = new_run(http)
    path = f"/v1/runs/{run}/reference"
    assert http.post(path, json={"samples": fortunes[:150]}).json() == {
        "added": 150, "unchanged": 0, "total": 150}
    assert http.post(path, json={"samples": fortunes[100:200]}).json() == {
        "added": 50, "unchanged": 50, "total": 200}
    page = http.get(f"{path}?limit=2&offset=1").json()
    assert page["total"] == 200 and [s["id"] for s in page["samples"]] == [
        fortunes[1]["id"], fortunes[2]["id"]]
    assert page["samples"][0]["category"] == fortunes[1]["category"]  # extra fields kept
    changed = {**fortunes[0], "text": "A different text for the same id."}
    problem(http.post(path, json={"samples": [changed]}), 409, fortunes[0]["id"])
    for start in range(200, 1000, 200):
        assert http.post(path, json={"samples": fortunes[start:start + 200]}).status_code == 200
    problem(http.post(path, json={"samples": fortunes[1000:1001]}), 422,
            "max_reference_samples = 1000")


def test_no_input_makes_it_answer_500(http: httpx.Client) -> None:
    run = new_run(http)
    bodies: list[Any] = [
        None, [], "text", 12, {"samples": "x"}, {"samples": [None], "budget": 1},
        {"samples": [{"id": 1, "text": 2}], "budget": 1},
        {"samples": [{"id": "a", "text": "a b c"}], "budget": 10**40},
        {"samples": [{"id": "a", "text": "a b c"}], "budget": True},
        {"samples": [{"id": "a", "text": "a b c"}], "budget": 1, "upload": "u"},
        {"upload": "upl_missing", "budget": 1},
        {"samples": [{"id": "a", "text": "ok text here", "meta": {"deep": [1, {"x": None}]}}],
         "budget": 1, "feedback": {"": 1}},
        {"name": "x" * 10_000}, {"config": []}, {"config": {"ratio": None}},
        {"round": -1, "metrics": {"a": 1}},
        {"round": 10**30, "metrics": {"a": 1}},
    ]
    paths = ["/v1/runs", f"/v1/runs/{run}/reference", f"/v1/runs/{run}/rounds",
             f"/v1/runs/{run}/feedback", "/v1/curate", f"/v1/runs/{run}/uploads",
             f"/v1/runs/{run}/uploads/upl_x/parts/1"]
    raw = [b'{"metrics": {"a": 1e400}}', b'{"samples": [{"id": "a", "text": "x"}], "budget": NaN}',
           b'\xff\xfe', b'{"samples": [{"id": "a", "text": "a b c d e"}], "budget": 1.5}']
    headers = {"content-type": "application/json"}
    for path in paths:
        method = "PUT" if "/parts/" in path else "POST"
        for body in bodies:
            response = http.request(method, path, json=body)
            assert response.status_code < 500, (path, body, response.text)
        for content in raw:
            response = http.request(method, path, content=content, headers=headers)
            assert response.status_code < 500, (path, content, response.text)
    for path in (f"/v1/runs/{run}/rounds/{10**30}", "/v1/runs?offset=-1",
                 f"/v1/runs?offset={10**30}", "/v1/jobs/x?wait=1e9", "/v1/jobs?status=weird",
                 f"/v1/runs/{run}/clusters", f"/v1/runs/{run}/health"):
        assert http.get(path).status_code < 500, path


# -- rounds -------------------------------------------------------------------------------------


def test_the_starting_models_metrics_as_round_0s_feedback_are_the_baseline(
        http: httpx.Client, fortunes: list[dict[str, Any]]) -> None:
    """With a baseline the signal moves from the first posted feedback (round 1), not the
    second: perplexity 10 → 12 is +0.2 (collapsing)."""
    run = new_run(http)
    rounds = []
    for n, body in enumerate([{"feedback": {"heldout_perplexity": 10.0}}, {}]):
        response = http.post(f"/v1/runs/{run}/rounds",
                             json={"samples": fortunes[60 * n:60 * n + 60], "budget": 20, **body})
        assert response.status_code == 200, response.text
        rounds.append(response.json())
        if n == 0:
            assert http.post(f"/v1/runs/{run}/feedback",
                             json={"metrics": {"heldout_perplexity": 12.0}}).status_code == 201
    assert rounds[0]["feedback_source"] == "body" and rounds[0]["feedback_signal"]["g"] == 0
    assert rounds[1]["feedback_source"] == "posted"
    assert rounds[1]["feedback_signal"]["g"] == pytest.approx(0.2)
    assert all(c["edge_ratio"]["feedback_signal"] == pytest.approx(0.2)
               for c in rounds[1]["clusters"])


def test_three_round_run_with_reference_and_feedback(
        http: httpx.Client, client: DCESClient, fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    client.add_reference(run, fortunes[:200])
    metrics = [{"heldout_perplexity": 12.0, "generation_entropy": 3.0},
               {"heldout_perplexity": 15.0, "generation_entropy": 2.4}]
    results = []
    for n, start in enumerate((200, 320, 440)):
        batch = fortunes[start:start + 120]
        response = http.post(f"/v1/runs/{run}/rounds", json={"samples": batch, "budget": 40})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["round"] == n and result["selected"] == 40
        assert [s["id"] for s in result["samples"]] == [s["id"] for s in batch]
        assert sum(s["selected"] for s in result["samples"]) == 40
        results.append(result)
        if n < 2:
            assert http.post(f"/v1/runs/{run}/feedback", json={"metrics": metrics[n]}
                             ).status_code == 201
    assert [r["feedback_source"] for r in results] == ["none", "posted", "posted"]
    assert results[1]["feedback"] == metrics[0] and results[2]["feedback"] == metrics[1]
    # g is 0 until two feedbacks exist; then the mean of the signed relative changes:
    # perplexity 12 → 15 is +0.25 (collapsing), entropy 3.0 → 2.4 is -0.2, i.e. +0.2.
    assert results[0]["feedback_signal"]["g"] == 0 and results[1]["feedback_signal"]["g"] == 0
    assert results[2]["feedback_signal"]["g"] == pytest.approx(0.225)
    config = http.get(f"/v1/runs/{run}").json()["config"]["ratio"]
    for previous, result in zip([None, *results], results, strict=False):
        ratios_before = {c["cluster"]: c["edge_ratio"]["ratio"] for c in previous["clusters"]
                         if c["size"]} if previous else {}
        for cluster in result["clusters"]:
            why = cluster["edge_ratio"]
            assert cluster["reference_source"] == "reference"
            assert why["feedback_signal"] == result["feedback_signal"]["g"]
            assert why["raw"] == pytest.approx(config["r0"] + config["alpha"] *
                                               why["dispersion_signal"] + config["gamma"] *
                                               why["feedback_signal"])
            assert why["previous"] == ratios_before.get(cluster["cluster"])
            expected = why["raw"] if why["previous"] is None else (
                config["ema"] * why["raw"] + (1 - config["ema"]) * why["previous"])
            assert why["smoothed"] == pytest.approx(expected)
            assert why["ratio"] == pytest.approx(min(max(expected, config["r_min"]),
                                                     config["r_max"]))
    state = http.get(f"/v1/runs/{run}/state").json()
    assert state["round"] == 3 and len(state["history"]) == 3
    last = {str(c["cluster"]): c["edge_ratio"]["ratio"] for c in results[2]["clusters"]
            if c["size"]}
    assert {k: state["ratios"][k] for k in last} == pytest.approx(last)
    assert state["last_feedback"] == metrics[1]
    stored = http.get(f"/v1/runs/{run}/rounds/1").json()
    assert stored == results[1]
    listing = http.get(f"/v1/runs/{run}/rounds").json()["rounds"]
    assert [(r["round"], r["samples"], r["selected"]) for r in listing] == [
        (0, 120, 40), (1, 120, 40), (2, 120, 40)]
    clusters = http.get(f"/v1/runs/{run}/clusters").json()
    assert clusters["round"] == 2 and clusters["clusters"] == results[2]["clusters"]
    health = http.get(f"/v1/runs/{run}/health").json()
    assert health["rounds"] == [0, 1, 2]
    assert health["series"]["effective_clusters"] == [r["health"]["effective_clusters"]
                                                      for r in results]
    assert health["alerts"] == results[2]["health"]["alerts"]
    feedback = http.get(f"/v1/runs/{run}/feedback").json()["feedback"]
    assert [(f["round"], f["metrics"]) for f in feedback] == [(0, metrics[0]), (1, metrics[1])]
    # Feedback of round 0 was used by round 1: it can no longer change.
    assert http.post(f"/v1/runs/{run}/feedback", json={"round": 0, "metrics": {"loss": 1.0}}
                     ).status_code == 409
    assert http.post(f"/v1/runs/{run}/feedback", json={"round": 0, "metrics": metrics[0]}
                     ).status_code == 200  # the same metrics again: an idempotent no-op


def test_feedback_in_the_body_wins_over_posted(http: httpx.Client,
                                               fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    path = f"/v1/runs/{run}/rounds"
    assert http.post(path, json={"samples": fortunes[200:260], "budget": 10}).status_code == 200
    http.post(f"/v1/runs/{run}/feedback", json={"metrics": {"eval_loss": 2.0}})
    given = {"eval_loss": 3.0}
    second = http.post(path, json={"samples": fortunes[260:320], "budget": 10, "feedback": given})
    assert second.json()["feedback_source"] == "body" and second.json()["feedback"] == given


def test_idempotent_retry_returns_the_same_round_and_key_reuse_is_409(
        http: httpx.Client, fortunes: list[dict[str, Any]], problem: Callable[..., Any]) -> None:
    run = new_run(http)
    path = f"/v1/runs/{run}/rounds"
    body = {"samples": fortunes[200:300], "budget": 20}
    first = http.post(path, json=body, headers={"Idempotency-Key": "step-1"})
    again = http.post(path, json=body, headers={"Idempotency-Key": "step-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    reordered = json.dumps({"budget": 20, "samples": [{"text": s["text"], "id": s["id"],
                                                       "category": s["category"]}
                                                      for s in body["samples"]]})
    same = http.post(path, content=reordered, headers={"Idempotency-Key": "step-1",
                                                       "content-type": "application/json"})
    assert same.json()["job_id"] == first.json()["job_id"]  # key order does not matter
    assert len(http.get(path).json()["rounds"]) == 1
    problem(http.post(path, json={**body, "budget": 21}, headers={"Idempotency-Key": "step-1"}),
            409, "step-1")
    assert http.post(path, json=body, headers={"Idempotency-Key": "step-2"}).json()["round"] == 1
    problem(http.post(path, json=body, headers={"Idempotency-Key": ""}), 422, "Idempotency-Key")


def test_large_round_answers_202_with_a_job(http: httpx.Client,
                                            fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    accepted = http.post(f"/v1/runs/{run}/rounds",
                         json={"samples": fortunes[200:360], "budget": 30})  # > 150: a job
    assert accepted.status_code == 202
    job = accepted.json()
    assert accepted.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running") and job["samples"] == 160
    done = http.get(f"/v1/jobs/{job['id']}?wait=60").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["attempts"] == 1
    round_ = http.get(done["links"]["round"]).json()
    assert round_["round"] == 0 and round_["job_id"] == job["id"] and len(round_["samples"]) == 160
    small = http.post(f"/v1/runs/{run}/rounds", json={"samples": fortunes[:20], "budget": 5},
                      headers={"Prefer": "respond-async"})
    assert small.status_code == 202
    assert [j["id"] for j in http.get(f"/v1/jobs?run_id={run}").json()["jobs"]] == [
        small.json()["id"], job["id"]]


def test_client_splits_a_large_round_into_one_round(
        http: httpx.Client, client: DCESClient, fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    batch = fortunes[:450]  # three parts of <= 200 samples
    result = client.curate_round(run, batch, 60, idempotency_key="big-1")
    assert result["round"] == 0 and result["selected"] == 60
    assert [s["id"] for s in result["samples"]] == [s["id"] for s in batch]
    assert len(client.list_rounds(run)) == 1
    job = client.get_job(result["job_id"])
    assert job["samples"] == 450
    # Re-running the same call (e.g. the training script restarted) returns the same round.
    again = client.curate_round(run, batch, 60, idempotency_key="big-1")
    assert again == result and len(client.list_rounds(run)) == 1
    # Bytes, not only counts: 60 long samples exceed 256 KiB and go in two parts.
    long = [{"id": f"long-{i}", "text": " ".join(f["text"] for f in fortunes[i:i + 60])[:4900]}
            for i in range(60)]
    assert sum(len(json.dumps(x)) for x in long) > 256 * 1024
    assert len(list(client._split(long))) == 2
    second = client.curate_round(run, long, 30)
    assert second["round"] == 1 and len(second["samples"]) == 60


def test_upload_parts_are_idempotent_and_checked(
        http: httpx.Client, fortunes: list[dict[str, Any]], problem: Callable[..., Any]) -> None:
    run = new_run(http)
    upload = http.post(f"/v1/runs/{run}/uploads").json()
    base = f"/v1/runs/{run}/uploads/{upload['id']}"
    assert http.put(f"{base}/parts/1", json={"samples": fortunes[:50]}).json()["unchanged"] is False
    retry = http.put(f"{base}/parts/1", json={"samples": fortunes[:50]}).json()
    assert retry["unchanged"] is True and retry["total_samples"] == 50
    problem(http.put(f"{base}/parts/1", json={"samples": fortunes[50:60]}), 409, "part 1")
    problem(http.put(f"{base}/parts/2", json={"samples": fortunes[40:60]}), 422,
            fortunes[40]["id"], "part 1")
    problem(http.put(f"{base}/parts/0", json={"samples": fortunes[:1]}), 422, "part")
    assert http.get(base).json()["samples"] == 50
    body, key = {"upload": upload["id"], "budget": 10}, {"Idempotency-Key": "up-1"}
    round_ = http.post(f"/v1/runs/{run}/rounds", json=body, headers=key)
    assert round_.status_code == 200 and len(round_.json()["samples"]) == 50
    # The answer was lost, the caller retries the same POST: the same round, not a 404.
    assert http.post(f"/v1/runs/{run}/rounds", json=body, headers=key).json() == round_.json()
    problem(http.put(f"{base}/parts/3", json={"samples": fortunes[60:70]}), 409, "submitted")
    problem(http.post(f"/v1/runs/{run}/rounds", json=body), 409, "already submitted")
    empty = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    problem(http.post(f"/v1/runs/{run}/rounds", json={"upload": empty, "budget": 1}), 422,
            "no samples")
    assert http.delete(f"/v1/runs/{run}/uploads/{empty}").status_code == 204


def test_stateless_curate(client: DCESClient, http: httpx.Client,
                          fortunes: list[dict[str, Any]], problem: Callable[..., Any]) -> None:
    runs_before = http.get("/v1/runs").json()["total"]
    first = client.curate(fortunes[200:260], 10, config=NO_LM, reference=fortunes[:40])
    assert first["result"]["round"] == 0 and first["result"]["selected"] == 10
    second = client.curate(fortunes[260:320], 10, config=NO_LM, state=first["state"],
                           feedback={"eval_loss": 1.0})
    assert second["result"]["round"] == 1 and second["state"]["round"] == 2
    assert http.get("/v1/runs").json()["total"] == runs_before
    problem(http.post("/v1/curate", json={"samples": fortunes[:5], "budget": 1,
                                          "state": {"version": 99}}), 422, "state")
    with pytest.raises(DCESError) as err:
        client.curate(fortunes[:201], 1, config=NO_LM)
    assert err.value.status == 422 and "max_samples_per_request" in str(err.value)


def metric_values(http: httpx.Client) -> dict[str, float]:
    values = {}
    for line in http.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_editing_with_the_real_lm(client: DCESClient, http: httpx.Client,
                                  fortunes: list[dict[str, Any]]) -> None:
    """The one test that loads SmolLM2 (scoring the texts, which carry no log-probs, and editing
    the centers of a run that opts in to editing)."""
    response = http.post("/v1/runs", json={"config": {"edit": {"enabled": True,
                                                               "threshold": 0.7}}})
    run = response.json()["id"]
    before = metric_values(http)
    # Through the client: loading the LM can outlast the sync wait on a slow CPU (then a 202).
    result = client.curate_round(run, fortunes[600:700], 50)
    after = metric_values(http)
    assert result["scores"]["source"] == "lm"
    assert result["scores"]["length_trend"] > 0  # SmolLM2 finds short texts surprising
    assert -1 < result["scores"]["typicality_agreement"] < 1  # averaged with the pool's
    rise = result["scores"]["typicality_length_trend"]
    assert rise is not None and rise >= 0  # a rise removed from the typicality, if any
    stats = result["edit_stats"]
    assert after["dces_edits_total"] - before["dces_edits_total"] == stats["edits"]
    assert after["dces_edit_rate"] == pytest.approx(stats["edit_rate"])
    centers = [s for s in result["samples"] if s["role"] == "center"]
    assert stats["samples"] == len(centers) > 0 and stats["tokens"] > 0 and stats["edits"] > 0
    assert stats["edit_rate"] == pytest.approx(100 * stats["edits"] / stats["tokens"])
    originals = {s["id"]: s["text"] for s in fortunes[600:700]}
    edited = [s for s in centers if s["edits"]]
    assert edited and all(s["text"] != originals[s["id"]] for s in edited)
    for sample in edited:
        for edit in sample["edits"]:
            assert originals[sample["id"]][edit["start"]:edit["end"]] == edit["old"]
            assert edit["p"] > 0.7  # the run's threshold, not the default 0.5


def test_metrics_count_requests_rounds_and_samples(
        http: httpx.Client, client: DCESClient, fortunes: list[dict[str, Any]]) -> None:
    key = 'dces_http_requests_total{method="POST",route="/v1/runs/{run_id}/rounds",status="200"}'
    before = metric_values(http)
    result = client.curate_round(new_run(http), fortunes[200:300], 25)
    client.curate(fortunes[200:250], 5, config=NO_LM)
    after = metric_values(http)

    def grew(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert grew('dces_rounds_curated_total{kind="run"}') == 1
    assert grew('dces_rounds_curated_total{kind="stateless"}') == 1
    assert grew("dces_samples_in_total") == 150 and grew("dces_samples_selected_total") == 30
    assert grew(key) == 1 and grew('dces_round_duration_seconds_count{kind="run"}') == 1
    rejected = sum(v for k, v in after.items() if k.startswith("dces_samples_rejected_total{"))
    assert rejected >= sum(result["rejected"].values())
    assert after["dces_worker_up"] == 1 and after["dces_queue_depth"] == 0
    assert "dces_edit_rate" in after and "dces_edit_tokens_total" in after
    assert not math.isnan(after["dces_edits_total"])


def test_client_errors_survive_pickling() -> None:
    import pickle


    err = pickle.loads(pickle.dumps(DCESError(422, {"title": "Unprocessable", "detail": "budget"})))
    assert err.status == 422 and err.problem["detail"] == "budget" and "budget" in str(err)


def test_feedback_says_what_it_used_ignored_and_replaced(http: httpx.Client,
                                                         fortunes: list[dict[str, Any]]) -> None:
    known = http.get("/info").json()["feedback_metrics"]
    assert known["heldout_perplexity"] == "rise" and known["generation_entropy"] == "fall"
    run = new_run(http)
    assert http.post(f"/v1/runs/{run}/rounds",
                     json={"samples": fortunes[400:460], "budget": 10}).status_code == 200
    first = http.post(f"/v1/runs/{run}/feedback",
                      json={"metrics": {"eval_loss": 2.0, "my_metric": 7.0}})
    assert first.status_code == 201
    assert (first.json()["used"], first.json()["ignored"], first.json()["replaced"]) == (
        ["eval_loss"], ["my_metric"], [])
    second = http.post(f"/v1/runs/{run}/feedback",
                       json={"metrics": {"eval_loss": 1.5, "entropy": 3.0}})
    assert second.status_code == 200  # merged into the first
    body = second.json()
    assert body["metrics"] == {"eval_loss": 1.5, "my_metric": 7.0, "entropy": 3.0}
    assert (body["used"], body["ignored"], body["replaced"]) == (
        ["entropy", "eval_loss"], [], ["eval_loss"])


def test_a_round_short_of_its_budget_says_why(http: httpx.Client,
                                              fortunes: list[dict[str, Any]]) -> None:
    run = new_run(http)
    samples = [*fortunes[500:502], {"id": "tiny", "text": "ok"}]
    result = http.post(f"/v1/runs/{run}/rounds", json={"samples": samples, "budget": 10}).json()
    assert result["selected"] == 2
    assert result["shortfall"] == {
        "missing": 8, "reason": "only 2 of 3 candidates could be selected; the others were "
                                "rejected (1 too_short)"}
    full = http.post(f"/v1/runs/{run}/rounds",
                     json={"samples": fortunes[502:540], "budget": 5}).json()
    assert full["shortfall"] is None
    assert {s["reason"] for s in full["samples"] if not s["selected"]} <= {
        "quota_filled", "no_quota", "near_duplicate", "outlier", "implausible"}
    assert any(s["reason"] == "quota_filled" for s in full["samples"])


def test_head_answers_wherever_get_does_with_its_headers_and_no_body(http: httpx.Client) -> None:
    """A monitor's HEAD gets the GET's status and headers (its length too), never a 405."""
    run = new_run(http)
    for path in ("/livez", "/readyz", "/info", "/v1/runs", f"/v1/runs/{run}", "/metrics",
                 "/v1/runs/run_nope"):
        got, head = http.get(path), http.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        if path != "/metrics":  # the metrics change between the two requests
            assert head.headers["content-length"] == got.headers["content-length"], path
    missing = http.head(f"/v1/runs/{run}/rounds/7")
    assert missing.status_code == 404 and missing.content == b""
    assert missing.headers["content-type"] == "application/problem+json"
    key = 'dces_http_requests_total{method="HEAD",route="/v1/runs",status="200"}'
    assert metric_values(http)[key] >= 1
