"""Center/edge selection inside one cluster.

Two orders over the same selectable members, both by the round's **edge key** (lowest first):
without a reference, the generator's confidence (mean token log-probability, the least
confident first); with one, the candidate's place in the greedy reference matching
(:mod:`curation.matching`: surprising *and* real-like, re-measured after every choice).
**Centers** are representative: the members ranked by distance to the centroid and by the key,
best mean rank first. **Edges** are diverse and surprising: the lowest key first (the farthest
first when no confidence is known). The surprising tail is exactly what top-p sampling removes
each generation, and keeping it is what slowed collapse on the benchmark (`ppl_high` beat
random by a third); centers chosen for *confidence*, as the design first had it, cost held-out
perplexity (bench/results/collapse-explore1.md), and selecting toward centroids narrows the
distribution (Qiao et al. 2026).

Before either order, near-duplicates (SemDeDup's rule, the most representative copy kept),
distance outliers and implausible texts (the far tail of the round's own confidence
distribution: garbage, not surprise) are rejected with their reason. A quota is split by the
cluster's edge ratio; a pool that runs dry hands its share to the other, and a cluster that runs
dry reports it so that the curator can pass the rest of its quota on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np


class ClusterPool:
    """The selectable members of one cluster and what has been taken or rejected so far;
    ``key`` is every candidate's edge key (the module doc; NaN where unknown)."""

    def __init__(
        self,
        members: np.ndarray,
        distances: np.ndarray,
        key: np.ndarray,
        reasons: dict[int, str],
        edge_ratio: float,
    ):
        self.edge_ratio = edge_ratio
        self.rejected: dict[int, str] = {int(i): reasons[int(i)] for i in members
                                         if int(i) in reasons}
        keep = np.array([i for i in members if int(i) not in self.rejected], dtype=np.int64)
        self.centers: list[int] = []
        self.edges: list[int] = []
        self._taken: set[int] = set()
        self._size = len(keep)
        # Both queues hold every selectable member; whichever role takes one first keeps it.
        self._center_queue = iter(keep[_center_order(distances[keep], key[keep])].tolist())
        self._edge_queue = iter(keep[_edge_order(distances[keep], key[keep])].tolist())

    @property
    def remaining(self) -> int:
        """Members that could still be taken."""
        return self._size - len(self._taken)

    def take(self, quota: int) -> int:
        """Take up to ``quota`` more members; returns how many were taken."""
        want_edges = math.floor(self.edge_ratio * quota + 0.5)
        taken_edges = self._take(self._edge_queue, self.edges, want_edges)
        taken_centers = self._take(self._center_queue, self.centers, quota - taken_edges)
        if taken_edges + taken_centers < quota:  # centers ran dry: fill with edges
            taken_edges += self._take(
                self._edge_queue, self.edges, quota - taken_edges - taken_centers
            )
        return taken_edges + taken_centers

    def _take(self, queue: Iterator[int], into: list[int], count: int) -> int:
        """Move up to ``count`` members not yet taken from ``queue`` into ``into``."""
        taken = 0
        while taken < count and (i := next(queue, None)) is not None:
            if i not in self._taken:
                self._taken.add(i)
                into.append(i)
                taken += 1
        return taken


def _center_order(distances: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Nearest and most surprising (lowest ``key``) first: the mean of the two ranks (distance
    alone when the key is unknown); ties by distance."""
    if np.isnan(key).any():
        return np.argsort(distances, kind="stable")
    combined = ranks(distances) + ranks(key)
    return np.lexsort((distances, combined))


def _edge_order(distances: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Most surprising (lowest ``key``) first, farthest first when the key is unknown; ties by
    distance, farthest first."""
    if np.isnan(key).any():
        return np.argsort(-distances, kind="stable")
    return np.lexsort((-distances, key))


def ranked_edge_key(confidence_ranks: np.ndarray, affinity_ranks: np.ndarray, weight: float
                    ) -> np.ndarray:
    """The weighted mean of two ranks as fractions of the round, lowest first: the
    confidence's (least confident first) and the reference affinity's (highest first).
    Ranks, because a log-probability and a log ratio share no scale; :mod:`curation.matching`
    ranks the confidence once a round and the affinity at every step."""
    mixed = (1.0 - weight) * confidence_ranks + weight * affinity_ranks
    return mixed / max(len(confidence_ranks) - 1, 1)


def ranks(values: np.ndarray) -> np.ndarray:
    """Each value's place in ascending order (ties by position), from 0."""
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def select_all(
    pools: list[ClusterPool],
    quotas: np.ndarray,
    weights: np.ndarray,
    budget: int,
    allocate: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Fill every pool's quota; re-allocate what dry clusters could not supply. Returns the
    final number taken per cluster."""
    taken = np.zeros(len(pools), dtype=np.int64)
    pending = quotas.copy()
    while True:
        for c, pool in enumerate(pools):
            if pending[c] > 0:
                taken[c] += pool.take(int(pending[c]))
        shortfall = budget - int(taken.sum())
        capacity = np.array([p.remaining for p in pools], dtype=np.int64)
        if shortfall <= 0 or capacity.sum() == 0:
            return taken
        pending = allocate(shortfall, weights, capacity)
