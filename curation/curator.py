"""The facade: one call curates one round, composing the pipeline steps.

``Curator(config).curate(samples, budget, state, reference, feedback) -> (RoundResult, state)``.
Models load lazily on first use (or are passed in, so a service can share them across runs);
the returned state is a new object, the one passed in is never modified.

A round is five named stages, run in order over one ``_Round`` that holds its inputs and what
each stage adds: embed, cluster, select (confidence, cluster measures, edge ratios, replay,
selection), edit, health. ``_Stages`` reports each stage's progress within its span of the
round (``_SPANS``) and times it; the times are the result's ``timings``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.affinity import ReferenceAffinity
from curation.allocate import allocate, allocation_weights, surprise_shares
from curation.cluster import SphericalKMeans, nearest_centroid
from curation.confidence import ConfidenceScorer
from curation.config import CurationConfig
from curation.edit import EditedText, TokenEditor
from curation.embed import Embedder, load_embedder
from curation.executor import Executor, LocalExecutor
from curation.health import round_health
from curation.herding import EmbeddingHerding
from curation.lm import CausalLM, load_causal_lm
from curation.matching import ReferenceMatching
from curation.measure import ClusterStats, measure_clusters, near_duplicates_by_cluster
from curation.quality import degenerate_reason, implausible_cut, outlier_cuts
from curation.ratio import EdgeRatioPolicy, feedback_signal, validate_feedback
from curation.replay import Replay, ReplayPlan
from curation.select import ClusterPool, select_all
from curation.state import RunState
from curation.types import (
    ClusterReport,
    CurationInputError,
    EditStats,
    FractionDone,
    RatioDecision,
    RoundResult,
    Sample,
    SampleDecision,
    coerce_samples,
)

Progress = Callable[[str, float], None]
# Why a selectable candidate was left out (not a rejection: it passed every rule).
LEFT_OUT = ("quota_filled", "no_quota")


@dataclass
class _Embedded:
    """A batch after the degenerate-text filter and embedding."""

    samples: list[Sample]
    reasons: list[str | None]  # degenerate reason per sample
    vectors: np.ndarray
    eligible: np.ndarray  # indices of non-degenerate samples

    @property
    def eligible_vectors(self) -> np.ndarray:
        return self.vectors[self.eligible]


@dataclass
class _Round:
    """One round on its way through the stages: its checked inputs, then what each stage adds."""

    batch: list[Sample]
    refs: list[Sample]
    budget: int
    state: RunState  # a copy: the caller's is never modified
    metrics: dict[str, float] | None  # the checked feedback
    seed: int
    # embed
    cands: _Embedded = field(init=False)
    ref: _Embedded = field(init=False)  # the reference, sampled down to what the fit may use
    # cluster
    centroids: np.ndarray = field(init=False)
    labels: np.ndarray = field(init=False)  # per candidate
    distances: np.ndarray = field(init=False)  # cosine distance to its centroid
    ref_labels: np.ndarray = field(init=False)  # per eligible reference row
    ref_sims: np.ndarray = field(init=False)
    # select
    confidence: np.ndarray = field(init=False)  # NaN where unknown (and for degenerate texts)
    affinity: np.ndarray | None = field(init=False)  # to the reference; None without one
    affinity_model: ReferenceAffinity | None = field(init=False)  # fitted on this round
    key: np.ndarray = field(init=False)  # the edge key (_edge_key); NaN: unknown
    selectable: np.ndarray = field(init=False)  # candidates no rule rejected
    duplicates: np.ndarray = field(init=False)
    stats: list[ClusterStats] = field(init=False)
    signal: dict[str, float] = field(init=False)
    ratios: list[RatioDecision] = field(init=False)
    scores: dict[str, Any] = field(init=False)
    replay: ReplayPlan = field(init=False)
    pools: list[ClusterPool] = field(init=False)
    taken: np.ndarray = field(init=False)  # per cluster
    # edit
    centers: list[int] = field(init=False)  # candidate indices, ascending
    edited: list[EditedText] = field(init=False)  # one per center
    # health
    decisions: list[SampleDecision] = field(init=False)
    health: dict[str, Any] = field(init=False)
    entry: dict[str, Any] = field(init=False)  # what the run's history keeps of this round


# Each stage's span of the round's progress. Inside a stage, a step's own 0..1 progress takes a
# share of the span: the candidates' embedding the first 5/6 of "embed" (the round's 0..0.25,
# the reference the rest), the LM's scoring the first 3/4 of "select" (0.5..0.65).
_SPANS = {
    "embed": (0.0, 0.3),
    "cluster": (0.3, 0.5),
    "select": (0.5, 0.7),
    "edit": (0.7, 0.9),
    "health": (0.9, 1.0),
}
_CANDIDATES_SHARE = 5 / 6
_SCORING_SHARE = 0.75


class _StageProgress:
    """A stage's own progress (0..1), reported as the round's progress within its span."""

    def __init__(self, report: Progress, stage: str) -> None:
        self._report = report
        self._stage = stage
        self._start, self._end = _SPANS[stage]

    def __call__(self, fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        self._report(self._stage, self._start + (self._end - self._start) * fraction)

    def part(self, lo: float, hi: float) -> FractionDone:
        """A step's own progress (0..1), reported as this stage's between ``lo`` and ``hi``."""
        return lambda fraction: self(lo + (hi - lo) * fraction)


class _Stages:
    """Runs a round's stages: each reports its start, then its own progress, and is timed from
    the end of the one before (the first from the start of the round, input checks included),
    so the stages' times add up to the total."""

    def __init__(self, report: Progress) -> None:
        self.report = report
        self._times: dict[str, float] = {}
        self._started = self._last = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[_StageProgress]:
        self.report(name, _SPANS[name][0])
        yield _StageProgress(self.report, name)
        now = time.perf_counter()
        self._times[name] = now - self._last
        self._last = now

    def timings(self) -> dict[str, float]:
        """Seconds per stage, then ``total``, to 0.1 ms."""
        times = {**self._times, "total": self._last - self._started}
        return {name: round(seconds, 4) for name, seconds in times.items()}


