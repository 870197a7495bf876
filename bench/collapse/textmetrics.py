"""What generated text looks like: n-gram and embedding diversity, and its category mix.

Each generated sample is labelled with its nearest real category centroid (MiniLM embeddings,
cosine), or *off-distribution* when it is farther from every centroid than 95% of real held-out
text is from its own. Without that bucket, gibberish lands on the centroids of small, mixed
categories (their averaged centroids are generic): in a first medium run ~10% of generated text
went to `translate-me` (0.4% of real text), so garbage inflated the tail mass. The real
distribution is the labelling of real held-out text by the same rule, so the classifier's own
errors cancel: real text scores KL ≈ 0 and its true tail share. The distance and diversity
functions are the engine's (`curation.diversity`), not re-implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curation.cluster import nearest_centroid, normalize_rows
from curation.diversity import distinct_n, occupancy, vendi_score

SMOOTHING = 0.5  # pseudo-count per category, so that a lost category gives a finite KL
OFF_QUANTILE = 0.05  # real held-out text below this similarity to its centroid: off-distribution


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
        self.off = len(self.categories)  # the label of off-distribution samples
        self.min_similarity = -1.0
        self.real: np.ndarray | None = None

    def label(self, embeddings: np.ndarray) -> np.ndarray:
        """Category index per row, or ``self.off`` below the similarity cut."""
        labels, sims = nearest_centroid(embeddings, self.centroids)
        return np.where(sims >= self.min_similarity, labels, self.off)

    def fit_real(self, embeddings: np.ndarray) -> None:
        """Learn the similarity cut and the real label mix from real held-out text."""
        _, sims = nearest_centroid(embeddings, self.centroids)
        self.min_similarity = float(np.quantile(sims, OFF_QUANTILE))
        self.real = self._distribution(self.label(embeddings))

    def _distribution(self, labels: np.ndarray) -> np.ndarray:
        counts = occupancy(labels, self.off + 1).astype(np.float64) + SMOOTHING
        return counts / counts.sum()

    def category_metrics(self, embeddings: np.ndarray) -> dict[str, float]:
        """KL(real || generated) of the label mix (off-distribution is one more bucket), the
        mass kept by the tail categories, and the off-distribution share."""
        if self.real is None:
            raise RuntimeError("fit_real must run before category_metrics")
        labels = self.label(embeddings)
        q = self._distribution(labels)
        return {
            "kl_to_real": float((self.real * np.log(self.real / q)).sum()),
            "tail_mass": float(np.isin(labels, self.tail).mean()) if len(labels) else 0.0,
            "off_distribution": float((labels == self.off).mean()) if len(labels) else 0.0,
        }

    def counts(self, embeddings: np.ndarray) -> list[int]:
        """Samples per category, then the off-distribution count last."""
        return occupancy(self.label(embeddings), self.off + 1).tolist()


def text_metrics(
    texts: Sequence[str], embeddings: np.ndarray, labeler: CategoryLabeler, seed: int
) -> dict[str, float]:
    """distinct-1/2/3, Vendi score (cosine), category KL and tail mass of one batch."""
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "vendi": vendi_score(embeddings, len(texts), seed),
        **labeler.category_metrics(embeddings),
        "mean_words": float(np.mean([len(t.split()) for t in texts])) if texts else 0.0,
    }
