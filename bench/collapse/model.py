"""The self-trained model: a small GPT-2 (random init, `transformers`) or a pretrained causal LM
(fine-tuned), and its training loop. A pretrained model lives on the GPU when torch sees one;
the from-scratch GPT-2 on the CPU, where every recorded run of it was made.

Training packs entries into fixed blocks (``EOS entry EOS entry ...``) so no compute goes to
padding, and runs for a fixed number of token passes: every strategy's generation costs the same,
whatever the length of the samples it kept. Generation 0 trains from scratch on real data; each
later generation continues from the previous model, as a self-training job would.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    PretrainedConfig,
    PreTrainedModel,
)

from bench.collapse.config import ModelConfig
from bench.collapse.tokenizer import EOS_ID

SMOLLM2 = "smollm2"

WARMUP = 0.05  # share of steps with a linear learning-rate warm-up
FINAL_LR = 0.1  # cosine decay to this share of the peak


def quiet_transformers() -> None:
    """No weight-loading bars or padding advice in the progress output (the loops are ours)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def device(cfg: ModelConfig) -> torch.device:
    """The GPU for a pretrained model when torch sees one. The 0.7M-parameter GPT-2 gains
    nothing there, and its floating point (hence its trajectory) would differ from the recorded
    runs'."""
    gpu = cfg.pretrained is not None and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def pretrained_dir(name: str) -> Path:
    """``smollm2``: the dense copy of the bundled SmolLM2-135M-Instruct (written from its GGUF
    on first use); anything else: a local model directory."""
    if name == SMOLLM2:
        from curation.lm import smollm2_dense_dir

        return smollm2_dense_dir()
    path = Path(name)
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise ValueError(f"pretrained: {name!r} is not a model directory (no {', '.join(missing)})")
    return path


def check_pretrained(cfg: ModelConfig) -> None:
    """Fail before any work when the pretrained model cannot take the run's blocks: a
    ``context`` beyond its positions would index past its position table."""
    if cfg.pretrained is None:
        return
    config = json.loads((pretrained_dir(cfg.pretrained) / "config.json").read_text())
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if positions is not None and cfg.context > positions:
        raise ValueError(f"model.context: must be at most the pretrained model's "
                         f"{positions} positions, got {cfg.context}")


def new_model(cfg: ModelConfig, vocab_size: int, seed: int) -> PreTrainedModel:
    """Generation 0's starting point: the pretrained model, or a GPT-2 from random init."""
    if cfg.pretrained is not None:
        return load_model(pretrained_dir(cfg.pretrained), device(cfg))
    torch.manual_seed(seed)
    return GPT2LMHeadModel(_gpt2_config(cfg, vocab_size))


def _gpt2_config(cfg: ModelConfig, vocab_size: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.context,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
    )


def load_model(path: Path, on: torch.device | None = None) -> PreTrainedModel:
    """A saved model (fp32, for training) on ``on`` (the CPU by default), in eval mode."""
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                 local_files_only=True)
    return model.to(on or torch.device("cpu")).eval()  # type: ignore[arg-type]


def copy_model(model: PreTrainedModel) -> PreTrainedModel:
    return copy.deepcopy(model)


def parameter_count(cfg: ModelConfig, vocab_size: int) -> int:
    """The generator's parameters, counted on the meta device: no weights are loaded (a
    pretrained model's would take seconds, and a GPU context for the whole run)."""
    config: PretrainedConfig = (
        _gpt2_config(cfg, vocab_size) if cfg.pretrained is None
        else AutoConfig.from_pretrained(str(pretrained_dir(cfg.pretrained)),
                                        local_files_only=True))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def pack(docs: Sequence[Sequence[int]], block: int, rng: np.random.Generator) -> torch.Tensor:
    """One shuffled epoch of ``docs`` as ``(n_blocks, block)`` token ids, EOS between entries."""
    stream: list[int] = []
    for i in rng.permutation(len(docs)):
        stream.append(EOS_ID)
        stream.extend(docs[i])
    stream.append(EOS_ID)
    usable = max(1, len(stream) // block) * block
    if len(stream) < block:  # a tiny dataset: repeat it to fill one block
        stream = (stream * math.ceil(block / len(stream)))[:block]
    return torch.tensor(stream[:usable], dtype=torch.long).view(-1, block)


def train(
    model: PreTrainedModel,
    docs: Sequence[Sequence[int]],
    block: int,
    token_passes: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> dict[str, float]:
    """Train in place for ``token_passes`` tokens in blocks of ``block`` (AdamW, warm-up +
    cosine); returns the mean loss of the last tenth of the steps and the seconds taken."""
    if not docs:
        raise ValueError("train: no documents")
    steps = max(1, token_passes // (batch_size * block))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, int(WARMUP * steps))

    def lr_at(step: int) -> float:
        if step < warm:
            return lr * (step + 1) / warm
        progress = (step - warm) / max(1, steps - warm)
        return lr * (FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    start = time.perf_counter()
    losses: list[float] = []
    blocks = pack(docs, block, rng)
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > len(blocks):
            blocks, cursor = torch.cat([blocks[cursor:], pack(docs, block, rng)]), 0
        batch = blocks[cursor : cursor + batch_size].to(model.device)
        cursor += batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    del opt, blocks, batch, loss
    if model.device.type == "cuda":
        # Hand the optimiser's state and the activations back to the card: chains of other
        # seeds train in other processes on the same GPU (12 at once held its 140 GB).
        torch.cuda.empty_cache()
    tail = losses[-max(1, steps // 10) :]
    return {"steps": steps, "final_loss": float(np.mean(tail)),
            "seconds": time.perf_counter() - start}
