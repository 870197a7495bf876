"""Each sample's confidence: its mean log-probability per token.

A training job has every sample's log-probability under the model that generated it for free;
that is the confidence DCES prefers, because it measures exactly what top-p sampling truncates
(A Tale of Tails; Learning by Surprise, arXiv 2410.12341). A sample may carry it as ``logprob``
(the sum over its tokens) with ``tokens`` (their count), or as ``token_logprobs`` (one per token);
:meth:`curation.types.Sample.coerce` checks them. Without it, the editing LM scores the text
instead (cached by content in the LM). Scores from two different models are never mixed in one
round: either every eligible sample carries the generator's score, or the LM scores them all.

The LM's scores are **length-adjusted**: the LM is not the generator, and its per-token surprise
at a short text is mostly missing context (on a fortunes pool of the collapse benchmark the
third SmolLM2 found least confident averaged 9 words against 19 for all; under the generator
the same third averaged 27). Ranked raw, the LM's "surprising" edges were the shortest texts and
the generator learned to write 4-8 words (bench/results/collapse.md, `dces_no_logprobs`, 611 /
643 / 647 held-out perplexity); with the straight line in log length removed, 548 / 557 / 550
(bench/results/collapse-screen-lm-length.json). The generator's own scores are used as sent:
their dependence on length is the generator's, and part of what top-p sampling truncates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from curation.lm import CausalLM
from curation.quality import word_count
from curation.types import FractionDone, Sample

ScoreSource = Literal["generator", "lm", "none"]
# Below this many scored texts a round's length slope is too noisy to remove.
MIN_FOR_LENGTH_FIT = 20


def length_adjusted(confidence: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, float]:
    """``confidence`` less the straight line in log length that best explains it (least squares
    over the finite values; its mean kept), and that line's slope (0 and the input unchanged
    with fewer than ``MIN_FOR_LENGTH_FIT`` finite values or a single length)."""
    known = np.isfinite(confidence)
    log_length = np.log(np.maximum(lengths, 1)).astype(np.float64)
    if known.sum() < MIN_FOR_LENGTH_FIT or np.ptp(log_length[known]) == 0:
        return confidence, 0.0
    slope = float(np.polyfit(log_length[known], confidence[known], 1)[0])
    return confidence - slope * (log_length - log_length[known].mean()), slope


class ConfidenceScorer:
    """Mean token log-probability of every sample: the generator's when all carry it, else the
    LM's, length-adjusted (when ``lm`` is given), else unknown (NaN).

    Learned state: ``source_`` (which model scored the round), ``scored_`` (how many) and
    ``length_slope_`` (the LM's confidence per unit of log length removed; None when the LM did
    not score).
    """

    def __init__(self, lm: Callable[[], CausalLM] | None, max_tokens: int = 256,
                 batch_size: int = 16):
        self.lm = lm  # called only when the LM is needed: loading it takes seconds
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def score(self, samples: Sequence[Sample], progress: FractionDone | None = None
              ) -> np.ndarray:
        sent = [s.confidence for s in samples]
        self.length_slope_: float | None = None
        if samples and all(c is not None for c in sent):
            self.source_: ScoreSource = "generator"
            self.scored_ = len(samples)
            return np.array(sent, dtype=np.float64)
        if self.lm is None or not samples:
            self.source_, self.scored_ = "none", 0
            return np.full(len(samples), np.nan)
        ppl = self.lm().perplexity([s.text for s in samples], self.max_tokens, self.batch_size,
                                 progress=progress)
        self.source_, self.scored_ = "lm", len(samples)
        with np.errstate(divide="ignore"):
            confidence = -np.log(np.asarray(ppl, dtype=np.float64))
        adjusted, self.length_slope_ = length_adjusted(
            confidence, np.array([word_count(s.text) for s in samples]))
        return adjusted
