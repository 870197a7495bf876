"""The selection rules with generator scores: edges are the surprising, centers the representative
and (among those) surprising, near-duplicates and implausible texts go in either role, and quotas
steer the selection's mix toward the round's surprising clusters and the reference. Real
embedding model, real faiss, real fortunes; the confidences are the caller's (as a training job
sends them), so no LM is needed, and used as sent (the pool's typicality, averaged with them by
default, is tests/test_confidence.py's), so each rule is checked against them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from curation import CurationConfig, CurationInputError, Curator

NO_LM = {"edit": {"enabled": False},
         "score": {"lm_fallback": False, "generator_typicality": 0.0}}


@pytest.fixture(scope="module")
def curator(embedder) -> Curator:  # type: ignore[no-untyped-def]
    return Curator(CurationConfig.from_dict(NO_LM), embedder=embedder)


def scored(samples: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Each sample with a generator log-prob: mean token log-prob in [-6, -1], 20 tokens."""
    rng = np.random.default_rng(seed)
    return [{**s, "logprob": float(rng.uniform(-6, -1)) * 20, "tokens": 20} for s in samples]


def test_edges_are_the_least_confident_of_their_cluster(
    curator: Curator, fortunes: list[dict]
) -> None:
    batch = scored(fortunes[:600])
    result, _ = curator.curate(batch, 150)
    assert result.scores["source"] == "generator"
    conf = {s["id"]: s["logprob"] / s["tokens"] for s in batch}
    for c in result.clusters:
        edges = [conf[d.id] for d in result.decisions if d.cluster == c.cluster
                 and d.role == "edge"]
        passed_over = [conf[d.id] for d in result.decisions if d.cluster == c.cluster
                       and d.reason == "quota_filled"]
        if edges and passed_over:  # taken least confident first
            assert max(edges) <= min(passed_over)
    edges = [d for d in result.decisions if d.role == "edge"]
    centers = [d for d in result.decisions if d.role == "center"]
    others = [conf[d.id] for d in result.decisions if not d.selected]
    assert len(edges) > len(centers) > 0  # the default leans on edges
    # Edges are the most surprising; centers are the nearest, chosen among them for surprise.
    assert np.mean([conf[d.id] for d in edges]) < np.mean([conf[d.id] for d in centers])
    assert np.mean([conf[d.id] for d in centers]) < np.mean(others)
    assert np.mean([d.distance for d in centers]) < np.mean([d.distance for d in edges])


def test_confidence_changes_the_selection(curator: Curator, fortunes: list[dict]) -> None:
    plain, _ = curator.curate(fortunes[:400], 100)
    with_scores, _ = curator.curate(scored(fortunes[:400]), 100)
    assert plain.scores["source"] == "none"
    picked = lambda r: {d.id for d in r.decisions if d.selected}  # noqa: E731
    assert len(picked(plain) ^ picked(with_scores)) > 40


def test_near_duplicates_are_dropped_from_centers_and_edges_alike(
    curator: Curator, fortunes: list[dict]
) -> None:
    base = scored(fortunes[:200])
    # Copies of the 20 least confident texts: each would be the first edge of its cluster.
    worst = sorted(base, key=lambda s: s["logprob"])[:20]
    copies = [{**s, "id": f"{s['id']}-copy", "logprob": s["logprob"] - 1} for s in worst]
    result, _ = curator.curate(base + copies, 120)
    by_id = {d.id: d for d in result.decisions}
    for original, copy in zip(worst, copies, strict=True):
        pair = (by_id[original["id"]], by_id[copy["id"]])
        assert sum(d.selected for d in pair) <= 1
        assert any(d.reason == "near_duplicate" for d in pair)


def test_implausible_texts_are_rejected_with_the_cut_reported(
    curator: Curator, fortunes: list[dict]
) -> None:
    batch = scored(fortunes[:300])
    batch[7] = {**batch[7], "logprob": -60.0 * 20}  # far below the round's own distribution
    result, _ = curator.curate(batch, 280)
    decision = result.decisions[7]
    assert decision.reason == "implausible" and not decision.selected
    assert result.scores["implausible_below"] < -6.0
    assert result.rejected["implausible"] == 1


