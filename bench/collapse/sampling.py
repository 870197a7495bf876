"""Sampling candidate pools from a model: batched, with a KV cache, finished rows dropped.

Every sample starts from EOS and ends at the next EOS (or the context length). Rows that have
finished are removed from the batch and its cache at once, so a pool costs the tokens it holds,
not ``batch x longest sample``: fortunes are short on average (~45 tokens) with a long tail.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, GPT2LMHeadModel

from bench.collapse.tokenizer import EOS_ID


def _filter_top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero out the tail of each row beyond cumulative probability ``top_p`` (nucleus)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    outside = sorted_p.cumsum(-1) - sorted_p > top_p
    sorted_p[outside] = 0.0
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p)


@torch.inference_mode()
def sample(
    model: GPT2LMHeadModel,
    n: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
) -> list[list[int]]:
    """``n`` samples (token ids, without EOS) drawn ancestrally at ``temperature``/``top_p``."""
    gen = torch.Generator().manual_seed(seed)
    limit = int(model.config.n_positions) - 1
    out: list[list[int]] = []
    for lo in range(0, n, batch_size):
        rows = min(batch_size, n - lo)
        done: list[list[int] | None] = [None] * rows
        active = torch.arange(rows)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        cache = DynamicCache()
        step_input = torch.full((rows, 1), EOS_ID, dtype=torch.long)
        for _ in range(limit):
            logits = model(input_ids=step_input, past_key_values=cache, use_cache=True).logits
            probs = torch.softmax(logits[:, -1].float() / temperature, dim=-1)
            nxt = torch.multinomial(_filter_top_p(probs, top_p), 1, generator=gen)[:, 0]
            finished = nxt == EOS_ID
            for j, (row, tok) in enumerate(zip(active.tolist(), nxt.tolist(), strict=True)):
                if finished[j]:
                    done[row] = tokens[row]
                else:
                    tokens[row].append(tok)
            keep = torch.nonzero(~finished)[:, 0]
            if len(keep) == 0:
                break
            if len(keep) < len(active):
                cache.batch_select_indices(keep)
                active = active[keep]
            step_input = nxt[keep].unsqueeze(1)
        out += [d if d is not None else tokens[i] for i, d in enumerate(done)]
    return out
