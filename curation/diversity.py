"""Diversity and distribution-distance metrics of a batch of texts or embeddings.

Pure numpy functions, each reducing a whole batch to one float, deterministic for a seed, so
that the same batch always scores the same and rounds of a run can be compared. Embeddings are
rows of a 2-d array (L2-normalised float32 from the embed step); cluster labels are integer ids
in ``[0, k)``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np


def occupancy(labels: np.ndarray, k: int, name: str = "labels") -> np.ndarray:
    """Members per cluster id ``0..k-1``; ``name`` is the field that errors report."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array of cluster ids, got shape {labels.shape}")
    if labels.size == 0:
        return np.zeros(k, dtype=np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: cluster ids must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"{name}: cluster ids must lie in [0, {k}), got {labels.min()}..{labels.max()}"
        )
    return np.bincount(labels.astype(np.int64), minlength=k)


def _exp_entropy(weights: np.ndarray) -> float:
    """exp of the Shannon entropy of non-negative weights (normalised here); 0.0 if all zero."""
    p = weights[weights > 0]
    if p.size == 0:
        return 0.0
    p = p / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def effective_clusters(labels: np.ndarray, k: int) -> float:
    """exp of the occupancy entropy: ``k`` when the clusters are equally full, 1 for one cluster.

    Unlike the count of occupied clusters it discounts clusters that hold only a handful of
    samples, so it falls as soon as the candidates pile up on a few modes. 0.0 for no labels.
    """
    return _exp_entropy(occupancy(labels, k).astype(np.float64))