def test_quotas_steer_the_mix_toward_the_reference(curator: Curator, fortunes: list[dict]
                                                    ) -> None:
    reference, pool = fortunes[:800], fortunes[800:2000]
    first, _ = curator.curate(pool, 100, reference=reference)
    by_cluster: dict[int, list[dict]] = {}
    for d, s in zip(first.decisions, pool, strict=True):
        by_cluster.setdefault(d.cluster, []).append(s)
    # Candidates skewed: the two largest clusters are tripled by near-paraphrases.
    big = sorted(by_cluster, key=lambda c: -len(by_cluster[c]))[:2]
    skewed = list(pool) + [{"id": f"{s['id']}-v{v}", "text": f"{s['text']} ({v})"}
                           for c in big for s in by_cluster[c] for v in range(2)]
    matched, _ = Curator(CurationConfig.from_dict({**NO_LM, "allocation": {"eta": 1.0}}),
                         embedder=curator.embedder).curate(skewed, 200, reference=reference)
    flat, _ = Curator(CurationConfig.from_dict({**NO_LM, "allocation": {"eta": 0.0}}),
                      embedder=curator.embedder).curate(skewed, 200, reference=reference)

    def distance_to_reference(result: Any) -> float:
        ref = np.array([c.reference_share for c in result.clusters])
        sel = np.array([c.quota for c in result.clusters], dtype=float)
        return float(np.abs(sel / sel.sum() - ref).sum() / 2)  # total variation

    cand = np.array([c.share for c in matched.clusters])
    ref = np.array([c.reference_share for c in matched.clusters])
    assert distance_to_reference(matched) < 0.5 * float(np.abs(cand - ref).sum() / 2)
    assert distance_to_reference(matched) < distance_to_reference(flat)


def test_the_floor_keeps_modes_the_surprise_quotas_starve(curator: Curator,
                                                           fortunes: list[dict]) -> None:
    reference, pool = fortunes[:800], scored(fortunes[800:1400])
    first, _ = curator.curate(pool, 150, reference=reference)
    # The generator is sure of every candidate of the three largest clusters: surprise alone
    # gives them (almost) nothing, though the reference holds a good part of its text there.
    sure = sorted(first.clusters, key=lambda c: -c.size)[:3]
    sure_ids = {c.cluster for c in sure}
    members = {d.id for d in first.decisions if d.cluster in sure_ids}
    skewed = [{**s, "logprob": -0.05 * s["tokens"]} if s["id"] in members else s for s in pool]
    floored_curator = Curator(
        CurationConfig.from_dict({**NO_LM, "allocation": {"floor": 1.0}}),
        embedder=curator.embedder)
    plain, _ = curator.curate(skewed, 150, reference=reference)
    floored, _ = floored_curator.curate(skewed, 150, reference=reference)

    def quota(result: Any) -> int:
        return sum(c.quota for c in result.clusters if c.cluster in sure_ids)

    reference_share = sum(c.reference_share for c in plain.clusters if c.cluster in sure_ids)
    assert quota(plain) <= 3
    assert quota(floored) >= 0.5 * reference_share * 150 > 3
    assert floored.selected == plain.selected == 150


def test_the_floor_is_bounded() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"config.allocation.floor: must be in \[0, 1\]"):
            CurationConfig.from_dict({"allocation": {"floor": bad}})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"logprob": float("nan"), "tokens": 3}, r"sample 1 \(id 'b'\): 'logprob' must be a "
                                                 r"finite number <= 0, got nan"),
        ({"logprob": 0.5, "tokens": 3}, r"sample 1 \(id 'b'\): 'logprob' must be <= 0"),
        ({"logprob": -3.0, "tokens": 0}, r"sample 1 \(id 'b'\): 'tokens' must be an integer >= 1"),
        ({"logprob": -3.0}, r"'logprob' and 'tokens' go together; 'tokens' is missing"),
        ({"tokens": 3}, r"'logprob' and 'tokens' go together; 'logprob' is missing"),
        ({"token_logprobs": [-1.0, -2.0], "logprob": -3.0, "tokens": 3},
         r"'token_logprobs' has 2 values but 'tokens' is 3"),
        ({"token_logprobs": [-1.0, -2.0], "logprob": -5.0, "tokens": 2},
         r"'logprob' is -5.0 but 'token_logprobs' sum to -3"),
        ({"token_logprobs": [-1.0, 0.2]}, r"'token_logprobs\[1\]' must be <= 0"),
        ({"token_logprobs": []}, r"'token_logprobs' must be a non-empty list"),
        ({"token_logprobs": "abc"}, r"'token_logprobs' must be a non-empty list"),
    ],
)
def test_bad_generator_scores_name_the_sample_and_field(
    curator: Curator, fields: dict[str, Any], message: str
) -> None:
    batch = [{"id": "a", "text": "A first sample text."},
             {"id": "b", "text": "A second sample text.", **fields}]
    with pytest.raises(CurationInputError, match=message):
        curator.curate(batch, 1)


