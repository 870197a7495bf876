"""Embedding herding: the selection's embeddings matched to the reference's, one choice at a time.

Kernel herding (Chen, Welling and Smola 2010) chooses points one by one so that their kernel mean
approaches a target's: the next point is the one whose mean kernel to the target, less its
kernel to the points already chosen, is highest. That is a greedy step of minimising the
MMD between the choice and the target (Qiao et al. 2026: selecting toward the reference's
distribution slows collapse, selecting toward centroids speeds it). Here the target is the
round's reference embeddings and the candidates are the ones to choose from; the gain (mean
kernel to the target less the chosen points' kernel sum over one more than their number, as
Chen et al. write the step) is re-measured after every step of :mod:`curation.matching`, which
ranks it together with the generator's confidence and the n-gram affinity.

The kernel is ``exp(-||a - b||² / bandwidth)`` on unit vectors, its ``bandwidth`` a ``scale`` of
the clusters' own: the median squared distance from a reference text to its centroid. A kernel as
wide as a cluster only moves budget between clusters; at half of it the kernel tells apart the
texts of one cluster, which is where a mode that is being lost still has a few candidates.
On the collapse benchmark (fortunes, 3 seeds) the narrow kernel kept more of the real tail and of
real text's bigram diversity than the wide one, at held-out perplexity within the seeds' noise
(bench/results/collapse-screen-herding-*.json).
"""

from __future__ import annotations

import numpy as np

from curation.diversity import squared_distances

# Candidates per block of a kernel sum: a block of 4,096 rows against 2,000 reference texts is
# 32 MB per temporary (about four of them at the peak), whatever the round's size. Float32, as
# the embeddings come: float64 would double the memory traffic for digits nobody reads.
BLOCK_ROWS = 4_096
# A bandwidth below this share of the candidates' median squared distance to the reference
# means the clusters gave the kernel no scale (the reference's texts sit on their centroids:
# copies of one text): the kernel would vanish for every candidate but exact copies, and the
# herding would rank by position. That median scales it instead. On the fortunes sample the
# clusters' bandwidth is 0.3 of it. Measured on the first ``SPREAD_ROWS`` candidates: a scale
# needs no more, and the round pays ~10 ms for it.
MIN_RELATIVE_BANDWIDTH = 0.01
SPREAD_ROWS = 512


class EmbeddingHerding:
    """The herding gain of every candidate as choices are made.

    ``scale`` times the clusters' median squared radius is the kernel's bandwidth;
    ``max_reference`` reference rows (drawn with ``seed``) stand for the reference in the
    attraction. Learned state: ``bandwidth_``, ``reference_rows_`` (how many stood for it),
    ``attraction_`` (each candidate's mean kernel to them), ``repulsion_`` (each candidate's
    kernel sum over the choices so far) and ``taken_`` (how many choices).
    """

    def __init__(self, scale: float = 0.5, max_reference: int = 2_000, seed: int = 0) -> None:
        self.scale = scale
        self.max_reference = max_reference
        self.seed = seed

    def fit(self, candidates: np.ndarray, reference: np.ndarray, cluster_radius_sq: float
            ) -> EmbeddingHerding:
        """``candidates`` and ``reference`` are unit-norm embedding rows; ``cluster_radius_sq``
        the median squared distance of a reference row to its centroid."""
        if len(reference) > self.max_reference:
            rows = np.random.default_rng(self.seed).choice(len(reference), self.max_reference,
                                                           replace=False)
            reference = reference[np.sort(rows)]
        self._candidates = candidates.astype(np.float32)
        self._norms = (self._candidates * self._candidates).sum(1)
        self.bandwidth_ = self.scale * cluster_radius_sq
        spread = self._median_distance_sq(reference)
        if self.bandwidth_ < MIN_RELATIVE_BANDWIDTH * spread:
            self.bandwidth_ = self.scale * spread
        if not self.bandwidth_ > 0:  # the candidates are the reference's copies too
            self.bandwidth_ = 1.0
        self.reference_rows_ = len(reference)
        self.attraction_ = self._kernel_sums(reference.astype(np.float32)) / max(len(reference), 1)
        self.repulsion_ = np.zeros(len(candidates))
        self.taken_ = 0
        return self

    def take(self, chosen: np.ndarray) -> None:
        """Count the candidates at positions ``chosen`` as chosen."""
        self.repulsion_ += self._kernel_sums(self._candidates[chosen])
        self.taken_ += len(chosen)

    def gain(self) -> np.ndarray:
        """Each candidate's herding gain for the next choice, highest best."""
        return self.attraction_ - self.repulsion_ / (self.taken_ + 1)

    def _median_distance_sq(self, reference: np.ndarray) -> float:
        """The median squared distance of (up to ``SPREAD_ROWS``) candidates to the reference
        rows."""
        sq = squared_distances(self._candidates[:SPREAD_ROWS], reference.astype(np.float32),
                               self._norms[:SPREAD_ROWS])
        return float(np.median(sq)) if sq.size else 0.0

    def _kernel_sums(self, rows: np.ndarray) -> np.ndarray:
        """Each candidate's kernel summed over ``rows``."""
        out = np.empty(len(self._candidates))
        for start in range(0, len(self._candidates), BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            sq = squared_distances(self._candidates[block], rows, self._norms[block])
            out[block] = np.exp(-sq / self.bandwidth_).sum(axis=1)
        return out
