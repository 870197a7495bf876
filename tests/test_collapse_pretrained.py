"""The collapse benchmark with a pretrained generator (``--pretrained``): loading, prompts,
prompted sampling, fine-tuning and a whole miniature run.

The full preset fine-tunes SmolLM2-135M, a GPU job; here a tiny randomly initialised Llama with
SmolLM2's real tokenizer goes through the same loading code (these tests check plumbing, not
quality).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lm_fixtures import tiny_lm_dir_fixture  # noqa: F401
from transformers import PreTrainedModel

from bench.collapse.__main__ import main
from bench.collapse.config import PRETRAINED, PRETRAINED_QUICK, ModelConfig, preset
from bench.collapse.data import load_corpus
from bench.collapse.experiment import PRETRAINED_FIELDS, gen0_settings, prompts
from bench.collapse.heldout import score
from bench.collapse.model import SMOLLM2, load_model, new_model, parameter_count, train
from bench.collapse.report import _model
from bench.collapse.sampling import cache_keyword, forward_cached, sample
from bench.collapse.strategies import Pool
from bench.collapse.tokenizer import EOS_ID, BenchTokenizer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "fortunes-sample.jsonl"


@pytest.fixture(scope="module", name="tokenizer")
def tokenizer_fixture(tiny_lm_dir: Path) -> BenchTokenizer:
    return BenchTokenizer.pretrained(tiny_lm_dir)


@pytest.fixture(scope="module", name="fortune_ids")
def fortune_ids_fixture(tokenizer: BenchTokenizer) -> list[list[int]]:
    return tokenizer.encode([f.text for f in load_corpus(SAMPLE)][:200])


def test_the_presets_fine_tune_smollm2_on_prompted_64_token_continuations() -> None:
    for cfg in (PRETRAINED, PRETRAINED_QUICK):
        assert (cfg.model.pretrained, cfg.model.prompt_tokens, cfg.model.new_tokens) == (
            SMOLLM2, 8, 64)
        assert cfg.gen_lr < cfg.gen0_lr < 1e-3  # fine-tuning rates, not from-scratch ones
    assert preset(True, "/some/dir").model.pretrained == "/some/dir"
    assert preset(False, None).model.pretrained is None
    assert preset(False, None).model.continuation_limit == 127  # the from-scratch default


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"prompt_tokens": 94}, "prompt_tokens"),
        ({"prompt_tokens": 8, "new_tokens": 87}, "new_tokens"),
        ({"new_tokens": 0}, "new_tokens"),
        ({"context": 4}, "context"),
    ],
)
def test_model_limits_name_the_field(changes: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=f"^model.{field}: must be"):
        ModelConfig(**{"context": 96, **changes})


def test_a_continuation_at_its_limit_is_scored_whole_with_its_prompt(tiny_lm_dir: Path) -> None:
    generator = ModelConfig(context=32, prompt_tokens=8, new_tokens=22)  # 1 + 8 + 22 + 1 = 32
    assert generator.continuation_limit == 22
    model = load_model(tiny_lm_dir)
    longest = [list(range(100, 130))]
    scored = score(model, longest, context=32, given=8, unended=[True])
    assert scored.doc_tokens.tolist() == [22]  # every written token, no end it did not write


def test_cli_rejects_a_directory_that_holds_no_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--pretrained", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a model directory (no config.json, tokenizer.json)" in err


def test_the_tokenizer_is_the_models_own_with_the_separator_at_id_0(
        tokenizer: BenchTokenizer) -> None:
    assert tokenizer.vocab_size == 49152
    ids = tokenizer.encode(["A fool and his money are soon parted."])[0]
    assert EOS_ID not in ids
    assert tokenizer.decode([ids]) == ["A fool and his money are soon parted."]


def test_prompts_are_the_first_tokens_of_entries_longer_than_them(
        fortune_ids: list[list[int]]) -> None:
    drawn = prompts(fortune_ids, 50, 8, seed=3)
    starts = {tuple(ids[:8]) for ids in fortune_ids if len(ids) > 8}
    assert len(drawn) == 50 and all(len(p) == 8 and tuple(p) in starts for p in drawn)
    assert drawn == prompts(fortune_ids, 50, 8, seed=3)  # a fixed draw per seed
    assert prompts(fortune_ids, 3, 0, seed=3) == [[], [], []]
    with pytest.raises(ValueError, match=r"^prompt_tokens: no training entry is longer than 999"):
        prompts(fortune_ids, 3, 999, seed=3)


def test_a_prompted_sample_continues_its_prompt_within_the_limit(tiny_lm_dir: Path) -> None:
    model = load_model(tiny_lm_dir)
    starts = [[100 + i, 200 + i, 300 + i] for i in range(10)]
    out = sample(model, starts, 5, temperature=1.0, top_p=0.9, batch_size=4, seed=0)
    assert len(out) == 10
    for prompt, ids in zip(starts, out, strict=True):
        assert ids[:3] == prompt and len(ids) <= 3 + 5 and EOS_ID not in ids
    assert out == sample(model, starts, 5, 1.0, 0.9, batch_size=4, seed=0)  # seeded
    with pytest.raises(ValueError, match=r"^prompts: must all have the same length"):
        sample(model, [[1], [1, 2]], 5, 1.0, 0.9, 4, 0)


def test_the_sampler_continues_the_prompt_not_the_separator(tiny_lm_dir: Path) -> None:
    import torch

    model = load_model(tiny_lm_dir)
    starts = [[100 + i, 200 + i, 300 + i] for i in range(6)]
    first = [ids[3] for ids in sample(model, starts, 1, 1.0, top_p=1e-6, batch_size=3, seed=0)]
    with torch.inference_mode():  # nucleus of one: the argmax after EOS and the prompt
        expected = [int(model(input_ids=torch.tensor([[EOS_ID, *p]])).logits[0, -1].argmax())
                    for p in starts]
    assert first == expected and len(set(expected)) > 1


def test_sampled_tokens_see_their_whole_context_through_the_cache(tiny_lm_dir: Path) -> None:
    """Greedy sampling (a nucleus of one) with the KV cache equals greedy decoding that
    re-reads the whole sequence each step: a cache the model ignored would differ."""
    import torch

    model = load_model(tiny_lm_dir)
    starts = [[100 + i, 200 + i, 300 + i] for i in range(4)]
    out = sample(model, starts, 6, 1.0, top_p=1e-6, batch_size=4, seed=0)
    with torch.inference_mode():
        for prompt, ids in zip(starts, out, strict=True):
            seq = [EOS_ID, *prompt]
            for _ in range(len(ids) - len(prompt)):
                seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
            assert ids == seq[1:]
    assert any(len(ids) > len(starts[0]) + 1 for ids in out)


class _Forward517(torch.nn.Module):
    """The signature of transformers 5.17's causal LMs (the cache under its older name)."""

    def forward(self, input_ids: Any = None, past_key_values: Any = None, **kwargs: Any) -> None:
        return None


