"""A round's health: diversity metrics of the candidates and the selection, plus alerts.

:func:`round_health` composes the metric functions of :mod:`curation.diversity` into one JSON-able
dict, and compares it with the run's history (the compact entries of earlier rounds) to raise
plain-language alerts when collapse sets in: a cluster losing its spread, the candidates
concentrating on fewer modes, or modes of the real data going missing (:mod:`curation.modes`:
a test that knows the round's size, so that a small round of real data raises no alarm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curation.config import HealthConfig
from curation.diversity import (
    compression_ratio,
    distinct_n,
    effective_clusters,
    mmd,
    occupancy,
    reference_coverage,
    vendi_score,
)
from curation.modes import ModeLoss, compare_mixes, find_lost_modes

# A drop this close to a threshold counts as reaching it (float noise in e.g. 1 - 0.2 / 0.5).
_TOLERANCE = 1e-9
_CRITICAL_FACTOR = 1.5
_LISTED_CLUSTERS = 10
_LISTED_MODES = 5  # lost modes named with an example in an alert's message
_EXAMPLE_CHARS = 80

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
    config: HealthConfig,
) -> list[dict[str, Any]]:
    """Per cluster, the larger drop against its baseline or its peak in the window. A cluster's
    dispersion is the mean distance of its members to the centroid: with few members it is
    noise (a round of real data would alarm), so smaller clusters are skipped."""
    alerts = []
    for key, now in sorted(entry["cluster_dispersion"].items(), key=lambda kv: int(kv[0])):
        cluster = int(key)
        if sizes[cluster] < config.dispersion_min_members:
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
        severity = _severity(drop, config.dispersion_drop_alert)
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


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return f"“{flat[:_EXAMPLE_CHARS]}…”" if len(flat) > _EXAMPLE_CHARS else f"“{flat}”"


def _named_modes(loss: ModeLoss, source: str, examples: Mapping[int, str]) -> str:
    """The depleted clusters, the largest first, each with its numbers and a real example."""
    named = []
    for mode in loss.depleted[:_LISTED_MODES]:
        example = examples.get(mode.cluster)
        named.append(
            f"cluster {mode.cluster} ({mode.reference_share:.1%} of {source}; "
            f"{mode.candidates} {'candidate' if mode.candidates == 1 else 'candidates'} where "
            f"{mode.expected:.0f} were expected"
            + (f"; e.g. {_quote(example)}" if example else "") + ")"
        )
    more = len(loss.depleted) - len(named)
    return "; ".join(named) + (f"; and {more} more" if more > 0 else "")


def _evidence(loss: ModeLoss) -> str:
    return (f"missing mass {loss.missing_mass:.2f} against {loss.null_missing_mass:.2f} by "
            f"chance, p = {loss.p_value:.2g}")


def _modes(count: int) -> str:
    return f"{count} mode" if count == 1 else f"{count} modes"


def _mode_loss_alert(
    loss: ModeLoss, previous: list[int] | None, examples: Mapping[int, str], config: HealthConfig
) -> dict[str, Any] | None:
    """Modes of the real data the candidates lack."""
    if not loss.lost:
        return None
    severity = "critical" if loss.lost_reference_mass >= config.critical_lost_mass else "warning"
    new = "" if previous is None else (
        f", {len(set(loss.clusters) - set(previous))} of them new since the last round")
    return _alert(
        "mode_loss",
        severity,
        loss.depleted[0].cluster,
        f"candidates have lost {_modes(len(loss.depleted))} of the real data holding "
        f"{loss.lost_reference_mass:.0%} of it{new} ({_evidence(loss)}): "
        + _named_modes(loss, "the reference", examples),
    )


def _mode_drop_alert(
    drop: ModeLoss, since: int, examples: Mapping[int, str], config: HealthConfig
) -> dict[str, Any] | None:
    """Modes the generator wrote in an earlier round of the window and has since dropped."""
    if not drop.lost:
        return None
    severity = "critical" if drop.lost_reference_mass >= config.critical_lost_mass else "warning"
    return _alert(
        "mode_drop",
        severity,
        drop.depleted[0].cluster,
        f"since round {since} the candidates have dropped {_modes(len(drop.depleted))} that "
        f"held {drop.lost_reference_mass:.0%} of that round's candidates ({_evidence(drop)}): "
        + _named_modes(drop, f"round {since}", examples),
    )


def _mode_drop(
    sizes: np.ndarray, window: Window, config: HealthConfig, seed: int
) -> tuple[ModeLoss, int] | None:
    """This round's mix against the earliest round of the window with the same clusters."""
    earlier = [(ago, e) for ago, e in window
               if e.get("cluster_counts") is not None and e.get("k") == len(sizes)]
    if not earlier or not sizes.sum():
        return None
    _, entry = max(earlier, key=lambda item: item[0])
    before = np.zeros(len(sizes), dtype=np.int64)
    for cluster, count in entry["cluster_counts"].items():
        before[int(cluster)] = count
    if not before.sum():
        return None
    drop = compare_mixes(sizes, before, alpha=config.mode_loss_alpha,
                         lost_share=config.lost_share, tail_mass=config.tail_mass, seed=seed)
    return drop, int(entry["round"])


