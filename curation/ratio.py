"""The per-cluster edge ratio and the training-feedback signal that moves it.

``r_c = clip(ema(r0 + alpha * s_c + gamma * g), r_min, r_max)`` where ``s_c`` is positive when a
cluster is tighter than its reference (collapsing) and ``g`` is positive when training metrics
show the model narrowing (entropy falling, held-out perplexity or calibration error rising).
"""

from __future__ import annotations

from collections.abc import Mapping

from curation.config import RatioConfig
from curation.types import CurationInputError, RatioDecision, is_finite_number

# Training metrics that signal collapse, and the direction in which they do: +1 when a rise
# is bad (perplexity, loss, ECE), -1 when a fall is bad (entropy, diversity).
FEEDBACK_DIRECTIONS: dict[str, int] = {
    "heldout_perplexity": +1,
    "perplexity": +1,
    "eval_loss": +1,
    "heldout_loss": +1,
    "ece": +1,
    "generation_entropy": -1,
    "entropy": -1,
    "distinct_2": -1,
    "diversity": -1,
}


def validate_feedback(feedback: Mapping[str, object], what: str = "feedback") -> dict[str, float]:
    """Finite numbers only; unknown metric names are kept (stored, reported) but not used."""
    if not isinstance(feedback, Mapping):
        raise CurationInputError(f"{what}: expected an object of metric name → number")
    clean: dict[str, float] = {}
    for name, value in feedback.items():
        if not is_finite_number(value):
            raise CurationInputError(f"{what}.{name}: must be a finite number, got {value!r}")
        clean[str(name)] = float(value)
    return clean


def feedback_signal(
    current: Mapping[str, float] | None, previous: Mapping[str, float] | None
) -> dict[str, float]:
    """Relative change of each known metric since the previous round, signed so that positive
    means "collapsing", and their mean ``g`` clipped to [-1, 1]. ``g`` is 0 until two rounds of
    feedback exist."""
    components: dict[str, float] = {}
    if current and previous:
        for name, direction in FEEDBACK_DIRECTIONS.items():
            if name in current and name in previous and previous[name] != 0:
                change = (current[name] - previous[name]) / abs(previous[name])
                components[name] = max(-1.0, min(1.0, direction * change))
    g = sum(components.values()) / len(components) if components else 0.0
    return {**components, "g": max(-1.0, min(1.0, g))}


class EdgeRatioPolicy:
    """Turns a cluster's dispersion (vs its reference) and the feedback into an edge ratio."""

    def __init__(self, config: RatioConfig):
        self.config = config

    def decide(
        self,
        dispersion: float,
        reference_dispersion: float | None,
        g: float,
        previous: float | None,
    ) -> RatioDecision:
        cfg = self.config
        s = 0.0
        if reference_dispersion is not None and reference_dispersion > 1e-9:
            s = max(-1.0, min(1.0, 1.0 - dispersion / reference_dispersion))
        raw = cfg.r0 + cfg.alpha * s + cfg.gamma * g
        smoothed = raw if previous is None else cfg.ema * raw + (1.0 - cfg.ema) * previous
        clipped = max(cfg.r_min, min(cfg.r_max, smoothed))
        ratio = cfg.static if cfg.static is not None else clipped
        return RatioDecision(
            r0=cfg.r0,
            alpha=cfg.alpha,
            gamma=cfg.gamma,
            dispersion_signal=s,
            feedback_signal=g,
            raw=raw,
            previous=previous,
            smoothed=smoothed,
            ratio=ratio,
            static=cfg.static is not None,
        )
