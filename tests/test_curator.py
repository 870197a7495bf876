"""The engine end to end with the real embedding model and real faiss (no LM: editing and the
perplexity check have their own tests)."""

from __future__ import annotations

import numpy as np
import pytest

from curation import CurationConfig, CurationInputError, Curator, RunState

NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}


@pytest.fixture(scope="module")
def curator(embedder) -> Curator:  # type: ignore[no-untyped-def]
    return Curator(CurationConfig.from_dict(NO_LM), embedder=embedder)


@pytest.mark.parametrize("budget", [1, 37, 150])
def test_budget_is_honoured_exactly(curator: Curator, fortunes: list[dict], budget: int) -> None:
    result, state = curator.curate(fortunes[:400], budget)
    assert result.selected == budget == sum(d.selected for d in result.decisions)
    assert sum(c.quota for c in result.clusters) == budget
    assert {d.role for d in result.decisions if d.selected} <= {"center", "edge"}
    assert state.round == 1 and len(result.decisions) == 400


def test_budget_above_what_passes_selects_everything_eligible(
    curator: Curator, fortunes: list[dict]
) -> None:
    batch = [*fortunes[:5], {"id": "junk", "text": "1.1.1.1.1.1.1.1"}]
    result, _ = curator.curate(batch, 50)
    assert result.selected == 5
    assert [d.selected for d in result.decisions] == [True] * 5 + [False]


def test_a_single_sample_round_works(curator: Curator, fortunes: list[dict]) -> None:
    result, state = curator.curate(fortunes[:1], 1)
    assert result.selected == 1 and state.k == 1


def test_degenerate_texts_are_rejected_with_their_reason_before_clustering(
    curator: Curator, fortunes: list[dict]
) -> None:
    junk = {
        "j-rep": "1.1.1.1.1.1",
        "j-rep2": "buy now buy now buy now buy now buy now",
        "j-empty": "   ",
        "j-short": "ok",
        "j-long": "word " * 5000,
    }
    batch = fortunes[:100] + [{"id": k, "text": v} for k, v in junk.items()]
    result, _ = curator.curate(batch, 105)
    by_id = {d.id: d for d in result.decisions}
    assert {k: by_id[k].reason for k in junk} == {
        "j-rep": "repetitive",
        "j-rep2": "repetitive",
        "j-empty": "empty",
        "j-short": "too_short",
        "j-long": "too_long",
    }
    assert not any(by_id[k].selected for k in junk)
    assert result.rejected["repetitive"] == 2


def test_the_largest_seed_is_accepted(embedder, fortunes: list[dict]) -> None:  # type: ignore[no-untyped-def]
    config = CurationConfig.from_dict({**NO_LM, "seed": 2**32 - 1})
    result, _ = Curator(config, embedder=embedder).curate(fortunes[:50], 5)
    assert result.selected == 5


def test_the_same_seed_gives_the_same_round(curator: Curator, fortunes: list[dict]) -> None:
    a, _ = curator.curate(fortunes[:300], 50)
    b, _ = curator.curate(fortunes[:300], 50)
    assert [d.to_dict() for d in a.decisions] == [d.to_dict() for d in b.decisions]


def test_warm_started_rounds_keep_cluster_ids(curator: Curator, fortunes: list[dict]) -> None:
    first, state = curator.curate(fortunes[:700], 100)
    second, state2 = curator.curate(fortunes[350:1050], 100, state=state)
    assert state.centroids is not None and state2.centroids is not None
    old = state.centroids
    drift = np.sum(old * state2.centroids[: len(old)], axis=1)
    assert np.median(drift) > 0.85
    shared = {d.id: d.cluster for d in first.decisions}
    same = [shared[d.id] == d.cluster for d in second.decisions if d.id in shared]
    assert np.mean(same) > 0.8, np.mean(same)


def test_edge_ratio_rises_when_a_cluster_tightens_and_falls_back_when_it_recovers(
    curator: Curator, fortunes: list[dict]
) -> None:
    reference, candidates = fortunes[:800], fortunes[800:1400]
    first, state = curator.curate(candidates, 60, reference=reference)
    # Collapse: keep only each cluster's nearest third of members (a tighter distribution).
    by_cluster: dict[int, list[tuple[float, dict]]] = {}
    for d, sample in zip(first.decisions, candidates, strict=True):
        by_cluster.setdefault(d.cluster, []).append((d.distance, sample))
    tight = [
        s
        for members in by_cluster.values()
        for _, s in sorted(members, key=lambda m: m[0])[: max(2, len(members) // 3)]
    ]
    second, state = curator.curate(tight, 60, state=state, reference=reference)
    third, _ = curator.curate(candidates, 60, state=state, reference=reference)

    def ratios(result) -> dict[int, float]:  # type: ignore[no-untyped-def]
        return {c.cluster: c.edge_ratio.ratio for c in result.clusters if c.size >= 4}

    r1, r2, r3 = ratios(first), ratios(second), ratios(third)
    common = sorted(set(r1) & set(r2) & set(r3))
    assert len(common) >= 5
    tightened = [c for c in common if second.clusters[c].edge_ratio.dispersion_signal > 0.1]
    assert len(tightened) >= 0.6 * len(common)
    assert all(r2[c] > r1[c] for c in tightened)
    assert all(r3[c] < r2[c] for c in tightened)
    # every input of the decision is reported
    why = second.clusters[tightened[0]].edge_ratio
    assert why.raw == pytest.approx(
        why.r0 + why.alpha * why.dispersion_signal + why.gamma * why.feedback_signal
    )


def test_a_tail_mode_of_the_reference_keeps_a_share_of_the_selection(
    curator: Curator, fortunes: list[dict]
) -> None:
    reference, candidates = fortunes[:800], fortunes[800:1500]
    first, state = curator.curate(candidates, 100, reference=reference)
    by_cluster: dict[int, list[dict]] = {}
    for d, sample in zip(first.decisions, candidates, strict=True):
        by_cluster.setdefault(d.cluster, []).append(sample)
    # The candidates lose three big modes of the real data almost entirely (3 samples left).
    lost = sorted(by_cluster, key=lambda c: -len(by_cluster[c]))[:3]
    shrunk = [
        s for c, members in by_cluster.items() for s in (members[:3] if c in lost else members)
    ]
    matching = Curator(CurationConfig.from_dict({**NO_LM, "allocation": {"eta": 1.0}}),
                       embedder=curator.embedder)  # reference matching is opt-in
    protected, _ = matching.curate(shrunk, 100, state=state, reference=reference)
    unprotected, _ = matching.curate(shrunk, 100, state=state)
    for c in lost:
        assert protected.clusters[c].reference_share > 0.04
        assert protected.clusters[c].quota >= 2
        assert protected.clusters[c].quota > unprotected.clusters[c].quota


def test_bad_input_is_a_clear_error(curator: Curator, fortunes: list[dict]) -> None:
    with pytest.raises(CurationInputError, match="budget"):
        curator.curate(fortunes[:3], 0)
    with pytest.raises(CurationInputError, match="at least one"):
        curator.curate([], 3)
    with pytest.raises(CurationInputError, match="duplicate id"):
        curator.curate([fortunes[0], fortunes[0]], 1)
    with pytest.raises(CurationInputError, match="'text' must be a string"):
        curator.curate([{"id": "a", "text": 3}], 1)
    with pytest.raises(CurationInputError, match="embedding model"):
        curator.curate(fortunes[:3], 1, state=RunState(embedding_model="another"))
