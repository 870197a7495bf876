"""What a model thinks of text, token by token: perplexity, next-token entropy, calibration.

One teacher-forced pass scores every entry as ``EOS entry EOS`` (the closing EOS counts: ending
an entry is part of modelling it). The same pass gives the per-entry perplexity that the
``ppl_low``/``ppl_high`` strategies rank by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from bench.collapse.tokenizer import EOS_ID

ECE_BINS = 15


@dataclass
class TokenScores:
    """Per entry: mean NLL and token count; per predicted token: entropy, top-1 confidence,
    top-1 correct."""

    doc_nll: np.ndarray
    doc_tokens: np.ndarray
    entropy: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray

    @property
    def doc_perplexity(self) -> np.ndarray:
        return np.exp(self.doc_nll)

    def summary(self) -> dict[str, float]:
        """Corpus perplexity (exp of the token-weighted NLL), mean entropy (nats) and ECE."""
        return {
            "heldout_perplexity": float(
                np.exp((self.doc_nll * self.doc_tokens).sum() / self.doc_tokens.sum())
            ),
            "entropy": float(self.entropy.mean()),
            "ece": expected_calibration_error(self.confidence, self.correct),
        }


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Top-1 ECE with equal-width bins: sum over bins of |accuracy - confidence| x share."""
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    total = 0.0
    for b in range(ECE_BINS):
        members = bins == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += gap * members.mean()
    return float(total)


@torch.inference_mode()
def score(
    model: PreTrainedModel, docs: Sequence[Sequence[int]], context: int, batch_size: int = 32,
    given: int = 0, unended: Sequence[bool] | None = None,
) -> TokenScores:
    """Teacher-forced scores of every entry (truncated to ``context`` tokens, both EOS
    included). The first ``given`` tokens of each entry (a prompt the model continued) are
    context only: neither scored nor counted; so is the closing EOS of the ``unended`` ones (a
    sample cut at its length limit never wrote it)."""
    seqs = [[*[EOS_ID, *d][:context - 1], EOS_ID] for d in docs]
    cut = np.zeros(len(seqs), dtype=bool) if unended is None else np.asarray(unended, dtype=bool)
    if len(cut) != len(seqs):
        raise ValueError(f"unended: must have one flag per entry ({len(seqs)}), got {len(cut)}")
    if any(len(s) - 1 - c <= given for s, c in zip(seqs, cut, strict=True)):
        raise ValueError(f"given: every entry must be longer than its {given} given tokens")
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    doc_nll = np.zeros(len(seqs))
    doc_tokens = np.array([len(s) - 1 - given - c for s, c in zip(seqs, cut, strict=True)],
                          dtype=np.float64)
    entropy: list[np.ndarray] = []
    confidence: list[np.ndarray] = []
    correct: list[np.ndarray] = []
    for lo in range(0, len(order), batch_size):
        batch = order[lo : lo + batch_size]
        width = max(len(seqs[i]) for i in batch)
        ids = torch.full((len(batch), width), EOS_ID, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, i in enumerate(batch):
            ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[row, : len(seqs[i])] = True
        logits = model(input_ids=ids.to(model.device),
                       attention_mask=mask.long().to(model.device)).logits
        # Reduced over the vocabulary where the logits are; only (rows, tokens) come back.
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target, valid = ids[:, 1:], mask[:, 1:].clone()
        valid[:, :given] = False
        for row, i in enumerate(batch):
            if cut[i]:
                valid[row, len(seqs[i]) - 2] = False
        nll = -logp.gather(-1, target.to(logp.device).unsqueeze(-1))[..., 0].cpu()
        top_logp, top_id = (t.cpu() for t in logp.max(dim=-1))
        ent = (-(logp.exp() * logp).sum(-1)).cpu()
        per_doc = (nll * valid).sum(1) / valid.sum(1)
        for row, i in enumerate(batch):
            doc_nll[i] = float(per_doc[row])
        entropy.append(ent[valid].numpy())
        confidence.append(top_logp[valid].exp().numpy())
        correct.append((top_id == target)[valid].numpy().astype(np.float64))
    return TokenScores(
        doc_nll,
        doc_tokens,
        np.concatenate(entropy),
        np.concatenate(confidence),
        np.concatenate(correct),
    )
