"""Per-run collapse metrics on /metrics: set when a round commits, kept for the most recent
``DCES_METRICS_RUNS`` runs only, removed with their run. A real server with a cap of 2, and the
alert bookkeeping on its own (a real round may raise no alert)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import ROUND_BUCKETS
from app.run_metrics import RunMetrics

from .conftest import NO_LM, DCESServer

PER_RUN = ("dces_run_latest_round", "dces_run_effective_clusters", "dces_run_reference_coverage",
           "dces_run_lost_reference_mass", "dces_run_edit_rate",
           "dces_run_round_duration_seconds_count")


@pytest.fixture(scope="module")
def http(start_server: Callable[..., DCESServer]) -> Iterator[httpx.Client]:
    with start_server(metrics_runs=2).http() as client:
        yield client


def samples_by_run(text: str) -> dict[str, dict[str, float]]:
    """{run: {name or name{kind}: value}} of the per-run series in a /metrics text."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "run" in s.labels:
                name = f"{s.name}{{{s.labels['kind']}}}" if "kind" in s.labels else s.name
                out.setdefault(s.labels["run"], {})[name] = s.value
    return out


def run_with_a_round(http: httpx.Client, fortunes: list[dict[str, Any]], start: int
                     ) -> tuple[str, dict[str, Any]]:
    run = http.post("/v1/runs", json={"config": NO_LM}).json()["id"]
    assert http.post(f"/v1/runs/{run}/reference",
                     json={"samples": fortunes[start + 30:start + 50]}).is_success
    result = http.post(f"/v1/runs/{run}/rounds",
                       json={"budget": 5, "samples": fortunes[start:start + 30]})
    assert result.status_code == 200, result.text
    return run, result.json()


def test_a_round_sets_its_runs_series_and_the_cap_drops_the_oldest_run(
        http: httpx.Client, fortunes: list[dict[str, Any]]) -> None:
    first, result = run_with_a_round(http, fortunes, 0)
    series = samples_by_run(http.get("/metrics").text)[first]
    health = result["health"]
    assert series["dces_run_latest_round"] == result["round"] == 0
    assert series["dces_run_effective_clusters"] == pytest.approx(health["effective_clusters"])
    assert series["dces_run_reference_coverage"] == pytest.approx(health["reference_coverage"])
    assert series["dces_run_lost_reference_mass"] == pytest.approx(
        health["lost_reference_mass"])
    assert series["dces_run_edit_rate"] == result["edit_stats"]["edit_rate"]
    assert series["dces_run_round_duration_seconds_count"] == 1
    assert series["dces_run_round_duration_seconds_sum"] == pytest.approx(
        result["timings"]["total"])
    for kind in {a["kind"] for a in health["alerts"]}:
        assert series[f"dces_run_alerts{{{kind}}}"] == sum(
            a["kind"] == kind for a in health["alerts"])

    second, _ = run_with_a_round(http, fortunes, 100)
    assert set(samples_by_run(http.get("/metrics").text)) == {first, second}
    third, _ = run_with_a_round(http, fortunes, 200)
    runs = samples_by_run(http.get("/metrics").text)
    assert set(runs) == {second, third}, "the least recent run's series are gone"
    assert all(name in runs[third] for name in PER_RUN)

    assert http.delete(f"/v1/runs/{third}").status_code == 204
    assert set(samples_by_run(http.get("/metrics").text)) == {second}


def test_alert_kinds_read_zero_once_inactive_and_leave_with_their_run() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry, 1, ROUND_BUCKETS)

    def alerts(run: str) -> dict[str, float | None]:
        return {kind: registry.get_sample_value("dces_run_alerts", {"run": run, "kind": kind})
                for kind in ("dispersion_drop", "mode_loss")}

    def round_with(*kinds: str) -> dict[str, Any]:
        return {"round": 0, "health": {"alerts": [{"kind": k} for k in kinds],
                                       "reference_coverage": None}}

    metrics.observe("a", round_with("dispersion_drop", "dispersion_drop", "mode_loss"))
    assert alerts("a") == {"dispersion_drop": 2, "mode_loss": 1}
    metrics.observe("a", round_with("dispersion_drop"))
    assert alerts("a") == {"dispersion_drop": 1, "mode_loss": 0}
    assert registry.get_sample_value("dces_run_reference_coverage", {"run": "a"}) is None
    metrics.observe("b", round_with())
    assert alerts("a") == {"dispersion_drop": None, "mode_loss": None}
    assert registry.get_sample_value("dces_run_latest_round", {"run": "a"}) is None
    assert registry.get_sample_value("dces_run_latest_round", {"run": "b"}) == 0


def test_a_cap_of_zero_keeps_no_run_series() -> None:
    registry = CollectorRegistry()
    RunMetrics(registry, 0, ROUND_BUCKETS).observe("a", {"round": 3, "health": {}})
    assert registry.get_sample_value("dces_run_latest_round", {"run": "a"}) is None
