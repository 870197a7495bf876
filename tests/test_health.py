"""Health metrics on numpy embeddings and real texts; alerts over a JSON round-tripped history."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from curation.config import HealthConfig
from curation.diversity import (
    compression_ratio,
    distinct_n,
    distinct_n_windowed,
    effective_clusters,
    mmd,
    reference_coverage,
    vendi_score,
)
from curation.health import round_health

# What a collapsing generator emits: the same sentence with a word or two swapped.
REPETITIVE = [
    "The model is a helpful assistant and it answers the question.",
    "The model is a helpful assistant and it answers every question.",
    "The model is a helpful assistant and it answers the question well.",
    "The model is a helpful assistant and it answers the question.",
] * 10


@pytest.fixture(scope="module")
def varied(fortunes: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in fortunes[:40]]


def cloud(rng: np.random.Generator, n: int, center: np.ndarray, spread: float) -> np.ndarray:
    """``n`` L2-normalised float32 rows scattered around ``center``."""
    x = center + spread * rng.standard_normal((n, center.size))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def axis(d: int, *weights: float) -> np.ndarray:
    v = np.zeros(d)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


# --- effective clusters -----------------------------------------------------------------------


def test_effective_clusters_uniform_is_k_and_single_is_one() -> None:
    assert effective_clusters(np.repeat(np.arange(7), 5), 7) == pytest.approx(7.0)
    assert effective_clusters(np.full(30, 4), 7) == pytest.approx(1.0)
    assert effective_clusters(np.array([], dtype=np.int64), 3) == 0.0


def test_effective_clusters_discounts_small_clusters() -> None:
    labels = np.array([0] * 9 + [1])  # two clusters occupied, one of them barely
    expected = math.exp(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    assert effective_clusters(labels, 2) == pytest.approx(expected)
    assert 1.0 < expected < 1.4


@pytest.mark.parametrize(
    ("labels", "k", "match"),
    [
        (np.array([0, 3]), 3, r"labels: cluster ids must lie in \[0, 3\), got 0..3"),
        (np.array([-1, 0]), 3, r"labels: cluster ids must lie in \[0, 3\)"),
        (np.array([0.5]), 3, "labels: cluster ids must be integers"),
        (np.zeros((2, 2), dtype=int), 3, "labels: expected a 1-d array"),
        (np.array([0]), 0, "k must be >= 1, got 0"),
    ],
)
def test_effective_clusters_rejects_bad_labels(labels: np.ndarray, k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        effective_clusters(labels, k)


# --- vendi ------------------------------------------------------------------------------------


def test_vendi_identical_rows_is_one_and_orthogonal_rows_is_n() -> None:
    one = np.tile(axis(16, 1.0, 2.0, 3.0), (40, 1)).astype(np.float32)
    assert vendi_score(one, sample=512, seed=0) == pytest.approx(1.0, abs=1e-6)
    orthogonal = np.eye(20, 64, dtype=np.float32)  # n < d: the n x n kernel
    assert vendi_score(orthogonal, sample=512, seed=0) == pytest.approx(20.0, rel=1e-6)


def test_vendi_uses_the_d_by_d_matrix_when_rows_outnumber_dims() -> None:
    # 200 rows on 4 orthogonal directions in 8 dims: 4 distinct points, each repeated 50 times.
    rows = np.repeat(np.eye(4, 8, dtype=np.float32), 50, axis=0)
    assert vendi_score(rows, sample=512, seed=0) == pytest.approx(4.0, rel=1e-6)
    # The kernel is cosine: row norms do not matter.
    assert vendi_score(3.0 * rows, sample=512, seed=0) == pytest.approx(4.0, rel=1e-6)


def test_vendi_sample_caps_the_rows_and_is_deterministic_per_seed() -> None:
    orthogonal = np.eye(100, 128, dtype=np.float32)
    assert vendi_score(orthogonal, sample=30, seed=0) == pytest.approx(30.0, rel=1e-6)
    x = cloud(np.random.default_rng(0), 400, axis(16, 1.0), 1.0)
    first = vendi_score(x, sample=50, seed=1)
    assert vendi_score(x, sample=50, seed=1) == first
    assert vendi_score(x, sample=50, seed=2) != first
    assert vendi_score(x[:0], sample=50, seed=1) == 0.0


def test_vendi_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="sample must be >= 1, got 0"):
        vendi_score(np.eye(3, dtype=np.float32), sample=0, seed=0)
    with pytest.raises(ValueError, match=r"embeddings: expected a 2-d array .* got shape \(3,\)"):
        vendi_score(np.ones(3, dtype=np.float32), sample=10, seed=0)


# --- text metrics ----------------------------------------------------------------------------


def test_distinct_n_and_compression_score_repetitive_texts_lower(varied: list[str]) -> None:
    for n in (1, 2):
        assert distinct_n(REPETITIVE, n) < 0.5 * distinct_n(varied, n)
    assert distinct_n(varied, 2) > 0.8
    assert compression_ratio(REPETITIVE) < 0.5 * compression_ratio(varied)
    assert compression_ratio(["1." * 200]) < 0.1


def test_distinct_n_counts_lowercased_tokens_within_each_text() -> None:
    assert distinct_n(["a b A b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # "a b", "b a", "a b"
    assert distinct_n(["a b", "c d"], 2) == 1.0  # "b c" would span two texts
    assert distinct_n(["single"], 2) == 0.0
    assert distinct_n([], 1) == 0.0
    assert compression_ratio([]) == 0.0


def test_windowed_distinct_n_does_not_reward_shorter_texts(varied: list[str]) -> None:
    # The same real texts cut to their first five words: more distinct bigrams per bigram in
    # the plain ratio (fewer bigrams in all), about the same at a fixed count of bigrams.
    short = [" ".join(t.split()[:5]) for t in varied]
    assert distinct_n(short, 2) > distinct_n(varied, 2)
    shorter = distinct_n_windowed(short, 2, 100)
    assert shorter == pytest.approx(distinct_n_windowed(varied, 2, 100), abs=0.05)
    assert distinct_n_windowed(REPETITIVE, 2, 100) < 0.5 * shorter


def test_windowed_distinct_n_counts_whole_windows_only() -> None:
    # "a b", "b a", "a b" | "c d", "d e", "e f" | "f g" (partial, dropped)
    assert distinct_n_windowed(["a b a b", "c d e f g"], 2, 3) == pytest.approx((2 / 3 + 1) / 2)
    assert math.isnan(distinct_n_windowed(["a b"], 2, 2))  # one bigram, no whole window
    with pytest.raises(ValueError, match="window"):
        distinct_n_windowed(["a b"], 2, 0)


def test_text_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        distinct_n(["a b"], 0)
    with pytest.raises(TypeError, match="texts: expected a sequence of strings"):
        distinct_n("a b", 1)
    with pytest.raises(TypeError, match="texts: expected a sequence of strings"):
        compression_ratio("a b")


# --- mmd --------------------------------------------------------------------------------------


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    d = 32
    reference = cloud(rng, 400, axis(d, 1.0), 0.3)
    same = cloud(rng, 400, axis(d, 1.0), 0.3)
    nudged = cloud(rng, 400, axis(d, 0.9, 0.1), 0.3)
    shifted = cloud(rng, 400, axis(d, 1.0, 1.0), 0.3)
    assert mmd(same, reference, sample=300, seed=0) < 0.005
    assert mmd(nudged, reference, sample=300, seed=0) < mmd(shifted, reference, sample=300, seed=0)
    assert mmd(shifted, reference, sample=300, seed=0) > 0.03
    assert mmd(shifted, reference, sample=300, seed=0) == mmd(shifted, reference, 300, 0)


def test_mmd_rejects_bad_input() -> None:
    x = np.eye(4, 8, dtype=np.float32)
    with pytest.raises(ValueError, match="x: the unbiased MMD needs at least 2 rows, got 1"):
        mmd(x[:1], x, sample=10, seed=0)
    with pytest.raises(ValueError, match=r"x and y: dimensions differ \(8 vs 4\)"):
        mmd(x, x[:, :4], sample=10, seed=0)
    with pytest.raises(ValueError, match="sample must be >= 2, got 1"):
        mmd(x, x, sample=1, seed=0)


# --- coverage ---------------------------------------------------------------------------------


def test_reference_coverage_is_weighted_by_reference_share() -> None:
    reference = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    candidates = np.array([0, 1, 1, 4])
    assert reference_coverage(candidates, reference, 5) == pytest.approx(6 / 8)
    assert reference_coverage(np.array([0, 1, 2, 3]), reference, 5) == 1.0
    assert reference_coverage(np.array([], dtype=int), reference, 5) == 0.0
    with pytest.raises(ValueError, match="reference_labels: empty"):
        reference_coverage(candidates, np.array([], dtype=int), 5)
    with pytest.raises(ValueError, match=r"candidate_labels: cluster ids must lie in \[0, 4\)"):
        reference_coverage(candidates, reference, 4)


# --- round health and alerts -----------------------------------------------------------------


def rounds(
    label_rounds: list[np.ndarray],
    dispersion_rounds: list[dict[int, float]],
    *,
    k: int,
    baseline: dict[int, float] | None = None,
    reference_labels: np.ndarray | None = None,
    config: HealthConfig | None = None,
) -> list[dict[str, Any]]:
    """Health of consecutive rounds; the history goes through JSON as the service stores it."""
    rng = np.random.default_rng(0)
    history: list[dict[str, Any]] = []
    healths = []
    for index, (labels, dispersion) in enumerate(zip(label_rounds, dispersion_rounds, strict=True)):
        embeddings = cloud(rng, len(labels), axis(16, 1.0), 1.0)
        texts = REPETITIVE[: min(8, len(labels))]
        health, entry = round_health(
            labels=labels,
            embeddings=embeddings,
            dispersion=dispersion,
            baseline=baseline if baseline is not None else dispersion_rounds[0],
            selected_texts=texts,
            selected_embeddings=embeddings[: len(texts)],
            reference_embeddings=None if reference_labels is None else embeddings,
            reference_labels=reference_labels,
            k=k,
            history=history,
            round_index=index,
            config=config or HealthConfig(),
            seed=0,
        )
        history.append(json.loads(json.dumps(entry, allow_nan=False)))
        healths.append(json.loads(json.dumps(health, allow_nan=False)))
    return healths


def kinds(health: dict[str, Any]) -> list[str]:
    return [a["kind"] for a in health["alerts"]]


def uniform(k: int, per_cluster: int = 20) -> np.ndarray:
    return np.repeat(np.arange(k), per_cluster)


def steady(k: int, **changes: float) -> dict[int, float]:
    return {c: changes.get(f"c{c}", 0.4) for c in range(k)}


def test_a_cluster_losing_60_percent_of_its_dispersion_in_3_rounds_raises_that_alert() -> None:
    falling = [0.412, 0.35, 0.25, 0.165]
    healths = rounds([uniform(8)] * 4, [steady(8, c7=v) for v in falling], k=8)
    assert [h["alerts"] for h in healths[:3]] == [[], [], []]  # 39% after two rounds: not yet
    assert healths[3]["alerts"] == [
        {
            "kind": "dispersion_drop",
            "severity": "warning",  # 59.95%: below 1.5 x 40%
            "cluster": 7,
            "message": "cluster 7 lost 60% of its dispersion in 3 rounds (0.412 → 0.165)",
        }
    ]


def test_a_drop_of_1_5_times_the_threshold_is_critical() -> None:
    healths = rounds([uniform(4)] * 2, [steady(4), steady(4, c1=0.16)], k=4)
    (alert,) = healths[1]["alerts"]
    assert alert["severity"] == "critical"
    assert alert["message"] == "cluster 1 lost 60% of its dispersion in 1 round (0.400 → 0.160)"


def test_dispersion_below_the_baseline_alerts_without_a_drop_in_the_window() -> None:
    healths = rounds(
        [uniform(3)] * 3, [steady(3, c2=0.3)] * 3, k=3, baseline={0: 0.4, 1: 0.4, 2: 0.6}
    )
    assert all(h["alerts"] == healths[0]["alerts"] for h in healths)
    assert healths[2]["alerts"] == [
        {
            "kind": "dispersion_drop",
            "severity": "warning",
            "cluster": 2,
            "message": "cluster 2 lost 50% of its dispersion compared with its baseline "
            "(0.600 → 0.300)",
        }
    ]


def test_a_drop_older_than_the_window_is_forgotten() -> None:
    dispersions = [steady(2, c0=0.5)] + [steady(2, c0=0.2)] * 4
    healths = rounds([uniform(2)] * 5, dispersions, k=2, baseline={})
    assert [len(h["alerts"]) for h in healths] == [0, 1, 1, 1, 0]


def test_a_cluster_left_with_one_member_raises_no_dispersion_alert() -> None:
    shrunk = np.array([0] * 10 + [1] * 10 + [2])
    healths = rounds([uniform(3), shrunk], [steady(3), steady(3, c2=0.0)], k=3)
    assert healths[1]["alerts"] == []


def test_a_stable_history_raises_no_alert() -> None:
    healths = rounds([uniform(6)] * 5, [steady(6)] * 5, k=6, reference_labels=uniform(6, 3))
    assert [h["alerts"] for h in healths] == [[]] * 5
    assert healths[-1]["reference_coverage"] == 1.0


def test_effective_clusters_falling_over_the_window_alerts() -> None:
    concentrating = [uniform(8), uniform(6), uniform(4), np.repeat([0, 1], 20)]
    healths = rounds(
        concentrating, [{c: 0.4 for c in np.unique(labels)} for labels in concentrating], k=8
    )
    assert [h["alerts"] for h in healths[:1]] == [[]]
    assert kinds(healths[1]) == ["mode_drop"]  # effective clusters 8 -> 6: 25% < 30%
    assert all("mode_drop" in kinds(h) for h in healths[1:])
    assert [a for a in healths[3]["alerts"] if a["kind"] != "mode_drop"] == [
        {
            "kind": "effective_clusters_drop",
            "severity": "critical",
            "cluster": None,
            "message": "effective number of clusters fell from 8.0 to 2.0 in 3 rounds: "
            "candidates are concentrating on fewer modes",
        }
    ]


def test_modes_lost_by_the_candidates_alert_with_an_example_of_each() -> None:
    reference = uniform(10, 40)
    kept = uniform(7, 60)  # clusters 7, 8, 9 (30% of the reference) have no candidate at all
    config = HealthConfig()
    examples = {c: f"real text of mode {c} " + "word " * 30 for c in range(10)}
    healths = []
    history: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for index, labels in enumerate([uniform(10, 42), kept]):
        embeddings = cloud(rng, len(labels), axis(16, 1.0), 1.0)
        health, entry = round_health(
            labels=labels, embeddings=embeddings, dispersion={}, baseline={},
            selected_texts=REPETITIVE[:4], selected_embeddings=embeddings[:4],
            reference_embeddings=embeddings, reference_labels=reference, k=10,
            history=history, round_index=index, config=config, seed=0,
            reference_examples=examples)
        history.append(json.loads(json.dumps(entry, allow_nan=False)))
        healths.append(health)
    assert healths[0]["alerts"] == [] and healths[0]["lost_modes"] == 0
    health = healths[1]
    assert health["lost_modes"] == 3
    assert health["lost_reference_mass"] == pytest.approx(0.3)
    assert health["lost_reference_mass_delta"] == pytest.approx(0.3)
    assert health["reference_coverage"] == pytest.approx(0.7)
    assert health["emptied_clusters"] == 3
    assert [m["cluster"] for m in health["lost_clusters"]] == [7, 8, 9]
    assert health["lost_clusters"][0]["expected"] == pytest.approx(42.0)
    assert kinds(health) == ["effective_clusters_drop", "mode_loss", "mode_drop"]
    assert health["dropped_modes"] == 3 and health["dropped_since_round"] == 0
    assert health["alerts"][2]["message"].startswith(
        "since round 0 the candidates have dropped 3 modes that held 30% of that round's "
        "candidates (missing mass 0.30 against")
    alert = health["alerts"][1]
    assert alert["severity"] == "critical"
    assert alert["cluster"] == 7
    assert alert["message"].startswith(
        "candidates have lost 3 modes of the real data holding 30% of it, 3 of them new since "
        "the last round (missing mass 0.30 against 0.08 by chance, p = 6.8e-12): cluster 7 "
        "(10.0% of the reference; 0 candidates where 42 were expected; e.g. “real text of "
        "mode 7 word word")
    assert "…”" in alert["message"]  # the example is cut short


def test_a_mode_thinned_but_not_significantly_lost_raises_no_alert() -> None:
    # 12 of 20 expected candidates: below the reference share, but well within chance.
    labels = np.concatenate([uniform(9, 21), np.full(12, 9)])
    (health,) = rounds([labels], [{}], k=10, reference_labels=uniform(10, 20))
    assert health["lost_modes"] == 0 and health["alerts"] == []
    assert health["lost_reference_mass"] == 0.0 and health["mode_loss_p"] > 0.01
    assert health["tail_coverage"] == 1.0


def test_one_lost_mode_below_the_critical_mass_is_a_warning() -> None:
    labels = uniform(19, 40)  # cluster 19 (5% of the reference) is gone
    (health,) = rounds([labels], [{}], k=20, reference_labels=uniform(20, 40))
    (alert,) = health["alerts"]
    assert alert["severity"] == "warning"
    assert "lost 1 mode of the real data holding 5% of it (" in alert["message"]
    assert health["mode_loss_p"] <= 0.001


def test_round_health_reports_every_metric_as_json() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 0, 1])
    embeddings = cloud(rng, 4, axis(8, 1.0), 1.0)
    kwargs: dict[str, Any] = dict(
        labels=labels,
        embeddings=embeddings,
        dispersion={0: 0.4, 1: 0.0},
        baseline={},
        selected_texts=REPETITIVE[:2],
        selected_embeddings=embeddings[:2],
        reference_embeddings=None,
        reference_labels=None,
        k=3,
        history=[],
        round_index=0,
        config=HealthConfig(),
        seed=0,
    )
    health, entry = round_health(**kwargs)
    assert health["mean_dispersion"] == pytest.approx(0.3)  # weighted by cluster size
    assert health["clusters_occupied"] == 2
    assert health["mmd_to_reference"] is None and health["reference_coverage"] is None
    assert health["distinct_1"] == distinct_n(REPETITIVE[:2], 1)
    assert health["lost_modes"] is None and health["tail_coverage"] is None
    assert entry == {
        "round": 0,
        **{key: value for key, value in health.items()
           if key not in ("alerts", "lost_clusters")},
        "cluster_dispersion": {"0": 0.4, "1": 0.0},
        "k": 3,
        "cluster_counts": {"0": 3, "1": 1},
        "lost_cluster_ids": None,
    }
    assert json.loads(json.dumps(health, allow_nan=False)) == health
    assert round_health(**kwargs) == (health, entry)

    reference = cloud(rng, 6, axis(8, 0.0, 1.0), 0.5)
    with_reference = round_health(
        **{**kwargs, "reference_embeddings": reference, "reference_labels": np.array([0, 2])}
    )[0]
    assert with_reference["mmd_to_reference"] > 0
    assert with_reference["reference_coverage"] == 0.5

    with pytest.raises(ValueError, match="embeddings: 3 rows, but labels has 4"):
        round_health(**{**kwargs, "embeddings": embeddings[:3]})
    with pytest.raises(ValueError, match="selected_embeddings: 1 rows, but selected_texts has 2"):
        round_health(**{**kwargs, "selected_embeddings": embeddings[:1]})
    with pytest.raises(ValueError, match=r"dispersion: cluster 5 is outside \[0, k=3\)"):
        round_health(**{**kwargs, "dispersion": {5: 0.1}})


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("vendi_sample", 0, ">= 1"),
        ("mmd_sample", 1, ">= 2"),
        ("alert_window", 0, ">= 1"),
        ("dispersion_drop_alert", 0.0, r"in \(0, 1\]"),
        ("dispersion_drop_alert", 1.5, r"in \(0, 1\]"),
        ("effective_clusters_drop_alert", 0.0, r"in \(0, 1\]"),
        ("dispersion_min_members", 1, ">= 2"),
        ("lost_share", 0.0, r"in \(0, 1\]"),
        ("tail_mass", 1.5, r"in \(0, 1\]"),
        ("critical_lost_mass", 0.0, r"in \(0, 1\]"),
        ("mode_loss_alpha", 0.00009, r"in \[0.0001, 0.5\]"),
        ("mode_loss_alpha", 0.6, r"in \[0.0001, 0.5\]"),
    ],
)
def test_out_of_range_health_config_is_refused(field: str, value: Any, limit: str) -> None:
    with pytest.raises(ValueError, match=rf"config\.health\.{field}: must be {limit}"):
        replace(HealthConfig(), **{field: value})
