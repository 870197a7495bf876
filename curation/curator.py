"""The facade: one call curates one round, composing the pipeline steps.

``Curator(config).curate(samples, budget, state, reference, feedback) -> (RoundResult, state)``.
Models load lazily on first use (or are passed in, so a service can share them across runs);
the returned state is a new object, the one passed in is never modified.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.allocate import allocate, allocation_weights
from curation.cluster import SphericalKMeans, nearest_centroid
from curation.confidence import ConfidenceScorer
from curation.config import CurationConfig
from curation.edit import EditedText, TokenEditor
from curation.embed import Embedder, load_embedder
from curation.health import round_health
from curation.lm import CausalLM, load_causal_lm
from curation.measure import ClusterStats, measure_clusters, near_duplicate_mask
from curation.quality import degenerate_reason, implausible_cut, outlier_cuts
from curation.ratio import EdgeRatioPolicy, feedback_signal, validate_feedback
from curation.replay import Replay
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


class Curator:
    """Curates rounds of synthetic samples for one configuration."""

    def __init__(
        self,
        config: CurationConfig | None = None,
        *,
        embedder: Embedder | None = None,
        lm: CausalLM | None = None,
    ):
        self.config = config or CurationConfig()
        self._embedder = embedder
        self._lm = lm

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            cfg = self.config.embed
            self._embedder = load_embedder(cfg.model, cfg.dtype, cfg.batch_size, cfg.cache_size)
        return self._embedder

    @property
    def lm(self) -> CausalLM:
        if self._lm is None:
            self._lm = load_causal_lm(self.config.edit.model)
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
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise CurationInputError(f"budget: must be an integer >= 1, got {budget!r}")
        batch = coerce_samples(list(samples), "sample")
        if not batch:
            raise CurationInputError("samples: at least one sample is required")
        refs = coerce_samples(list(reference or []), "reference sample")
        metrics = validate_feedback(feedback) if feedback is not None else None
        state = copy.deepcopy(state) if state is not None else RunState()
        self._check_state(state)
        seed = (self.config.seed * 1_000_003 + state.round) % 2**31  # faiss takes int32 seeds

        report("embed", 0.0)
        cands = self._embed(batch, _within(report, "embed", 0.0, 0.25))
        ref = self._embed(self._sample_reference(refs, seed), _within(report, "embed", 0.25, 0.3))
        timings["embed"] = _lap(clock)
        report("cluster", 0.3)
        centroids = self._fit_centroids(cands, ref, state, seed)
        labels, sims = nearest_centroid(cands.vectors, centroids)
        distances = 1.0 - sims
        ref_labels, ref_sims = nearest_centroid(ref.eligible_vectors, centroids)
        timings["cluster"] = _lap(clock) - timings["embed"]

        report("select", 0.5)
        k = len(centroids)
        el = cands.eligible
        confidence = np.full(len(batch), np.nan)
        scorer = self._scorer()
        confidence[el] = scorer.score([batch[i] for i in el], _within(report, "select", 0.5, 0.65))
        duplicates = self._near_duplicates(cands, labels, distances, k)
        stats = measure_clusters(
            labels[el],
            distances[el],
            duplicates[el],
            k,
            ref_labels if len(ref_labels) else None,
            1.0 - ref_sims,
            state.baseline_dispersion,
        )
        signal = feedback_signal(metrics, state.last_feedback)
        policy = EdgeRatioPolicy(self.config.ratio)
        decisions = [
            policy.decide(s.dispersion, s.reference_dispersion, signal["g"], state.ratios.get(c))
            for c, s in enumerate(stats)
        ]
        scores = {"source": scorer.source_, "implausible_below": None}
        replay = Replay(self.config.replay.fraction, self.config.replay.lost_share, seed).plan(
            budget,
            np.array([s.share for s in stats]),
            np.array([s.reference_share for s in stats]),
            ref_labels,
        )
        pools, taken = self._select(
            labels, distances, confidence, duplicates, el, stats, decisions,
            budget - len(replay.rows), bool(refs), scores,
        )
        timings["select"] = _lap(clock) - sum(timings.values())

        report("edit", 0.7)
        centers = sorted(i for p in pools for i in p.centers)
        edit_progress = _within(report, "edit", 0.7, 0.9)
        edited = self._edit([batch[i].text for i in centers], seed, edit_progress)
        timings["edit"] = _lap(clock) - sum(timings.values())

        report("health", 0.9)
        result_decisions = _decisions(
            batch, cands.reasons, labels, distances, pools, centers, edited
        )
        selected = [d.selected for d in result_decisions]
        sel_idx = np.flatnonzero(selected)
        health, entry = round_health(
            labels=labels[el],
            embeddings=cands.eligible_vectors,
            dispersion={c: s.dispersion for c, s in enumerate(stats) if s.size},
            baseline=state.baseline_dispersion,
            selected_texts=[result_decisions[i].text for i in sel_idx],
            selected_embeddings=cands.vectors[sel_idx],
            reference_embeddings=ref.eligible_vectors if len(ref.eligible) else None,
            reference_labels=ref_labels if len(ref_labels) else None,
            k=k,
            history=state.history,
            round_index=state.round,
            config=self.config.health,
            seed=self.config.seed,  # constant per run: the MMD's reference sample stays put
        )
        timings["health"] = _lap(clock) - sum(timings.values())
        timings["total"] = _lap(clock)

        clusters = [
            _cluster_report(c, s, d, pools[c], int(taken[c]), int(replay.per_cluster[c]))
            for c, (s, d) in enumerate(zip(stats, decisions, strict=True))
        ]
        new_state = self._advance(state, centroids, stats, decisions, metrics, entry)
        rejected: dict[str, int] = {}
        for d in result_decisions:
            if d.reason and d.reason != "not_selected":
                rejected[d.reason] = rejected.get(d.reason, 0) + 1
        result = RoundResult(
            round=state.round,
            budget=budget,
            selected=int(sum(selected)),
            decisions=result_decisions,
            clusters=clusters,
            feedback_signal=signal,
            health=health,
            edit_stats=_edit_stats(edited),
            scores=scores,
            replay=[
                SampleDecision(
                    id=ref.samples[ref.eligible[i]].id, selected=True, role="replay",
                    cluster=int(ref_labels[i]), distance=round(float(1.0 - ref_sims[i]), 6),
                    text=ref.samples[ref.eligible[i]].text, edits=[], reason=None,
                )
                for i in replay.rows
            ],
            rejected=rejected,
            timings={k_: round(v, 4) for k_, v in timings.items()},
        )
        report("done", 1.0)
        return result, new_state

    # -- steps ---------------------------------------------------------------------------

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

    def _embed(self, samples: list[Sample], progress: FractionDone) -> _Embedded:
        reasons = [degenerate_reason(s.text, self.config.quality) for s in samples]
        vectors = (
            self.embedder.encode([s.text for s in samples], progress)
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
            (lambda: self.lm) if cfg.lm_fallback else None, cfg.max_tokens, cfg.batch_size
        )

    def _near_duplicates(
        self, cands: _Embedded, labels: np.ndarray, distances: np.ndarray, k: int
    ) -> np.ndarray:
        """SemDeDup within each cluster, nearest to the centroid kept: one mask for centers and
        edges alike."""
        el = cands.eligible
        order = el[np.argsort(distances[el], kind="stable")]
        duplicates = np.zeros(len(cands.samples), dtype=bool)
        for c in range(k):
            members = order[labels[order] == c]
            duplicates[members] = near_duplicate_mask(
                cands.vectors[members], self.config.quality.near_duplicate_eps
            )
        return duplicates

    def _select(
        self,
        labels: np.ndarray,
        distances: np.ndarray,
        confidence: np.ndarray,
        duplicates: np.ndarray,
        eligible: np.ndarray,
        stats: list[ClusterStats],
        decisions: list[RatioDecision],
        budget: int,
        has_reference: bool,
        scores: dict[str, Any],
    ) -> tuple[list[ClusterPool], np.ndarray]:
        k = len(stats)
        q = self.config.quality
        cuts = outlier_cuts(labels[eligible], distances[eligible], k, q.outlier_mad)
        low = implausible_cut(confidence[eligible], q.implausible_mad)
        scores["implausible_below"] = None if not np.isfinite(low) else round(low, 4)
        reasons: dict[int, str] = {}
        for i in eligible:
            if duplicates[i]:
                reasons[int(i)] = "near_duplicate"
            elif distances[i] > cuts[labels[i]]:
                reasons[int(i)] = "outlier"
            elif confidence[i] < low:
                reasons[int(i)] = "implausible"
        pools = [
            ClusterPool(
                eligible[labels[eligible] == c], distances, confidence, reasons, decisions[c].ratio,
                self.config.score.surprising_centers,
            )
            for c in range(k)
        ]
        alloc = self.config.allocation
        selectable = np.array([i for i in eligible if int(i) not in reasons], dtype=np.int64)
        surprise = None
        if len(selectable) and not np.isnan(confidence[selectable]).any():
            top = selectable[np.argsort(confidence[selectable], kind="stable")[:budget]]
            surprise = np.bincount(labels[top], minlength=k).astype(np.float64)
        weights = allocation_weights(
            np.array([s.share for s in stats]),
            np.array([s.reference_share for s in stats]) if has_reference else None,
            alloc.tau,
            alloc.eta,
            surprise,
            alloc.kappa,
        )
        capacity = np.array([p.remaining for p in pools], dtype=np.int64)
        quotas = allocate(budget, weights, capacity)
        taken = select_all(pools, quotas, weights, budget, allocate)
        return pools, taken

    def _edit(self, texts: list[str], seed: int, progress: FractionDone) -> list[EditedText]:
        if not self.config.edit.enabled or not texts:
            return [EditedText(t, [], 0) for t in texts]
        return TokenEditor(self.lm, self.config.edit).edit(texts, seed, progress)

    def _advance(
        self,
        state: RunState,
        centroids: np.ndarray,
        stats: list[ClusterStats],
        decisions: list[RatioDecision],
        metrics: dict[str, float] | None,
        entry: dict[str, Any],
    ) -> RunState:
        new = copy.deepcopy(state)
        new.round = state.round + 1
        new.embedding_model = self.embedder.name
        new.centroids = centroids
        for c, (s, d) in enumerate(zip(stats, decisions, strict=True)):
            if s.size >= 2:
                new.baseline_dispersion.setdefault(c, s.dispersion)
            if s.size:
                new.ratios[c] = d.ratio
        if metrics is not None:
            new.last_feedback = metrics
        new.history.append(entry)
        return new


def _lap(start: float) -> float:
    return time.perf_counter() - start


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
        reason = degenerate[i] or rejected.get(i) or (None if chosen else "not_selected")
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


def _within(report: Progress, stage: str, start: float, end: float) -> FractionDone:
    """A stage's own 0..1 progress, reported as the round's progress between start and end."""
    return lambda fraction: report(stage, start + (end - start) * fraction)


def _edit_stats(edited: list[EditedText]) -> EditStats:
    return EditStats(
        samples=len(edited),
        edited_samples=sum(1 for e in edited if e.edits),
        tokens=sum(e.tokens for e in edited),
        edits=sum(len(e.edits) for e in edited),
    )
