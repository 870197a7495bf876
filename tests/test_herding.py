"""Embedding herding: the selection's embeddings matched to the reference's. Real fortunes
embedded by the bundled model; the categories only build the rounds, herding never sees them."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

import curation.herding
from curation.cluster import SphericalKMeans, nearest_centroid
from curation.herding import EmbeddingHerding


def _categories(fortunes: list[dict], embedder) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """The embeddings of every category of the sample that has its full 40 texts."""
    by: dict[str, list[str]] = defaultdict(list)
    for f in fortunes:
        by[f["category"]].append(f["text"])
    return {c: embedder.encode(texts) for c, texts in sorted(by.items()) if len(texts) >= 40}


def _radius_sq(reference: np.ndarray) -> float:
    centroids = SphericalKMeans(4, 4, 20, 5, 10_000, 0).fit(reference, None).centroids_
    return float(np.median(2.0 - 2.0 * nearest_centroid(reference, centroids)[1]))


def _herd(herding: EmbeddingHerding, count: int) -> list[int]:
    """``count`` choices, each the highest gain not yet chosen."""
    chosen: list[int] = []
    for _ in range(count):
        gain = herding.gain()
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
        herding.take(np.array(chosen[-1:]))
    return chosen


def test_herding_takes_more_of_a_mode_the_candidates_are_losing(fortunes: list[dict],
                                                                 embedder) -> None:
    categories = _categories(fortunes, embedder)
    names = sorted(categories)
    rng = np.random.default_rng(0)
    taken = []
    for _ in range(30):
        # The reference holds two categories half and half; the candidates hold the second at a
        # sixth of the first's count, as a generator that is losing it would.
        first, second = (categories[c] for c in rng.choice(names, 2, replace=False))
        reference = np.vstack([first[:20], second[:20]])
        candidates = np.vstack([first[20:38], second[20:23]])
        herding = EmbeddingHerding().fit(candidates, reference, _radius_sq(reference))
        taken.append(int((np.array(_herd(herding, 6)) >= 18).sum()))
    assert herding.taken_ == 6 and herding.reference_rows_ == 40
    # A random 6 of the 21 hold 6 x 3 / 21 = 0.86 of the losing category's texts on average;
    # the reference's share would be 3. Fortune categories overlap in embedding space (a text
    # is nearer its own category's centroid than another's by little), so herding gets part of
    # the way: it takes about twice chance's share, and fails to take any in few pairs.
    assert np.mean(taken) > 1.5 * 6 * 3 / 21
    assert sum(t == 0 for t in taken) <= 3


def test_a_choice_lowers_the_gain_of_its_neighbours(fortunes: list[dict], embedder) -> None:
    texts = [f["text"] for f in fortunes[:300]]
    vectors = embedder.encode(texts)
    herding = EmbeddingHerding().fit(vectors[:200], vectors[200:], _radius_sq(vectors[200:]))
    before = herding.gain()
    herding.take(np.array([0]))
    drop = before - herding.gain()
    similarity = vectors[:200] @ vectors[0]
    nearest, farthest = np.argsort(-similarity)[1:11], np.argsort(similarity)[:10]
    assert drop[0] == drop.max()  # the chosen text itself
    assert drop[nearest].mean() > 2 * drop[farthest].mean() > 0


def test_blocks_and_the_reference_sample_change_nothing_but_the_cost(
    fortunes: list[dict], embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = embedder.encode([f["text"] for f in fortunes[:400]])
    whole = EmbeddingHerding(max_reference=150, seed=3).fit(vectors[:100], vectors[100:], 1.0)
    monkeypatch.setattr(curation.herding, "BLOCK_ROWS", 7)
    blocked = EmbeddingHerding(max_reference=150, seed=3).fit(vectors[:100], vectors[100:], 1.0)
    assert whole.reference_rows_ == 150 and whole.bandwidth_ == 0.5
    assert np.allclose(whole.attraction_, blocked.attraction_, rtol=1e-6)
    other_sample = EmbeddingHerding(max_reference=150, seed=4).fit(vectors[:100], vectors[100:],
                                                                   1.0)
    assert not np.array_equal(whole.attraction_, other_sample.attraction_)
    assert _herd(whole, 20) == _herd(blocked, 20)


@pytest.mark.parametrize("radius_sq", [0.0, 1e-4])
def test_a_reference_with_no_spread_still_gives_the_kernel_a_scale(
    fortunes: list[dict], embedder, radius_sq: float
) -> None:
    """Copies of one reference text sit on (or next to) their centroid: a kernel that narrow
    would vanish for every candidate. The bandwidth then comes from the candidates' distances
    to the reference, and the gains rank the candidates nearest that text first."""
    vectors = embedder.encode([f["text"] for f in fortunes[:60]])
    reference = np.repeat(vectors[:1], 30, axis=0)
    herding = EmbeddingHerding().fit(vectors[1:], reference, radius_sq)
    sq = 2.0 - 2.0 * vectors[1:] @ vectors[0]
    assert herding.bandwidth_ == pytest.approx(0.5 * float(np.median(sq)), rel=1e-4)
    assert np.isfinite(herding.gain()).all()
    assert int(np.argmax(herding.gain())) == int(np.argmin(sq))
    copies = EmbeddingHerding().fit(reference[:5], reference, 0.0)  # nothing tells them apart
    assert copies.bandwidth_ == 1.0 and np.isfinite(copies.gain()).all()
    spread_out = EmbeddingHerding().fit(vectors[1:], vectors[30:], 0.4)  # the clusters' scale
    assert spread_out.bandwidth_ == pytest.approx(0.2)