class _Forward525(torch.nn.Module):
    """The signature of transformers 5.25's causal LMs."""

    def forward(self, input_ids: Any = None, cache: Any = None, **kwargs: Any) -> None:
        return None


def test_the_cache_goes_under_the_name_the_forward_takes() -> None:
    """Either name passed to the other version lands in ``**kwargs``, unused."""
    assert cache_keyword(_Forward517()) == "past_key_values"  # type: ignore[arg-type]
    assert cache_keyword(_Forward525()) == "cache"  # type: ignore[arg-type]


def test_a_model_that_ignores_its_cache_stops_the_sampler(tiny_lm_dir: Path) -> None:
    """Passed under a name its forward does not know, the cache lands in ``**kwargs`` and
    stays empty (what transformers 5.17 did with ``cache=``): an error, not context-free
    samples."""
    import torch
    from transformers import DynamicCache

    model = load_model(tiny_lm_dir)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="ignored its KV cache"):
        forward_cached(model, torch.tensor([[EOS_ID, 100, 200]]), DynamicCache(), "kv_cache")


def test_fine_tuning_lowers_the_loss_of_the_loaded_model(
        tiny_lm_dir: Path, fortune_ids: list[list[int]]) -> None:
    model = new_model(ModelConfig(context=64, pretrained=str(tiny_lm_dir)), 0, seed=0)
    assert isinstance(model, PreTrainedModel) and model.config.model_type == "llama"
    before = score(model, fortune_ids[:50], context=64).summary()["heldout_perplexity"]
    fit = train(model, fortune_ids, 64, token_passes=40 * 8 * 64, batch_size=8, lr=3e-3, seed=0)
    after = score(model, fortune_ids[:50], context=64).summary()["heldout_perplexity"]
    assert fit["steps"] == 40 and np.isfinite(fit["final_loss"])
    assert after < 0.5 * before, (before, after)


def test_a_given_prompt_is_context_and_only_the_continuation_is_scored(
        tiny_lm_dir: Path, fortune_ids: list[list[int]]) -> None:
    import torch

    model = load_model(tiny_lm_dir)
    docs = [ids for ids in fortune_ids if len(ids) > 4][:6]
    whole = score(model, docs, context=64)
    continued = score(model, docs, context=64, given=3)
    assert (whole.doc_tokens - continued.doc_tokens == 3).all()
    for i, doc in enumerate(docs):  # the difference is the three prompt tokens' NLL
        seq = torch.tensor([[EOS_ID, *doc[:3]]])
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=seq).logits[0, :-1].float(), dim=-1)
        prompt_nll = -float(logp.gather(-1, seq[0, 1:, None]).sum())
        total = whole.doc_nll[i] * whole.doc_tokens[i]
        rest = continued.doc_nll[i] * continued.doc_tokens[i]
        assert total - rest == pytest.approx(prompt_nll, rel=1e-4)
    with pytest.raises(ValueError, match=r"^given: every entry must be longer than its 3 given"):
        score(model, [[5, 6]], context=64, given=3)


