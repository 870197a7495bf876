"""Prometheus metrics, served on the main port at ``/metrics``.

Each app has its own registry (tests and benchmarks may build several apps in one process).
Request metrics are labelled by route template (``/v1/runs/{run_id}``), never by raw path, so
their cardinality stays bounded; per-run collapse metrics (:mod:`app.run_metrics`) keep a ``run``
label only for the most recent runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from app.run_metrics import RunMetrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
ROUND_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int], worker_up: Callable[[], bool],
                 runs_with_series: int) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("dces_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("dces_http_request_duration_seconds", "HTTP request latency.",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        Gauge("dces_queue_depth", "Jobs waiting for the model worker.",
              registry=r).set_function(lambda: float(queue_depth()))
        Gauge("dces_worker_up", "1 while the model worker thread is alive.",
              registry=r).set_function(lambda: float(worker_up()))
        self.rounds = Counter("dces_rounds_curated", "Rounds curated (run rounds and stateless).",
                              ["kind"], registry=r)
        self.round_seconds = Histogram("dces_round_duration_seconds", "Engine time per round.",
                                       ["kind"], buckets=ROUND_BUCKETS, registry=r)
        self.samples_in = Counter("dces_samples_in", "Candidate samples received.", registry=r)
        self.samples_selected = Counter("dces_samples_selected", "Samples selected.", registry=r)
        self.samples_rejected = Counter("dces_samples_rejected", "Samples rejected, by reason.",
                                        ["reason"], registry=r)
        self.edit_tokens = Counter("dces_edit_tokens", "Tokens scored by the editor.", registry=r)
        self.edits = Counter("dces_edits", "Tokens the editor resampled.", registry=r)
        self.edit_rate = Gauge("dces_edit_rate", "Edits per 100 tokens in the latest round.",
                               registry=r)
        self.jobs = Counter("dces_jobs_finished", "Round jobs finished, by outcome.", ["status"],
                            registry=r)
        self.runs = RunMetrics(r, runs_with_series, ROUND_BUCKETS)

    def observe_round(self, result: dict[str, Any], kind: str) -> None:
        """Count a curated round from its ``RoundResult.to_dict()``."""
        self.rounds.labels(kind).inc()
        self.round_seconds.labels(kind).observe(float(result.get("timings", {}).get("total", 0.0)))
        self.samples_in.inc(len(result.get("samples", [])))
        self.samples_selected.inc(int(result.get("selected", 0)))
        for reason, count in result.get("rejected", {}).items():
            self.samples_rejected.labels(reason).inc(count)
        stats = result.get("edit_stats", {})
        self.edit_tokens.inc(int(stats.get("tokens", 0)))
        self.edits.inc(int(stats.get("edits", 0)))
        self.edit_rate.set(float(stats.get("edit_rate", 0.0)))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
