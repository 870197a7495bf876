"""A round's health: diversity metrics of the candidates and the selection, plus alerts.

:func:`round_health` composes the metric functions of :mod:`curation.diversity` into one JSON-able
dict, and compares it with the run's history (the compact entries of earlier rounds) to raise
plain-language alerts when collapse sets in: a cluster losing its spread, the candidates
concentrating on fewer modes, or modes of the real data going missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from curation.config import HealthConfig
from curation.diversity import (
    compression_ratio,
    distinct_n,
    effective_clusters,
    missing_reference_clusters,
    mmd,
    occupancy,
    reference_coverage,
    vendi_score,
)

# A drop this close to a threshold counts as reaching it (float noise in e.g. 1 - 0.2 / 0.5).
_TOLERANCE = 1e-9
# A cluster's dispersion is the mean distance of its members to the centroid: with fewer members
# than this it is 0 or noise, and a "drop" would say nothing about collapse.
_MIN_MEMBERS = 2
_CRITICAL_FACTOR = 1.5
_LISTED_CLUSTERS = 10

# Earlier history entries within the alert window, each with how many rounds ago it was.
Window = list[tuple[int, dict[str, Any]]]


def _mean_dispersion(dispersion: dict[int, float], sizes: np.ndarray) -> float:
    """Size-weighted: the mean distance of all candidates to their centroids, so that a
    singleton cluster (dispersion 0) weighs as one sample, not as one cluster."""
    for cluster in dispersion:
        if not 0 <= cluster < sizes.size:
            raise ValueError(f"dispersion: cluster {cluster} is outside [0, k={sizes.size})")
    weights = np.array([sizes[c] for c in dispersion], dtype=np.float64)
    if weights.sum() == 0:
        return 0.0
    return float(np.dot(weights, list(dispersion.values())) / weights.sum())


def _severity(drop: float, threshold: float) -> str | None:
    if drop >= _CRITICAL_FACTOR * threshold - _TOLERANCE:
        return "critical"
    if drop >= threshold - _TOLERANCE:
        return "warning"
    return None


def _alert(kind: str, severity: str, cluster: int | None, message: str) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "cluster": cluster, "message": message}


def _rounds(n: int) -> str:
    return f"{n} round" if n == 1 else f"{n} rounds"


def _drop(before: float, now: float) -> float:
    return 1.0 - now / before if before > 0 else 0.0


def _peak(past: list[tuple[Any, int]]) -> tuple[float, int] | None:
    """The highest of ``(value, rounds ago)`` pairs, the earliest on ties; None values skipped."""
    known = [(float(v), ago) for v, ago in past if v is not None]
    return max(known) if known else None


def _dispersion_alerts(
    entry: dict[str, Any],
    window: Window,
    baseline: dict[int, float],
    sizes: np.ndarray,
    threshold: float,
) -> list[dict[str, Any]]:
    """Per cluster, the larger drop against its baseline or its peak in the window."""
    alerts = []
    for key, now in sorted(entry["cluster_dispersion"].items(), key=lambda kv: int(kv[0])):
        cluster = int(key)
        if sizes[cluster] < _MIN_MEMBERS:
            continue
        references = []
        peak = _peak([(e.get("cluster_dispersion", {}).get(key), ago) for ago, e in window])
        if peak is not None:
            references.append((peak[0], f"in {_rounds(peak[1])}"))
        if baseline.get(cluster, 0.0) > 0:
            references.append((baseline[cluster], "compared with its baseline"))
        if not references:
            continue
        before, when = max(references, key=lambda r: _drop(r[0], now))
        drop = _drop(before, now)
        severity = _severity(drop, threshold)
        if severity:
            alerts.append(
                _alert(
                    "dispersion_drop",
                    severity,
                    cluster,
                    f"cluster {cluster} lost {drop:.0%} of its dispersion {when} "
                    f"({before:.3f} → {now:.3f})",
                )
            )
    return alerts


def _effective_clusters_alert(
    entry: dict[str, Any], window: Window, threshold: float
) -> dict[str, Any] | None:
    peak = _peak([(e.get("effective_clusters"), ago) for ago, e in window])
    if peak is None:
        return None
    before, rounds = peak
    now = entry["effective_clusters"]
    severity = _severity(_drop(before, now), threshold)
    if severity is None:
        return None
    return _alert(
        "effective_clusters_drop",
        severity,
        None,
        f"effective number of clusters fell from {before:.1f} to {now:.1f} in {_rounds(rounds)}: "
        "candidates are concentrating on fewer modes",
    )


def _coverage_alert(
    coverage: float,
    labels: np.ndarray,
    reference_labels: np.ndarray,
    k: int,
    minimum: float,
) -> dict[str, Any] | None:
    if coverage >= minimum:
        return None
    shortfall, allowed = 1.0 - coverage, 1.0 - minimum
    severity = "critical" if shortfall >= _CRITICAL_FACTOR * allowed - _TOLERANCE else "warning"
    missing = missing_reference_clusters(labels, reference_labels, k)
    modes = int(np.count_nonzero(occupancy(reference_labels, k, "reference_labels")))
    listed = ", ".join(str(c) for c in missing[:_LISTED_CLUSTERS])
    if len(missing) > _LISTED_CLUSTERS:
        listed += ", ..."
    return _alert(
        "reference_coverage",
        severity,
        None,
        f"candidates reach only {coverage:.0%} of the reference: {len(missing)} of its "
        f"{modes} modes have no candidate (clusters {listed})",
    )


def _check_rows(name: str, rows: int, other: str, expected: int) -> None:
    if rows != expected:
        raise ValueError(f"{name}: {rows} rows, but {other} has {expected}")


def round_health(
    *,
    labels: np.ndarray,
    embeddings: np.ndarray,
    dispersion: dict[int, float],
    baseline: dict[int, float],
    selected_texts: Sequence[str],
    selected_embeddings: np.ndarray,
    reference_embeddings: np.ndarray | None,
    reference_labels: np.ndarray | None,
    k: int,
    history: list[dict[str, Any]],
    round_index: int,
    config: HealthConfig,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(health, history_entry)`` of one round.

    ``labels``/``embeddings``/``dispersion`` describe all candidates, ``selected_*`` what the round
    returns, ``baseline`` each cluster's reference dispersion. ``history`` holds the entries of
    earlier rounds; the last ``config.alert_window`` rounds of it form the alert window.
    Reference metrics are None without a reference (MMD also with fewer than 2 rows per side).
    """
    _check_rows("embeddings", len(embeddings), "labels", len(labels))
    _check_rows(
        "selected_embeddings", len(selected_embeddings), "selected_texts", len(selected_texts)
    )
    sizes = occupancy(labels, k)
    metrics: dict[str, Any] = {
        "effective_clusters": effective_clusters(labels, k),
        "clusters_occupied": int(np.count_nonzero(sizes)),
        "mean_dispersion": _mean_dispersion(dispersion, sizes),
        "vendi": vendi_score(embeddings, config.vendi_sample, seed),
        "selected_vendi": vendi_score(selected_embeddings, config.vendi_sample, seed),
        "distinct_1": distinct_n(selected_texts, 1),
        "distinct_2": distinct_n(selected_texts, 2),
        "compression_ratio": compression_ratio(selected_texts),
        "mmd_to_reference": None,  # the candidates'
        "selected_mmd_to_reference": None,  # the selection's: the quotas should bring it closer
        "reference_coverage": None,
    }
    if reference_embeddings is not None and len(reference_embeddings) >= 2:
        for key, rows in (("mmd_to_reference", embeddings),
                          ("selected_mmd_to_reference", selected_embeddings)):
            if len(rows) >= 2:
                metrics[key] = mmd(rows, reference_embeddings, config.mmd_sample, seed)
    if reference_labels is not None and len(reference_labels) == 0:
        reference_labels = None  # an empty reference has no clusters to cover
    if reference_labels is not None:
        metrics["reference_coverage"] = reference_coverage(labels, reference_labels, k)
    entry = {
        "round": round_index,
        **metrics,
        "cluster_dispersion": {str(c): float(v) for c, v in sorted(dispersion.items())},
    }
    window = [
        (ago, e)
        for e in history
        if 0 < (ago := round_index - int(e["round"])) <= config.alert_window
    ]
    alerts = [
        *_dispersion_alerts(entry, window, baseline, sizes, config.dispersion_drop_alert),
        _effective_clusters_alert(entry, window, config.effective_clusters_drop_alert),
    ]
    if reference_labels is not None:
        alerts.append(
            _coverage_alert(
                metrics["reference_coverage"],
                labels,
                reference_labels,
                k,
                config.min_coverage_alert,
            )
        )
    return {**metrics, "alerts": [a for a in alerts if a is not None]}, entry
