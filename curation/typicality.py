"""Pool typicality: how commonly the round's own candidates use a text's words.

Without the generator's log-probs DCES still wants the generator's surprise. The editing LM's is
one estimate, from a model of English rather than of the generator. The candidates themselves
give another: they are the generator's samples, so a word pair it rarely writes is rare in its
pool. A text's typicality is the mean log-probability of its hashed n-grams
(:mod:`curation.ngrams`) under the add-one smoothed model of the round's other candidates (its
own counts left out, else its one-off n-grams would look seen). On the collapse benchmark's
generation-0 pools (1,200 candidates each, 3 seeds) the rank correlation with the generator's
per-token log-prob was 0.49-0.57 for the typicality, 0.38-0.45 for SmolLM2's length-adjusted
score and 0.53-0.65 for the two averaged (:func:`blended`; bench/results/fallback_scores.md).
Its rise in length, if any, is removed before averaging (:mod:`curation.confidence`). With the
generator's own log-probs it still adds what they miss: how often the pool repeats a text's word
pairs, which is what a model trained on the selection learns to repeat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curation.ngrams import HashedNgrams


def pool_typicality(texts: Sequence[str], n_features: int = 10_000) -> np.ndarray:
    """Each text's mean leave-one-out log-probability of its n-grams under the others' model
    (NaN for a text without any n-gram)."""
    rows = HashedNgrams(n_features).counts(texts).tocoo()
    per_text = np.bincount(rows.row, weights=rows.data, minlength=len(texts))
    totals = np.bincount(rows.col, weights=rows.data, minlength=n_features)
    others = totals[rows.col] - rows.data + 1.0
    others_total = totals.sum() - per_text[rows.row] + n_features
    log_probs = rows.data * np.log(others / others_total)
    summed = np.bincount(rows.row, weights=log_probs, minlength=len(texts))
    return np.divide(summed, per_text, out=np.full(len(texts), np.nan), where=per_text > 0)


def blended(confidence: np.ndarray, typicality: np.ndarray, weight: float = 0.5
            ) -> np.ndarray:
    """The two averaged, the typicality at ``weight``, each in robust standard units (median,
    MAD), returned in the confidence's units (its median and MAD), so that a cut in MADs keeps
    its meaning. Where the typicality is unknown, the confidence alone; unknown confidence
    stays unknown."""
    z_conf, centre, scale = _robust_units(confidence)
    z_typ, _, _ = _robust_units(typicality)
    z_typ = np.where(np.isfinite(z_typ), z_typ, z_conf)
    return centre + scale * ((1.0 - weight) * z_conf + weight * z_typ)


def _robust_units(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    known = x[np.isfinite(x)]
    if not len(known):
        return np.full(len(x), np.nan), 0.0, 1.0
    centre = float(np.median(known))
    scale = float(np.median(np.abs(known - centre))) or 1.0
    return (x - centre) / scale, centre, scale