def test_token_logprobs_alone_are_enough(curator: Curator, fortunes: list[dict]) -> None:
    batch = [{**s, "token_logprobs": [-1.0 - (i % 5)] * 4} for i, s in enumerate(fortunes[:60])]
    result, _ = curator.curate(batch, 20)
    assert result.scores["source"] == "generator" and result.selected == 20


def test_replay_returns_reference_exemplars_of_lost_clusters_only(
    curator: Curator, fortunes: list[dict]
) -> None:
    reference, pool = fortunes[:800], fortunes[800:1500]
    first, state = curator.curate(pool, 100, reference=reference)
    by_cluster: dict[int, list[dict]] = {}
    for d, s in zip(first.decisions, pool, strict=True):
        by_cluster.setdefault(d.cluster, []).append(s)
    lost = sorted(by_cluster, key=lambda c: -len(by_cluster[c]))[:3]  # big modes, all gone
    shrunk = [s for c, members in by_cluster.items() if c not in lost for s in members]
    config = CurationConfig.from_dict({**NO_LM, "replay": {"fraction": 0.1}})
    replaying = Curator(config, embedder=curator.embedder)
    result, _ = replaying.curate(shrunk, 100, state=state, reference=reference)
    assert 0 < len(result.replay) <= 10
    assert result.selected + len(result.replay) == 100
    reference_ids = {r["id"] for r in reference}
    assert all(d.role == "replay" and d.id in reference_ids for d in result.replay)
    assert {d.cluster for d in result.replay} <= set(lost)
    assert sum(c.replayed for c in result.clusters) == len(result.replay)
    off, _ = curator.curate(shrunk, 100, state=state, reference=reference)
    assert off.replay == [] and off.selected == 100
    none_lost, _ = replaying.curate(pool, 100, state=state, reference=reference)
    assert len(none_lost.replay) <= 2  # nothing much is missing: replay stays (almost) idle


def test_replay_fraction_is_bounded() -> None:
    with pytest.raises(ValueError, match=r"config.replay.fraction: must be in \[0, 0.5\]"):
        CurationConfig.from_dict({"replay": {"fraction": 0.9}})


def test_embedding_share_is_bounded() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"config.score.embedding_share: must be in \[0, 1\]"):
            CurationConfig.from_dict({"score": {"embedding_share": bad}})


def test_with_a_reference_edges_are_surprising_and_real_like(
    curator: Curator, fortunes: list[dict]
) -> None:
    reference = fortunes[:800]
    # A generator that repeats itself: 60 candidates end in the same invented phrase, and are
    # the least confident of the round (surprise alone would take them all).
    pool = scored(fortunes[800:1400])
    for s in pool[:60]:
        s["text"] = f"{s['text']} Zorbly quibbles the wuggle of flimflam."
        s["logprob"] = -6.5 * s["tokens"]
    matched, _ = curator.curate(pool, 150, reference=reference)
    alone, _ = Curator(CurationConfig.from_dict({**NO_LM, "score": {**NO_LM["score"],
                                                                      "reference_weight": 0.0}}),
                       embedder=curator.embedder).curate(pool, 150, reference=reference)
    invented = {s["id"] for s in pool[:60]}
    taken = lambda r: {d.id for d in r.decisions if d.selected} & invented  # noqa: E731
    assert len(taken(alone)) > 2 * len(taken(matched))
    assert matched.scores["reference_weight"] == 0.5
    assert matched.scores["affinity"]["selected"] > matched.scores["affinity"]["candidates"]
    kl = matched.scores["matching"]["kl_to_reference"]
    assert kl["selected"] < kl["random"]  # it says more of what real text says than chance
    assert matched.scores["matching"]["embedding_share"] == 0.5
    assert 0 < matched.scores["matching"]["herding_bandwidth"] < 2
    assert alone.scores["reference_weight"] is None and "affinity" not in alone.scores
    plain, _ = curator.curate(pool, 150)  # no reference: the confidence alone
    assert plain.scores["reference_weight"] is None


def test_a_reference_of_one_repeated_text_gives_herding_a_usable_kernel(
    curator: Curator, fortunes: list[dict]
) -> None:
    """Copies of one text make a cluster with (almost) no radius: a kernel that narrow would
    vanish for every candidate; the bandwidth comes from the candidates' distances instead."""
    reference = [{"id": f"r{i}", "text": fortunes[0]["text"]} for i in range(40)]
    with np.errstate(divide="raise", invalid="raise"):
        result, _ = curator.curate(scored(fortunes[100:400]), 60, reference=reference)
    assert result.selected == 60
    assert 0.2 < result.scores["matching"]["herding_bandwidth"] < 2
    assert all(v is not None for v in result.scores["matching"]["kl_to_reference"].values())