def _as_matrix(embeddings: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (rows x dims), got shape {x.shape}")
    return x


def _sample_rows(x: np.ndarray, sample: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``sample`` rows of ``x`` (all when fewer), drawn without replacement, as float64.

    Sampling before the float64 copy keeps memory bounded by the sample, not the batch.
    """
    if x.shape[0] > sample:
        x = x[np.sort(rng.choice(x.shape[0], size=sample, replace=False))]
    return x.astype(np.float64)


def _check_sample(sample: int, minimum: int) -> None:
    if sample < minimum:
        raise ValueError(f"sample must be >= {minimum}, got {sample}")


def vendi_score(embeddings: np.ndarray, sample: int, seed: int) -> float:
    """Vendi score (Friedman & Dieng, 2023) with the cosine kernel: the effective number of
    distinct points, from 1 (all rows identical) to n (all rows orthogonal).

    exp of the entropy of the eigenvalues of ``K / n``, ``K = X X^T``, on at most ``sample`` rows.
    ``X X^T / n`` and ``X^T X / n`` share their non-zero eigenvalues, so the smaller of the two
    (d x d when d < n) is decomposed. Rows are re-normalised so that the kernel is exactly cosine.
    0.0 for no rows.
    """
    _check_sample(sample, 1)
    x = _sample_rows(_as_matrix(embeddings, "embeddings"), sample, np.random.default_rng(seed))
    n, d = x.shape
    if n == 0:
        return 0.0
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    gram = x.T @ x if d < n else x @ x.T
    eigenvalues = np.linalg.eigvalsh(gram / n)
    return _exp_entropy(np.clip(eigenvalues, 0.0, None))


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    tokens = text.lower().split()
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts: expected a sequence of strings, got a single string")


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over lowercased whitespace tokens (Li et al., 2016).

    n-grams never span two texts. 1.0 when no n-gram repeats; falls toward 0 as the texts reuse
    the same phrases. 0.0 when the texts hold no n-gram at all.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _check_texts(texts)
    grams = [gram for text in texts for gram in _ngrams(text, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def distinct_n_windowed(texts: Sequence[str], n: int, window: int) -> float:
    """Mean distinct ratio over consecutive windows of ``window`` n-grams (the texts' n-grams in
    order, never spanning two texts; the last, partial window dropped). NaN with fewer n-grams
    than one window.

    The plain ratio (:func:`distinct_n`) falls as the n-grams grow in number, so two batches of
    400 texts whose texts differ in length do not compare (Liu et al., "Rethinking and Refining
    the Distinct Metric", ACL 2022); a fixed window is the mean segmental type-token ratio of
    lexical-diversity studies (Malvern et al., 2004).
    """
    if n < 1 or window < 1:
        raise ValueError(f"n and window must be >= 1, got {n} and {window}")
    _check_texts(texts)
    grams = [gram for text in texts for gram in _ngrams(text, n)]
    full = len(grams) // window
    if not full:
        return float("nan")
    return float(np.mean([len(set(grams[i * window:(i + 1) * window])) / window
                          for i in range(full)]))


def compression_ratio(texts: Sequence[str]) -> float:
    """zlib (level 9) bytes / UTF-8 bytes of the texts joined by newlines; 0.0 for no text.

    Lower means more repetitive: zlib finds repeats across the whole batch, including ones that
    n-gram counts miss (character-level loops, shared boilerplate). Very short inputs can exceed
    1.0 because of zlib's fixed overhead.
    """
    _check_texts(texts)
    raw = "\n".join(texts).encode("utf-8")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 0.0


def squared_distances(a: np.ndarray, b: np.ndarray, a_norms: np.ndarray | None = None
                      ) -> np.ndarray:
    """Every squared Euclidean distance between the rows of ``a`` and of ``b``, in their dtype;
    ``a_norms`` (the rows' squared norms) when the caller keeps them across calls."""
    if a_norms is None:
        a_norms = (a * a).sum(1)
    sq = a_norms[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.clip(sq, 0.0, None)


def _off_diagonal_mean(m: np.ndarray) -> float:
    n = m.shape[0]
    return float((m.sum() - np.trace(m)) / (n * (n - 1)))


def _median_bandwidth(y: np.ndarray, pooled: np.ndarray) -> float:
    """2σ² with σ the median pairwise distance within ``y``; falls back to the pooled rows when
    ``y``'s rows coincide, and to 1.0 when every row does (any bandwidth then gives MMD 0)."""
    for z in (y, pooled):
        sq = squared_distances(z, z)[np.triu_indices(z.shape[0], k=1)]
        median = float(np.median(sq))
        if median > 0:
            return 2.0 * median
    return 1.0


def mmd(x: np.ndarray, y: np.ndarray, sample: int, seed: int) -> float:
    """Squared maximum mean discrepancy between two embedding sets; ``y`` is the reference.

    Unbiased estimate (Gretton et al., 2012) with the RBF kernel ``exp(-||a-b||² / (2σ²))`` on
    at most ``sample`` rows of each set. σ is the median pairwise distance within the sampled
    ``y`` (median heuristic): taking it from the reference alone keeps the kernel fixed across
    rounds compared with the same reference, so the values form a trend. For unit vectors
    ``||a-b||² = 2 - 2cos``, so the kernel is a function of cosine similarity. About 0 for the same
    distribution (negative sampling noise is reported as 0.0), larger as the sets move apart;
    at most 2. Each set needs at least 2 rows.
    """
    _check_sample(sample, 2)
    xs = _as_matrix(x, "x")
    ys = _as_matrix(y, "y")
    for name, m in (("x", xs), ("y", ys)):
        if m.shape[0] < 2:
            raise ValueError(f"{name}: the unbiased MMD needs at least 2 rows, got {m.shape[0]}")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x and y: dimensions differ ({xs.shape[1]} vs {ys.shape[1]})")
    # Separate streams: the reference sample must not depend on how many candidates there are.
    xs = _sample_rows(xs, sample, np.random.default_rng([seed, 0]))
    ys = _sample_rows(ys, sample, np.random.default_rng([seed, 1]))
    bandwidth = _median_bandwidth(ys, np.vstack([xs, ys]))
    kxx = np.exp(-squared_distances(xs, xs) / bandwidth)
    kyy = np.exp(-squared_distances(ys, ys) / bandwidth)
    kxy = np.exp(-squared_distances(xs, ys) / bandwidth)
    value = _off_diagonal_mean(kxx) + _off_diagonal_mean(kyy) - 2.0 * float(kxy.mean())
    return max(value, 0.0)


def reference_coverage(candidate_labels: np.ndarray, reference_labels: np.ndarray, k: int) -> float:
    """Share of the reference that lies in clusters holding at least one candidate.

    Weighted by the reference's share of each cluster, so that a lost mode counts as much as the
    real data it holds: losing a cluster with 20% of the reference costs 0.2, a cluster of one
    stray reference sample almost nothing. 1.0 when every reference cluster has a candidate.
    """
    candidates = occupancy(candidate_labels, k, "candidate_labels")
    reference = occupancy(reference_labels, k, "reference_labels")
    total = reference.sum()
    if total == 0:
        raise ValueError("reference_labels: empty; coverage needs at least one reference sample")
    return float(reference[candidates > 0].sum() / total)
