"""Embedding on a real local Ray cluster (``DCES_TEST_RAY_ADDRESS``, or one that scripts/ray.sh
starts for this module): the same vectors, the same round and the same CLI output as
embedding here, with the real bundled model. Each case loads a fresh embedder, so that no
vector comes from the driver's cache and Ray really embeds (min_samples=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from curation import CurationConfig, Curator
from curation.config import EmbedConfig
from curation.embed import load_embedder
from curation.executor import LocalExecutor
from curation.ray_executor import RayExecutor

RAY_SH = Path(__file__).resolve().parent.parent / "scripts" / "ray.sh"
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """``DCES_TEST_RAY_ADDRESS``, or a throwaway cluster (a head and one worker node, 1 CPU
    each) that lives only while this module runs: an idle cluster takes ~4% of a core."""
    if given := os.environ.get("DCES_TEST_RAY_ADDRESS"):
        yield given
        return
    # A short path: Ray's sockets live under it, and a socket's path is limited to 107 bytes.
    cluster = tempfile.mkdtemp(prefix="dces-ray-")
    try:  # a start that fails halfway may leave a head node running: stop it too
        started = subprocess.run(["bash", str(RAY_SH), "start", cluster], capture_output=True,
                                 text=True, timeout=300)
        assert started.returncode == 0, started.stderr
        yield started.stdout.split()[-1]
    finally:
        if "ray" in sys.modules:  # this process's connection, before the cluster goes
            import ray

            ray.shutdown()
        subprocess.run(["bash", str(RAY_SH), "stop", cluster], timeout=120, check=True)


@pytest.fixture(scope="module")
def executor(address: str) -> Iterator[RayExecutor]:
    """Two actors, small tasks so that both get some, every new text sent to the cluster."""
    yield RayExecutor(address, num_actors=2, batch_size=64, min_samples=1)
    import ray

    ray.shutdown()  # the driver's connection, not the cluster


def test_vectors_are_the_local_ones_in_input_order(
    executor: RayExecutor, embedder, fortunes: list[dict]  # type: ignore[no-untyped-def]
) -> None:
    texts = [f["text"] for f in fortunes[:120]]
    texts += [texts[3], texts[100], texts[3]]  # duplicates: embedded once, returned in place
    fresh = load_embedder()
    got = executor.embed(fresh, EmbedConfig(), texts)
    want = embedder.encode_uncached(texts)
    assert got.shape == want.shape == (len(texts), fresh.dim)
    assert got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * want).sum(axis=1)
    assert cosine.min() >= 0.99999
    # What came back is in the driver's cache: asking again sends nothing anywhere.
    def refuse(new: list[str], progress: object) -> np.ndarray:
        raise AssertionError(f"{len(new)} texts were not cached")

    assert np.array_equal(fresh.encode(texts, encode_new=refuse), got)


def test_a_round_on_the_cluster_selects_what_the_local_round_selects(
    executor: RayExecutor, embedder, fortunes: list[dict]  # type: ignore[no-untyped-def]
) -> None:
    config = CurationConfig.from_dict({**NO_LM, "seed": 7})
    batch, reference = fortunes[:120], fortunes[600:660]
    local, _ = Curator(config, embedder=embedder).curate(batch, 24, reference=reference)
    remote, _ = Curator(config, embedder=load_embedder(), executor=executor).curate(
        batch, 24, reference=reference)

    def decisions(result):  # type: ignore[no-untyped-def]
        return [(d.id, d.selected, d.role, d.reason, d.cluster) for d in result.decisions]

    assert remote.selected == local.selected == 24
    assert decisions(remote) == decisions(local)


def test_the_cli_writes_the_same_output_with_ray(tmp_path: Path, fortunes: list[dict],
                                                address: str) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(f) + "\n" for f in fortunes[:80]))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(NO_LM))
    outputs = []
    for extra in ([], ["--ray", address]):
        out = tmp_path / f"out{len(outputs)}.jsonl"
        cmd = [sys.executable, "-m", "app.cli", "curate", str(inp), "--budget", "16",
               "--config", str(config), "--output", str(out), "--quiet", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert sum(json.loads(line)["selected"] for line in outputs[0].splitlines()) == 16



def test_the_service_embeds_large_rounds_on_the_cluster_it_is_given(
    embedder, fortunes: list[dict], address: str  # type: ignore[no-untyped-def]
) -> None:
    from app.settings import Settings
    from app.worker.models import EngineModels

    config = CurationConfig.from_dict(NO_LM)
    assert isinstance(Curator(config).executor, LocalExecutor)  # no address: the default
    # A new EngineModels loads its own embedder: nothing cached, 120 new texts >= 100.
    models = EngineModels(Settings(ray_address=address, ray_min_samples=100, ray_actors=2))
    curator = models.curator(config)
    assert isinstance(curator.executor, RayExecutor)
    assert (curator.executor.address, curator.executor.min_samples) == (address, 100)
    local, _ = Curator(config, embedder=embedder).curate(fortunes[:120], 20)
    remote, _ = curator.curate(fortunes[:120], 20)
    assert [d.selected for d in remote.decisions] == [d.selected for d in local.decisions]
