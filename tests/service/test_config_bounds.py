"""Every bound of every config setting, from its declaration (``iter_bounds``): a value just outside
it, of the wrong type or not finite is a ConfigError naming the setting in the library and a 422
naming it and its limit at run creation in the service's app; the values at its edges are kept."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from functools import reduce
from typing import Any

import httpx
import pytest

from curation.bounds import Bound, ConfigError, iter_bounds
from curation.config import CurationConfig
from curation.device import cuda_available

from .conftest import InProcessServer, assert_problem

BOUNDS = dict(iter_bounds(CurationConfig))


def section_of(path: str) -> Any:
    """The default section that holds the setting at ``path`` (``config.ratio.r_max``)."""
    return reduce(getattr, path.split(".")[1:-1], CurationConfig())


def override(path: str, value: Any) -> dict[str, Any]:
    """``{"ratio": {"r_max": value}}`` for ``config.ratio.r_max``."""
    *sections, name = path.split(".")[1:]
    return reduce(lambda inner, key: {key: inner}, reversed(sections), {name: value})


def step(bound: Bound, value: float, direction: int) -> float:
    """The nearest value past ``value`` in ``direction`` (+1 or -1) that the setting can hold."""
    return value + direction if bound.kind is int else math.nextafter(value, direction * math.inf)


def outside(bound: Bound, section: Any) -> list[Any]:
    """Values the bound refuses: just past each limit, of another type, not finite, null."""
    values: list[Any] = [] if bound.nullable else [None]
    if bound.kind is bool:
        return [*values, "true", 1]
    if bound.kind is str:
        return [*values, 5, True, *(["fp8"] if bound.choices else [])]
    values += ["1", True, [1]]
    values += [1.5] if bound.kind is int else [math.nan, math.inf, -math.inf]
    low, high = bound.limits(section)
    if low is not None:
        values.append(low if bound.low_open else step(bound, low, -1))
    if high is not None:
        values.append(high if bound.high_open else step(bound, high, +1))
    return values


def edges(bound: Bound, section: Any) -> list[Any]:
    """The extreme values the bound accepts."""
    values: list[Any] = [None] if bound.nullable else []
    if bound.kind is bool:
        return [*values, False, True]
    if bound.kind is str:
        # cuda is a value the bound accepts, refused on a machine without a GPU (tested below).
        choices = [c for c in bound.choices if c != "cuda" or cuda_available()]
        return [*values, *(choices or ["a-model"])]
    low, high = bound.limits(section)
    if low is not None:
        values.append(step(bound, low, +1) if bound.low_open else low)
    if high is not None:
        values.append(step(bound, high, -1) if bound.high_open else high)
    return values


OUTSIDE = [pytest.param(path, value, id=f"{path}={value!r}")
           for path, bound in BOUNDS.items() for value in outside(bound, section_of(path))]
EDGES = [pytest.param(path, value, id=f"{path}={value!r}")
         for path, bound in BOUNDS.items() for value in edges(bound, section_of(path))]


def test_every_setting_has_one_bound() -> None:
    def leaves(data: dict[str, Any], path: str) -> Iterator[str]:
        for key, value in data.items():
            yield from leaves(value, f"{path}.{key}") if isinstance(value, dict) \
                else [f"{path}.{key}"]

    assert list(BOUNDS) == list(leaves(CurationConfig().to_dict(), "config"))


@pytest.mark.parametrize(("path", "value"), OUTSIDE)
def test_out_of_bound_is_a_config_error_naming_the_setting(path: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        CurationConfig.from_dict(override(path, value))
    assert caught.value.field == path
    assert BOUNDS[path].text in caught.value.message
    assert str(caught.value) == f"{path}: {caught.value.message}"


@pytest.mark.parametrize(("path", "value"), EDGES)
def test_edge_values_are_accepted(path: str, value: Any) -> None:
    section, name = path.rsplit(".", 1)
    data = override(path, value)
    # A setting whose low bound is this one (r_max >= r_min) follows it to its edge.
    reduce(lambda d, key: d[key], section.split(".")[1:], data).update({
        other.rsplit(".", 1)[1]: value for other, bound in BOUNDS.items()
        if other.rsplit(".", 1)[0] == section and bound.low == name})
    config = CurationConfig.from_dict(data)
    assert reduce(getattr, path.split(".")[1:], config) == value


@pytest.mark.parametrize(("data", "field"), [
    ({"ratio": {"r9": 1}}, "config.ratio.r9"),
    ({"nonsense": {}}, "config.nonsense"),
    ({"ratio": 0.5}, "config.ratio"),
    ({"edit": None}, "config.edit"),
])
def test_unknown_keys_and_non_objects_name_their_path(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CurationConfig.from_dict(data)
    assert caught.value.field == field


DEVICES = [path for path in BOUNDS if path.endswith(".device")]


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("path", DEVICES)
def test_cuda_without_a_gpu_is_a_config_error_naming_the_setting(path: str) -> None:
    assert DEVICES == ["config.embed.device", "config.edit.device"]
    with pytest.raises(ConfigError) as caught:
        CurationConfig.from_dict(override(path, "cuda"))
    assert caught.value.field == path
    assert "no CUDA device" in caught.value.message


def test_onnx_backends_refuse_cuda() -> None:
    with pytest.raises(ConfigError) as caught:
        CurationConfig.from_dict({"embed": {"backend": "onnx-int8", "device": "cuda"}})
    assert caught.value.field == ("config.embed.device" if not cuda_available()
                                  else "config.embed.backend")


@pytest.fixture(scope="module")
def http(start_app: Callable[..., InProcessServer]) -> Iterator[httpx.Client]:
    """One app for every case: what is checked is the API's answer, not the process."""
    with start_app().http() as client:
        yield client


@pytest.mark.parametrize(("path", "value"), OUTSIDE)
def test_out_of_bound_is_422_at_run_creation(http: httpx.Client, path: str, value: Any) -> None:
    # Raw JSON: NaN and Infinity must reach the server (httpx's json= refuses them).
    body = json.dumps({"name": "bounds", "config": override(path, value)})
    response = http.post("/v1/runs", content=body, headers={"content-type": "application/json"})
    problem = assert_problem(response, 422, path, BOUNDS[path].text)
    assert any(e["field"] == path and BOUNDS[path].text in e["message"]
               for e in problem["errors"])


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("path", DEVICES)
def test_cuda_without_a_gpu_is_422_at_run_creation(http: httpx.Client, path: str) -> None:
    response = http.post("/v1/runs", json={"name": "cuda", "config": override(path, "cuda")})
    problem = assert_problem(response, 422, path, "no CUDA device")
    assert [e["field"] for e in problem["errors"]] == [path]
