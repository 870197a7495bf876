"""Embedding on a real local Ray cluster (scripts/ray.sh, which scripts/test.sh starts and
exports as DCES_TEST_RAY_ADDRESS): the same vectors, the same round and the same CLI output as
embedding here, with the real bundled model. Each case loads a fresh embedder, so that no
vector comes from the driver's cache and Ray really embeds (min_samples=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from curation import CurationConfig, Curator
from curation.config import EmbedConfig
from curation.embed import load_embedder
from curation.executor import LocalExecutor
from curation.ray_executor import RayExecutor

ADDRESS = os.environ.get("DCES_TEST_RAY_ADDRESS")
pytestmark = pytest.mark.skipif(
    not ADDRESS, reason="no Ray cluster: DCES_TEST_RAY_ADDRESS is unset (scripts/test.sh starts "
                        "one with scripts/ray.sh)")
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    """Two actors, small tasks so that both get some, every new text sent to the cluster."""
    assert ADDRESS is not None
    yield RayExecutor(ADDRESS, num_actors=2, batch_size=64, min_samples=1)
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


def test_the_cli_writes_the_same_output_with_ray(tmp_path: Path, fortunes: list[dict]) -> None:
    assert ADDRESS is not None
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(f) + "\n" for f in fortunes[:80]))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(NO_LM))
    outputs = []
    for extra in ([], ["--ray", ADDRESS]):
        out = tmp_path / f"out{len(outputs)}.jsonl"
        cmd = [sys.executable, "-m", "app.cli", "curate", str(inp), "--budget", "16",
               "--config", str(config), "--output", str(out), "--quiet", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert sum(json.loads(line)["selected"] for line in outputs[0].splitlines()) == 16



def test_the_service_embeds_large_rounds_on_the_cluster_it_is_given(
    embedder, fortunes: list[dict]  # type: ignore[no-untyped-def]
) -> None:
    from app.settings import Settings
    from app.worker.models import EngineModels

    assert ADDRESS is not None
    config = CurationConfig.from_dict(NO_LM)
    assert isinstance(Curator(config).executor, LocalExecutor)  # no address: the default
    # A new EngineModels loads its own embedder: nothing cached, 120 new texts >= 100.
    models = EngineModels(Settings(ray_address=ADDRESS, ray_min_samples=100, ray_actors=2))
    curator = models.curator(config)
    assert isinstance(curator.executor, RayExecutor)
    assert (curator.executor.address, curator.executor.min_samples) == (ADDRESS, 100)
    local, _ = Curator(config, embedder=embedder).curate(fortunes[:120], 20)
    remote, _ = curator.curate(fortunes[:120], 20)
    assert [d.selected for d in remote.decisions] == [d.selected for d in local.decisions]
