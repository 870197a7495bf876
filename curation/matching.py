"""Reference matching: the edge key of a round with a reference, chosen one step at a time.

The static affinity (:mod:`curation.affinity`) scores every candidate against the same two
n-gram models, so forty candidates sharing a phrase that the generator under-says all score high
and all are taken, and the next generation over-says it. Here the key is built greedily, as a
step of matching the selection's n-gram distribution to the reference's: each step takes the
candidate with the lowest key (its confidence's rank mixed with its affinity's,
:func:`curation.select.ranked_edge_key`), then counts what it took into the candidates' model,
so an n-gram the selection already has is worth less to the next step. What has been taken
counts ``kappa`` times (the pool's n-grams over the budget's expected n-grams): by the last step
the selection weighs as much as the whole pool did at the first. The same steps match the
selection's embeddings to the reference's (:mod:`curation.herding`), when the round gives the
embedding view a share of the affinity's rank: n-grams see the words, embeddings see what a text
is about.

On the collapse benchmark (fortunes, 3 seeds, bench/results/collapse.md) n-gram matching
lowered final held-out perplexity in every seed against no reference matching at all
(`dces_ngram_only` 483 / 519 / 460 against `dces_no_match` 512 / 562 / 484), at lower bigram
diversity (distinct-2 0.800 against 0.848) and tail coverage (0.333 against 0.348); the
embedding view (the default) brought both back (0.858, 0.420) at +1 to +5 perplexity a seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from curation.affinity import ReferenceAffinity
from curation.herding import EmbeddingHerding
from curation.select import ranked_edge_key, ranks

if TYPE_CHECKING:
    from scipy import sparse

# Above this many steps, each step takes several candidates: a step costs one pass over the
# candidates' n-grams and one ranking of them, and a 30,000-sample budget does not need 30,000
# of them. bench/results/matching_scale.md: with n-grams alone the order costs 0.7x hashing
# the round's texts at 1,200 candidates, 2.1x at 10,000 and 3.6x at 50,000; with embedding
# herding too 1.4x, 8.4x and 20x (17 s at 50,000 on the 2-core machine).
MAX_STEPS = 512


class ReferenceMatching:
    """Greedy order of the candidates; ``weight`` is the affinity's share of the key
    (:func:`curation.select.ranked_edge_key`), ``budget`` how many the round will take. With an
    :class:`~curation.herding.EmbeddingHerding`, ``embedding_share`` of the affinity's rank is
    the herding gain's (the selection's embeddings matched to the reference's), the rest the
    n-gram affinity's.

    Learned state: ``steps_`` (greedy steps taken), ``per_step_`` (candidates per step),
    ``kappa_`` (the weight of what was taken against the pool's own n-grams).
    """

    def __init__(self, weight: float, budget: int, embedding_share: float = 0.0,
                 max_steps: int = MAX_STEPS) -> None:
        self.weight = weight
        self.budget = budget
        self.embedding_share = embedding_share
        self.max_steps = max_steps

    def key(
        self,
        affinity: ReferenceAffinity,
        confidence: np.ndarray,
        allowed: np.ndarray,
        herding: EmbeddingHerding | None = None,
    ) -> np.ndarray:
        """Every candidate's position in the greedy order as a fraction of the round, lowest
        first; only ``allowed`` candidates (a boolean mask) are taken, the others follow all of
        them. ``affinity`` (and ``herding``, when given) are fitted on the reference and on the
        candidates, in this order; ``herding`` counts every choice made here
        when it has a share of the key."""
        counts = affinity.candidate_rows_
        n = counts.shape[0]
        if not np.isfinite(confidence[allowed]).all():
            raise ValueError("confidence: every allowed candidate needs a finite confidence")
        ngrams = np.asarray(counts.sum(axis=1)).ravel()
        pool = affinity.candidate_counts_ + 1.0
        per_text = float(ngrams[allowed].mean()) if allowed.any() else 0.0
        take = min(self.budget, int(allowed.sum()))
        self.kappa_ = float(pool.sum()) / max(take * per_text, 1.0)
        self.per_step_ = max(1, math.ceil(take / self.max_steps))
        confidence_ranks = ranks(confidence)
        taken = np.zeros(pool.shape, dtype=np.float64)
        position = np.full(n, np.inf)
        open_ = allowed.copy()
        self.steps_ = 0
        placed = 0
        while placed < take:
            mix = self._mix(affinity, counts, ngrams, pool + self.kappa_ * taken, confidence_ranks,
                            herding)
            mix[~open_] = np.inf
            chosen = _lowest(mix, min(self.per_step_, take - placed))
            position[chosen] = placed + np.arange(len(chosen))
            open_[chosen] = False
            if herding is not None and self.embedding_share > 0:
                herding.take(chosen)
            taken += np.asarray(counts[chosen].sum(axis=0)).ravel()
            placed += len(chosen)
            self.steps_ += 1
        rest = np.flatnonzero(~np.isfinite(position))
        if len(rest):  # the others by their last mix, the ones not allowed last of all
            mix = self._mix(affinity, counts, ngrams, pool + self.kappa_ * taken, confidence_ranks,
                            herding)
            order = rest[np.lexsort((mix[rest], ~allowed[rest]))]
            position[order] = placed + np.arange(len(order))
        return position / max(n - 1, 1)

    def _mix(self, affinity: ReferenceAffinity, counts: sparse.csr_matrix, ngrams: np.ndarray,
             pool: np.ndarray, confidence_ranks: np.ndarray, herding: EmbeddingHerding | None
             ) -> np.ndarray:
        """The edge key of every text with the affinity measured against ``pool`` and, with
        ``herding``, its gain after the choices so far."""
        log_ratio = affinity.reference_log_probs_ - np.log(pool / pool.sum())
        affinity_ranks = ranks(-affinity.mean_log_ratio(counts, ngrams, log_ratio))
        if herding is not None and self.embedding_share > 0:
            affinity_ranks = ((1.0 - self.embedding_share) * affinity_ranks
                              + self.embedding_share * ranks(-herding.gain()))
        return ranked_edge_key(confidence_ranks, affinity_ranks, self.weight)


def _lowest(values: np.ndarray, m: int) -> np.ndarray:
    """The positions of the ``m`` lowest ``values``, as the first ``m`` of a stable argsort
    (ties by position) but without sorting all of them: a step needs a few of n."""
    if m >= len(values):
        return np.argsort(values, kind="stable")
    bound = values[np.argpartition(values, m - 1)[m - 1]]
    within = np.flatnonzero(values <= bound)
    return within[np.argsort(values[within], kind="stable")][:m]
