"""curation.lm: loading (dense cache, errors), teacher-forced scoring, perplexity and its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lm_fixtures import smollm2_fixture, tiny_lm_dir_fixture, tiny_lm_fixture  # noqa: F401

from curation.lm import DEFAULT_LM_NAME, CausalLM, load_causal_lm, smollm2_dense_dir
from curation.types import CurationInputError

TEXT = "The quick brown fox jumps over the lazy dog."
LONG = "It is a truth universally acknowledged that a single man must be in want of a wife. " * 8


def test_token_counts_are_the_tokens_a_score_reads(tiny_lm: CausalLM) -> None:
    texts = [TEXT, LONG, ""]
    counts = tiny_lm.token_counts(texts, max_tokens=32)
    assert counts.tolist() == [len(s) for s in tiny_lm.score(texts, 32, 4)]
    assert counts[1] == 32 and counts[0] < 32


def test_score_matches_a_direct_forward_pass(tiny_lm: CausalLM) -> None:
    [s] = tiny_lm.score([TEXT], max_tokens=64, batch_size=4, top_k=5)
    ids = torch.from_numpy(s.ids)
    with torch.inference_mode():
        logits = tiny_lm.model(ids[None]).logits[0, :-1].double()
    expected = torch.log_softmax(logits, -1).gather(1, ids[1:, None]).squeeze(1)
    np.testing.assert_allclose(s.logprobs[1:], expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s.top_ids[1:], logits.topk(5).indices.numpy())
    assert np.isnan(s.logprobs[0]) and (s.top_ids[0] == -1).all()
    np.testing.assert_allclose(s.probs[1:], np.exp(expected.numpy()), rtol=1e-5)


def test_offsets_point_at_each_token(tiny_lm: CausalLM) -> None:
    [s] = tiny_lm.score([TEXT], max_tokens=64, batch_size=1)
    pieces = tiny_lm.tokenizer.batch_decode([[i] for i in s.ids])
    assert "".join(pieces) == TEXT
    for (start, end), piece in zip(s.offsets, pieces, strict=True):
        assert piece.endswith(TEXT[start:end]) and end > start


def test_padding_and_batching_do_not_change_scores(tiny_lm: CausalLM) -> None:
    alone = tiny_lm.score([TEXT], max_tokens=64, batch_size=1, top_k=3)[0]
    batched = tiny_lm.score([LONG, TEXT, "Hello there"], max_tokens=64, batch_size=3, top_k=3)
    assert [len(s) for s in batched] == [64, len(alone), len(batched[2])]
    np.testing.assert_allclose(batched[1].logprobs, alone.logprobs, atol=1e-5)
    np.testing.assert_array_equal(batched[1].top_ids, alone.top_ids)


def test_top_k_only_where_p_exceeds_min_p(tiny_lm: CausalLM) -> None:
    [full] = tiny_lm.score([LONG], max_tokens=64, batch_size=1, top_k=4)
    cut = float(np.nanmedian(full.probs))
    [part] = tiny_lm.score([LONG], max_tokens=64, batch_size=1, top_k=4, top_k_min_p=cut)
    above = full.probs > cut
    assert 0 < above.sum() < len(part)
    np.testing.assert_array_equal(part.top_ids[above], full.top_ids[above])
    assert (part.top_ids[~above] == -1).all() and np.isneginf(part.top_logits[~above]).all()


def test_texts_are_truncated_to_max_tokens(tiny_lm: CausalLM) -> None:
    [s] = tiny_lm.score([LONG], max_tokens=10, batch_size=2)
    assert len(s) == 10 and s.offsets[-1, 1] < len(LONG) / 4


def test_empty_inputs(tiny_lm: CausalLM) -> None:
    assert tiny_lm.score([], max_tokens=8, batch_size=2) == []
    empty = tiny_lm.perplexity([])
    assert empty.shape == (0,) and empty.dtype == np.float64
    [s] = tiny_lm.score([""], max_tokens=8, batch_size=2, top_k=2)
    assert len(s) == 0 and s.top_ids.shape == (0, 2)


def test_perplexity_is_exp_of_mean_token_nll(tiny_lm: CausalLM) -> None:
    texts = [TEXT, LONG, "Hello", ""]
    assert [len(s) for s in tiny_lm.score(texts[2:], 8, 2)] == [1, 0]  # no token to predict
    ppl = tiny_lm.perplexity(texts, max_tokens=32, batch_size=2)
    scores = tiny_lm.score(texts[:2], max_tokens=32, batch_size=2)
    expected = [np.exp(-s.logprobs[1:].astype(np.float64).mean()) for s in scores]
    assert ppl.dtype == np.float64
    np.testing.assert_allclose(ppl[:2], expected, rtol=1e-6)
    np.testing.assert_allclose([s.perplexity() for s in scores], expected, rtol=1e-6)
    assert np.isnan(ppl[2:]).all()
    assert tiny_lm.perplexity([LONG], max_tokens=8)[0] != ppl[1]  # max_tokens is part of the key


def test_perplexity_cache_returns_each_texts_own_value_and_is_bounded(tiny_lm: CausalLM) -> None:
    fresh = CausalLM("fresh", tiny_lm.model, tiny_lm.tokenizer, cache_size=2)
    texts = [TEXT, LONG, "A third text.", "And a fourth one."]
    expected = tiny_lm.perplexity(texts, max_tokens=32)
    np.testing.assert_allclose(fresh.perplexity(texts[:2], max_tokens=32), expected[:2])
    # texts[1] comes from the cache, texts[2:] are scored; order and duplicates are kept
    got = fresh.perplexity([texts[2], texts[1], texts[3], texts[2]], max_tokens=32)
    np.testing.assert_allclose(got, expected[[2, 1, 3, 2]], rtol=1e-6)
    assert len(fresh._perplexity_cache) == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 513}, "max_tokens"),  # the tiny model has 512 positions
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 49_153}, "top_k"),
    ],
)
def test_score_limits(tiny_lm: CausalLM, kwargs: dict[str, int], field: str) -> None:
    args = {"max_tokens": 16, "batch_size": 2, **kwargs}
    with pytest.raises(CurationInputError, match=f"^{field}: must be an integer"):
        tiny_lm.score([TEXT], **args)


def test_perplexity_limits_and_text_types(tiny_lm: CausalLM) -> None:
    with pytest.raises(CurationInputError, match=r"^max_tokens: .* between 1 and 512"):
        tiny_lm.perplexity([TEXT], max_tokens=1000)
    with pytest.raises(CurationInputError, match=r"^texts\[1\]: expected a string, got int"):
        tiny_lm.perplexity([TEXT, 5])  # type: ignore[list-item]


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(CurationInputError, match=r"no-such-model.*cannot load a causal LM"):
        load_causal_lm(missing)
    with pytest.raises(CurationInputError, match="cannot load"):
        load_causal_lm("no-such-org/no-such-model-dces")


def test_dtype_choice(tiny_lm_dir: Path) -> None:
    assert load_causal_lm(str(tiny_lm_dir), dtype="bf16").model.dtype == torch.bfloat16
    assert load_causal_lm(str(tiny_lm_dir), dtype="fp32").model.dtype == torch.float32
    with pytest.raises(CurationInputError, match=r"^dtype: expected 'auto', 'bf16' or 'fp32'"):
        load_causal_lm(str(tiny_lm_dir), dtype="fp16")  # type: ignore[arg-type]


def test_default_model_loads_from_its_dense_copy(smollm2: CausalLM) -> None:
    dense = smollm2_dense_dir()
    assert smollm2.name == DEFAULT_LM_NAME
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in dense.iterdir()
    }
    assert smollm2.tokenizer.pad_token == "<|im_end|>" and smollm2.tokenizer.padding_side == "right"


def test_real_text_is_less_perplexing_than_its_words_shuffled(
    smollm2: CausalLM, fortunes: list[dict[str, str]]
) -> None:
    texts = [f["text"] for f in fortunes if len(f["text"]) < 200][:8]
    rng = np.random.default_rng(0)
    shuffled = [" ".join(rng.permutation(t.split())) for t in texts]
    real, noise = smollm2.perplexity(texts), smollm2.perplexity(shuffled)
    assert (real < noise).all() and np.median(noise) > 5 * np.median(real)


@pytest.mark.slow
def test_dense_copy_is_written_once_and_loads_like_the_cached_one(
    tmp_path: Path, smollm2: CausalLM
) -> None:
    dense = smollm2_dense_dir(tmp_path)  # dequantises the GGUF again (~20 s)
    assert sorted(p.name for p in tmp_path.joinpath("lm").iterdir()) == [dense.name]
    assert smollm2_dense_dir(tmp_path) == dense
    lm = load_causal_lm(cache_dir=tmp_path)
    np.testing.assert_allclose(lm.perplexity([TEXT, LONG]), smollm2.perplexity([TEXT, LONG]))
