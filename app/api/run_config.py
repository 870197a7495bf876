"""A run's config, resolved once at ``POST /v1/runs`` (and for each ``POST /v1/curate``).

The server's default models, then the run's overrides, each checked against its declared bound
(:mod:`curation.bounds`), so that a bad override is a 422 naming the key and not a failed round
later; a run may name only the models the server allows.
"""

from __future__ import annotations

import json
from typing import Any

from app.problems import InvalidInput
from app.settings import Settings
from app.worker.models import base_config
from curation import CurationConfig
from curation.bounds import ConfigError


def resolve_config(settings: Settings, overrides: dict[str, Any]) -> CurationConfig:
    """Server defaults + overrides, every value checked against its declared bound (422)."""
    try:
        config = base_config(settings).with_overrides(overrides)
    except ConfigError as exc:
        raise config_error_problem(exc) from exc
    _check_models(settings, config)
    return config


def config_error_problem(exc: ConfigError) -> InvalidInput:
    """The engine's config error as a 422 naming the setting and, in its message, the limit."""
    return InvalidInput(str(exc), errors=[{"field": exc.field, "message": exc.message}])


def _check_models(settings: Settings, config: CurationConfig) -> None:
    """A model name is a path or hub id the server would open, and a failed load's message
    describes the server's files: a run may name only the server's own models, those of
    ``allowed_models``, or any with ``allow_any_model``."""
    if settings.allow_any_model:
        return
    checks = (("config.embed.model", config.embed.model, settings.embedding_model),
              ("config.edit.model", config.edit.model, settings.lm_model))
    for field, given, default in checks:
        allowed = [default, *settings.allowed_models]
        if given not in allowed:
            names = ", ".join("null (bundled)" if m is None else json.dumps(m) for m in allowed)
            message = f"not an allowed model (allowed: {names})"
            raise InvalidInput(f"{field}: {message}", errors=[{"field": field, "message": message}])
