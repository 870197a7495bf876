"""Inputs a probe of a real ``dces serve`` found answered with a 500, each now a 422 naming the
field: generator log-probabilities whose sum overflows a float, and a ``state`` handed back to
``POST /v1/curate`` whose fields have the wrong type, a non-finite number, or a history entry
the engine cannot read. One real server process, over real HTTP; nothing is stored by a request
that is refused.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .conftest import NO_LM, DCESServer

SAMPLES = [{"id": f"s{i}", "text": f"Sentence {i} about topic {i % 5}, with some words {i * 3}."}
           for i in range(30)]
# Each value is finite, but their sum (-2e308) is not: math.fsum raised OverflowError.
OVERFLOWING = {"id": "o", "text": "A sentence with generator scores.",
               "token_logprobs": [-1e308, -1e308]}


@pytest.fixture(scope="module")
def server(start_server: Callable[..., DCESServer]) -> DCESServer:
    return start_server()


@pytest.fixture(scope="module")
def http(server: DCESServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture(scope="module")
def run(http: httpx.Client) -> str:
    response = http.post("/v1/runs", json={"name": "hostile", "config": NO_LM})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def state(http: httpx.Client) -> dict[str, Any]:
    """The state after two stateless rounds: centroids, ratios and two history entries."""
    state = None
    for _ in range(2):
        response = http.post("/v1/curate", json={"samples": SAMPLES, "budget": 5,
                                                 "config": NO_LM, "state": state})
        assert response.status_code == 200, response.text
        state = response.json()["state"]
    assert state is not None and len(state["history"]) == 2
    return dict(state)


def post_raw(http: httpx.Client, path: str, body: str, method: str = "POST") -> httpx.Response:
    return http.request(method, path, content=body.encode(),
                        headers={"content-type": "application/json"})


def test_token_logprobs_whose_sum_overflows_are_a_422(
        http: httpx.Client, run: str, problem: Callable[..., Any]) -> None:
    upload = http.post(f"/v1/runs/{run}/uploads").json()["id"]
    sample = [OVERFLOWING]
    for method, path, body in (
            ("POST", f"/v1/runs/{run}/rounds", {"samples": sample, "budget": 1}),
            ("POST", "/v1/curate", {"samples": sample, "budget": 1, "config": NO_LM}),
            ("POST", f"/v1/runs/{run}/reference", {"samples": sample}),
            ("PUT", f"/v1/runs/{run}/uploads/{upload}/parts/1", {"samples": sample})):
        doc = problem(http.request(method, path, json=body), 422, "token_logprobs",
                      "lowest float")
        assert doc["errors"][0]["field"] == "samples[0]", (path, doc)
    assert http.get(f"/v1/runs/{run}/rounds").json()["rounds"] == []
    assert http.get(f"/v1/runs/{run}/reference").json()["total"] == 0
    assert http.get(f"/v1/runs/{run}/uploads/{upload}").json()["samples"] == 0


def _f32(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def _entry(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["history"][-1][field] = value
    return change


def _top(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state[field] = value
    return change


# (what changes in a good state, the field the 422 names); each was a 500 before, but NaN
# centroids, which curated a round from them.
BAD_STATES = [
    (_top("round", "1e400"), "state.round"),  # the float inf: int() raised OverflowError
    (_top("centroids", {"shape": [384], "f32le_b64": _f32([0.1] * 384)}),
     "state.centroids.shape"),  # IndexError
    (_top("centroids", {"shape": [2, 384], "f32le_b64": _f32([float("nan")] * 768)}),
     "state.centroids"),  # curated with NaN centroids
    (_top("baseline_dispersion", [1]), "state.baseline_dispersion"),  # AttributeError
    (_top("ratios", [0.5]), "state.ratios"),  # AttributeError
    (_top("last_feedback", {"heldout_perplexity": "high"}), "state.last_feedback"),
    (_top("last_feedback", {"heldout_perplexity": "1" + "0" * 400}),
     "state.last_feedback.heldout_perplexity"),  # math.isfinite raised OverflowError
    (_top("history", "abc"), "state.history"),  # TypeError
    (_top("history", [1, 2]), "state.history[0]"),  # TypeError
    (_top("history", [{}]), "state.history[0].round"),  # KeyError
    (_entry("round", None), "state.history[1].round"),  # TypeError
    (_entry("effective_clusters", "x"), "state.history[1].effective_clusters"),  # ValueError
    (_entry("cluster_counts", None), "state.history[1].cluster_counts"),  # AttributeError
    (_entry("cluster_counts", {"0": None}), "state.history[1].cluster_counts.0"),  # TypeError
]


@pytest.mark.parametrize(("change", "field"), BAD_STATES)
def test_a_malformed_state_is_a_422_naming_the_field(
        http: httpx.Client, state: dict[str, Any], problem: Callable[..., Any],
        change: Callable[[dict[str, Any]], None], field: str) -> None:
    bad = copy.deepcopy(state)
    change(bad)
    # Numbers JSON allows but Python cannot write (1e400, 400 digits) go in as written.
    # The body's feedback makes the engine read the state's last_feedback.
    body = json.dumps({"samples": SAMPLES, "budget": 5, "config": NO_LM, "state": bad,
                       "feedback": {"heldout_perplexity": 10.0}})
    body = body.replace('"1e400"', "1e400").replace('"1' + "0" * 400 + '"', "1" + "0" * 400)
    doc = problem(post_raw(http, "/v1/curate", body), 422, field)
    assert doc["type"] == "urn:dces:problem:invalid-input", doc


def test_states_the_service_wrote_are_still_accepted(
        http: httpx.Client, run: str, state: dict[str, Any]) -> None:
    """A stateless state and a run's stored one (GET /state) curate the next round."""
    response = http.post(f"/v1/runs/{run}/rounds", json={"samples": SAMPLES, "budget": 5})
    assert response.status_code == 200, response.text
    stored = http.get(f"/v1/runs/{run}/state").json()
    for given in (state, stored):
        response = http.post("/v1/curate", json={"samples": SAMPLES, "budget": 5,
                                                 "config": NO_LM, "state": given})
        assert response.status_code == 200, response.text
        assert response.json()["state"]["round"] == given["round"] + 1
