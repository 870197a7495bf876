"""Reference affinity: how much more a text's words belong to real data than to this round.

Importance weights in hashed n-gram space (DSIR, Xie et al. 2023, arXiv 2302.03169): two
bag-of-n-grams models over hashed word unigrams and bigrams, one fit on the reference (real data),
one on the round's candidates, each add-one smoothed. A text's affinity is the mean log ratio of
the two over its n-grams: positive where the candidates under-say what real text says (what
self-training loses round after round), negative where the generator over-uses a phrase or
invents word pairs that real text does not have.

Why it is in the selection: the generator's surprise alone cannot tell a rare real phrase from an
invented one, and affinity alone favours the commonest real phrasing. Ranked together
(:func:`curation.select.ranked_edge_key`, re-measured at every step by :mod:`curation.matching`),
the selection keeps text that is surprising to the generator *and* real-like: on the collapse
benchmark (fortunes, bench/results/collapse.md) DCES without the matching ended at 512 / 562 /
484 held-out perplexity, with it 488 / 520 / 464.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from curation.ngrams import HashedNgrams, log_probabilities

if TYPE_CHECKING:
    from scipy import sparse


class ReferenceAffinity:
    """Mean log ratio of a text's n-grams under the reference's and the candidates' models.

    ``n_features`` hash buckets (DSIR's 10,000: enough to separate the n-grams that carry a
    corpus's style, few enough that 1,000 candidates estimate every bucket).
    Learned state: ``log_ratio_`` (per bucket), ``reference_log_probs_`` and
    ``candidate_counts_`` (per bucket: what :mod:`curation.matching` re-weighs),
    ``candidate_rows_`` (each candidate's counts, hashed once per round for the scores, the
    matching and the divergence report), ``reference_ngrams_``, ``candidate_ngrams_``.
    """

    def __init__(self, n_features: int = 10_000) -> None:
        self.n_features = n_features
        self._ngrams = HashedNgrams(n_features)

    def fit(self, reference: Sequence[str], candidates: Sequence[str]) -> ReferenceAffinity:
        ref_counts = self._totals(reference)
        self.candidate_rows_ = self.counts(candidates)
        self.candidate_counts_ = np.asarray(self.candidate_rows_.sum(axis=0)).ravel()
        self.reference_ngrams_ = int(ref_counts.sum())
        self.candidate_ngrams_ = int(self.candidate_counts_.sum())
        self.reference_log_probs_ = log_probabilities(ref_counts)
        self.log_ratio_ = self.reference_log_probs_ - log_probabilities(self.candidate_counts_)
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's mean log ratio over its n-grams (0 for a text without any)."""
        return self._score_rows(self.counts(texts))

    def candidate_scores(self) -> np.ndarray:
        """:meth:`score` of the fitted candidates, from their stored counts."""
        return self._score_rows(self.candidate_rows_)

    def divergence(self, positions: np.ndarray) -> float:
        """KL(reference || the fitted candidates at ``positions``) over the hashed n-grams, both
        add-one smoothed: how far a set of them (a selection, a random pick) is from saying what
        the reference says."""
        totals = np.asarray(self.candidate_rows_[positions].sum(axis=0)).ravel()
        p = np.exp(self.reference_log_probs_)
        return float(np.sum(p * (self.reference_log_probs_ - log_probabilities(totals))))

    def counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Each text's hashed n-gram counts, one row per text."""
        return self._ngrams.counts(texts)

    @staticmethod
    def mean_log_ratio(counts: sparse.csr_matrix, ngrams: np.ndarray, log_ratio: np.ndarray
                       ) -> np.ndarray:
        """Each row's mean of ``log_ratio`` over its ``ngrams`` n-grams (0 for a row without
        any)."""
        weighted = np.asarray(counts @ log_ratio).ravel()
        return np.divide(weighted, ngrams, out=np.zeros(len(ngrams)), where=ngrams > 0)

    def _score_rows(self, counts: sparse.csr_matrix) -> np.ndarray:
        return self.mean_log_ratio(counts, np.asarray(counts.sum(axis=1)).ravel(),
                                   self.log_ratio_)

    def _totals(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.counts(texts).sum(axis=0)).ravel()

