"""Per-cluster measurements: size, share, dispersion and its reference, near-duplicates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

_BLOCK = 2048


@dataclass
class ClusterStats:
    """What one cluster looks like this round (eligible candidates only)."""

    size: int
    share: float
    dispersion: float  # mean cosine distance of members to the centroid
    reference_dispersion: float | None
    reference_source: Literal["reference", "baseline", "none"]
    reference_share: float
    near_duplicates: int


def mean_by_cluster(labels: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` per cluster id (NaN for an empty cluster)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.bincount(labels, weights=values, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def near_duplicate_mask(embeddings: np.ndarray, eps: float) -> np.ndarray:
    """SemDeDup rule: row i is a duplicate if an EARLIER row has cosine ≥ 1 - eps with it.

    Rows must be ordered by preference (nearest to the centroid first), so the kept copy of a
    duplicate group is the most representative one. Blocked to bound memory on large clusters.
    """
    n = len(embeddings)
    mask = np.zeros(n, dtype=bool)
    threshold = 1.0 - eps
    for start in range(0, n, _BLOCK):
        block = embeddings[start : start + _BLOCK]
        sims = block @ embeddings[: start + len(block)].T
        rows = np.arange(len(block))[:, None]
        cols = np.arange(start + len(block))[None, :]
        sims[cols >= rows + start] = -1.0  # only compare with earlier rows
        mask[start : start + len(block)] = sims.max(axis=1) >= threshold
    return mask


def near_duplicates_by_cluster(
    vectors: np.ndarray, labels: np.ndarray, distances: np.ndarray, k: int, eps: float
) -> np.ndarray:
    """SemDeDup within each cluster ``0..k-1``: :func:`near_duplicate_mask` over its members
    ordered nearest to the centroid first (ties in row order), so the kept copy of a group is its
    most central one. One mask for centers and edges alike."""
    order = np.argsort(distances, kind="stable")
    mask = np.zeros(len(vectors), dtype=bool)
    for c in range(k):
        members = order[labels[order] == c]
        mask[members] = near_duplicate_mask(vectors[members], eps)
    return mask


def measure_clusters(
    labels: np.ndarray,
    distances: np.ndarray,
    duplicates: np.ndarray,
    k: int,
    reference_labels: np.ndarray | None,
    reference_distances: np.ndarray | None,
    baseline: dict[int, float],
) -> list[ClusterStats]:
    """Stats for clusters ``0..k-1`` from eligible candidates' labels and distances.

    The reference dispersion of a cluster is the real-data reference's dispersion around the
    same centroid when the reference has at least two members there, else the cluster's
    dispersion in the round it first appeared (``baseline``).
    """
    n = max(1, len(labels))
    sizes = np.bincount(labels, minlength=k)
    dispersion = mean_by_cluster(labels, distances, k)
    dups = np.bincount(labels, weights=duplicates.astype(np.float64), minlength=k)
    ref_sizes = np.zeros(k, dtype=np.int64)
    ref_dispersion = np.full(k, np.nan)
    if reference_labels is not None and reference_distances is not None and len(reference_labels):
        ref_sizes = np.bincount(reference_labels, minlength=k)
        ref_dispersion = mean_by_cluster(reference_labels, reference_distances, k)
    ref_total = max(1, int(ref_sizes.sum()))
    stats = []
    for c in range(k):
        source: Literal["reference", "baseline", "none"] = "none"
        reference: float | None = None
        if ref_sizes[c] >= 2:
            source, reference = "reference", float(ref_dispersion[c])
        elif c in baseline:
            source, reference = "baseline", baseline[c]
        stats.append(
            ClusterStats(
                size=int(sizes[c]),
                share=float(sizes[c] / n),
                dispersion=0.0 if sizes[c] == 0 else float(dispersion[c]),
                reference_dispersion=reference,
                reference_source=source,
                reference_share=float(ref_sizes[c] / ref_total),
                near_duplicates=int(dups[c]),
            )
        )
    return stats
