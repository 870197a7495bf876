"""curation.confidence: the generator's scores as sent, averaged at a quarter with the pool's
typicality, the LM's with their trend in length removed (the real SmolLM2 on real fortunes finds
short texts surprising for want of context)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from lm_fixtures import smollm2_fixture  # noqa: F401
from scipy.stats import spearmanr

from curation.confidence import MIN_FOR_LENGTH_FIT, ConfidenceScorer, length_adjusted
from curation.config import CurationConfig
from curation.lm import CausalLM
from curation.types import Sample
from curation.typicality import blended, pool_typicality


def _trended(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Confidences rising with log length, as SmolLM2's do, with noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 80, n)
    return -4.0 + 0.5 * np.log(lengths) + rng.normal(0, 0.1, n), lengths


def test_length_adjustment_removes_the_trend_and_keeps_the_mean() -> None:
    confidence, lengths = _trended(300)
    confidence[7] = np.nan  # unknown stays unknown and is left out of the fit
    adjusted, span = length_adjusted(confidence, lengths)
    known = np.isfinite(confidence)
    assert np.isnan(adjusted[7])
    assert spearmanr(confidence[known], lengths[known])[0] > 0.9
    assert abs(spearmanr(adjusted[known], lengths[known])[0]) < 0.15
    expected_span = 0.5 * np.log(lengths[known].max() / lengths[known].min())
    assert span is not None and abs(span - expected_span) < 0.25 * expected_span
    np.testing.assert_allclose(np.nanmean(adjusted), np.nanmean(confidence))


def test_rising_only_removes_a_rise_and_keeps_a_fall_whole() -> None:
    rising, lengths = _trended(300)
    with_unknown = rising.copy()
    with_unknown[3] = np.nan  # a text without n-grams: unknown stays unknown
    assert np.isnan(length_adjusted(with_unknown, lengths, rising_only=True)[0][3])
    adjusted, span = length_adjusted(rising, lengths, rising_only=True)
    assert abs(spearmanr(adjusted, lengths)[0]) < 0.15 and span is not None and span > 0.5
    falling = -rising
    kept, no_span = length_adjusted(falling, lengths, rising_only=True)
    np.testing.assert_allclose(kept, falling)
    assert no_span == 0.0
    assert spearmanr(length_adjusted(falling, lengths)[0], lengths)[0] > -0.15  # both ways


def test_one_far_longer_text_is_compared_with_the_longest_others() -> None:
    """A straight line in log length, drawn past the others, would sink a long document's
    confidence to the bottom of the round (and under the implausibility cut)."""
    confidence, lengths = _trended(200)
    longest_others = confidence[lengths >= 70].mean()
    confidence, lengths = np.append(confidence, longest_others), np.append(lengths, 2_000)
    adjusted, _ = length_adjusted(confidence, lengths)
    assert abs(adjusted[-1] - confidence.mean()) < 0.1
    slope = np.polyfit(np.log(lengths), confidence, 1)[0]
    straight = confidence - slope * (np.log(lengths) - np.log(lengths).mean())
    assert straight[-1] < np.quantile(straight, 0.05)  # what the straight line would have done


def test_too_few_texts_or_one_length_are_left_as_they_are() -> None:
    few = np.linspace(-5, -2, MIN_FOR_LENGTH_FIT - 1)
    assert length_adjusted(few, np.arange(1, len(few) + 1)) == (few, None)
    same = np.linspace(-5, -2, 50)
    assert length_adjusted(same, np.full(50, 12)) == (same, None)


def test_the_lms_scores_are_length_adjusted_and_the_generators_are_not(
    smollm2: CausalLM, fortunes: list[dict[str, Any]]
) -> None:
    texts = [f["text"] for f in fortunes[:160]]
    samples = [Sample(str(i), t) for i, t in enumerate(texts)]
    scorer = ConfidenceScorer(lambda: smollm2, pool_typicality=False)
    adjusted = scorer.score(samples)
    assert scorer.source_ == "lm"
    raw = -np.log(smollm2.perplexity(texts, 256, 16))
    lengths = smollm2.token_counts(texts, 256)
    assert spearmanr(raw, lengths)[0] > 0.2  # the LM finds short texts surprising
    assert scorer.length_trend_ is not None and scorer.length_trend_ > 0
    assert abs(spearmanr(adjusted, lengths)[0]) < 0.15
    sent = [Sample(s.id, s.text, confidence=c) for s, c in zip(samples, raw, strict=True)]
    as_sent = ConfidenceScorer(lambda: smollm2, generator_typicality=0.0)
    np.testing.assert_allclose(as_sent.score(sent), raw)
    assert as_sent.source_ == "generator" and as_sent.length_trend_ is None
    assert as_sent.typicality_agreement_ is None and as_sent.typicality_length_trend_ is None


def test_the_generators_scores_are_averaged_with_the_pools_typicality_at_a_quarter(
    smollm2: CausalLM, fortunes: list[dict[str, Any]]
) -> None:
    texts = [f["text"] for f in fortunes[:160]]
    logprobs = -np.log(smollm2.perplexity(texts, 256, 16))  # a real model's scores, as sent
    sent = [Sample(str(i), t, confidence=c) for i, (t, c) in enumerate(zip(texts, logprobs,
                                                                             strict=True))]
    scorer = ConfidenceScorer(lambda: smollm2)
    assert scorer.generator_typicality == 0.25
    mixed = scorer.score(sent)
    assert scorer.source_ == "generator" and scorer.length_trend_ is None  # used as sent
    words = np.array([len(t.split()) for t in texts])
    typicality, rise = length_adjusted(pool_typicality(texts), words, rising_only=True)
    assert scorer.typicality_length_trend_ == rise and rise is not None and rise >= 0
    assert abs(scorer.typicality_agreement_ - spearmanr(logprobs, typicality)[0]) < 1e-9
    np.testing.assert_allclose(mixed, blended(logprobs, typicality, 0.25))
    # Three quarters the generator's: it ranks like the generator's more than like the pool's.
    assert spearmanr(mixed, logprobs)[0] > spearmanr(mixed, typicality)[0] > 0
    assert not np.allclose(mixed, logprobs)


def test_the_generator_typicality_is_bounded() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError,
                           match=r"config.score.generator_typicality: must be in \[0, 1\]"):
            CurationConfig.from_dict({"score": {"generator_typicality": bad}})


def test_typicality_is_how_commonly_the_other_candidates_use_a_texts_words() -> None:
    common = ["the cat sat on the mat", "the cat sat on the rug", "the dog sat on the mat"]
    pool = common * 10 + ["zebras juggle quixotic saxophones", "the cat sat on the sofa", "?"]
    typicality = pool_typicality(pool)
    assert typicality[0] > typicality[-2] > typicality[-3]  # rarer words, less typical
    assert np.isfinite(typicality[-1])  # a punctuation mark is an n-gram
    # Leave-one-out: a text's own counts do not make its one-off n-grams look seen.
    alone = pool_typicality(pool[:-3] + ["zebras juggle quixotic saxophones"] * 2)
    assert alone[-1] > typicality[-3]  # a second copy: now the others have said it
    assert np.isnan(pool_typicality(["", "the cat"])[0])


def test_blending_averages_robust_units_and_keeps_the_confidences_units() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.normal(-4.0, 0.5, 200)
    typicality = rng.normal(-9.0, 2.0, 200)
    mixed = blended(confidence, typicality)
    assert abs(np.median(mixed) - np.median(confidence)) < 0.1
    assert 0.5 < spearmanr(mixed, confidence)[0] < 0.9
    assert 0.5 < spearmanr(mixed, typicality)[0] < 0.9
    np.testing.assert_allclose(blended(confidence, typicality * 10 + 3), mixed)  # units of its own
    np.testing.assert_allclose(blended(confidence, typicality, 0.0), confidence)
    at_one = blended(confidence, typicality, 1.0)  # the typicality, in the confidence's units
    assert spearmanr(at_one, typicality)[0] == pytest.approx(1.0)
    assert abs(np.median(at_one) - np.median(confidence)) < 1e-9
    typicality[:5], confidence[5] = np.nan, np.nan
    mixed = blended(confidence, typicality)
    np.testing.assert_allclose(mixed[:5], confidence[:5])  # no typicality: the confidence alone
    assert np.isnan(mixed[5])


def test_the_lms_fallback_is_averaged_with_the_pools_typicality(
    smollm2: CausalLM, fortunes: list[dict[str, Any]]
) -> None:
    samples = [Sample(str(i), f["text"]) for i, f in enumerate(fortunes[:160])]
    lm_only = ConfidenceScorer(lambda: smollm2, pool_typicality=False).score(samples)
    scorer = ConfidenceScorer(lambda: smollm2)
    both = scorer.score(samples)
    assert scorer.source_ == "lm" and scorer.typicality_agreement_ is not None
    counts = smollm2.token_counts([s.text for s in samples], scorer.max_tokens)
    typicality, rise = length_adjusted(pool_typicality([s.text for s in samples]), counts,
                                       rising_only=True)
    assert scorer.typicality_length_trend_ == rise and rise is not None and rise >= 0
    assert abs(scorer.typicality_agreement_ - spearmanr(lm_only, typicality)[0]) < 1e-9
    np.testing.assert_allclose(both, blended(lm_only, typicality))
    assert abs(np.median(both) - np.median(lm_only)) < 0.5 * np.std(lm_only)
