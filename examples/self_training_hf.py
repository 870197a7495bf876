"""Self-training a causal LM with transformers.Trainer, its synthetic data curated by DCES.

Each round the model writes candidates (prompted with the first words of real texts), DCES
curates them with the model's own log-probabilities (``DCESSelfTraining.select``), the Trainer
trains on the selection and evaluates on real held-out text, and the callback posts that
evaluation as the round's feedback and puts DCES's health in the trainer's logs. TRL's
``SFTTrainer`` is a ``Trainer``: pass it the same callback.

    pip install "./client[transformers]"
    dces serve &
    python examples/self_training_hf.py --model PATH_OR_HUB_ID --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from dces_client import DCESClient
from dces_client.training import DCESSelfTraining

DATA = Path(__file__).with_name("fortunes-sample.jsonl")


class Texts(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, texts: list[str], tokenizer: AutoTokenizer) -> None:
        self.rows = [tokenizer(t, truncation=True, max_length=128)["input_ids"] for t in texts]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.rows[i]}


@torch.no_grad()
def generate(model: AutoModelForCausalLM, tokenizer: AutoTokenizer, prompts: list[str]
             ) -> list[str]:
    """One continuation of 64 tokens per prompt, sampled at top-p 0.9."""
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        tokens = model.generate(ids, max_new_tokens=64, do_sample=True, top_p=0.9,
                                pad_token_id=tokenizer.eos_token_id)
        out.append(tokenizer.decode(tokens[0], skip_special_tokens=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a causal LM (local path or hub id)")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=120)
    parser.add_argument("--budget", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    real = [json.loads(line)["text"] for line in DATA.read_text().splitlines()]
    held_out, pool = real[:100], real[100:]
    model = AutoModelForCausalLM.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with DCESClient(args.url) as client:
        client.wait_ready()
        run = client.create_run("self-training-hf")["id"]
        client.add_reference(run, [{"id": f"ref-{i}", "text": t} for i, t in enumerate(pool)])
        collate = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        baseline = Trainer(model=model, args=TrainingArguments(
            output_dir="/tmp/self-training/baseline", report_to=[]),
            eval_dataset=Texts(held_out, tokenizer), data_collator=collate).evaluate()
        dces = DCESSelfTraining(client, run, args.budget, baseline=baseline)
        for r in range(args.rounds):
            prompts = [" ".join(t.split()[:4]) for t in pool[r * args.candidates:][
                :args.candidates]]
            chosen = dces.select(generate(model, tokenizer, prompts), model, tokenizer)
            trainer = Trainer(
                model=model,
                args=TrainingArguments(output_dir=f"/tmp/self-training/r{r}", num_train_epochs=1,
                                       per_device_train_batch_size=8, report_to=[],
                                       logging_steps=5),
                train_dataset=Texts(chosen, tokenizer),
                eval_dataset=Texts(held_out, tokenizer),
                data_collator=collate,
                callbacks=[dces.callback()],
            )
            trainer.train()
            print(f"round {r}: {trainer.evaluate()}")
        for alert in client.health(run)["alerts"]:
            print("DCES:", alert["message"])


if __name__ == "__main__":
    main()
