"""Self-training with DCES from a Hugging Face ``transformers`` loop.

Optional: it needs ``torch`` and ``transformers`` (``pip install "dces-client[transformers]"``);
``import dces_client`` alone never imports them. A round of a self-training loop is

    candidates = generate(model)                     # your sampling
    texts = dces.select(candidates, model, tokenizer)  # scored by `model`, curated by DCES
    trainer = Trainer(model, args, train_dataset=tokenize(texts), eval_dataset=real_eval,
                      callbacks=[dces.callback()])
    trainer.train()                                  # the callback posts the round's feedback

:meth:`DCESSelfTraining.select` scores each candidate under the model that wrote it (the sum of
its token log-probabilities and their count: the generator's confidence, which DCES prefers to
scoring the text with its own LM) and sends them with the round. The callback posts each
evaluation's ``eval_loss`` (and its perplexity) as that round's feedback (evaluate on real
held-out text), and reports the round's health: alerts go to the ``dces`` logger as warnings,
and ``dces/*`` numbers join the trainer's logs (and so TensorBoard or W&B, when their callbacks
come after this one) and its ``state.log_history``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from dces_client._client import DCESClient

log = logging.getLogger("dces")
# Health numbers copied into the trainer's logs, as dces/<name>.
LOGGED_HEALTH = ("effective_clusters", "lost_reference_mass", "tail_coverage",
                 "reference_coverage", "distinct_2")


@torch.no_grad()
def sequence_logprobs(texts: Sequence[str], model: PreTrainedModel,
                      tokenizer: PreTrainedTokenizerBase, max_tokens: int = 256,
                      batch_size: int = 16) -> list[tuple[float, int]]:
    """``(sum of token log-probabilities, token count)`` of each text under ``model``. Every
    token of the text is predicted after the tokenizer's BOS token; without one, the first token
    is context only. A text with nothing predicted gets ``(0.0, 0)`` (it is sent unscored)."""
    device = next(model.parameters()).device
    bos = tokenizer.bos_token_id
    out: list[tuple[float, int]] = []
    for start in range(0, len(texts), batch_size):
        encoded = [tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
                   for text in texts[start:start + batch_size]]
        rows = [([bos] if bos is not None else []) + ids for ids in encoded]
        width = max(2, max(len(r) for r in rows))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logp.gather(-1, ids[:, 1:, None].to(device))[..., 0]
        predicted = mask[:, 1:].to(device).bool()
        for i, text_ids in enumerate(encoded):
            count = int(predicted[i].sum())
            if not text_ids or count < 1:  # nothing predicted: no score to send
                out.append((0.0, 0))
                continue
            out.append((float(picked[i][predicted[i]].sum()), count))
    return out


class DCESSelfTraining:
    """One DCES run driven from a training loop: ``select`` curates a round, ``callback``
    reports the training that followed."""

    def __init__(self, client: DCESClient, run_id: str, budget: int,
                 baseline: Mapping[str, float] | None = None) -> None:
        """``baseline``: the starting model's evaluation metrics (``trainer.evaluate()`` before
        any self-training). Sent with round 0, they are what the first round's feedback is
        compared with, so the feedback signal moves the edge ratio from round 1 onward."""
        self.client = client
        self.run_id = run_id
        self.budget = budget
        self.baseline = feedback_from(baseline) if baseline is not None else None
        self.last_round: dict[str, Any] | None = None

    def select(self, candidates: Sequence[str], model: PreTrainedModel,
               tokenizer: PreTrainedTokenizerBase, *, ids: Sequence[str] | None = None,
               max_tokens: int = 256) -> list[str]:
        """Curate ``candidates`` (texts ``model`` wrote) and return the selected texts (edited
        where DCES edited them), in their input order."""
        scores = sequence_logprobs(candidates, model, tokenizer, max_tokens)
        samples: list[dict[str, Any]] = []
        for i, (text, (logprob, tokens)) in enumerate(zip(candidates, scores, strict=True)):
            sample: dict[str, Any] = {"id": ids[i] if ids is not None else f"s{i}", "text": text}
            if tokens:
                sample["logprob"], sample["tokens"] = min(0.0, logprob), tokens
            samples.append(sample)
        rounds = len(self.client.list_rounds(self.run_id))
        result = self.client.curate_round(
            self.run_id, samples, self.budget, idempotency_key=f"{self.run_id}-{rounds}",
            feedback=self.baseline if rounds == 0 and self.baseline else None)
        self.last_round = result
        _log_round(result)
        return [s["text"] for s in result["samples"] if s["selected"]] + [
            s["text"] for s in result.get("replay", [])]

    def callback(self) -> DCESCallback:
        """A ``TrainerCallback`` for the training on the last selection."""
        if self.last_round is None:
            raise RuntimeError("callback(): call select() first; the feedback belongs to a round")
        return DCESCallback(self.client, self.run_id, self.last_round)


class DCESCallback(TrainerCallback):
    """Posts every evaluation's metrics as the round's feedback (a later evaluation's values
    replace an earlier one's: DCES merges a round's posts), and puts the round's health in the
    trainer's logs."""

    def __init__(self, client: DCESClient, run_id: str, round_result: Mapping[str, Any]) -> None:
        self.client = client
        self.run_id = run_id
        self.round = int(round_result["round"])
        self.health = dict(round_result.get("health") or {})
        self.posted: dict[str, Any] | None = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs is not None:
            logs.update(health_logs(self.round, self.health))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        feedback = feedback_from(metrics or {})
        if not feedback:
            log.warning("DCES round %d: the evaluation has no eval_loss to post", self.round)
            return
        self.posted = self.client.post_feedback(self.run_id, feedback, round=self.round)
        log.info("DCES round %d: feedback %s", self.round, feedback)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        state.log_history.append({**health_logs(self.round, self.health),
                                  "step": state.global_step})


def feedback_from(metrics: Mapping[str, float]) -> dict[str, float]:
    """The trainer's evaluation metrics as DCES feedback: ``eval_loss`` and its perplexity."""
    out: dict[str, float] = {}
    if "eval_loss" in metrics:
        out["eval_loss"] = metrics["eval_loss"]
        out["perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    return out


def health_logs(round_index: int, health: Mapping[str, Any]) -> dict[str, float]:
    """A round's health as flat ``dces/<name>`` numbers for a trainer's logs."""
    out = {"dces/round": float(round_index),
           "dces/alerts": float(len(health.get("alerts") or []))}
    for name in LOGGED_HEALTH:
        value = health.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[f"dces/{name}"] = float(value)
    return out


def _log_round(result: Mapping[str, Any]) -> None:
    health = result.get("health") or {}
    log.info("DCES round %s: %s of %s candidates selected (budget %s)", result.get("round"),
             result.get("selected"), len(result.get("samples", [])), result.get("budget"))
    for alert in health.get("alerts", []):
        log.warning("DCES alert (%s, %s): %s", alert.get("kind"), alert.get("severity"),
                    alert.get("message"))