class Curator:
    """Curates rounds of synthetic samples for one configuration."""

    def __init__(
        self,
        config: CurationConfig | None = None,
        *,
        embedder: Embedder | None = None,
        lm: CausalLM | None = None,
        executor: Executor | None = None,
    ):
        self.config = config or CurationConfig()
        self._embedder = embedder
        self._lm = lm
        # Where the embedding runs (None: here); the other stages always run here.
        self.executor: Executor = executor or LocalExecutor()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            cfg = self.config.embed
            self._embedder = load_embedder(cfg.model, cfg.dtype, cfg.batch_size, cfg.cache_size,
                                           backend=cfg.backend, device=cfg.device)
        return self._embedder

    @property
    def lm(self) -> CausalLM:
        if self._lm is None:
            self._lm = load_causal_lm(self.config.edit.model, device=self.config.edit.device)
        return self._lm

    @property
    def uses_lm(self) -> bool:
        """Whether a round may need the LM (to edit, or to score texts sent without log-probs)."""
        return self.config.edit.enabled or self.config.score.lm_fallback

    def curate(
        self,
        samples: Sequence[Sample | Mapping[str, Any]],
        budget: int,
        state: RunState | None = None,
        reference: Sequence[Sample | Mapping[str, Any]] | None = None,
        feedback: Mapping[str, float] | None = None,
        progress: Progress | None = None,
    ) -> tuple[RoundResult, RunState]:
        """Select ``budget`` samples (fewer only if fewer pass the filters); see the module doc."""
        stages = _Stages(progress or (lambda stage, fraction: None))
        r = self._open_round(samples, budget, state, reference, feedback)
        with stages.stage("embed") as stage_progress:
            self._embed(r, stage_progress)
        with stages.stage("cluster"):
            self._cluster(r)
        with stages.stage("select") as stage_progress:
            self._score_and_select(r, stage_progress)
        with stages.stage("edit") as stage_progress:
            self._edit(r, stage_progress)
        with stages.stage("health"):
            self._health(r)
        result = self._result(r, stages.timings())
        new_state = self._advance(r)
        stages.report("done", 1.0)
        return result, new_state

    # -- stages: each reads what the ones before it left in the round, and adds its own ---

    def _open_round(
        self,
        samples: Sequence[Sample | Mapping[str, Any]],
        budget: int,
        state: RunState | None,
        reference: Sequence[Sample | Mapping[str, Any]] | None,
        feedback: Mapping[str, float] | None,
    ) -> _Round:
        """The round's checked inputs, on a copy of ``state``."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise CurationInputError(f"budget: must be an integer >= 1, got {budget!r}")
        batch = coerce_samples(list(samples), "sample")
        if not batch:
            raise CurationInputError("samples: at least one sample is required")
        refs = coerce_samples(list(reference or []), "reference sample")
        metrics = validate_feedback(feedback) if feedback is not None else None
        run_state = copy.deepcopy(state) if state is not None else RunState()
        self._check_state(run_state)
        seed = (self.config.seed * 1_000_003 + run_state.round) % 2**31  # faiss takes int32 seeds
        return _Round(batch, refs, budget, run_state, metrics, seed)

    def _embed(self, r: _Round, progress: _StageProgress) -> None:
        """Filter degenerate texts and embed the rest: candidates, then (a sample of) the
        reference."""
        r.cands = self._embed_batch(r.batch, progress.part(0.0, _CANDIDATES_SHARE))
        r.ref = self._embed_batch(
            self._sample_reference(r.refs, r.seed), progress.part(_CANDIDATES_SHARE, 1.0)
        )

    def _cluster(self, r: _Round) -> None:
        """Fit the centroids and assign candidates and reference to them."""
        r.centroids = self._fit_centroids(r.cands, r.ref, r.state, r.seed)
        r.labels, sims = nearest_centroid(r.cands.vectors, r.centroids)
        r.distances = 1.0 - sims
        r.ref_labels, r.ref_sims = nearest_centroid(r.ref.eligible_vectors, r.centroids)

    def _score_and_select(self, r: _Round, progress: _StageProgress) -> None:
        """Score confidence, measure the clusters, decide their edge ratios, plan the replay and
        select the rest of the budget."""
        k = len(r.centroids)
        el = r.cands.eligible
        scorer = self._scorer()
        r.confidence = np.full(len(r.batch), np.nan)
        scoring = progress.part(0.0, _SCORING_SHARE)
        r.confidence[el] = scorer.score([r.batch[i] for i in el], scoring)
        self._measure_affinity(r)
        r.duplicates = np.zeros(len(r.batch), dtype=bool)
        r.duplicates[el] = near_duplicates_by_cluster(
            r.cands.vectors[el], r.labels[el], r.distances[el], k,
            self.config.quality.near_duplicate_eps,
        )
        r.stats = measure_clusters(
            r.labels[el],
            r.distances[el],
            r.duplicates[el],
            k,
            r.ref_labels if len(r.ref_labels) else None,
            1.0 - r.ref_sims,
            r.state.baseline_dispersion,
        )
        r.signal = feedback_signal(r.metrics, r.state.last_feedback)
        policy = EdgeRatioPolicy(self.config.ratio)
        g = r.signal["g"]
        r.ratios = [
            policy.decide(s.dispersion, s.reference_dispersion, g, r.state.ratios.get(c))
            for c, s in enumerate(r.stats)
        ]
        r.scores = {"source": scorer.source_,
                    "length_trend": _rounded(scorer.length_trend_),
                    "typicality_agreement": _rounded(scorer.typicality_agreement_),
                    "typicality_length_trend": _rounded(scorer.typicality_length_trend_),
                    "implausible_below": None,
                    "reference_weight": self.config.score.reference_weight
                    if r.affinity is not None else None}
        r.replay = Replay(self.config.replay.fraction, self.config.replay.lost_share, r.seed).plan(
            r.budget,
            np.array([s.share for s in r.stats]),
            np.array([s.reference_share for s in r.stats]),
            r.ref_labels,
        )
        r.pools, r.taken = self._select(r, r.budget - len(r.replay.rows))
        if r.affinity_model is not None and r.affinity is not None:
            chosen = _chosen(r.pools)
            r.scores["affinity"] = _affinity_report(r.affinity, chosen)
            r.scores["matching"]["kl_to_reference"] = _divergence_report(r, r.affinity_model,
                                                                         chosen)

    def _edit(self, r: _Round, progress: _StageProgress) -> None:
        """Edit the selected centers' texts (edges are kept as they came)."""
        r.centers = sorted(i for p in r.pools for i in p.centers)
        texts = [r.batch[i].text for i in r.centers]
        if not self.config.edit.enabled or not texts:
            r.edited = [EditedText(t, [], 0) for t in texts]
        else:
            r.edited = TokenEditor(self.lm, self.config.edit).edit(texts, r.seed, progress)

    def _health(self, r: _Round) -> None:
        """Decide every sample, then measure the round's health."""
        r.decisions = _decisions(
            r.batch, r.cands.reasons, r.labels, r.distances, r.pools, r.centers, r.edited
        )
        el = r.cands.eligible
        sel_idx = np.flatnonzero([d.selected for d in r.decisions])
        r.health, r.entry = round_health(
            labels=r.labels[el],
            embeddings=r.cands.eligible_vectors,
            dispersion={c: s.dispersion for c, s in enumerate(r.stats) if s.size},
            baseline=r.state.baseline_dispersion,
            selected_texts=[r.decisions[i].text for i in sel_idx],
            selected_embeddings=r.cands.vectors[sel_idx],
            reference_embeddings=r.ref.eligible_vectors if len(r.ref.eligible) else None,
            reference_labels=r.ref_labels if len(r.ref_labels) else None,
            k=len(r.centroids),
            history=r.state.history,
            round_index=r.state.round,
            config=self.config.health,
            seed=self.config.seed,  # constant per run: the MMD's reference sample stays put
            reference_examples=_exemplars(r),
        )

    def _result(self, r: _Round, timings: dict[str, float]) -> RoundResult:
        clusters = [
            _cluster_report(c, s, d, r.pools[c], int(r.taken[c]), int(r.replay.per_cluster[c]))
            for c, (s, d) in enumerate(zip(r.stats, r.ratios, strict=True))
        ]
        rejected: dict[str, int] = {}
        for d in r.decisions:
            if d.reason and d.reason not in LEFT_OUT:
                rejected[d.reason] = rejected.get(d.reason, 0) + 1
        selected = sum(1 for d in r.decisions if d.selected)
        ref = r.ref
        return RoundResult(
            round=r.state.round,
            budget=r.budget,
            selected=selected,
            shortfall=_shortfall(r.budget, selected + len(r.replay.rows), len(r.batch),
                                 rejected),
            decisions=r.decisions,
            clusters=clusters,
            feedback_signal=r.signal,
            health=r.health,
            edit_stats=_edit_stats(r.edited),
            scores=r.scores,
            replay=[
                SampleDecision(
                    id=ref.samples[ref.eligible[i]].id, selected=True, role="replay",
                    cluster=int(r.ref_labels[i]), distance=round(float(1.0 - r.ref_sims[i]), 6),
                    text=ref.samples[ref.eligible[i]].text, edits=[], reason=None,
                )
                for i in r.replay.rows
            ],
            rejected=rejected,
            timings=timings,
        )

    def _advance(self, r: _Round) -> RunState:
        """The run's state after this round (a new object)."""
        new = copy.deepcopy(r.state)
        new.round = r.state.round + 1
        new.embedding_model = self.embedder.name
        new.centroids = r.centroids
        for c, (s, d) in enumerate(zip(r.stats, r.ratios, strict=True)):
            if s.size >= 2:
                new.baseline_dispersion.setdefault(c, s.dispersion)
            if s.size:
                new.ratios[c] = d.ratio
        if r.metrics is not None:
            new.last_feedback = r.metrics
        new.history.append(r.entry)
        return new

    # -- steps the stages call ---------------------------------------------------------

    def _check_state(self, state: RunState) -> None:
        if state.embedding_model is not None and state.embedding_model != self.embedder.name:
            raise CurationInputError(
                f"state: built with embedding model {state.embedding_model!r}, "
                f"this curator uses {self.embedder.name!r}"
            )
        if state.centroids is not None and state.centroids.shape[1] != self.embedder.dim:
            raise CurationInputError(
                f"state: centroids have dimension {state.centroids.shape[1]}, "
                f"the embedding model has {self.embedder.dim}"
            )

    def _embed_batch(self, samples: list[Sample], progress: FractionDone) -> _Embedded:
        reasons = [degenerate_reason(s.text, self.config.quality) for s in samples]
        vectors = (
            self.executor.embed(self.embedder, self.config.embed, [s.text for s in samples],
                                progress)
            if samples
            else np.empty((0, self.embedder.dim), dtype=np.float32)
        )
        eligible = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
        return _Embedded(samples, reasons, vectors, eligible)

    def _sample_reference(self, refs: list[Sample], seed: int) -> list[Sample]:
        cap = self.config.cluster.max_reference_fit
        if len(refs) <= cap:
            return refs
        keep = np.random.default_rng(seed).choice(len(refs), cap, replace=False)
        return [refs[i] for i in np.sort(keep)]

    def _fit_centroids(
        self, cands: _Embedded, ref: _Embedded, state: RunState, seed: int
    ) -> np.ndarray:
        cfg = self.config.cluster
        fit_on = cands.eligible_vectors
        if cfg.fit_on_reference and len(ref.eligible):
            fit_on = np.vstack([fit_on, ref.eligible_vectors])
        if len(fit_on) == 0:  # every candidate is degenerate and there is no reference
            if state.centroids is not None:
                return state.centroids
            fit_on = cands.vectors
        kmeans = SphericalKMeans(
            cfg.k, cfg.max_k, cfg.niter, cfg.warm_niter, cfg.fit_sample_size, seed
        )
        return kmeans.fit(fit_on, state.centroids).centroids_

    def _scorer(self) -> ConfidenceScorer:
        cfg = self.config.score
        return ConfidenceScorer(
            (lambda: self.lm) if cfg.lm_fallback else None, cfg.max_tokens, cfg.batch_size,
            cfg.pool_typicality, cfg.generator_typicality,
        )

    def _measure_affinity(self, r: _Round) -> None:
        """Every eligible candidate's affinity to the reference, when the round has one, the
        affinity has weight and the confidence is known (NaN for the others; None without)."""
        el = r.cands.eligible
        r.affinity = r.affinity_model = None
        if (self.config.score.reference_weight > 0 and len(r.ref.eligible) and len(el)
                and np.isfinite(r.confidence[el]).all()):
            r.affinity_model = ReferenceAffinity().fit(
                [r.ref.samples[i].text for i in r.ref.eligible],
                [r.batch[i].text for i in el],
            )
            r.affinity = np.full(len(r.batch), np.nan)
            r.affinity[el] = r.affinity_model.candidate_scores()

    def _edge_key(self, r: _Round, selectable: np.ndarray, budget: int) -> np.ndarray:
        """The edge key of every eligible candidate (NaN for the others): its confidence, or,
        with a reference, its place in the greedy reference matching over the selectable (its
        n-grams and, with ``score.embedding_share``, its embedding)."""
        el = r.cands.eligible
        key = np.full(len(r.batch), np.nan)
        if r.affinity_model is None:
            key[el] = r.confidence[el]
            return key
        cfg = self.config.score
        herding = None
        if cfg.embedding_share > 0:
            radius_sq = float(np.median(2.0 - 2.0 * r.ref_sims))  # reference row to centroid
            herding = EmbeddingHerding(seed=r.seed).fit(r.cands.vectors[el],
                                                        r.ref.eligible_vectors, radius_sq)
        matching = ReferenceMatching(cfg.reference_weight, budget, cfg.embedding_share)
        key[el] = matching.key(r.affinity_model, r.confidence[el], np.isin(el, selectable), herding)
        r.scores["matching"] = {"steps": matching.steps_, "per_step": matching.per_step_,
                                "kappa": round(matching.kappa_, 4),
                                "embedding_share": cfg.embedding_share,
                                "herding_bandwidth": _rounded(
                                    herding.bandwidth_ if herding is not None else None)}
        return key

    def _select(self, r: _Round, budget: int) -> tuple[list[ClusterPool], np.ndarray]:
        """Reject near-duplicates, outliers and implausible texts, then fill every cluster's
        quota of ``budget`` from its pool; returns the pools and the number taken per cluster."""
        el, k, q = r.cands.eligible, len(r.stats), self.config.quality
        cuts = outlier_cuts(r.labels[el], r.distances[el], k, q.outlier_mad)
        low = implausible_cut(r.confidence[el], q.implausible_mad)
        r.scores["implausible_below"] = None if not np.isfinite(low) else round(low, 4)
        reasons: dict[int, str] = {}
        for i in el:
            if r.duplicates[i]:
                reasons[int(i)] = "near_duplicate"
            elif r.distances[i] > cuts[r.labels[i]]:
                reasons[int(i)] = "outlier"
            elif r.confidence[i] < low:
                reasons[int(i)] = "implausible"
        r.selectable = np.array([i for i in el if int(i) not in reasons], dtype=np.int64)
        r.key = self._edge_key(r, r.selectable, budget)
        pools = [
            ClusterPool(el[r.labels[el] == c], r.distances, r.key, reasons, r.ratios[c].ratio)
            for c in range(k)
        ]
        alloc = self.config.allocation
        weights = allocation_weights(
            np.array([s.share for s in r.stats]),
            np.array([s.reference_share for s in r.stats]) if r.refs else None,
            alloc.tau,
            alloc.eta,
            alloc.surprise,
            surprise_shares(r.key, r.labels, r.selectable, budget, k),
            alloc.floor,
        )
        capacity = np.array([p.remaining for p in pools], dtype=np.int64)
        quotas = allocate(budget, weights, capacity)
        taken = select_all(pools, quotas, weights, budget, allocate)
        return pools, taken


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _chosen(pools: list[ClusterPool]) -> list[int]:
    """The selected candidates (centers and edges), cluster by cluster."""
    return [i for p in pools for i in (*p.centers, *p.edges)]


