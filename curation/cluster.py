"""Spherical k-means with faiss, warm-started so that cluster ids survive across rounds.

A cold start is faiss's k-means (``spherical=True``). A warm start runs Lloyd iterations from the
previous round's centroids (faiss inner-product search for the assignment) and, unlike faiss's
own training, never moves an empty cluster's centroid to split another one: an emptied cluster
is exactly the collapse signal we must keep under its id. New clusters open when the automatic
k grows with n; they are seeded farthest-first from the existing centroids.
"""

from __future__ import annotations

import math

import faiss
import numpy as np


def auto_k(n: int, max_k: int) -> int:
    """``sqrt(n / 2)`` (a common rule of thumb), at least 1, at most ``max_k`` and ``n``."""
    return max(1, min(n, max_k, round(math.sqrt(n / 2))))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, cosine similarity to the assigned centroid) for unit rows ``x``."""
    if len(x) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sims, labels = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return labels[:, 0].astype(np.int64), np.clip(sims[:, 0], -1.0, 1.0)


class SphericalKMeans:
    """Fits unit-norm centroids; ``k=None`` means :func:`auto_k`. Learned: ``centroids_``."""

    def __init__(
        self,
        k: int | None = None,
        max_k: int = 512,
        niter: int = 20,
        warm_niter: int = 10,
        fit_sample_size: int = 50_000,
        seed: int = 0,
    ):
        self.k = k
        self.max_k = max_k
        self.niter = niter
        self.warm_niter = warm_niter
        self.fit_sample_size = fit_sample_size
        self.seed = seed

    def fit(self, x: np.ndarray, init_centroids: np.ndarray | None = None) -> SphericalKMeans:
        """Fit on unit rows ``x`` (a seeded sample of them when there are more than the cap)."""
        if len(x) == 0:
            raise ValueError("cannot cluster zero samples")
        rng = np.random.default_rng(self.seed)
        if len(x) > self.fit_sample_size:
            x = x[np.sort(rng.choice(len(x), self.fit_sample_size, replace=False))]
        x = np.ascontiguousarray(x, dtype=np.float32)
        wanted = self.k if self.k is not None else auto_k(len(x), self.max_k)
        previous = 0 if init_centroids is None else len(init_centroids)
        if previous == 0:
            self.centroids_ = self._cold_fit(x, min(wanted, len(x)))
        else:
            assert init_centroids is not None
            fresh = min(max(0, wanted - previous), max(0, len(x) - previous))
            seeds = np.vstack([init_centroids, _farthest_first(x, init_centroids, fresh)])
            self.centroids_ = self._warm_fit(x, seeds.astype(np.float32))
        self.n_new_clusters_ = len(self.centroids_) - previous
        return self

    def _cold_fit(self, x: np.ndarray, k: int) -> np.ndarray:
        if k == 1:
            return normalize_rows(x.mean(axis=0, keepdims=True))
        km = faiss.Kmeans(
            x.shape[1],
            k,
            niter=self.niter,
            spherical=True,
            seed=self.seed,
            verbose=False,
            min_points_per_centroid=1,
            max_points_per_centroid=max(256, math.ceil(len(x) / k)),
        )
        km.train(x)
        assert km.centroids is not None
        return normalize_rows(km.centroids)

    def _warm_fit(self, x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        for _ in range(self.warm_niter):
            labels, _ = nearest_centroid(x, centroids)
            sums = np.zeros_like(centroids, dtype=np.float64)
            np.add.at(sums, labels, x)
            occupied = np.bincount(labels, minlength=len(centroids)) > 0
            updated = centroids.copy()
            updated[occupied] = normalize_rows(sums[occupied])
            if np.allclose(updated, centroids, atol=1e-6):
                break
            centroids = updated
        return centroids


def _farthest_first(x: np.ndarray, centroids: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows of ``x`` chosen greedily farthest from ``centroids`` and from each other."""
    if count <= 0:
        return np.empty((0, x.shape[1]), dtype=np.float32)
    best = (x @ centroids.T).max(axis=1)
    chosen: list[int] = []
    for _ in range(count):
        i = int(np.argmin(best))
        chosen.append(i)
        best = np.maximum(best, x @ x[i])
    return x[chosen]
