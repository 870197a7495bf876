"""Every number of the collapse benchmark, with the presets (`full`, `quick`, and both with a
pretrained generator) and their limits.

The full preset is sized by arithmetic, not by feel: it must finish in under 90 minutes on two
CPU cores. Measured per (strategy, generation) step in a medium run on a loaded 2-core EPYC
(one torch thread per worker): train 48k token passes of the 0.7M-parameter GPT ~11 s, sample
the 1,200-sample pool with the KV cache ~5-10 s, held-out scoring + embedding ~10 s, so a
baseline step costs ~30-40 s; a DCES round costs the service ~40-100 s (SmolLM2 perplexity of
edge candidates and editing of centers dominate; a quiet machine is 2-3x faster), and the first
round embeds the 12k-entry reference once. Generation 0 (800k token passes) ~5 min per seed.
3 seeds x 5 generations x 7 strategies therefore fits one regime in ~60 minutes on a quiet
machine (two worker processes + the service), but not three regimes: the default run covers
``replace`` (the regime the collapse criterion is about); ``--regime anchor`` and
``--regime accumulate`` run the same grid for the other regimes, one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

STRATEGIES = ("random", "ppl_low", "ppl_high", "semdedup", "dces", "dces_no_edit",
              "dces_static", "dces_no_match", "dces_ngram_only", "dces_no_logprobs",
              "dces_replay", "dces_edit", "dces_match", "dces_share_quotas", "dces_loose_filter",
              "dces_dedup10", "dces_dedup20", "dces_mad2", "dces_mad25", "dces_no_centers",
              "dces_edit20", "dces_no_reference", "dces_floor", "dces_floor_half", "dces_eta_half",
              "dces_no_typicality", "dces_k40", "dces_k15", "dces_self_anchor",
              "dces_self_anchor_sel")
# The default run: every baseline but `ppl_low` (it collapses in two generations every time,
# bench/results/collapse.md), DCES and the ablations of its default mechanisms (dynamic ratio,
# surprise-mix quotas, the implausibility cut, reference matching and its embedding view,
# generator scores and the pool typicality averaged with them). Not by default: `dces_replay`
# (about the `anchor` regime), `dces_no_edit` (editing is off by default, so it is `dces`),
# `dces_match` (measured in earlier runs of collapse.md), `dces_no_reference` (a job without
# real data) and the screenings (`dces_edit*`, `dces_dedup*`, `dces_mad*`, `dces_no_centers`,
# `dces_floor*`, `dces_eta_half`, `dces_k*`, `dces_self_anchor*`:
# bench/results/collapse-screen-*.md).
DEFAULT_STRATEGIES = ("random", "ppl_high", "semdedup", "dces", "dces_static",
                      "dces_share_quotas", "dces_loose_filter", "dces_no_match",
                      "dces_ngram_only", "dces_no_logprobs", "dces_no_typicality")
REGIMES = ("replace", "anchor", "accumulate")
# Generator log-probs are sent with every candidate, as a training job has them for free; the
# one ablation without them makes the service score texts with its own LM.
NO_LOGPROBS = {"dces_no_logprobs"}
# A job that uploads no reference of real data: clusters, ratio and selection from the
# candidates alone.
NO_REFERENCE = {"dces_no_reference", "dces_self_anchor", "dces_self_anchor_sel"}
# Screens of a job with no real data that anchors to its first round instead: round 0's whole
# pool (written by the generator trained on real data) or round 0's selection, uploaded as the
# reference after round 0 (collapse-screen-self-anchor*, collapse-wordnet-no-reference-epyc).
SELF_ANCHOR = {"dces_self_anchor": "pool", "dces_self_anchor_sel": "selection"}
DCES_STRATEGIES: dict[str, dict[str, Any]] = {
    # Curation config overrides of each DCES variant's run (everything else: engine defaults).
    "dces": {},
    "dces_no_edit": {"edit": {"enabled": False}},  # the default since editing never helped
    # The editor forced to fire: every center's 5% most confident whole words are resampled
    # (those the next word still fits), and its dose-response: 20% of them
    # (bench/results/collapse-screen-edit.md, recorded before the check of the next word).
    "dces_edit": {"edit": {"enabled": True, "threshold": 0.0}},
    "dces_edit20": {"edit": {"enabled": True, "threshold": 0.0, "top_fraction": 0.2}},
    "dces_static": {"ratio": {"static": 0.8}},  # the default r0, never moved
    # Every cluster's quota to edges: what the centers (nearest the centroid) add.
    "dces_no_centers": {"ratio": {"static": 1.0}},
    # No reference affinity in the selection's order: the generator's confidence alone.
    "dces_no_match": {"score": {"reference_weight": 0.0}},
    # Reference matching by n-grams alone, without the embedding view (embedding herding).
    "dces_ngram_only": {"score": {"embedding_share": 0.0}},
    "dces_match": {"allocation": {"eta": 1.0}},  # quotas by the reference's cluster mix
    "dces_no_logprobs": {},
    # The generator's confidence as sent, without the pool's typicality averaged in.
    "dces_no_typicality": {"score": {"generator_typicality": 0.0}},
    "dces_no_reference": {},
    "dces_self_anchor": {},
    "dces_self_anchor_sel": {},
    # Quotas by the candidates' cluster shares (the previous default), not the surprise mix.
    "dces_share_quotas": {"allocation": {"surprise": 0.0}},
    # Its real share comes from replay of lost modes, not from random real data (under `anchor`).
    "dces_replay": {"replay": {"fraction": 0.1}},
    # The implausibility cut at 6 MADs (the previous default, which never fired), not 3.
    "dces_loose_filter": {"quality": {"implausible_mad": 6.0}},
    # Screened and not adopted (bench/results/collapse-screen-*.md): near-duplicates at SemDeDup's
    # scale (cosine >= 0.9 / 0.8: none found in these pools) and tighter implausibility cuts.
    "dces_dedup10": {"quality": {"near_duplicate_eps": 0.10}},
    "dces_dedup20": {"quality": {"near_duplicate_eps": 0.20}},
    "dces_mad2": {"quality": {"implausible_mad": 2.0}},
    "dces_mad25": {"quality": {"implausible_mad": 2.5}},
    # Quota weights floored at the reference share, or half of it (collapse-screen-floor*.md).
    "dces_floor": {"allocation": {"floor": 1.0}},
    "dces_floor_half": {"allocation": {"floor": 0.5}},
    # Quota weights half the surprise quota's, half the reference share (collapse-screen-eta-half*).
    "dces_eta_half": {"allocation": {"eta": 0.5}},
    # A fixed number of clusters near a tenth of the budget (400 and 150), instead of
    # sqrt(n / 2) of candidates and reference (~83): about ten selected a cluster, so that each
    # cluster's quota and center/edge split have room (collapse-screen-k40*,
    # collapse-budget-150-epyc).
    "dces_k40": {"cluster": {"k": 40}},
    "dces_k15": {"cluster": {"k": 15}},
}
REPLAY_STRATEGIES = {"dces_replay"}


@dataclass(frozen=True)
class ModelConfig:
    """The self-trained LM: a GPT-2-style model trained from scratch (random init) on a BPE
    vocabulary of the corpus, or (``pretrained``) a pretrained causal LM with its own tokenizer,
    fine-tuned on the corpus for generation 0 and on each selection after."""

    vocab_size: int = 2048  # the LM head dominates the cost of a model this small
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    context: int = 128  # tokens per training block and per scored entry; bounds every sample
    # ``smollm2`` (the dense copy of the bundled SmolLM2-135M-Instruct) or a local model
    # directory (weights and tokenizer.json); None: the GPT-2 above, from scratch. Its
    # tokenizer must have <|endoftext|> at id 0, as GPT-2's and SmolLM2's have.
    pretrained: str | None = None
    # Each sample continues the first ``prompt_tokens`` tokens of a random real training entry
    # (as in Shumailov et al.); 0: every sample is written from the entry separator alone.
    prompt_tokens: int = 0
    new_tokens: int | None = None  # the longest continuation; None: the rest of the context

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("context", 8 <= self.context <= 8192, "in [8, 8192]"),
            ("prompt_tokens", 0 <= self.prompt_tokens < self.context - 2,
             "in [0, context - 2)"),
            ("new_tokens", self.new_tokens is None or 1 <= self.new_tokens <= self._room,
             "null or in [1, context - 2 - prompt_tokens]"),
        ]
        for name, ok, limit in checks:
            if not ok:
                raise ValueError(f"model.{name}: must be {limit}, got {getattr(self, name)!r}")

    @property
    def _room(self) -> int:
        """Tokens a continuation may have so that a scored entry (separator, prompt,
        continuation, separator) fits the context whole."""
        return self.context - 2 - self.prompt_tokens

    @property
    def continuation_limit(self) -> int:
        """Tokens a sample may add to its prompt. ``new_tokens`` unset: one more than
        :attr:`_room`, as every recorded from-scratch run sampled (a sample that long loses its
        last token to the closing separator when it is scored; kept so that they reproduce)."""
        return self._room + 1 if self.new_tokens is None else self.new_tokens


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. ``generations`` counts the self-training generations after gen 0."""

    regimes: tuple[str, ...] = ("replace",)
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: int = 3
    first_seed: int = 0  # seeds run are first_seed .. first_seed + seeds - 1
    generations: int = 5
    budget: int = 400  # samples each strategy keeps per generation
    pool_factor: int = 3  # candidate pool = pool_factor x budget, sampled from the last model
    metric_samples: int = 400  # generated samples scored per generation (from the pool)
    train_docs: int | None = None  # cap on the real training split (None: all of it)
    # The reference DCES gets: a fixed random sample of this many training entries (None: the
    # whole training split), for a job that can upload only part of its real data.
    reference_docs: int | None = None
    test_docs: int = 500  # held-out entries scored per generation
    centroid_docs: int = 100  # real entries per category that define its embedding centroid
    gen0_tokens: int = 800_000  # token passes training generation 0 from scratch (~1.4 epochs)
    gen_tokens: int = 48_000  # token passes of each later generation (~4 epochs of the budget)
    batch_size: int = 16
    gen0_lr: float = 2e-3
    gen_lr: float = 5e-4
    temperature: float = 1.0
    # Nucleus sampling, as a user's job would sample. At top-p 1.0 (pure sampling) `random` lost
    # perplexity slowly and its tail did not shrink over 3 generations (collapse-medium.md); at
    # 0.9 each generation truncates the low-probability tail and collapse is plain by gen 3.
    top_p: float = 0.9
    sample_batch: int = 256
    anchor_fraction: float = 0.1  # share of real data in each generation under `anchor`
    jobs: int = 2  # worker processes
    # Baselines whose pools also go to a DCES run for their health alone (the alerts checked
    # against the ground truth); each costs a service round per generation.
    monitor: tuple[str, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("regimes", bool(self.regimes) and set(self.regimes) <= set(REGIMES),
             f"a non-empty subset of {', '.join(REGIMES)}"),
            ("strategies", bool(self.strategies) and set(self.strategies) <= set(STRATEGIES),
             f"a non-empty subset of {', '.join(STRATEGIES)}"),
            ("seeds", 1 <= self.seeds <= 100, "in [1, 100]"),
            ("first_seed", 0 <= self.first_seed <= 10_000, "in [0, 10000]"),
            ("generations", 1 <= self.generations <= 50, "in [1, 50]"),
            ("budget", self.budget >= 10, ">= 10"),
            ("pool_factor", 1 <= self.pool_factor <= 50, "in [1, 50]"),
            ("metric_samples", 10 <= self.metric_samples <= self.budget * self.pool_factor,
             "in [10, budget x pool_factor]"),
            ("train_docs", self.train_docs is None or self.train_docs >= 100, "null or >= 100"),
            ("reference_docs", self.reference_docs is None or self.reference_docs >= 10,
             "null or >= 10"),
            ("test_docs", self.test_docs >= 10, ">= 10"),
            ("centroid_docs", self.centroid_docs >= 1, ">= 1"),
            ("gen0_tokens", self.gen0_tokens >= 1000, ">= 1000"),
            ("gen_tokens", self.gen_tokens >= 100, ">= 100"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("gen0_lr", 0 < self.gen0_lr < 1, "in (0, 1)"),
            ("gen_lr", 0 < self.gen_lr < 1, "in (0, 1)"),
            ("temperature", 0 < self.temperature <= 10, "in (0, 10]"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("sample_batch", self.sample_batch >= 1, ">= 1"),
            ("anchor_fraction", 0 < self.anchor_fraction < 1, "in (0, 1)"),
            ("jobs", 1 <= self.jobs <= 64, "in [1, 64]"),
            ("monitor", set(self.monitor) <= set(self.strategies) - set(DCES_STRATEGIES),
             "baselines among the strategies (DCES strategies report their health anyway)"),
        ]
        for name, ok, limit in checks:
            if not ok:
                raise ValueError(f"{name}: must be {limit}, got {getattr(self, name)!r}")

    @property
    def pool_size(self) -> int:
        return self.budget * self.pool_factor

    @property
    def seed_range(self) -> range:
        """The seeds this run trains, in order."""
        return range(self.first_seed, self.first_seed + self.seeds)

    def with_overrides(self, **changes: Any) -> BenchConfig:
        """This config with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


FULL = BenchConfig()
# < 3 minutes: every strategy and the whole pipeline (service included) on small data.
QUICK = BenchConfig(
    seeds=1,
    generations=2,
    budget=60,
    pool_factor=3,
    metric_samples=100,
    train_docs=1500,
    test_docs=100,
    centroid_docs=10,
    gen0_tokens=60_000,
    gen_tokens=6_000,
    model=ModelConfig(vocab_size=1024, n_layer=2, n_embd=64, n_head=2, context=96),
)

# A pretrained generator, as in Shumailov et al.: SmolLM2-135M fine-tuned on the real training
# split for generation 0 and on each selection after (about 5 passes over it, as they did),
# every sample a 64-token continuation of the first 8 tokens of a random real entry. Sized for
# the GPU machine: on two CPU cores one training step of this model takes 20-60 s and sampling
# ~11 tokens/s (../shared/OFFLINE-MODELS.md), so here only a miniature runs (the tests').
PRETRAINED = BenchConfig(
    gen0_lr=1e-4,
    gen_lr=5e-5,
    gen_tokens=144_000,
    model=ModelConfig(pretrained="smollm2", prompt_tokens=8, new_tokens=64, context=128),
)

PRETRAINED_QUICK = replace(QUICK, gen0_lr=PRETRAINED.gen0_lr, gen_lr=PRETRAINED.gen_lr,
                           model=replace(PRETRAINED.model, context=QUICK.model.context))


def preset(quick: bool, pretrained: str | None) -> BenchConfig:
    """The preset a run starts from: full or quick sizes, a GPT-2 from scratch or the named
    pretrained generator (``smollm2`` or a local model directory)."""
    if pretrained is None:
        return QUICK if quick else FULL
    base = PRETRAINED_QUICK if quick else PRETRAINED
    return replace(base, model=replace(base.model, pretrained=pretrained))
