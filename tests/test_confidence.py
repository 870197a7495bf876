"""curation.confidence: the generator's scores as sent, the LM's length-adjusted (the real
SmolLM2 on real fortunes finds short texts surprising for want of context)."""

from __future__ import annotations

from typing import Any

import numpy as np
from lm_fixtures import smollm2_fixture  # noqa: F401

from curation.confidence import MIN_FOR_LENGTH_FIT, ConfidenceScorer, length_adjusted
from curation.lm import CausalLM
from curation.quality import word_count
from curation.types import Sample


def test_length_adjustment_removes_the_line_in_log_length_and_keeps_the_mean() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 80, 300)
    confidence = -4.0 + 0.5 * np.log(lengths) + rng.normal(0, 0.1, 300)
    confidence[7] = np.nan  # unknown stays unknown and is left out of the fit
    adjusted, slope = length_adjusted(confidence, lengths)
    known = np.isfinite(confidence)
    assert abs(slope - 0.5) < 0.05
    assert abs(np.corrcoef(adjusted[known], np.log(lengths[known]))[0, 1]) < 1e-6
    assert np.isnan(adjusted[7])
    np.testing.assert_allclose(np.nanmean(adjusted), np.nanmean(confidence))


def test_too_few_texts_or_one_length_are_left_as_they_are() -> None:
    few = np.linspace(-5, -2, MIN_FOR_LENGTH_FIT - 1)
    assert length_adjusted(few, np.arange(1, len(few) + 1)) == (few, 0.0)
    same = np.linspace(-5, -2, 50)
    assert length_adjusted(same, np.full(50, 12)) == (same, 0.0)


def test_the_lms_scores_are_length_adjusted_and_the_generators_are_not(
    smollm2: CausalLM, fortunes: list[dict[str, Any]]
) -> None:
    texts = [f["text"] for f in fortunes[:160]]
    samples = [Sample(str(i), t) for i, t in enumerate(texts)]
    scorer = ConfidenceScorer(lambda: smollm2)
    adjusted = scorer.score(samples)
    assert scorer.source_ == "lm" and scorer.length_slope_ is not None
    raw = -np.log(np.asarray(smollm2.perplexity(texts, 256, 16)))
    log_length = np.log([word_count(t) for t in texts])
    assert np.corrcoef(raw, log_length)[0, 1] > 0.2  # the LM finds short texts surprising
    assert scorer.length_slope_ > 0
    assert abs(np.corrcoef(adjusted, log_length)[0, 1]) < 1e-6
    sent = [Sample(s.id, s.text, confidence=c) for s, c in zip(samples, raw, strict=True)]
    np.testing.assert_allclose(scorer.score(sent), raw)
    assert scorer.source_ == "generator" and scorer.length_slope_ is None
