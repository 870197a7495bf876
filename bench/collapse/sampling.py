"""Sampling candidate pools from a model: batched, with a KV cache, finished rows dropped.

Every sample starts from EOS, then its prompt (none, or the first tokens of a real entry), and
ends at the next EOS or after ``new_tokens``. Rows that have finished are removed from the
batch and its cache at once, so a pool costs the tokens it holds, not ``batch x longest
sample``: fortunes are short on average (~45 tokens) with a long tail.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from bench.collapse.tokenizer import EOS_ID


def _filter_top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero out the tail of each row beyond cumulative probability ``top_p`` (nucleus)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    outside = sorted_p.cumsum(-1) - sorted_p > top_p
    sorted_p[outside] = 0.0
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p)


def cache_keyword(model: PreTrainedModel) -> str:
    """The name under which this model's ``forward`` takes a KV cache: ``cache`` in recent
    transformers, ``past_key_values`` before (5.17, say). The older name is swallowed by the
    newer ``**kwargs`` and the other way round, so a wrong guess samples every token without
    its context, silently."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward_cached(model: PreTrainedModel, step_input: torch.Tensor, cache: DynamicCache,
                    keyword: str) -> torch.Tensor:
    """Logits of ``step_input`` given what ``cache`` holds, which grows by its tokens; an
    error if the model left the cache as it was (it then saw none of the context)."""
    before = cache.get_seq_length()
    kwargs: dict[str, Any] = {keyword: cache}
    logits = model(input_ids=step_input, use_cache=True, **kwargs).logits
    if cache.get_seq_length() != before + step_input.shape[1]:
        raise RuntimeError(f"sample: {type(model).__name__} ignored its KV cache (passed as "
                           f"{keyword!r}); samples would not see their context")
    return logits


@torch.inference_mode()
def sample(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
) -> list[list[int]]:
    """One sample per prompt (token ids: the prompt, then what was drawn ancestrally at
    ``temperature``/``top_p``, without EOS). Prompts must all have one length, so that a batch
    needs no padding."""
    if len({len(p) for p in prompts}) > 1:
        raise ValueError("prompts: must all have the same length")
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    keyword = cache_keyword(model)
    out: list[list[int]] = []
    for lo in range(0, len(prompts), batch_size):
        batch = prompts[lo : lo + batch_size]
        rows = len(batch)
        done: list[list[int] | None] = [None] * rows
        active = torch.arange(rows)
        tokens: list[list[int]] = [list(p) for p in batch]
        cache = DynamicCache()
        step_input = torch.tensor([[EOS_ID, *p] for p in batch], dtype=torch.long, device=dev)
        for _ in range(new_tokens):
            logits = forward_cached(model, step_input, cache, keyword)
            probs = torch.softmax(logits[:, -1].float() / temperature, dim=-1)
            nxt = torch.multinomial(_filter_top_p(probs, top_p), 1, generator=gen)[:, 0]
            finished = (nxt == EOS_ID).cpu()
            for j, (row, tok) in enumerate(zip(active.tolist(), nxt.tolist(), strict=True)):
                if finished[j]:
                    done[row] = tokens[row]
                else:
                    tokens[row].append(tok)
            keep = torch.nonzero(~finished)[:, 0]
            if len(keep) == 0:
                break
            if len(keep) < len(active):
                cache.batch_select_indices(keep.to(dev))
                active = active[keep]
            step_input = nxt[keep.to(dev)].unsqueeze(1)
        out += [d if d is not None else tokens[i] for i, d in enumerate(done)]
    return out
