"""Center/edge selection inside one cluster.

Members are ranked by distance to the centroid. The nearest ``1 - r`` of them form the center
pool, the rest the edge pool. Centers are taken nearest first, skipping near-duplicates; edges
farthest first, skipping outliers and whatever the edge check (perplexity) rejects. A pool that
runs dry hands its share to the other, and a cluster that runs dry reports it so that the
curator can pass the rest of its quota on to other clusters.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

EdgeCheck = Callable[[Sequence[int]], list[str | None]]


class ClusterPool:
    """The selectable members of one cluster and what has been taken or rejected so far."""

    def __init__(
        self,
        members: np.ndarray,
        distances: np.ndarray,
        duplicates: np.ndarray,
        edge_ratio: float,
        outlier_cut: float,
    ):
        order = members[np.argsort(distances[members], kind="stable")]
        boundary = len(order) - math.floor(edge_ratio * len(order) + 0.5)
        self.edge_ratio = edge_ratio
        self.rejected: dict[int, str] = {}
        self.centers: list[int] = []
        self.edges: list[int] = []
        self._center_queue: deque[int] = deque()
        for i in order[:boundary]:
            if duplicates[i]:
                self.rejected[int(i)] = "near_duplicate"
            else:
                self._center_queue.append(int(i))
        self._edge_queue: deque[int] = deque()
        for i in order[boundary:][::-1]:
            if distances[i] > outlier_cut:
                self.rejected[int(i)] = "outlier"
            else:
                self._edge_queue.append(int(i))

    @property
    def remaining(self) -> int:
        """Members that could still be taken (edges may yet fail their check)."""
        return len(self._center_queue) + len(self._edge_queue)

    def take(self, quota: int, edge_check: EdgeCheck) -> int:
        """Take up to ``quota`` more members; returns how many were taken."""
        want_edges = math.floor(self.edge_ratio * quota + 0.5)
        taken_edges = self._take_edges(want_edges, edge_check)
        taken_centers = self._take_centers(quota - taken_edges)
        if taken_edges + taken_centers < quota:  # centers ran dry: fill with edges
            taken_edges += self._take_edges(quota - taken_edges - taken_centers, edge_check)
        return taken_edges + taken_centers

    def _take_centers(self, count: int) -> int:
        taken = 0
        while taken < count and self._center_queue:
            self.centers.append(self._center_queue.popleft())
            taken += 1
        return taken

    def _take_edges(self, count: int, edge_check: EdgeCheck) -> int:
        taken = 0
        while taken < count and self._edge_queue:
            # Check a few more than needed in one batch: some will fail.
            size = min(len(self._edge_queue), count - taken + 2)
            batch = [self._edge_queue.popleft() for _ in range(size)]
            unused: list[int] = []
            for i, reason in zip(batch, edge_check(batch), strict=True):
                if reason is not None:
                    self.rejected[i] = reason
                elif taken < count:
                    self.edges.append(i)
                    taken += 1
                else:
                    unused.append(i)
            self._edge_queue.extendleft(reversed(unused))
        return taken


def select_all(
    pools: list[ClusterPool],
    quotas: np.ndarray,
    weights: np.ndarray,
    budget: int,
    edge_check: EdgeCheck,
    allocate: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Fill every pool's quota; re-allocate what dry clusters could not supply. Returns the
    final number taken per cluster."""
    taken = np.zeros(len(pools), dtype=np.int64)
    pending = quotas.copy()
    while True:
        for c, pool in enumerate(pools):
            if pending[c] > 0:
                taken[c] += pool.take(int(pending[c]), edge_check)
        shortfall = budget - int(taken.sum())
        capacity = np.array([p.remaining for p in pools], dtype=np.int64)
        if shortfall <= 0 or capacity.sum() == 0:
            return taken
        pending = allocate(shortfall, weights, capacity)
