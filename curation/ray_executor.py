"""Embedding on a Ray cluster: Ray Data ``map_batches`` over a pool of embedding actors.

Each actor loads the embedder once, through :func:`curation.embed.load_embedder` with the run's
:class:`~curation.config.EmbedConfig`, so a row is the vector the driver would have computed
(the CPU default, ONNX fp32, runs one text per call, unpadded: the same bits whatever the
batch), and a round on the cluster selects what the local round selects for the same seed and
input. Only the embedding is distributed, for the reason :mod:`curation.executor` gives.

``ray`` is imported on first use: ``import curation`` works without it (``pip install
dces[ray]``). Every node needs this project installed, at the driver's version.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from curation.config import EmbedConfig
from curation.embed import Embedder, load_embedder
from curation.types import FractionDone


class RayExecutor:
    """Embeds a round's new texts on the Ray cluster at ``address`` (``auto``: the one this
    machine joined), with ``num_actors`` actors of ``num_cpus`` CPUs each (and one GPU each when
    the config's device is cuda). Rounds with fewer than ``min_samples`` new texts embed here:
    starting the actors and loading a model in each costs seconds, more than they save.
    ``batch_size`` texts go to an actor at a time (rounded up to whole embedding batches)."""

    def __init__(
        self,
        address: str,
        num_actors: int = 2,
        batch_size: int = 1024,
        min_samples: int = 20_000,
        num_cpus: float = 1.0,
    ) -> None:
        if num_actors < 1 or batch_size < 1 or min_samples < 0 or num_cpus <= 0:
            raise ValueError("RayExecutor: num_actors and batch_size must be >= 1, "
                             "min_samples >= 0, num_cpus > 0")
        if importlib.util.find_spec("ray") is None:  # now, not when the first large round comes
            raise ValueError("RayExecutor: ray is not installed (pip install 'dces[ray]')")
        self.address = address
        self.num_actors = num_actors
        self.batch_size = batch_size
        self.min_samples = min_samples
        self.num_cpus = num_cpus

    def embed(
        self,
        embedder: Embedder,
        config: EmbedConfig,
        texts: Sequence[str],
        progress: FractionDone | None = None,
    ) -> np.ndarray:
        def encode_new(new: list[str], progress: FractionDone | None) -> np.ndarray:
            if len(new) < self.min_samples:
                return embedder.encode_uncached(new, progress)
            return self._encode_on_cluster(embedder.dim, as_loaded(config, embedder), new,
                                           progress)

        return embedder.encode(texts, progress, encode_new)

    def _encode_on_cluster(
        self, dim: int, config: EmbedConfig, texts: list[str], progress: FractionDone | None
    ) -> np.ndarray:
        """Rows of ``texts`` in their order. A Ray row is a task of ``batch_size`` texts, longest
        first as the local embedder takes them; an actor answers one row per text with its
        position, so the order is restored whatever order the tasks finish in."""
        import ray.data

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        # Ray Data logs every execution's plan and progress at INFO, and draws bars: the round
        # reports its own progress, and the service's log lines are JSON.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
        step = -(-self.batch_size // config.batch_size) * config.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = [order[lo : lo + step] for lo in range(0, len(order), step)]
        tasks = [{"positions": chunk, "texts": [texts[i] for i in chunk]} for chunk in chunks]
        gpu = config.device == "cuda"  # resolved: auto on a GPU driver is cuda here
        dataset = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
            _EmbedActor,
            batch_size=1,
            batch_format="numpy",
            fn_constructor_kwargs={"config": config},
            compute=ray.data.ActorPoolStrategy(size=min(self.num_actors, len(tasks))),
            num_cpus=self.num_cpus,
            num_gpus=1 if gpu else None,
        )
        out = np.empty((len(texts), dim), dtype=np.float32)
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["position"]] = batch["vector"]
            done += len(batch["position"])
            if progress is not None:
                progress(done / len(texts))
        if done != len(texts):
            raise RuntimeError(f"ray: {done} of {len(texts)} vectors came back")
        return out


def as_loaded(config: EmbedConfig, embedder: Embedder) -> EmbedConfig:
    """``config`` with its ``auto`` choices made as the driver made them (backend, device, and
    torch's dtype): an actor on another kind of node (no GPU, no bf16) loads the same variant of
    the model, or fails, rather than embedding differently."""
    dtype = embedder.precision if embedder.backend == "torch" else config.dtype
    made = {"backend": embedder.backend, "device": embedder.device, "dtype": dtype}
    return EmbedConfig(**{**asdict(config), **made})  # checked again, as any config


class _EmbedActor:
    """One actor of the pool: the run's embedder, loaded once, with no cache of its own (the
    driver's holds every vector that comes back)."""

    def __init__(self, config: EmbedConfig) -> None:
        self.embedder = load_embedder(config.model, config.dtype, config.batch_size,
                                      cache_size=0, backend=config.backend, device=config.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = np.concatenate([np.asarray(p, dtype=np.int64) for p in batch["positions"]])
        texts = [str(t) for chunk in batch["texts"] for t in chunk]
        return {"position": positions, "vector": self.embedder.encode_uncached(texts)}
