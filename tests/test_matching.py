"""Greedy reference matching: the edge key of a round with a reference. Real fortunes; the
repeated phrase is a real one that the reference says often."""

from __future__ import annotations

import numpy as np
import pytest

from curation.affinity import ReferenceAffinity
from curation.herding import EmbeddingHerding
from curation.matching import ReferenceMatching
from curation.select import ranked_edge_key, ranks

PHRASE = "Money will come to you, and you will know what to do with it."


def _round(fortunes: list[dict]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """A reference in which a fifth of the texts end with PHRASE, candidates of which 30 of 330
    do, and random confidences; returns reference, candidates, confidence and which candidates
    end with it."""
    texts = [f["text"] for f in fortunes]
    reference = texts[:800] + [f"{t} {PHRASE}" for t in texts[800:1000]]
    candidates = texts[1000:1300] + [f"{t} {PHRASE}" for t in texts[1300:1330]]
    repeats = np.arange(len(candidates)) >= 300
    confidence = np.random.default_rng(0).normal(-5.0, 0.5, len(candidates))
    return reference, candidates, confidence, repeats


def _static_key(confidence: np.ndarray, affinity: np.ndarray, weight: float) -> np.ndarray:
    """The key with every candidate's affinity measured once, before any choice."""
    return ranked_edge_key(ranks(confidence), ranks(-affinity), weight)


def test_matching_takes_fewer_copies_of_a_phrase_than_the_static_affinity(
    fortunes: list[dict],
) -> None:
    reference, candidates, confidence, repeats = _round(fortunes)
    affinity = ReferenceAffinity().fit(reference, candidates)
    # The affinity alone (weight 1): the confidence would blur what is measured here.
    static = _static_key(confidence, affinity.score(candidates), 1.0)
    matching = ReferenceMatching(1.0, 60)
    key = matching.key(affinity, confidence, np.ones(len(candidates), dtype=bool))
    static_taken = int(repeats[np.argsort(static)[:60]].sum())
    matched_taken = int(repeats[np.argsort(key)[:60]].sum())
    # The reference ends a fifth of its texts with the phrase (12 of 60): the static key takes
    # every copy it can rank high (24 of 60); matching stops near the reference's share.
    assert static_taken >= 20
    assert abs(matched_taken - 12) <= 3
    # The first choice is the static key's: nothing has been taken yet.
    assert int(np.argmin(key)) == int(np.argmin(static))
    assert matching.steps_ == 60 and matching.per_step_ == 1 and matching.kappa_ > 1.0
    # With the confidence in the key (the default weight), matching still takes fewer.
    mixed = ReferenceMatching(0.5, 60).key(affinity, confidence,
                                          np.ones(len(candidates), dtype=bool))
    mixed_static = _static_key(confidence, affinity.score(candidates), 0.5)
    assert repeats[np.argsort(mixed)[:60]].sum() < repeats[np.argsort(mixed_static)[:60]].sum()


def test_the_key_orders_every_candidate_and_puts_the_rejected_last(fortunes: list[dict]
                                                                   ) -> None:
    reference, candidates, confidence, _ = _round(fortunes)
    affinity = ReferenceAffinity().fit(reference, candidates)
    allowed = np.ones(len(candidates), dtype=bool)
    allowed[::3] = False
    key = ReferenceMatching(0.5, 50).key(affinity, confidence, allowed)
    assert sorted(key.tolist()) == [i / (len(candidates) - 1) for i in range(len(candidates))]
    assert key[allowed].max() < key[~allowed].min()


def test_a_large_budget_takes_several_candidates_a_step(fortunes: list[dict]) -> None:
    reference, candidates, confidence, _ = _round(fortunes)
    affinity = ReferenceAffinity().fit(reference, candidates)
    matching = ReferenceMatching(0.5, 100, max_steps=8)
    key = matching.key(affinity, confidence, np.ones(len(candidates), dtype=bool))
    assert matching.per_step_ == 13 and matching.steps_ == 8
    assert len(np.unique(key)) == len(candidates)


def test_an_unknown_confidence_is_refused(fortunes: list[dict]) -> None:
    reference, candidates, confidence, _ = _round(fortunes)
    affinity = ReferenceAffinity().fit(reference, candidates)
    confidence[3] = np.nan
    allowed = np.ones(len(candidates), dtype=bool)
    with pytest.raises(ValueError, match="confidence: every allowed candidate"):
        ReferenceMatching(0.5, 50).key(affinity, confidence, allowed)
    allowed[3] = False  # a rejected candidate's confidence is never read
    assert len(ReferenceMatching(0.5, 50).key(affinity, confidence, allowed)) == len(candidates)


def test_the_embedding_view_joins_the_key_by_its_share(fortunes: list[dict], embedder) -> None:
    reference, candidates, confidence, _ = _round(fortunes)
    affinity = ReferenceAffinity().fit(reference, candidates)
    allowed = np.ones(len(candidates), dtype=bool)
    ref_vectors, vectors = embedder.encode(reference), embedder.encode(candidates)

    def herding() -> EmbeddingHerding:
        return EmbeddingHerding().fit(vectors, ref_vectors, 1.0)

    ngrams_only = ReferenceMatching(0.5, 60).key(affinity, confidence, allowed)
    # At share 0 the herding view neither moves the key nor is kept up to date (no cost).
    unused = herding()
    assert np.array_equal(ReferenceMatching(0.5, 60, 0.0).key(affinity, confidence, allowed,
                                                              unused), ngrams_only)
    assert unused.taken_ == 0
    both = ReferenceMatching(0.5, 60, 0.5).key(affinity, confidence, allowed, herding())
    assert not np.array_equal(both, ngrams_only)
    # At weight 1 and share 1 the order is herding's own: each step the highest gain left.
    order = np.argsort(ReferenceMatching(1.0, 5, 1.0).key(affinity, confidence, allowed,
                                                          herding()))
    replay = herding()
    for i in order[:5]:
        gain = replay.gain()
        gain[order[: list(order).index(i)]] = -np.inf
        assert int(np.argmax(gain)) == i
        replay.take(np.array([i]))
