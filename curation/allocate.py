"""Split a budget into per-cluster quotas that sum exactly to it.

Weights are ``(1 - eta) * ((1 - surprise) * share**tau + surprise * surprise_share)
+ eta * reference_share`` (each term normalised). ``surprise_share`` is each cluster's part of the
round's ``budget`` most surprising candidates (lowest edge key: the generator's confidence, or
with a reference the candidate's place in the reference matching, :mod:`curation.matching`):
the clusters the generator has begun to lose are those it finds surprising, and the budget
follows them (the surprising tail is what top-p sampling truncates each generation; Gambetta et
al. 2024).
``tau < 1`` flattens toward small clusters; the reference term steers the mix toward real data.
``floor`` (opt-in) raises each weight to at least that fraction of the cluster's reference share,
then normalises (so a raised cluster ends between ``floor / (1 + floor)`` and ``floor`` of its
reference share): the surprise quotas stay where they exceed it, and no mode of the reference is
starved.
Quotas are capped by what each cluster can supply; a capped cluster passes the rest on to the
others, in proportion to their weights.
"""

from __future__ import annotations

import numpy as np


def surprise_shares(
    key: np.ndarray, labels: np.ndarray, selectable: np.ndarray, budget: int, k: int
) -> np.ndarray | None:
    """How many of the ``budget`` selectable candidates of lowest edge ``key`` each cluster
    holds; None when any key is unknown."""
    if not len(selectable) or np.isnan(key[selectable]).any():
        return None
    top = selectable[np.argsort(key[selectable], kind="stable")[:budget]]
    return np.bincount(labels[top], minlength=k).astype(np.float64)


def allocation_weights(
    shares: np.ndarray,
    reference_shares: np.ndarray | None,
    tau: float,
    eta: float,
    surprise: float = 0.0,
    surprising: np.ndarray | None = None,
    floor: float = 0.0,
) -> np.ndarray:
    """Normalised cluster weights (the module doc's formula); a term whose input is missing
    (no reference, no confidence) drops out. ``floor`` raises every cluster to at least that
    fraction of its reference share before normalising."""
    flattened = _normalised(np.power(np.clip(shares, 0.0, None), tau))
    if surprising is not None and surprising.sum() > 0:
        flattened = (1.0 - surprise) * flattened + surprise * _normalised(surprising)
    if reference_shares is None or reference_shares.sum() <= 0:
        return flattened
    reference = _normalised(reference_shares)
    mixed = (1.0 - eta) * flattened + eta * reference
    return _normalised(np.maximum(mixed, floor * reference)) if floor > 0 else mixed


def allocate(budget: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Integer quotas ≤ capacity summing to ``min(budget, capacity.sum())``.

    Largest-remainder rounding, ties broken by lower cluster id, so the result is deterministic.
    """
    quotas = np.zeros(len(weights), dtype=np.int64)
    remaining = min(int(budget), int(capacity.sum()))
    while remaining > 0:
        room = capacity - quotas
        open_ = room > 0
        w = np.where(open_, weights, 0.0)
        if w.sum() <= 0:
            w = open_.astype(np.float64)
        ideal = remaining * w / w.sum()
        share = np.minimum(np.floor(ideal).astype(np.int64), room)
        left = remaining - int(share.sum())
        if left > 0:
            fraction = np.where(open_ & (share < room), ideal - np.floor(ideal), -1.0)
            order = np.lexsort((np.arange(len(w)), -fraction))
            for c in order[:left]:
                if fraction[c] < 0:
                    break
                share[c] += 1
        quotas += share
        remaining -= int(share.sum())
    return quotas


def _normalised(x: np.ndarray) -> np.ndarray:
    total = float(x.sum())
    return x / total if total > 0 else x.astype(np.float64)
