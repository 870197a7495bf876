import numpy as np
import pytest

from curation.allocate import allocate, allocation_weights, surprise_shares


@pytest.mark.parametrize("budget", [1, 7, 50, 99, 100])
def test_quotas_sum_exactly_to_budget_and_respect_capacity(budget: int) -> None:
    rng = np.random.default_rng(budget)
    weights = rng.random(9)
    capacity = rng.integers(0, 30, 9)
    quotas = allocate(budget, weights, capacity)
    assert quotas.sum() == min(budget, capacity.sum())
    assert np.all(quotas <= capacity) and np.all(quotas >= 0)


def test_a_full_cluster_passes_its_rest_on_in_proportion() -> None:
    quotas = allocate(30, np.array([0.8, 0.1, 0.1]), np.array([4, 100, 100]))
    assert quotas.tolist() == [4, 13, 13]


def test_tau_below_one_flattens_toward_small_clusters() -> None:
    shares = np.array([0.9, 0.1])
    flat = allocation_weights(shares, None, tau=0.5, eta=0.0)
    assert flat[1] > 0.1 and np.isclose(flat.sum(), 1.0)


def test_reference_share_protects_a_mode_the_candidates_are_losing() -> None:
    shares = np.array([0.99, 0.01])
    without = allocate(100, allocation_weights(shares, None, 1.0, 0.3), np.array([1000, 50]))
    with_ref = allocate(
        100, allocation_weights(shares, np.array([0.5, 0.5]), 1.0, 0.3), np.array([1000, 50])
    )
    assert without[1] == 1
    assert with_ref[1] >= 15


def test_zero_weight_clusters_still_fill_when_nothing_else_can() -> None:
    quotas = allocate(5, np.array([1.0, 0.0]), np.array([2, 10]))
    assert quotas.tolist() == [2, 3]


def test_surprise_shares_count_each_cluster_in_the_least_confident_budget() -> None:
    confidence = np.array([-1.0, -5.0, -4.0, -0.5, -6.0, np.nan])
    labels = np.array([0, 1, 1, 0, 2, 0])
    selectable = np.array([0, 1, 2, 3, 4])  # the NaN row was rejected before
    assert surprise_shares(confidence, labels, selectable, 3, 3).tolist() == [0, 2, 1]
    assert surprise_shares(confidence, labels, np.arange(6), 3, 3) is None  # unknown: no term


def test_the_budget_follows_the_surprising_clusters() -> None:
    shares = np.array([0.9, 0.1])  # the candidates are mostly cluster 0 ...
    surprising = np.array([20.0, 80.0])  # ... but the surprising ones are in cluster 1
    by_share = allocate(100, allocation_weights(shares, None, 1.0, 0.0), np.array([900, 100]))
    by_surprise = allocate(
        100, allocation_weights(shares, None, 1.0, 0.0, 1.0, surprising), np.array([900, 100])
    )
    assert by_share.tolist() == [90, 10]
    assert by_surprise.tolist() == [20, 80]


def test_the_floor_keeps_every_cluster_near_its_reference_share() -> None:
    shares = np.array([0.5, 0.3, 0.2])
    surprising = np.array([90.0, 10.0, 0.0])  # nothing surprising in cluster 2 ...
    reference = np.array([0.2, 0.3, 0.5])  # ... which holds half of the real data
    weights = allocation_weights(shares, reference, 1.0, 0.0, 1.0, surprising, floor=1.0)
    # max(0.9, 0.2), max(0.1, 0.3), max(0.0, 0.5), normalised
    assert np.allclose(weights, np.array([0.9, 0.3, 0.5]) / 1.7)
    half = allocation_weights(shares, reference, 1.0, 0.0, 1.0, surprising, floor=0.5)
    assert np.allclose(half, np.array([0.9, 0.15, 0.25]) / 1.3)
    unfloored = allocation_weights(shares, reference, 1.0, 0.0, 1.0, surprising)
    assert np.allclose(unfloored, [0.9, 0.1, 0.0])
    assert np.allclose(allocation_weights(shares, None, 1.0, 0.0, 1.0, surprising, floor=1.0),
                       [0.9, 0.1, 0.0])  # no reference: no floor
    assert np.allclose(allocation_weights(shares, np.zeros(3), 1.0, 0.0, 1.0, surprising,
                                          floor=1.0), [0.9, 0.1, 0.0])  # none eligible
