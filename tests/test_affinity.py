"""Reference affinity (DSIR's hashed n-gram importance) and the rank mix that puts it together
with the generator's confidence. Real fortunes; the over-used phrase is what a collapsing
generator does."""

from __future__ import annotations

import numpy as np

from curation.affinity import ReferenceAffinity
from curation.select import ranked_edge_key, ranks

OVERUSED = "You will be successful in your work, you will be successful in your life."


def test_real_text_is_closer_to_the_reference_than_an_overused_phrase(fortunes: list[dict]
                                                                      ) -> None:
    texts = [f["text"] for f in fortunes]
    reference, held_out = texts[:1000], texts[1000:1200]
    candidates = held_out + [OVERUSED] * 40  # the generator repeats itself
    affinity = ReferenceAffinity().fit(reference, candidates)
    scores = affinity.score([*held_out, OVERUSED])
    # Every candidate's own rare words are over-represented among the candidates (they are in
    # it), so real text scores a little below zero; the repeated phrase far below all of it.
    assert scores[-1] < float(scores[:-1].min()) < float(np.median(scores[:-1]))
    assert affinity.reference_ngrams_ > affinity.candidate_ngrams_ > 0
    assert affinity.log_ratio_.shape == (affinity.n_features,)
    # The candidates' own scores come from the counts hashed at fit time.
    assert np.array_equal(affinity.candidate_scores(), affinity.score(candidates))


def test_divergence_is_lower_for_real_text_than_for_a_repeated_phrase(fortunes: list[dict]
                                                                      ) -> None:
    texts = [f["text"] for f in fortunes]
    candidates = texts[1000:1200] + [OVERUSED] * 200
    affinity = ReferenceAffinity().fit(texts[:1000], candidates)
    real, repeated = np.arange(200), np.arange(200, 400)
    assert affinity.divergence(real) < affinity.divergence(repeated)


def test_a_text_without_words_scores_zero(fortunes: list[dict]) -> None:
    texts = [f["text"] for f in fortunes[:200]]
    affinity = ReferenceAffinity(n_features=64).fit(texts[:100], texts[100:])
    assert affinity.score(["", "   "]).tolist() == [0.0, 0.0]


def test_the_key_ranks_surprise_and_affinity_together() -> None:
    confidence = np.array([-5.0, -4.0, -3.0, -2.0])  # the first is the most surprising
    affinity = np.array([-1.0, 2.0, 1.0, 0.0])  # the second is the most real-like
    key = ranked_edge_key(ranks(confidence), ranks(-affinity), 0.5)
    # Ranks (lowest first) 0,1,2,3 and 3,0,1,2: means 1.5, 0.5, 1.5, 2.5, over n - 1 = 3.
    assert np.allclose(key, [0.5, 1 / 6, 0.5, 2.5 / 3])
    assert np.allclose(ranked_edge_key(ranks(confidence), ranks(-affinity), 1.0),
                       [1.0, 0.0, 1 / 3, 2 / 3])
    assert np.allclose(ranked_edge_key(ranks(confidence), ranks(-affinity), 0.0),
                       [0.0, 1 / 3, 2 / 3, 1.0])
