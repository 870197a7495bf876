"""The selection strategies: each keeps ``budget`` samples of a candidate pool.

Baselines run in-process: ``random``; ``ppl_low``/``ppl_high`` (rank by perplexity under the
model that wrote the pool: the usual quality filter, and its opposite); ``semdedup`` (SemDeDup's
near-duplicate rule, with the engine's own ``near_duplicate_mask``, at the largest threshold
that still leaves the budget). The DCES variants go through the real service with
``DCESClient``: one run per (strategy, seed), the real training split as reference, and the
metrics of every generation as feedback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import PreTrainedModel

from bench.collapse.config import (
    DCES_STRATEGIES,
    NO_LOGPROBS,
    NO_REFERENCE,
    SELF_ANCHOR,
    ModelConfig,
)
from bench.collapse.heldout import TokenScores, score
from curation.measure import near_duplicate_mask
from dces_client import DCESClient

Embed = Callable[[Sequence[str]], np.ndarray]
# The metrics a DCES run receives as feedback, renamed where the service knows them under
# another name. Only what a training job measures itself: nothing computed from the benchmark's
# category labels (KL to real, tail mass, tail coverage) ever reaches the service.
FEEDBACK_METRICS = {
    "heldout_perplexity": "heldout_perplexity",
    "entropy": "entropy",
    "ece": "ece",
    "distinct_1": "distinct_1",
    "distinct_2": "distinct_2",
    "distinct_3": "distinct_3",
    "vendi": "diversity",
}
SEARCH_STEPS = 30


@dataclass
class Pool:
    """Candidates sampled from ``model`` (as ``generator`` describes it); perplexities and
    embeddings computed on first use."""

    texts: list[str]
    ids: list[list[int]]
    model: PreTrainedModel
    embed: Embed
    generator: ModelConfig
    _scores: TokenScores | None = field(default=None, repr=False)
    _embeddings: np.ndarray | None = field(default=None, repr=False)

    @property
    def scores(self) -> TokenScores:
        """Every candidate scored by the model that wrote it, over the tokens it wrote: a
        training job has these log-probs from sampling; a prompt was given, not written, and a
        continuation cut at its limit wrote no end. (Unprompted samples are scored whole, end
        included, as every recorded from-scratch run scored them.)"""
        if self._scores is None:
            g = self.generator
            unended = ([len(ids) - g.prompt_tokens >= g.continuation_limit for ids in self.ids]
                       if g.prompt_tokens else None)
            self._scores = score(self.model, self.ids, g.context, given=g.prompt_tokens,
                                 unended=unended)
        return self._scores

    @property
    def perplexity(self) -> np.ndarray:
        return self.scores.doc_perplexity

    @property
    def embeddings(self) -> np.ndarray:
        if self._embeddings is None:
            self._embeddings = self.embed(self.texts)
        return self._embeddings


@dataclass
class Selection:
    texts: list[str]
    info: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Picks ``budget`` samples of a pool; ``metrics`` describe the model that wrote it."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def select(
        self, pool: Pool, budget: int, round_index: int, metrics: Mapping[str, Any]
    ) -> Selection: ...

    def finish(self, metrics: Mapping[str, Any]) -> dict[str, Any] | None:
        """Called once after the last generation with its metrics."""
        return None


class RandomStrategy(Strategy):
    def select(
        self, pool: Pool, budget: int, round_index: int, metrics: Mapping[str, Any]
    ) -> Selection:
        keep = self.rng.choice(len(pool.texts), min(budget, len(pool.texts)), replace=False)
        return Selection([pool.texts[i] for i in np.sort(keep)])


class PerplexityStrategy(Strategy):
    """``lowest=True``: the most likely samples (quality filter); False: the most surprising."""

    def __init__(self, name: str, seed: int, lowest: bool) -> None:
        super().__init__(name, seed)
        self.lowest = lowest

    def select(
        self, pool: Pool, budget: int, round_index: int, metrics: Mapping[str, Any]
    ) -> Selection:
        ppl = pool.perplexity
        order = np.argsort(ppl if self.lowest else -ppl, kind="stable")[:budget]
        chosen = ppl[order]
        return Selection([pool.texts[i] for i in np.sort(order)],
                         {"perplexity_min": float(chosen.min()),
                          "perplexity_max": float(chosen.max())})


class SemDeDupStrategy(Strategy):
    """Drop near-duplicates (cosine >= 1 - eps to an earlier sample, random order) with the
    largest eps that leaves at least ``budget``, then a random ``budget`` of the rest."""

    def select(
        self, pool: Pool, budget: int, round_index: int, metrics: Mapping[str, Any]
    ) -> Selection:
        order = self.rng.permutation(len(pool.texts))
        emb = pool.embeddings[order]
        low, high = 0.0, 1.0
        kept = ~near_duplicate_mask(emb, low)
        for _ in range(SEARCH_STEPS):
            mid = (low + high) / 2
            trial = ~near_duplicate_mask(emb, mid)
            if trial.sum() >= budget:
                low, kept = mid, trial
            else:
                high = mid
        survivors = order[kept]
        keep = self.rng.choice(survivors, min(budget, len(survivors)), replace=False)
        if len(keep) < budget:  # exact duplicates alone exceed the slack: fill at random
            rest = self.rng.permutation(order[~kept])[: budget - len(keep)]
            keep = np.concatenate([keep, rest])
        return Selection([pool.texts[i] for i in np.sort(keep)],
                         {"eps": low, "duplicates_removed": int(len(order) - kept.sum())})


class DCESStrategy(Strategy):
    """One run of the DCES service; round ``r`` curates the pool written by generation ``r``."""

    def __init__(self, name: str, seed: int, url: str, reference: Sequence[Mapping[str, str]],
                 run_name: str, run_seed: int) -> None:
        super().__init__(name, seed)
        self.client = DCESClient(url, timeout=600.0, retry_for=300.0)
        config: dict[str, Any] = {"seed": run_seed, **DCES_STRATEGIES[name]}
        self.run_id: str = self.client.create_run(run_name, config)["id"]
        if name not in NO_REFERENCE:
            self.client.add_reference(self.run_id, reference)

    def select(
        self, pool: Pool, budget: int, round_index: int, metrics: Mapping[str, Any]
    ) -> Selection:
        feedback = feedback_metrics(metrics)
        body_feedback = None
        if round_index == 0:  # nothing curated yet to attach it to: it goes with the round
            body_feedback = feedback
        else:  # the metrics of the model trained on round r-1's selection
            self.client.post_feedback(self.run_id, feedback, round=round_index - 1)
        samples = round_samples(pool, round_index, logprobs=self.name not in NO_LOGPROBS)
        result = self.client.curate_round(
            self.run_id, samples, budget, feedback=body_feedback,
            idempotency_key=f"{self.run_id}-{round_index}")
        texts = [s["text"] for s in result["samples"] if s["selected"]]
        if round_index == 0 and self.name in SELF_ANCHOR:
            anchor = pool.texts if SELF_ANCHOR[self.name] == "pool" else texts
            self.client.add_reference(self.run_id, [
                {"id": f"anchor-{i}", "text": t} for i, t in enumerate(anchor) if t.strip()])
        texts += [s["text"] for s in result.get("replay", [])]  # real exemplars of lost modes
        return Selection(texts, round_summary(result))

    def finish(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Post the last generation's metrics and read the service's health trend."""
        rounds = self.client.list_rounds(self.run_id)
        self.client.post_feedback(self.run_id, feedback_metrics(metrics), round=len(rounds) - 1)
        health = self.client.health(self.run_id)
        self.client.close()
        return {"run_id": self.run_id, "health": health}