_MODE_KEYS = ("lost_modes", "lost_reference_mass", "lost_reference_mass_delta", "tail_coverage",
              "missing_mass", "missing_mass_by_chance", "mode_loss_p", "lost_clusters")
_DROP_KEYS = ("dropped_modes", "dropped_mass", "dropped_since_round", "mode_drop_p")


def _mode_metrics(loss: ModeLoss, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict (lost modes and their mass: 0 unless the test finds them) and the numbers
    that made it."""
    lost = loss.depleted if loss.lost else []
    mass = loss.lost_reference_mass if loss.lost else 0.0
    before = None if previous is None else previous.get("lost_reference_mass")
    return {
        "lost_modes": len(lost),
        "lost_reference_mass": mass,
        "lost_reference_mass_delta": None if before is None else mass - float(before),
        "tail_coverage": loss.tail_coverage,
        "missing_mass": loss.missing_mass,
        "missing_mass_by_chance": loss.null_missing_mass,
        "mode_loss_p": loss.p_value,
        "lost_clusters": [
            {"cluster": m.cluster, "reference_share": m.reference_share,
             "candidates": m.candidates, "expected": m.expected}
            for m in lost[:_LISTED_CLUSTERS]
        ],
    }


def _emptied(entry: dict[str, Any], previous: dict[str, Any] | None) -> int | None:
    """Clusters that held candidates in the previous round and hold none now."""
    if previous is None or "cluster_counts" not in previous:
        return None
    now = entry["cluster_counts"]
    return sum(1 for c, n in previous["cluster_counts"].items() if n > 0 and not now.get(c))


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
    reference_examples: Mapping[int, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(health, history_entry)`` of one round.

    ``labels``/``embeddings``/``dispersion`` describe all candidates, ``selected_*`` what the round
    returns, ``baseline`` each cluster's reference dispersion. ``history`` holds the entries of
    earlier rounds; the last ``config.alert_window`` rounds of it form the alert window.
    Reference metrics are None without a reference (MMD also with fewer than 2 rows per side).
    ``reference_examples`` holds a real text per cluster, quoted in a mode-loss alert.
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
    window = [
        (ago, e)
        for e in history
        if 0 < (ago := round_index - int(e["round"])) <= config.alert_window
    ]
    previous = next((e for ago, e in window if ago == 1), None)
    loss = None
    if reference_labels is not None:
        metrics["reference_coverage"] = reference_coverage(labels, reference_labels, k)
        loss = find_lost_modes(labels, reference_labels, k, alpha=config.mode_loss_alpha,
                               lost_share=config.lost_share, tail_mass=config.tail_mass,
                               seed=seed + round_index)
        metrics.update(_mode_metrics(loss, previous))
    else:
        metrics.update({key: None for key in _MODE_KEYS})
    entry = {
        "round": round_index,
        **{key: v for key, v in metrics.items() if key != "lost_clusters"},
        "cluster_dispersion": {str(c): float(v) for c, v in sorted(dispersion.items())},
        "k": k,
        "cluster_counts": {str(c): int(n) for c, n in enumerate(sizes) if n},
        "lost_cluster_ids": None if loss is None or not loss.lost else loss.clusters,
    }
    metrics["emptied_clusters"] = _emptied(entry, previous)
    dropped = _mode_drop(sizes, window, config, seed + round_index + 1)
    metrics.update(dict.fromkeys(_DROP_KEYS) if dropped is None else {
        "dropped_modes": len(dropped[0].depleted) if dropped[0].lost else 0,
        "dropped_mass": dropped[0].lost_reference_mass if dropped[0].lost else 0.0,
        "dropped_since_round": dropped[1],
        "mode_drop_p": dropped[0].p_value,
    })
    entry.update({key: metrics[key] for key in ("emptied_clusters", *_DROP_KEYS)})
    alerts = [
        *_dispersion_alerts(entry, window, baseline, sizes, config),
        _effective_clusters_alert(entry, window, config.effective_clusters_drop_alert),
    ]
    if loss is not None:
        alerts.append(_mode_loss_alert(
            loss, None if previous is None else previous.get("lost_cluster_ids") or [],
            reference_examples or {}, config))
    if dropped is not None:
        alerts.append(_mode_drop_alert(*dropped, reference_examples or {}, config))
    return {**metrics, "alerts": [a for a in alerts if a is not None]}, entry
