"""Shared LM fixtures: a tiny random Llama with the real SmolLM2 tokenizer, and the real SmolLM2.

Import the fixtures you use into a test module (``from lm_fixtures import tiny_lm_fixture``,
with ``# noqa: F401``); tests request them as ``tiny_lm``, ``tiny_lm_dir`` and ``smollm2``.
The real model's dense copy lives in the persistent cache (``$DCES_CACHE_DIR`` or
``~/.cache/dces``): the first session writes it from the GGUF (~20 s), later ones reuse it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.lm import CausalLM, load_causal_lm, smollm2_dense_dir


@pytest.fixture(scope="session", name="tiny_lm_dir")
def tiny_lm_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama (hidden 32) + SmolLM2's tokenizer, saved to disk."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dense_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session", name="tiny_lm")
def tiny_lm_fixture(tiny_lm_dir: Path) -> CausalLM:
    """The tiny model loaded through the production loader, in fp32 (exact comparisons)."""
    return load_causal_lm(str(tiny_lm_dir), dtype="fp32")


@pytest.fixture(scope="session", name="smollm2")
def smollm2_fixture() -> CausalLM:
    """The real default model (bf16 where the CPU supports it), from its dense cache."""
    return load_causal_lm()
