import numpy as np
import pytest

from curation.cluster import SphericalKMeans, auto_k, nearest_centroid, normalize_rows


def blobs(n_per: int, centers: int, seed: int, spread: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = normalize_rows(rng.normal(size=(centers, 32)))
    points = np.repeat(means, n_per, axis=0) + spread * rng.normal(size=(centers * n_per, 32))
    return normalize_rows(points)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 1), (8, 2), (200, 10), (10**6, 512)])
def test_auto_k_never_exceeds_n_or_max_k(n: int, k: int) -> None:
    assert auto_k(n, max_k=512) == k


def test_a_single_sample_is_one_cluster_around_itself() -> None:
    x = blobs(1, 1, seed=0)
    km = SphericalKMeans(seed=0).fit(x)
    labels, sims = nearest_centroid(x, km.centroids_)
    assert km.centroids_.shape == (1, 32) and labels.tolist() == [0]
    assert sims[0] == pytest.approx(1.0, abs=1e-5)


def test_k_is_capped_by_n() -> None:
    x = blobs(1, 3, seed=1)
    assert len(SphericalKMeans(k=10, seed=0).fit(x).centroids_) == 3


def test_warm_start_keeps_ids_and_opens_new_clusters_for_new_modes() -> None:
    x1 = blobs(50, 5, seed=2)
    km1 = SphericalKMeans(k=5, seed=0).fit(x1)
    x2 = blobs(50, 5, seed=2)[::-1].copy()  # same modes, other order
    km2 = SphericalKMeans(k=7, seed=9).fit(x2, init_centroids=km1.centroids_)
    assert km2.n_new_clusters_ == 2
    cos = np.sum(km1.centroids_ * km2.centroids_[:5], axis=1)
    assert np.all(cos > 0.99)
    l1, _ = nearest_centroid(x1, km1.centroids_)
    l2, _ = nearest_centroid(x1, km2.centroids_)
    assert np.mean(l1 == l2) > 0.95


def test_an_emptied_cluster_keeps_its_centroid_on_warm_start() -> None:
    x = blobs(40, 4, seed=3)
    km1 = SphericalKMeans(k=4, seed=0).fit(x)
    labels, _ = nearest_centroid(x, km1.centroids_)
    survivors = x[labels != 2]
    km2 = SphericalKMeans(k=4, seed=0).fit(survivors, init_centroids=km1.centroids_)
    assert np.allclose(km2.centroids_[2], km1.centroids_[2])


def test_large_n_fits_on_a_seeded_sample_deterministically() -> None:
    x = blobs(3000, 4, seed=4)
    a = SphericalKMeans(k=4, fit_sample_size=1000, seed=5).fit(x).centroids_
    b = SphericalKMeans(k=4, fit_sample_size=1000, seed=5).fit(x).centroids_
    assert np.array_equal(a, b)
