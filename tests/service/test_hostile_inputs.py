"""Inputs a probe of a real ``dces serve`` found answered with a 500, each now a 422 naming the
field: generator log-probabilities whose sum overflows a float. One real server process, over
real HTTP; nothing is stored by a request that is refused.
"""

from __future__ import annotations

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