def test_a_cut_continuation_is_scored_without_the_end_it_never_wrote(
        tiny_lm_dir: Path, fortune_ids: list[list[int]]) -> None:
    import torch

    model = load_model(tiny_lm_dir)
    docs = [ids[:12] for ids in fortune_ids if len(ids) > 12][:5]
    ended = score(model, docs, context=64, given=4)
    cut = score(model, docs, context=64, given=4, unended=[True] * len(docs))
    assert (ended.doc_tokens - cut.doc_tokens == 1).all()
    for i, doc in enumerate(docs):  # the difference is the closing EOS's NLL
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([[EOS_ID, *doc]])).logits[0, -1].float()
        end_nll = -float(torch.log_softmax(logits, dim=-1)[EOS_ID])
        total = ended.doc_nll[i] * ended.doc_tokens[i]
        rest = cut.doc_nll[i] * cut.doc_tokens[i]
        assert total - rest == pytest.approx(end_nll, rel=1e-4)
    with pytest.raises(ValueError, match=r"^unended: must have one flag per entry \(5\), got 2"):
        score(model, docs, context=64, unended=[True, False])


def test_a_pool_marks_the_continuations_that_reached_the_limit(tiny_lm_dir: Path) -> None:
    generator = ModelConfig(context=32, prompt_tokens=2, new_tokens=4)
    ids = [[7, 8, 9], [7, 8, 9, 10, 11, 12], [7, 8, 9, 10, 11]]  # 1, 4 (cut) and 3 written

    def no_embedding(texts: list[str]) -> np.ndarray:
        raise AssertionError("scores need no embedding")

    pool = Pool(["a", "b", "c"], ids, load_model(tiny_lm_dir), no_embedding, generator)
    assert pool.scores.doc_tokens.tolist() == [2, 4, 4]  # written tokens, + the end if written
    unprompted = Pool(["a"], [[7, 8]], pool.model, no_embedding, ModelConfig(context=32))
    assert unprompted.scores.doc_tokens.tolist() == [3]  # whole, end included, as recorded


def test_the_generation_0_cache_knows_the_weights_and_keeps_from_scratch_keys(
        tiny_lm_dir: Path, tmp_path: Path) -> None:
    import shutil

    scratch = gen0_settings(preset(False, None))
    assert not set(PRETRAINED_FIELDS) & set(scratch["model"])  # keys made before they existed
    assert "weights" not in scratch and "device" not in scratch
    copy = tmp_path / "lm"
    shutil.copytree(tiny_lm_dir, copy)
    before = gen0_settings(preset(True, str(copy)))
    assert before["model"]["pretrained"] == str(copy) and before["weights"][0][0] == "config.json"
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # the same name and size, written again
    assert gen0_settings(preset(True, str(copy)))["weights"] != before["weights"]


def test_parameters_are_counted_without_loading_weights(tiny_lm_dir: Path) -> None:
    loaded = sum(p.numel() for p in load_model(tiny_lm_dir).parameters())
    assert parameter_count(ModelConfig(pretrained=str(tiny_lm_dir)), 0) == loaded
    assert parameter_count(ModelConfig(), 2048) == 675_328  # the recorded from-scratch GPT-2


def test_cli_rejects_a_context_beyond_the_models_positions_and_a_broken_tokenizer(
        tiny_lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "lm"
    shutil.copytree(tiny_lm_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 64}))
    assert main(["--quick", "--pretrained", str(copy)]) == 2
    assert "model.context: must be at most the pretrained model's 64 positions, got 96" in (
        capsys.readouterr().err)
    (copy / "tokenizer.json").write_text("{not json")
    assert main(["--quick", "--pretrained", str(copy)]) == 2
    assert f"pretrained: {copy / 'tokenizer.json'} is not a tokenizer" in capsys.readouterr().err


def test_the_report_names_the_pretrained_generator_and_its_prompts() -> None:
    model = {"pretrained": SMOLLM2, "prompt_tokens": 8, "new_tokens": 64, "context": 128}
    assert _model(model, {"parameters": 134_515_008, "vocab_size": 49152}) == (
        "pretrained `smollm2`, 134,515,008 parameters, fine-tuned (vocabulary 49152, context "
        "128); each sample continues the first 8 tokens of a random real training entry for up "
        "to 64 tokens.")


@pytest.mark.slow
def test_pretrained_quick_run_fine_tunes_and_curates(tmp_path: Path, tiny_lm_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.collapse", "--quick", "--pretrained", str(tiny_lm_dir),
         "--strategies", "random", "dces", "--corpus", str(SAMPLE),
         "--out", str(tmp_path), "--name", "p"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "p.json").read_text())
    assert results["config"]["model"]["pretrained"] == str(tiny_lm_dir)
    assert results["setup"]["vocab_size"] == 49152
    for run in results["runs"]:
        assert len(run["generations"]) == PRETRAINED_QUICK.generations + 1
        for g in run["generations"][1:]:
            assert g["selected"] == PRETRAINED_QUICK.budget or run["strategy"] == "dces"
            assert np.isfinite(g["heldout_perplexity"])
            assert all(text for text in g["examples"]["written"])
    assert "pretrained `" in (tmp_path / "p.md").read_text()
