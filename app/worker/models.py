"""The loaded models: embedders and LMs shared by every run whose config asks for them.

Only the model worker thread touches them. ``base_config`` is the config every run starts from:
the engine's defaults with the server's models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import astuple
from typing import Any, TypeVar

from app.logs import disable_hub_progress_bars
from app.settings import Settings
from curation import CurationConfig, Curator
from curation.config import EmbedConfig
from curation.embed import Embedder, load_embedder
from curation.executor import Executor
from curation.lm import CausalLM, load_causal_lm
from curation.lru import LRUCache
from curation.ray_executor import RayExecutor

log = logging.getLogger("dces.engine")
WARMUP_TEXTS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A journey of a thousand miles begins with a single step forward.",
    "Rain fell all night on the old tin roof of the mountain cabin.",
    "She sold her bicycle and bought a small boat to sail the lake.",
    "Every committee meeting ran an hour longer than anyone had planned.",
    "The library opens at nine and closes early on public holidays.",
)
M = TypeVar("M")


def base_config(settings: Settings) -> CurationConfig:
    """The defaults every run starts from: the engine's, with the server's models."""
    return CurationConfig.from_dict({
        "embed": {"model": settings.embedding_model, "dtype": settings.embedding_dtype,
                  "backend": settings.embedding_backend, "device": settings.device},
        "edit": {"model": settings.lm_model, "device": settings.device},
    })


class EngineModels:
    """Embedders and LMs by config, least recently used evicted beyond ``max_loaded_models``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._embedders: LRUCache[tuple[Any, ...], Embedder] = LRUCache(settings.max_loaded_models)
        self._lms: LRUCache[tuple[str | None, str], CausalLM] = LRUCache(
            settings.max_loaded_models)
        self.loaded: dict[str, list[str]] = {"embedders": [], "lms": []}
        self._executor: Executor | None = None
        if settings.ray_address is not None:
            self._executor = RayExecutor(settings.ray_address, num_actors=settings.ray_actors,
                                         min_samples=settings.ray_min_samples)

    def load_defaults(self) -> None:
        """Load the default models and curate a tiny warm-up batch: the engine's first call
        imports and initialises libraries while holding the GIL for a while, which must happen
        before /readyz says ready, not while probes are waiting."""
        disable_hub_progress_bars()  # for every user of the loader, not only `dces serve`
        config = base_config(self.settings)
        if not self.settings.preload_lm:
            config = config.with_overrides({"edit": {"enabled": False},
                                            "score": {"lm_fallback": False}})
        samples = [{"id": str(i), "text": text} for i, text in enumerate(WARMUP_TEXTS)]
        self.curator(config).curate(samples, budget=2)

    def curator(self, config: CurationConfig) -> Curator:
        """A curator for ``config`` sharing the loaded models (LM only when the config uses it),
        embedding large rounds on the Ray cluster when ``DCES_RAY_ADDRESS`` names one."""
        curator = Curator(config, embedder=self._embedder(config.embed), executor=self._executor)
        if curator.uses_lm:
            lm = self._lm(config.edit.model, config.edit.device)
            curator = Curator(config, embedder=curator.embedder, lm=lm, executor=self._executor)
        return curator

    def _embedder(self, cfg: EmbedConfig) -> Embedder:
        return self._get(self._embedders, astuple(cfg), lambda: load_embedder(
            cfg.model, cfg.dtype, cfg.batch_size, cfg.cache_size, backend=cfg.backend,
            device=cfg.device))

    def _lm(self, name: str | None, device: str) -> CausalLM:
        return self._get(self._lms, (name, device), lambda: load_causal_lm(name, device=device))

    def _get(self, cache: LRUCache[Any, M], key: Any, load: Callable[[], M]) -> M:
        model = cache.get(key)
        if model is not None:
            return model
        log.info("loading model", extra={"model": str(key)})
        model = load()
        cache.put(key, model)
        # /info reads this from the event loop: replace the dict, never mutate what it reads.
        self.loaded = {"embedders": [e.name for e in self._embedders.values()],
                       "lms": [lm.name for lm in self._lms.values()]}
        return model


def load_models(settings: Settings) -> EngineModels:
    """The server's model loader: its default models, loaded and warmed up."""
    models = EngineModels(settings)
    models.load_defaults()
    return models


# What the app factory takes (:func:`load_models` unless told otherwise): the models for a
# server's settings. The model worker calls it in its own thread at startup, while ``/readyz``
# says "loading"; tests pass one that hands every app the models it loaded once.
ModelLoader = Callable[[Settings], EngineModels]