def _affinity_report(affinity: np.ndarray, chosen: list[int]) -> dict[str, float]:
    """Mean reference affinity of the eligible candidates and of the selection: how far the
    selection moved toward the real reference's words."""
    known = affinity[np.isfinite(affinity)]
    return {
        "candidates": round(float(known.mean()), 4) if len(known) else 0.0,
        "selected": round(float(affinity[chosen].mean()), 4) if chosen else 0.0,
    }


def _divergence_report(r: _Round, model: ReferenceAffinity, chosen: list[int]
                       ) -> dict[str, float | None]:
    """KL(reference || texts) over hashed n-grams of the selection and of as many candidates
    drawn at random from those it was chosen from (no rule rejected them): the KL of a set
    depends on its size, so the selection is compared with a random pick of its own size, not
    with the whole pool. None for both when nothing was selected."""
    if not chosen:
        return {"selected": None, "random": None}
    el = r.cands.eligible  # the candidates ``model`` was fitted on, in this order
    drawn = np.random.default_rng(r.seed).choice(r.selectable, len(chosen), replace=False)
    return {
        "selected": round(model.divergence(np.searchsorted(el, chosen)), 4),
        "random": round(model.divergence(np.searchsorted(el, drawn)), 4),
    }


def _decisions(
    batch: list[Sample],
    degenerate: list[str | None],
    labels: np.ndarray,
    distances: np.ndarray,
    pools: list[ClusterPool],
    centers: list[int],
    edited: list[EditedText],
) -> list[SampleDecision]:
    role: dict[int, str] = {i: "edge" for p in pools for i in p.edges}
    role.update({i: "center" for p in pools for i in p.centers})
    rejected = {i: r for p in pools for i, r in p.rejected.items()}
    by_index = dict(zip(centers, edited, strict=True))
    out = []
    for i, sample in enumerate(batch):
        e = by_index.get(i)
        chosen = role.get(i)
        left_out = None if chosen else _left_out(pools[labels[i]])
        reason = degenerate[i] or rejected.get(i) or left_out
        out.append(
            SampleDecision(
                id=sample.id,
                selected=chosen is not None,
                role=chosen,  # type: ignore[arg-type]
                cluster=int(labels[i]),
                distance=round(float(distances[i]), 6),
                text=e.text if e else sample.text,
                edits=list(e.edits) if e else [],
                reason=reason,
            )
        )
    return out


