"""Quality rules with explicit reasons.

Degenerate text (empty, too short, too long, repetitive) is rejected before clustering, so a
tight cluster of garbage can never be chosen as "center". Edge candidates additionally face a
robust distance cut (``outlier``) and a robust cut on the far tail of the round's own confidence
(``implausible``). Fluent but surprising text is never rejected: it is what edges are for.
"""

from __future__ import annotations

import re

import numpy as np

from curation.config import QualityConfig
from curation.diversity import compression_ratio

_TOKEN = re.compile(r"\w+|[^\w\s]")
# zlib's fixed overhead makes short texts look incompressible; the ratio only means
# something once a text is long enough to contain repeats.
_MIN_CHARS_FOR_COMPRESSION = 120
_MIN_FOR_OUTLIERS = 20


def repeated_ngram_fraction(text: str, n: int) -> float:
    """Share of word/punctuation n-grams that repeat an earlier one ("1.1.1.1" → high)."""
    tokens = _TOKEN.findall(text.lower())
    total = len(tokens) - n + 1
    if total < 2:
        return 0.0
    grams = {tuple(tokens[i : i + n]) for i in range(total)}
    return 1.0 - len(grams) / total


def degenerate_reason(text: str, config: QualityConfig) -> str | None:
    """The reason a text is unusable anywhere in the selection, or None when it is fine."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    if len(stripped) > config.max_chars:
        return "too_long"
    if len(stripped) < config.min_chars or len(_TOKEN.findall(stripped)) < config.min_words:
        return "too_short"
    if (
        repeated_ngram_fraction(stripped, config.repeated_ngram_n)
        > config.max_repeated_ngram_fraction
    ):
        return "repetitive"
    if (
        len(stripped) >= _MIN_CHARS_FOR_COMPRESSION
        and compression_ratio([stripped]) < config.min_compression_ratio
    ):
        return "repetitive"
    return None


def outlier_cuts(labels: np.ndarray, distances: np.ndarray, k: int, z: float) -> np.ndarray:
    """Per-cluster distance beyond which a member is an outlier: ``median_c + z * 1.4826 * MAD``.

    The MAD is pooled over all clusters' residuals: a small cluster's own MAD is too noisy (and
    zero for two members), which would flag half of it. With fewer than ``_MIN_FOR_OUTLIERS``
    members in all, no scale is trustworthy and nothing is an outlier.
    """
    medians = np.full(k, np.inf)
    residuals = []
    for c in range(k):
        members = distances[labels == c]
        if len(members):
            medians[c] = float(np.median(members))
            residuals.append(members - medians[c])
    if sum(len(r) for r in residuals) < _MIN_FOR_OUTLIERS:
        return np.full(k, np.inf)
    pooled = np.abs(np.concatenate(residuals))
    mad = max(float(np.median(pooled)), 1e-3)
    return medians + z * 1.4826 * mad


def implausible_cut(confidence: np.ndarray, z: float) -> float:
    """Confidence below which a text is implausible: ``median - z * 1.4826 * MAD`` of the
    round's own candidates (``-inf`` when unknown or too few to estimate a scale)."""
    known = confidence[np.isfinite(confidence)]
    if len(known) < _MIN_FOR_OUTLIERS:
        return -np.inf
    median = float(np.median(known))
    mad = max(float(np.median(np.abs(known - median))), 1e-3)
    return median - z * 1.4826 * mad
