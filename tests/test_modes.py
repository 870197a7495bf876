"""Mode loss: the permutation test of the missing mass, and the depleted clusters."""

from __future__ import annotations

import numpy as np
import pytest

from curation.modes import ModeLoss, find_lost_modes, permutations_for, tail_clusters

K = 40
# A long-tailed mix, as real corpora have (a few large clusters, many small ones).
MIX = 1.0 / np.arange(1, K + 1) ** 1.1
MIX /= MIX.sum()


def draw(rng: np.random.Generator, mix: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(K, size=n, p=mix)


def modes(candidates: np.ndarray, reference: np.ndarray, alpha: float = 0.001,
               seed: int = 0) -> ModeLoss:
    return find_lost_modes(candidates, reference, K, alpha=alpha, lost_share=0.5,
                           tail_mass=0.1, seed=seed)


@pytest.mark.parametrize("n", [100, 1000, 5000])
def test_real_data_of_any_size_loses_no_mode(n: int) -> None:
    """100 rounds drawn like the reference: at alpha = 0.001 none may alarm (p of one or more
    ≈ 0.1), and the p-values must spread as chance does (some below 0.1, or the test is
    blind)."""
    rng = np.random.default_rng(n)
    reference = draw(rng, MIX, 10_000)
    losses = [modes(draw(rng, MIX, n), reference, seed=i) for i in range(100)]
    assert sum(loss.lost for loss in losses) == 0
    assert 0 < sum(loss.p_value < 0.1 for loss in losses) < 30


def test_a_generator_narrowed_to_half_its_modes_has_lost_them() -> None:
    rng = np.random.default_rng(2)
    reference = draw(rng, MIX, 10_000)
    narrowed = MIX.copy()
    narrowed[[3, 10, 25]] = [0.0, MIX[10] * 0.1, 0.0]
    narrowed /= narrowed.sum()
    loss = modes(draw(rng, narrowed, 2_000), reference)
    assert loss.lost and loss.p_value <= 0.001
    assert loss.clusters[:2] == [3, 10]  # largest reference share first
    assert 25 in loss.clusters
    shares = np.bincount(reference, minlength=K) / len(reference)
    assert loss.lost_reference_mass == pytest.approx(shares[loss.clusters].sum())
    assert loss.missing_mass > 2 * loss.null_missing_mass
    assert loss.depleted[0].candidates == 0
    assert loss.depleted[0].expected == pytest.approx(shares[3] * 2_000)
    assert 25 in loss.tail and 3 not in loss.tail
    assert loss.tail_coverage < 1.0


def test_a_small_round_of_a_narrowed_generator_is_caught_by_the_whole_mix() -> None:
    """120 candidates from a quarter of the modes: each cluster alone is weak evidence."""
    rng = np.random.default_rng(3)
    reference = draw(rng, MIX, 200)
    narrowed = np.where(np.arange(K) % 4 == 0, MIX, MIX * 0.15)
    loss = modes(draw(rng, narrowed / narrowed.sum(), 120), reference)
    assert loss.lost
    assert all(m.candidates < 0.5 * m.expected for m in loss.depleted)


def test_no_candidates_lose_every_reference_mode() -> None:
    loss = find_lost_modes(np.array([], dtype=np.int64), np.array([0, 0, 1, 2]), 4, alpha=0.01,
                           lost_share=0.5, tail_mass=0.3, seed=0)
    assert loss.lost and loss.clusters == [0, 1, 2]
    assert loss.lost_reference_mass == 1.0 and loss.tail_coverage == 0.0


def test_the_test_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(4)
    reference, candidates = draw(rng, MIX, 500), draw(rng, MIX, 300)
    assert modes(candidates, reference, seed=7) == modes(candidates, reference, seed=7)


def test_the_permutations_reach_half_of_alpha() -> None:
    assert permutations_for(0.001) == 9_999
    assert permutations_for(0.1) == 999
    assert permutations_for(1e-4) == 99_999


def test_tail_is_the_smallest_clusters_up_to_the_mass() -> None:
    counts = np.array([50, 3, 0, 2, 40, 5])
    assert tail_clusters(counts, 0.05).tolist() == [1, 3]  # 2% + 3% = 5%
    assert tail_clusters(counts, 0.001).tolist() == [3]  # at least the smallest
    assert tail_clusters(np.zeros(3, dtype=np.int64), 0.1).tolist() == []


def test_an_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="reference_labels: empty"):
        find_lost_modes(np.array([0]), np.array([], dtype=np.int64), 2, alpha=0.01,
                        lost_share=0.5, tail_mass=0.1, seed=0)
