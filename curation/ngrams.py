"""Hashed word n-gram counts: the bag-of-n-grams view shared by the reference affinity and the
pool's typicality.

Word unigrams and bigrams, and single punctuation marks (a fortune's "--" or a gloss's ";" is
part of its style), lowercased and hashed into ``n_features`` buckets (DSIR's 10,000, Xie et al.
2023: enough to separate the n-grams that carry a corpus's style, few enough that 1,000
candidates estimate every bucket).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

TOKEN_PATTERN = r"(?u)\b\w+\b|[^\w\s]"


class HashedNgrams:
    """Counts each text's hashed n-grams, one row per text."""

    def __init__(self, n_features: int = 10_000) -> None:
        # scikit-learn on first use: importing it costs a second of every process start (a
        # server, a CLI run), and only some rounds need it.
        from sklearn.feature_extraction.text import HashingVectorizer

        self.n_features = n_features
        self._vectorizer = HashingVectorizer(
            n_features=n_features, ngram_range=(1, 2), alternate_sign=False, norm=None,
            token_pattern=TOKEN_PATTERN, lowercase=True,
        )

    def counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        matrix: sparse.csr_matrix = self._vectorizer.transform(list(texts))
        return matrix


def log_probabilities(counts: np.ndarray) -> np.ndarray:
    """Add-one smoothed log-probability of every bucket."""
    smoothed = counts + 1.0
    return np.log(smoothed / smoothed.sum())
