"""Self-training through ``dces_client.training`` against a real ``dces serve``: two rounds of a
tiny randomly initialised model, scored by itself, curated, trained with ``transformers.Trainer``
and reported back by the callback. Plumbing, not quality: the model is random."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lm_fixtures import tiny_lm_dir_fixture  # noqa: F401
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from dces_client.training import DCESSelfTraining, sequence_logprobs

from .conftest import DCESServer


class TextDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, texts: list[str], tokenizer: Any) -> None:
        self.rows = [tokenizer(t, truncation=True, max_length=64)["input_ids"] for t in texts]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.rows[i]}


def test_sequence_logprobs_match_the_models_own_loss(tiny_lm_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    texts = ["a short one", "and a somewhat longer sentence than the first", ""]
    scores = sequence_logprobs(texts, model, tokenizer, batch_size=2)
    assert scores[2] == (0.0, 0)
    for text, (logprob, tokens) in zip(texts[:2], scores, strict=False):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        full = torch.tensor([[tokenizer.bos_token_id, *ids]])
        with torch.no_grad():
            loss = model(input_ids=full, labels=full).loss  # mean NLL of the predicted tokens
        assert tokens == len(ids)
        assert logprob == pytest.approx(-float(loss) * tokens, rel=1e-4)


def test_two_self_training_rounds_through_the_callback(
        start_server: Callable[..., DCESServer], tiny_lm_dir: Path,
        fortunes: list[dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server()
    caplog.set_level(logging.INFO, logger="dces")
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    collate = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # pads; labels = input_ids
    evaluation = TextDataset([f["text"] for f in fortunes[900:916]], tokenizer)
    with server.client() as client:
        run = client.create_run("callback")["id"]
        client.add_reference(run, fortunes[1000:1200])
        baseline = Trainer(model=model, args=TrainingArguments(
            output_dir=str(tmp_path / "r-"), report_to=[], use_cpu=True),
            eval_dataset=evaluation, data_collator=collate).evaluate()
        dces = DCESSelfTraining(client, run, budget=12, baseline=baseline)
        histories = []
        for r in range(2):
            candidates = [f["text"] for f in fortunes[40 * r:40 * r + 40]]
            chosen = dces.select(candidates, model, tokenizer)
            assert len(chosen) == 12 and set(chosen) <= set(candidates)
            assert dces.last_round is not None
            assert dces.last_round["scores"]["source"] == "generator"  # not the service's LM
            args = TrainingArguments(output_dir=str(tmp_path / f"r{r}"), max_steps=2,
                                     per_device_train_batch_size=4, eval_strategy="no",
                                     report_to=[], logging_steps=1, use_cpu=True, seed=r)
            trainer = Trainer(model=model, args=args,
                              train_dataset=TextDataset(chosen, tokenizer),
                              eval_dataset=evaluation, data_collator=collate,
                              callbacks=[dces.callback()])
            trainer.train()
            trainer.evaluate()  # on real held-out text: its loss is the round's feedback
            histories.append(trainer.state.log_history)
        rounds = client.list_rounds(run)
        feedback = client._call("GET", f"/v1/runs/{run}/feedback", safe=True)["feedback"]
        first, second = client.get_round(run, 0), client.get_round(run, 1)
    assert [r["round"] for r in rounds] == [0, 1]
    assert [f["round"] for f in feedback] == [0, 1]
    assert set(feedback[0]["metrics"]) == {"eval_loss", "perplexity"}
    assert first["feedback_source"] == "body" and set(first["feedback"]) == {"eval_loss",
                                                                             "perplexity"}
    assert second["feedback_source"] == "posted" and second["feedback"] == feedback[0]["metrics"]
    # Round 1 compares round 0's feedback with the baseline: the signal moves from the first.
    assert second["feedback_signal"]["g"] != 0
    assert set(second["feedback_signal"]) == {"eval_loss", "perplexity", "g"}
    for r, history in enumerate(histories):
        logged = [h for h in history if "dces/round" in h]
        assert logged and all(h["dces/round"] == r for h in logged)
        assert all("dces/effective_clusters" in h for h in logged)
    assert any("DCES round 1: 12 of 40 candidates selected" in m for m in caplog.messages)
    assert any(m.startswith("DCES round 0: feedback {'eval_loss'") for m in caplog.messages)