class MonitoredStrategy(Strategy):
    """A baseline whose every pool also goes to a DCES run for its health alone (the selection
    stays the baseline's): how the service's alerts are checked against the benchmark's ground
    truth on strategies that collapse. Only texts and generator log-probs reach the service."""

    def __init__(self, inner: Strategy, url: str, reference: Sequence[Mapping[str, str]],
                 run_name: str, run_seed: int) -> None:
        super().__init__(inner.name, run_seed)
        self.inner = inner
        self.client = DCESClient(url, timeout=600.0, retry_for=300.0)
        self.run_id: str = self.client.create_run(f"{run_name}-monitor", {"seed": run_seed})["id"]
        self.client.add_reference(self.run_id, reference)

    def select(
        self, pool: Pool, budget: int, round_index: int, metrics: Mapping[str, Any]
    ) -> Selection:
        result = self.client.curate_round(
            self.run_id, round_samples(pool, round_index, logprobs=True), budget,
            idempotency_key=f"{self.run_id}-{round_index}")
        chosen = self.inner.select(pool, budget, round_index, metrics)
        chosen.info["health"] = result["health"]
        return chosen

    def finish(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        self.client.close()
        return {"run_id": self.run_id, "monitor": True}


def round_samples(pool: Pool, round_index: int, logprobs: bool) -> list[dict[str, Any]]:
    """A pool as a DCES round: ids, texts and (``logprobs``) each text's log-probability under
    the model that wrote it, as a training job has it."""
    samples: list[dict[str, Any]] = [
        {"id": f"r{round_index}-{i}", "text": t} for i, t in enumerate(pool.texts)]
    if logprobs:
        sc = pool.scores
        for s, nll, n in zip(samples, sc.doc_nll, sc.doc_tokens, strict=True):
            s["logprob"], s["tokens"] = -float(nll) * float(n), int(n)
    return samples


def feedback_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A generation's metrics, named as the service expects."""
    return {name: float(metrics[key]) for key, name in FEEDBACK_METRICS.items()}


def round_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a DCES round decided and measured, without the per-sample decisions."""
    clusters = result["clusters"]
    quota = sum(c["quota"] for c in clusters) or 1
    return {
        "round": result["round"],
        "selected": result["selected"],
        "selected_center": sum(c["selected_center"] for c in clusters),
        "selected_edge": sum(c["selected_edge"] for c in clusters),
        "replayed": len(result.get("replay", [])),
        "mean_edge_ratio": sum(c["edge_ratio"]["ratio"] * c["quota"] for c in clusters) / quota,
        "feedback_signal": result["feedback_signal"],
        "edit_stats": result["edit_stats"],
        "rejected": result["rejected"],
        "scores": result.get("scores"),
        "health": result["health"],
        "timings": result["timings"],
        "clusters": [
            {"cluster": c["cluster"], "size": c["size"], "share": round(c["share"], 4),
             "reference_share": round(c["reference_share"], 4),
             "dispersion": round(c["dispersion"], 4),
             "reference_dispersion": None if c["reference_dispersion"] is None
             else round(c["reference_dispersion"], 4),
             "edge_ratio": round(c["edge_ratio"]["ratio"], 3), "quota": c["quota"],
             "center": c["selected_center"], "edge": c["selected_edge"],
             "rejected": c["rejected"]}
            for c in clusters
        ],
    }


def make_strategy(name: str, seed: int, url: str | None,
                  reference: Sequence[Mapping[str, str]], run_name: str, run_seed: int,
                  monitor: bool = False) -> Strategy:
    """``seed`` drives the strategy's own choices; ``run_seed`` (the benchmark seed) is a DCES
    run's config seed; ``monitor`` sends a baseline's pools to DCES for their health."""
    strategy = _make_strategy(name, seed, url, reference, run_name, run_seed)
    if not monitor or isinstance(strategy, DCESStrategy):
        return strategy
    if url is None:
        raise ValueError(f"monitoring {name!r} needs the DCES service (no URL given)")
    return MonitoredStrategy(strategy, url, reference, run_name, run_seed)


def _make_strategy(name: str, seed: int, url: str | None,
                   reference: Sequence[Mapping[str, str]], run_name: str, run_seed: int
                   ) -> Strategy:
    if name == "random":
        return RandomStrategy(name, seed)
    if name in ("ppl_low", "ppl_high"):
        return PerplexityStrategy(name, seed, lowest=name == "ppl_low")
    if name == "semdedup":
        return SemDeDupStrategy(name, seed)
    if name in DCES_STRATEGIES:
        if url is None:
            raise ValueError(f"strategy {name!r} needs the DCES service (no URL given)")
        return DCESStrategy(name, seed, url, reference, run_name, run_seed)
    raise ValueError(f"strategy: unknown {name!r}")
