"""Progress inside the long stages: embedding reports after every chunk, the LM after every batch.

The service's worker uses each report as its stop point, so a round that reports only at stage
boundaries cannot be stopped (or watched) while it embeds 100k texts or edits its centers.
Real embedding model, real faiss, the tiny random Llama through the real loader.
"""

from __future__ import annotations

import numpy as np
import pytest
from lm_fixtures import tiny_lm_dir_fixture, tiny_lm_fixture  # noqa: F401

from curation import CurationConfig, Curator
from curation.edit import TokenEditor
from curation.embed import Embedder
from curation.lm import CausalLM


def _chunked(embedder: Embedder, chunk_size: int) -> Embedder:
    """The session's model with no cache and small chunks."""
    return Embedder(embedder.model, embedder.name, embedder.precision, embedder.batch_size,
                    cache_size=0, chunk_size=chunk_size)


def test_chunked_encoding_reports_each_chunk_and_matches_one_call(
    embedder: Embedder, fortunes: list[dict]
) -> None:
    texts = [f["text"] for f in fortunes[:100]]
    seen: list[float] = []
    chunked = _chunked(embedder, 32).encode(texts, seen.append)
    whole = _chunked(embedder, 10_000).encode(texts)
    assert seen == pytest.approx([32 / 100, 64 / 100, 96 / 100, 1.0])
    assert np.allclose(np.linalg.norm(chunked, axis=1), 1.0, atol=1e-5)  # bf16 too
    assert np.min(np.sum(chunked * whole, axis=1)) > 0.9999  # same vectors, same order


def test_cached_texts_are_not_encoded_again_nor_reported(
    embedder: Embedder, fortunes: list[dict]
) -> None:
    model = Embedder(embedder.model, embedder.name, embedder.precision, chunk_size=8)
    texts = [f["text"] for f in fortunes[:20]]
    model.encode(texts[:12])
    seen: list[float] = []
    model.encode(texts, seen.append)
    assert seen == [1.0]  # only the 8 new texts: one chunk


def test_chunk_size_limit(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="chunk_size: must be >= 1, got 0"):
        _chunked(embedder, 0)


def test_lm_scoring_and_editing_report_each_batch(tiny_lm: CausalLM) -> None:
    texts = [f"text number {i} with a few words" for i in range(10)]
    seen: list[float] = []
    tiny_lm.score(texts, max_tokens=32, batch_size=4, progress=seen.append)
    assert seen == pytest.approx([0.4, 0.8, 1.0])
    seen.clear()
    unchecked = {"enabled": True, "batch_size": 3, "min_next_ratio": 0.0}
    config = CurationConfig.from_dict({"edit": unchecked}).edit
    TokenEditor(tiny_lm, config).edit(texts, seed=0, progress=seen.append)
    assert seen == pytest.approx([0.3, 0.6, 0.9, 1.0])


def test_editing_reports_the_check_passes_and_ends_at_one(tiny_lm: CausalLM) -> None:
    """The first pass is the first half of the bar, each pass of the check half of the rest."""
    texts = [f"text number {i} with a few words" for i in range(10)]
    seen: list[float] = []
    every = {"enabled": True, "batch_size": 5, "threshold": 0.0, "top_fraction": 1.0,
             "min_next_ratio": 0.5}
    config = CurationConfig.from_dict({"edit": every}).edit
    TokenEditor(tiny_lm, config).edit(texts, seed=0, progress=seen.append)
    assert seen[:2] == pytest.approx([0.25, 0.5])
    assert len(seen) > 3 and 0.5 < seen[2] <= 0.75  # a random LM's edits need checking
    assert seen == sorted(seen) and seen[-1] == 1.0 and seen.count(1.0) == 1


def test_a_round_reports_progress_inside_its_stages(
    embedder: Embedder, tiny_lm: CausalLM, fortunes: list[dict]
) -> None:
    config = CurationConfig.from_dict({"edit": {"enabled": True, "batch_size": 4}})
    curator = Curator(config, embedder=_chunked(embedder, 50), lm=tiny_lm)
    reports: list[tuple[str, float]] = []
    curator.curate(fortunes[:300], 60, reference=fortunes[300:400],
                   progress=lambda stage, fraction: reports.append((stage, fraction)))
    fractions = [f for _, f in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0
    by_stage: dict[str, list[float]] = {}
    for stage, fraction in reports:
        by_stage.setdefault(stage, []).append(fraction)
    assert list(by_stage) == ["embed", "cluster", "select", "edit", "health", "done"]
    assert len([f for f in by_stage["embed"] if 0 < f < 0.25]) >= 5  # 300 texts, chunks of 50
    assert len(by_stage["select"]) > 1  # the LM scores texts sent without log-probs in batches
    assert len([f for f in by_stage["edit"] if 0.7 < f < 0.9]) >= 2
