"""Mode loss: the real data's modes the candidates have lost, by a test that knows the round size.

A fixed floor on reference coverage cannot tell a small round from a collapsed one: 100 real
samples reach only part of 80 clusters by chance, while 5,000 synthetic ones can leave a fifth
of the real data's modes thin and still touch every cluster. So the rule has two parts:

- the **missing mass**: how much of the reference's cluster mix the candidates lack,
  ``sum_c max(0, reference_share_c - candidate_share_c)`` (the total-variation distance), tested
  by permutation: if the candidates were drawn like the reference, their cluster counts would be
  a multivariate hypergeometric draw of ``n`` from the pooled counts (candidates + reference).
  The round has lost modes only when its missing mass exceeds what such draws give with
  probability ``alpha``: the false-alarm rate on real data, whatever the round's size;
- the **depleted** clusters, those modes: the candidates' share of the cluster has fallen below
  ``lost_share`` times the reference's; their reference shares together are the **lost
  reference mass**.

Two tests, each at ``alpha / 2`` (so ``alpha`` bounds the false-alarm rate together), because
collapse comes in two shapes. A **narrowing** spreads over many clusters: a round of 120
candidates drawn from a quarter of the fortune categories left a dozen clusters at a third of
their share, none of which a per-cluster test could call lost, while the missing mass was 0.37
against 0.16 by chance (p < 0.0001). A **vanished mode** is one cluster gone, which the missing
mass of a large mix hides in its noise: each cluster's candidate count, given its pooled count,
is binomial with the candidates' part of the pool, and a count far below it (one-sided exact
p below ``alpha / (2k)``, Bonferroni over the clusters) is a lost mode on its own.

The **tail** is the reference's smallest clusters holding ``tail_mass`` of it: what top-p
truncation removes first (A Tale of Tails). ``tail_coverage`` is the share of the tail's mass
that is not depleted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from curation.diversity import occupancy


@dataclass(frozen=True)
class DepletedMode:
    """One reference cluster the candidates have left thin."""

    cluster: int
    reference_share: float
    candidates: int
    expected: float  # candidates it would hold if they were drawn like the reference


@dataclass(frozen=True)
class ModeLoss:
    """A round's depleted clusters (largest reference share first) and the test of their mass."""

    depleted: list[DepletedMode]
    lost_reference_mass: float  # reference share of the depleted clusters together
    missing_mass: float  # sum of max(0, reference share - candidate share) over the clusters
    null_missing_mass: float  # its mean over rounds drawn like the reference
    p_value: float  # of the two tests together (Bonferroni)
    lost: bool  # p_value <= alpha and some cluster depleted: the candidates have lost modes
    tail: list[int]  # the reference's smallest clusters holding ``tail_mass`` of it
    tail_coverage: float  # share of the tail's reference mass not depleted; 1.0 without a tail

    @property
    def clusters(self) -> list[int]:
        return [m.cluster for m in self.depleted]


def tail_clusters(reference_counts: np.ndarray, tail_mass: float) -> np.ndarray:
    """The smallest non-empty reference clusters whose shares add up to at most ``tail_mass``
    (at least the smallest one); ties by cluster id."""
    occupied = np.flatnonzero(reference_counts)
    if not len(occupied):
        return occupied
    order = occupied[np.lexsort((occupied, reference_counts[occupied]))]
    shares = reference_counts[order] / reference_counts.sum()
    within = np.cumsum(shares) <= tail_mass + 1e-12
    return np.sort(order[: max(1, int(within.sum()))])


def permutations_for(alpha: float) -> int:
    """Enough permutations that a p-value of ``alpha / 2`` is resolved with room to spare (ten
    times its floor; at least 999): a clear loss must not sit at the test's resolution."""
    return max(999, math.ceil(10 / alpha) - 1)


def _missing_mass(candidates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Missing mass of each row of candidate and reference counts (shape ``(..., k)``)."""
    cand_share = candidates / candidates.sum(axis=-1, keepdims=True)
    ref_share = reference / reference.sum(axis=-1, keepdims=True)
    return np.clip(ref_share - cand_share, 0.0, None).sum(axis=-1)


def find_lost_modes(
    candidate_labels: np.ndarray,
    reference_labels: np.ndarray,
    k: int,
    *,
    alpha: float,
    lost_share: float,
    tail_mass: float,
    seed: int,
) -> ModeLoss:
    """The permutation test of the missing mass, and the depleted clusters (the module doc)."""
    reference = occupancy(reference_labels, k, "reference_labels")
    if reference.sum() == 0:
        raise ValueError("reference_labels: empty; mode loss needs at least one reference sample")
    return compare_mixes(occupancy(candidate_labels, k, "candidate_labels"), reference,
                         alpha=alpha, lost_share=lost_share, tail_mass=tail_mass, seed=seed)


def compare_mixes(
    candidates: np.ndarray,
    reference: np.ndarray,
    *,
    alpha: float,
    lost_share: float,
    tail_mass: float,
    seed: int,
) -> ModeLoss:
    """:func:`find_lost_modes` on cluster counts: also how a round's mix is compared with an
    earlier round's (``reference`` = that round's counts), to see modes the generator dropped."""
    k = len(reference)
    n, m = int(candidates.sum()), int(reference.sum())
    ref_share = reference / m
    tail = tail_clusters(reference, tail_mass)
    if n == 0:  # nothing left of any mode
        observed, null_mass, p_value = 1.0, 0.0, 0.0
        depleted_ids = np.flatnonzero(reference)
    else:
        observed = float(_missing_mass(candidates, reference))
        pooled = candidates + reference
        drawn = np.random.default_rng(seed).multivariate_hypergeometric(
            pooled, n, size=permutations_for(alpha))
        null = _missing_mass(drawn, pooled - drawn)
        null_mass = float(null.mean())
        p_mix = (1 + np.count_nonzero(null >= observed - 1e-12)) / (len(null) + 1)
        # P(X <= observed) with X ~ Binomial(pooled, n / (n + m)), per cluster: binom.cdf's own
        # kernel (scipy.stats would take 0.7 s to import), imported at its first use so that a
        # server that never compares a mix does not pay its 0.3 s at start.
        from scipy.special import bdtr

        p_cluster = bdtr(candidates, pooled, n / (n + m))[reference > 0].min(initial=1.0)
        p_value = float(min(1.0, 2 * min(p_mix, k * p_cluster)))
        depleted_ids = np.flatnonzero((reference > 0) & (candidates < lost_share * ref_share * n))
    depleted = sorted(
        (DepletedMode(int(c), float(ref_share[c]), int(candidates[c]), float(ref_share[c] * n))
         for c in depleted_ids),
        key=lambda mode: (-mode.reference_share, mode.cluster),
    )
    tail_share = float(ref_share[tail].sum())
    tail_depleted = float(ref_share[np.intersect1d(tail, depleted_ids)].sum())
    return ModeLoss(
        depleted=depleted,
        lost_reference_mass=float(ref_share[depleted_ids].sum()),
        missing_mass=observed,
        null_missing_mass=null_mass,
        p_value=p_value,
        lost=p_value <= alpha and len(depleted) > 0,
        tail=[int(c) for c in tail],
        tail_coverage=1.0 - tail_depleted / tail_share if tail_share > 0 else 1.0,
    )
