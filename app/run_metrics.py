"""Collapse metrics per run, with a ``run`` label bounded to the most recent runs.

A label per run id would grow without end on a shared service, so only the ``cap`` runs that
committed a round most recently keep series (``DCES_METRICS_RUNS``); the next run pushes the
least recent one's series out of every metric. The values are those of the run's latest round,
set when the round commits: after a restart a run has no series until its next round.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram


class RunMetrics:
    """Per-run gauges and a round-duration histogram; the worker thread sets them while
    requests read or forget them, hence the lock."""

    def __init__(self, registry: CollectorRegistry, cap: int, buckets: Iterable[float]) -> None:
        self.cap = cap
        self._kinds: OrderedDict[str, set[str]] = OrderedDict()  # run -> alert kinds seen
        self._lock = threading.Lock()
        r = registry
        self.latest_round = Gauge("dces_run_latest_round", "The run's latest committed round.",
                                  ["run"], registry=r)
        self.effective_clusters = Gauge(
            "dces_run_effective_clusters",
            "Effective number of clusters of the latest round's candidates (exp of entropy).",
            ["run"], registry=r)
        self.reference_coverage = Gauge(
            "dces_run_reference_coverage",
            "Share of the reference's mass in clusters the latest round's candidates reach "
            "(absent when the run has no reference).", ["run"], registry=r)
        self.lost_reference_mass = Gauge(
            "dces_run_lost_reference_mass",
            "Share of the reference in modes the latest round's candidates have lost (a "
            "size-aware test; absent when the run has no reference).", ["run"], registry=r)
        self.edit_rate = Gauge("dces_run_edit_rate", "Edits per 100 tokens in the latest round.",
                               ["run"], registry=r)
        self.alerts = Gauge("dces_run_alerts", "Alerts active after the latest round, by kind.",
                            ["run", "kind"], registry=r)
        self.round_seconds = Histogram("dces_run_round_duration_seconds",
                                       "Engine time per round of the run.", ["run"],
                                       buckets=tuple(buckets), registry=r)

    def observe(self, run_id: str, result: Mapping[str, Any]) -> None:
        """Set the run's series from a committed round's result (``RoundResult.to_dict()``)."""
        if self.cap <= 0:
            return
        health = result.get("health", {})
        with self._lock:
            kinds = self._kinds.setdefault(run_id, set())
            self._kinds.move_to_end(run_id)
            while len(self._kinds) > self.cap:
                self._remove(*self._kinds.popitem(last=False))
            self.latest_round.labels(run_id).set(int(result.get("round", 0)))
            self._set_optional(self.effective_clusters, run_id, health.get("effective_clusters"))
            self._set_optional(self.reference_coverage, run_id, health.get("reference_coverage"))
            self._set_optional(self.lost_reference_mass, run_id,
                               health.get("lost_reference_mass"))
            self.edit_rate.labels(run_id).set(
                float(result.get("edit_stats", {}).get("edit_rate", 0.0)))
            self.round_seconds.labels(run_id).observe(
                float(result.get("timings", {}).get("total", 0.0)))
            counts = Counter(str(alert.get("kind")) for alert in health.get("alerts", []))
            kinds.update(counts)
            for kind in kinds:  # a kind seen before and inactive now reads 0, not stale
                self.alerts.labels(run_id, kind).set(counts.get(kind, 0))

    def forget(self, run_id: str) -> None:
        """Drop a deleted run's series."""
        with self._lock:
            kinds = self._kinds.pop(run_id, None)
            if kinds is not None:
                self._remove(run_id, kinds)

    def _remove(self, run_id: str, kinds: set[str]) -> None:
        for metric in (self.latest_round, self.effective_clusters, self.reference_coverage,
                       self.lost_reference_mass, self.edit_rate, self.round_seconds):
            _discard(metric, run_id)
        for kind in kinds:
            _discard(self.alerts, run_id, kind)

    @staticmethod
    def _set_optional(gauge: Gauge, run_id: str, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            gauge.labels(run_id).set(float(value))
        else:
            _discard(gauge, run_id)


def _discard(metric: Gauge | Histogram, *labels: str) -> None:
    """``metric.remove`` of a series that may never have been set (coverage without a
    reference): older prometheus-client releases raise KeyError for it."""
    with suppress(KeyError):
        metric.remove(*labels)