def _left_out(pool: ClusterPool) -> str:
    """Why a selectable sample was not taken: its cluster filled its quota with others ranked
    ahead of it, or the cluster got no share of the budget at all."""
    return "quota_filled" if pool.centers or pool.edges else "no_quota"


def _shortfall(budget: int, selected: int, candidates: int, rejected: dict[str, int]
               ) -> dict[str, Any] | None:
    """Why a round selected fewer than its budget, or None when it did not."""
    if selected >= budget:
        return None
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
    return {
        "missing": budget - selected,
        "reason": f"only {selected} of {candidates} candidates could be selected"
                  + (f"; the others were rejected ({why})" if why else ""),
    }


def _exemplars(r: _Round) -> dict[int, str]:
    """Each cluster's most central reference text: what a mode-loss alert quotes."""
    best: dict[int, tuple[float, int]] = {}
    for row, (label, sim) in enumerate(zip(r.ref_labels.tolist(), r.ref_sims.tolist(),
                                            strict=True)):
        if label not in best or sim > best[label][0]:
            best[label] = (sim, row)
    return {c: r.ref.samples[int(r.ref.eligible[row])].text for c, (_, row) in best.items()}


def _cluster_report(
    c: int, s: ClusterStats, d: RatioDecision, pool: ClusterPool, taken: int, replayed: int
) -> ClusterReport:
    return ClusterReport(
        cluster=c,
        size=s.size,
        share=s.share,
        dispersion=s.dispersion,
        reference_dispersion=s.reference_dispersion,
        reference_source=s.reference_source,
        reference_share=s.reference_share,
        near_duplicates=s.near_duplicates,
        rejected=len(pool.rejected),
        quota=taken,
        selected_center=len(pool.centers),
        selected_edge=len(pool.edges),
        edge_ratio=d,
        replayed=replayed,
    )


def _edit_stats(edited: list[EditedText]) -> EditStats:
    return EditStats(
        samples=len(edited),
        edited_samples=sum(1 for e in edited if e.edits),
        tokens=sum(e.tokens for e in edited),
        edits=sum(len(e.edits) for e in edited),
    )
