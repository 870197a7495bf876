"""Where a round's embedding runs: in this process, or spread over a cluster.

Embedding is the round's cost (>99% of a 10,000-sample round without the LM: clustering,
selection and health took under 1%, bench/results/engine.md), so it is the one stage an
executor distributes; clustering (faiss k-means on a sample), assignment, selection and health
stay in the driver. Every executor goes through the driver's :class:`~curation.embed.Embedder`
and its cache: a text it has seen is never sent again, and what comes back is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from curation.config import EmbedConfig
from curation.embed import Embedder
from curation.types import FractionDone


class Executor(Protocol):
    """Embeds a round's texts."""

    def embed(
        self,
        embedder: Embedder,
        config: EmbedConfig,
        texts: Sequence[str],
        progress: FractionDone | None = None,
    ) -> np.ndarray:
        """(len(texts), dim) float32 L2-normalised rows, in ``texts`` order. ``config`` is what
        ``embedder`` was loaded from: an executor that embeds elsewhere loads the same model."""
        ...


class LocalExecutor:
    """In this process, with the embedder's own model: the engine's default."""

    def embed(
        self,
        embedder: Embedder,
        config: EmbedConfig,
        texts: Sequence[str],
        progress: FractionDone | None = None,
    ) -> np.ndarray:
        del config  # the embedder is already loaded from it
        return embedder.encode(texts, progress)
