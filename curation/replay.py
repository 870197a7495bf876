"""Replay of lost modes: real reference exemplars of the clusters the candidates have lost.

Shumailov et al. keep collapse at bay with a tenth of real data each generation; drawn at random,
that real data mostly repeats the modes the synthetic data still has. Replay spends the same
share of the budget only on the modes that are missing: reference clusters whose candidate share
fell below ``lost_share`` times their reference share (or to nothing). Opt-in
(``replay.fraction`` = 0 by default): a job that already mixes real data in does not need it.
On the collapse benchmark's `anchor` regime (bench/results/collapse-anchor-all.md) DCES with
replay beat random selection with random real data in every seed, but not DCES's own selection
with random real data (+2.7% held-out perplexity, 95% interval −5.2% to +10.6%): the theory is
not borne out there, hence opt-in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.allocate import allocate


@dataclass
class ReplayPlan:
    """Which reference rows to return, and per cluster how many (learned by :class:`Replay`)."""

    rows: np.ndarray  # indices into the reference rows given to ``plan``
    per_cluster: np.ndarray  # (k,) exemplars replayed per cluster
    lost: list[int]  # the clusters found lost


class Replay:
    """Plans up to ``fraction * budget`` reference exemplars for the lost clusters."""

    def __init__(self, fraction: float, lost_share: float, seed: int):
        self.fraction = fraction
        self.lost_share = lost_share
        self.seed = seed

    def plan(
        self,
        budget: int,
        shares: np.ndarray,
        reference_shares: np.ndarray,
        reference_labels: np.ndarray,
    ) -> ReplayPlan:
        """Quota per lost cluster ∝ its missing share, filled by a seeded draw of its reference
        members. ``shares``/``reference_shares`` are per cluster; ``reference_labels`` per row."""
        k = len(shares)
        lost = (reference_shares > 0) & (shares < self.lost_share * reference_shares)
        available = np.bincount(reference_labels, minlength=k) * lost
        n = min(int(self.fraction * budget), int(available.sum()))
        if n <= 0:
            return ReplayPlan(np.empty(0, dtype=np.int64), np.zeros(k, dtype=np.int64),
                              [int(c) for c in np.flatnonzero(lost)])
        per_cluster = allocate(n, np.where(lost, reference_shares - shares, 0.0), available)
        rng = np.random.default_rng(self.seed)
        rows = [
            rng.choice(np.flatnonzero(reference_labels == c), int(per_cluster[c]), replace=False)
            for c in np.flatnonzero(per_cluster)
        ]
        return ReplayPlan(np.sort(np.concatenate(rows)), per_cluster,
                          [int(c) for c in np.flatnonzero(lost)])
