"""Each sample's confidence: its mean log-probability per token (the LM's, length-adjusted).

A training job has every sample's log-probability under the model that generated it for free;
that is the confidence DCES prefers, because it measures exactly what top-p sampling truncates
(A Tale of Tails; Learning by Surprise, arXiv 2410.12341). A sample may carry it as ``logprob``
(the sum over its tokens) with ``tokens`` (their count), or as ``token_logprobs`` (one per token);
:meth:`curation.types.Sample.coerce` checks them. Without it, the editing LM scores the text
instead (cached by content in the LM). Scores from two different models are never mixed in one
round: either every eligible sample carries the generator's score, or the LM scores them all.

The LM's scores are **length-adjusted**: the LM is not the generator, and its per-token surprise
at a short text is mostly missing context. Ranked raw, the LM's "surprising" edges were the
shortest texts and the benchmark's generator learned to write 4-8 words a sample
(bench/results/collapse.md, `dces_no_logprobs`: 611 / 643 / 647 held-out perplexity); with the
trend removed, 546 / 585 / 548 and 8-12 words (bench/results/collapse-screen-lm-isotonic.json).
The trend is fitted isotonic: a straight line in log length did as well on the benchmark (548 /
557 / 550, collapse-screen-lm-length.json) but extrapolates, and sank a document far longer
than the rest of its round to the bottom of the round's confidence. The generator's own scores
are used as sent: their dependence on length is the generator's, and part of what top-p
sampling truncates.

The generator's scores are averaged with the round's **pool typicality** too, at a quarter
(``generator_typicality``): its per-token log-prob says what it finds surprising, not how often
its pool repeats a text's word pairs, which is what a model trained on the selection learns to
repeat. On the collapse benchmark that kept final held-out perplexity level on fortunes and
WordNet and lowered it on King James verses, and raised distinct-2 on all three
(bench/results/collapse-screen-generator-typicality*.md).

The pool typicality averaged with either score loses only a **rising** trend in length. On
the benchmark's generation-0 pools the generator's own per-token log-prob falls with length
(Spearman -0.28 to -0.54 on fortunes, -0.12 to 0 on WordNet), and so may an estimate of it; but
the typicality rose with length on WordNet (+0.12 to +0.23: short texts looked surprising, and
the generator fed on them wrote ever shorter ones). Removing any trend lowered WordNet's final
held-out perplexity and raised fortunes' (bench/results/collapse-screen-typicality-length*.json);
removing a rise alone keeps fortunes' falling trend (bench/results/fallback_scores*.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from curation.lm import CausalLM
from curation.types import FractionDone, Sample
from curation.typicality import blended, pool_typicality

ScoreSource = Literal["generator", "lm", "none"]
# Below this many scored texts a round's length trend is too noisy to remove.
MIN_FOR_LENGTH_FIT = 20


def length_adjusted(confidence: np.ndarray, lengths: np.ndarray, rising_only: bool = False
                    ) -> tuple[np.ndarray, float | None]:
    """``confidence`` less its trend in length, and how much the trend spans (its fitted value
    at the longest texts less at the shortest); the input and None with fewer than
    ``MIN_FOR_LENGTH_FIT`` finite values or a single length.

    The trend is an isotonic regression on log length (rising or falling, whichever fits; with
    ``rising_only`` only a rise, so a clean fall is kept whole and spans 0; on noisy scores the
    fit still finds a small rise among the shortest and longest texts): it
    follows the trend's shape (steep over the first words, flat once a text has context) and
    never extrapolates, so one text far longer than the rest is compared with the longest
    others, not with a line drawn past them. The finite values keep their mean."""
    from sklearn.isotonic import IsotonicRegression  # on first use: an import costs startup

    known = np.isfinite(confidence)
    log_length = np.log(np.maximum(lengths, 1)).astype(np.float64)
    if known.sum() < MIN_FOR_LENGTH_FIT or np.ptp(log_length[known]) == 0:
        return confidence, None
    fit = IsotonicRegression(increasing=True if rising_only else "auto",
                             out_of_bounds="clip")
    fit.fit(log_length[known], confidence[known])
    shortest, longest = fit.predict([log_length[known].min(), log_length[known].max()])
    adjusted = confidence - fit.predict(log_length) + float(confidence[known].mean())
    return adjusted, float(longest - shortest)


class ConfidenceScorer:
    """Mean token log-probability of every sample: the generator's when all carry it, else the
    LM's, length-adjusted (when ``lm`` is given), else unknown (NaN).

    Either is averaged with the round's own n-gram typicality (:mod:`curation.typicality`):
    the LM's at half weight with ``pool_typicality`` (a second estimate of the generator's
    surprise), the generator's at ``generator_typicality`` (what its per-token score misses: how
    often the pool repeats a text's word pairs).

    Learned state: ``source_`` (which model scored the round), ``scored_`` (how many),
    ``length_trend_`` (how much the LM's confidence trend in length spans, from the shortest
    text to the longest: what was removed; None when the LM did not score or could not fit it),
    ``typicality_agreement_`` (the rank correlation of the confidence and the pool's
    typicality that were averaged; None when they were not, or with too few texts to say) and
    ``typicality_length_trend_`` (the rise in length removed from the typicality; 0 when it
    does not rise, None when it was not averaged or could not be fitted).
    """

    def __init__(self, lm: Callable[[], CausalLM] | None, max_tokens: int = 256,
                 batch_size: int = 16, pool_typicality: bool = True,
                 generator_typicality: float = 0.25):
        self.lm = lm  # called only when the LM is needed: loading it takes seconds
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.pool_typicality = pool_typicality
        self.generator_typicality = generator_typicality

    def score(self, samples: Sequence[Sample], progress: FractionDone | None = None
              ) -> np.ndarray:
        sent = [s.confidence for s in samples]
        self.length_trend_: float | None = None
        self.typicality_agreement_: float | None = None
        self.typicality_length_trend_: float | None = None
        texts = [s.text for s in samples]
        if samples and all(c is not None for c in sent):
            self.source_: ScoreSource = "generator"
            self.scored_ = len(samples)
            generator = np.array(sent, dtype=np.float64)
            if self.generator_typicality == 0:
                return generator
            words = np.array([len(t.split()) for t in texts])
            return self._with_typicality(generator, texts, words, self.generator_typicality)
        if self.lm is None or not samples:
            self.source_, self.scored_ = "none", 0
            return np.full(len(samples), np.nan)
        lm = self.lm()
        ppl = lm.perplexity(texts, self.max_tokens, self.batch_size, progress=progress)
        self.source_, self.scored_ = "lm", len(samples)
        with np.errstate(divide="ignore"):
            confidence = -np.log(np.asarray(ppl, dtype=np.float64))
        counts = lm.token_counts(texts, self.max_tokens)
        adjusted, self.length_trend_ = length_adjusted(confidence, counts)
        if not self.pool_typicality:
            return adjusted
        return self._with_typicality(adjusted, texts, counts, 0.5)

    def _with_typicality(self, confidence: np.ndarray, texts: list[str], lengths: np.ndarray,
                         weight: float) -> np.ndarray:
        """``confidence`` averaged with the pool's typicality less its rise in ``lengths``."""
        from scipy.stats import spearmanr  # on first use: an import costs startup

        typicality, self.typicality_length_trend_ = length_adjusted(
            pool_typicality(texts), lengths, rising_only=True)
        both = np.isfinite(confidence) & np.isfinite(typicality)
        if both.sum() >= MIN_FOR_LENGTH_FIT:
            self.typicality_agreement_ = float(spearmanr(confidence[both], typicality[both])[0])
        return blended(confidence, typicality, weight)
