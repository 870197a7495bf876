"""Each sample's confidence: its mean log-probability per token.

A training job has every sample's log-probability under the model that generated it for free;
that is the confidence DCES prefers, because it measures exactly what top-p sampling truncates
(A Tale of Tails; Learning by Surprise, arXiv 2410.12341). A sample may carry it as ``logprob``
(the sum over its tokens) with ``tokens`` (their count), or as ``token_logprobs`` (one per token);
:meth:`curation.types.Sample.coerce` checks them. Without it, the editing LM scores the text
instead (cached by content in the LM). Scores from two different models are never mixed in one
round: either every eligible sample carries the generator's score, or the LM scores them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from curation.lm import CausalLM
from curation.types import FractionDone, Sample

ScoreSource = Literal["generator", "lm", "none"]


class ConfidenceScorer:
    """Mean token log-probability of every sample: the generator's when all carry it, else the
    LM's (when ``lm`` is given), else unknown (NaN).

    Learned state: ``source_`` (which model scored the round) and ``scored_`` (how many).
    """

    def __init__(self, lm: Callable[[], CausalLM] | None, max_tokens: int = 256,
                 batch_size: int = 16):
        self.lm = lm  # called only when the LM is needed: loading it takes seconds
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def score(self, samples: Sequence[Sample], progress: FractionDone | None = None
              ) -> np.ndarray:
        sent = [s.confidence for s in samples]
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
            return -np.log(np.asarray(ppl, dtype=np.float64))
