"""What generated text looks like: n-gram and embedding diversity, and its category mix.

Each generated sample is labelled with its nearest real category centroid (MiniLM embeddings,
cosine). The real distribution is the labelling of *real held-out text by the same rule*, so the
classifier's own errors cancel: real text scores KL ≈ 0 and its true tail share. The distance and
diversity functions are the engine's (`curation.diversity`), not re-implementations.

Known limit: text that is not English prose (gibberish from a weak model) is drawn to a few
centroids, `translate-me` (a tail category) most of all, so a strategy that keeps gibberish gains
raw tail mass. Tail *coverage* is the robust reading: the share of the real tail mass that the
generated mix still covers, each tail category capped at its real share, so piling gibberish
onto one tail centroid cannot stand in for the tail categories that were lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curation.cluster import nearest_centroid, normalize_rows
from curation.diversity import distinct_n, distinct_n_windowed, occupancy, vendi_score

# distinct-2 at a fixed count of bigrams: samples that shrink to a few words each would
# otherwise score as diverse just for holding fewer bigrams (400 samples of 7 words: ~2,400).
DISTINCT_WINDOW = 1000
SMOOTHING = 0.5  # pseudo-count per category, so that a lost category gives a finite KL


class CategoryLabeler:
    """Nearest-centroid labels over real categories; knows the real label mix and the tail."""

    def __init__(
        self,
        categories: Sequence[str],
        tail: Sequence[str],
        centroid_embeddings: np.ndarray,
        centroid_labels: Sequence[str],
    ) -> None:
        self.categories = list(categories)
        index = {c: i for i, c in enumerate(self.categories)}
        labels = np.array([index[c] for c in centroid_labels])
        missing = sorted(set(self.categories) - set(centroid_labels))
        if missing:
            raise ValueError(f"centroid_labels: no entry for categories {missing}")
        sums = np.zeros((len(self.categories), centroid_embeddings.shape[1]))
        np.add.at(sums, labels, centroid_embeddings)
        self.centroids = normalize_rows(sums)
        self.tail = np.array([index[c] for c in tail])
        self.real: np.ndarray | None = None  # smoothed label mix of real text (for the KL)
        self.real_tail_share = np.zeros(len(self.tail))  # raw share of each tail category

    def label(self, embeddings: np.ndarray) -> np.ndarray:
        return nearest_centroid(embeddings, self.centroids)[0]

    def fit_real(self, embeddings: np.ndarray) -> None:
        """Learn the real label distribution from real held-out text."""
        labels = self.label(embeddings)
        self.real = self._distribution(labels)
        self.real_tail_share = self._share(labels)[self.tail]

    def _share(self, labels: np.ndarray) -> np.ndarray:
        return occupancy(labels, len(self.categories)) / max(len(labels), 1)

    def _distribution(self, labels: np.ndarray) -> np.ndarray:
        counts = occupancy(labels, len(self.categories)).astype(np.float64) + SMOOTHING
        return counts / counts.sum()

    def category_metrics(self, embeddings: np.ndarray) -> dict[str, float]:
        """KL(real || generated) of the label mix; raw tail mass and capped tail coverage."""
        if self.real is None:
            raise RuntimeError("fit_real must run before category_metrics")
        labels = self.label(embeddings)
        q = self._distribution(labels)
        share = self._share(labels)[self.tail]
        real_tail = self.real_tail_share
        return {
            "kl_to_real": float((self.real * np.log(self.real / q)).sum()),
            "tail_mass": float(share.sum()),
            "tail_coverage": float(
                np.minimum(share, real_tail).sum() / max(real_tail.sum(), 1e-12)),
        }

    def counts(self, embeddings: np.ndarray) -> list[int]:
        return occupancy(self.label(embeddings), len(self.categories)).tolist()


def text_metrics(
    texts: Sequence[str], embeddings: np.ndarray, labeler: CategoryLabeler, seed: int
) -> dict[str, float]:
    """distinct-1/2/3 (and distinct-2 at a fixed count of bigrams), Vendi score (cosine),
    category KL and tail mass of one batch."""
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "distinct_2_window": distinct_n_windowed(texts, 2, DISTINCT_WINDOW),
        "vendi": vendi_score(embeddings, len(texts), seed),
        **labeler.category_metrics(embeddings),
        "mean_words": float(np.mean([len(t.split()) for t in texts])) if texts else 0.0,
    }
