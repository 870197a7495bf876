"""Request and response bodies of the HTTP API (they make ``/docs`` useful).

Limits that depend on settings (samples per request, text length) are checked in
:mod:`app.api.checks`, not here, because pydantic constraints are fixed at import time.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.links import job_links
from app.store.records import FeedbackSource, JobRecord, JobStatus, UploadStatus
from curation.config import CurationConfig
from curation.types import GENERATOR_FIELDS, ClusterReport, Role, generator_confidence

MAX_INT = 2**31 - 1  # any integer that reaches the database fits every SQL INTEGER
MAX_PAGE = 10_000  # samples in one page of a round
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Metrics = dict[Annotated[str, Field(min_length=1, max_length=200)], FiniteFloat]


class SampleIn(BaseModel):
    """One sample; fields other than ``id`` and ``text`` are carried through untouched."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"id": "s1", "text": "A synthetic sentence.", "source": "gen-3"}]})

    id: str = Field(min_length=1, description="Unique within the batch.")
    text: str
    logprob: float | None = Field(
        None, description="Sum of the text's token log-probabilities under the model that "
                          "generated it (<= 0, finite); needs `tokens`.")
    tokens: int | None = Field(None, ge=1, le=MAX_INT,
                               description="Number of tokens `logprob` sums over.")
    token_logprobs: list[float] | None = Field(
        None, min_length=1, description="One log-probability per generated token (<= 0).")

    @model_validator(mode="after")
    def _generator_scores(self) -> SampleIn:
        """The engine's own rule, so a bad score is a 422 at the request that carries it."""
        generator_confidence(self._scores(), "sample")
        return self

    def _scores(self) -> dict[str, Any]:
        return {k: v for k in GENERATOR_FIELDS if (v := getattr(self, k)) is not None}

    def to_engine(self) -> dict[str, Any]:
        return {**(self.model_extra or {}), **self._scores(), "id": self.id, "text": self.text}


Samples = Annotated[list[SampleIn], Field(min_length=1)]


# -- errors -------------------------------------------------------------------------------------


class ProblemField(BaseModel):
    """One offending field of a 422: its path, what is wrong, and the limit it broke."""

    model_config = ConfigDict(extra="allow")

    field: str = Field(description="Path such as `samples[3].id` or `config.ratio.r_max`.")
    message: str
    limit: Any = Field(None, description="The bound that was broken, when there is one.")


class Problem(BaseModel):
    """Every error answer (RFC 9457, `application/problem+json`), whatever the status."""

    type: str = Field(description="`urn:dces:problem:<slug>`, e.g. `urn:dces:problem:not-found`.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="The request path.")
    request_id: str | None = Field(None, description="As in the X-Request-ID header and logs.")
    errors: list[ProblemField] | None = None


# -- runs ---------------------------------------------------------------------------------------


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Curation config overrides, nested like CurationConfig (e.g. "
                    '{"ratio": {"r0": 0.4}, "edit": {"enabled": false}}); unknown keys → 422.',
    )


class RunOut(BaseModel):
    id: str
    name: str | None
    created_at: str
    rounds: int = Field(description="Committed rounds.")
    reference_samples: int
    overrides: dict[str, Any]
    config: CurationConfig = Field(
        description="The resolved config every round of this run uses: every setting with its "
                    "type and default (bounds: curation/config.py; a value outside one is a 422 "
                    "naming the setting).")


class RunList(BaseModel):
    runs: list[RunOut]
    total: int


class ReferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: Samples


class ReferenceOut(BaseModel):
    added: int
    unchanged: int = Field(description="Already stored with the same text (a retried append).")
    total: int


class ReferencePage(BaseModel):
    total: int
    samples: list[dict[str, Any]]


# -- rounds -------------------------------------------------------------------------------------


class RoundIn(BaseModel):
    """Exactly one of ``samples`` (inline) or ``upload`` (the id of a staged, chunked upload)."""

    model_config = ConfigDict(extra="forbid")

    samples: Samples | None = None
    upload: str | None = Field(None, description="An upload id from POST /v1/runs/{id}/uploads.")
    budget: int = Field(ge=1, le=MAX_INT, description="How many samples to select.")
    feedback: Metrics | None = Field(
        None, description="Training metrics of the previous round; default: the posted feedback.")

    @model_validator(mode="after")
    def _one_source(self) -> RoundIn:
        if (self.samples is None) == (self.upload is None):
            raise ValueError("give exactly one of 'samples' or 'upload'")
        return self


class Alert(BaseModel):
    """A plain-language health alert of a round."""

    kind: str = Field(description="dispersion_drop, effective_clusters_drop, mode_loss (the "
                                  "candidates against the reference) or mode_drop (against an "
                                  "earlier round of the run).")
    severity: Literal["warning", "critical"]
    cluster: int | None = Field(description="The cluster it is about (the largest lost mode).")
    message: str


class LostClusterOut(BaseModel):
    cluster: int
    reference_share: float
    candidates: int
    expected: float = Field(description="Candidates it would hold if drawn like the reference.")


class RoundHealth(BaseModel):
    """A round's health (curation.health); metrics that need a reference are null without one.
    Rounds stored by an older DCES lack the newer metrics (null here)."""

    model_config = ConfigDict(extra="allow")

    effective_clusters: float
    clusters_occupied: int
    mean_dispersion: float
    vendi: float
    selected_vendi: float
    distinct_1: float
    distinct_2: float
    compression_ratio: float
    mmd_to_reference: float | None = None
    selected_mmd_to_reference: float | None = None
    reference_coverage: float | None = None
    lost_modes: int | None = None
    lost_reference_mass: float | None = None
    lost_reference_mass_delta: float | None = None
    tail_coverage: float | None = None
    missing_mass: float | None = None
    missing_mass_by_chance: float | None = None
    mode_loss_p: float | None = None
    lost_clusters: list[LostClusterOut] | None = None
    emptied_clusters: int | None = None
    dropped_modes: int | None = None
    dropped_mass: float | None = None
    dropped_since_round: int | None = None
    mode_drop_p: float | None = None
    alerts: list[Alert]


class EditOut(BaseModel):
    """One token edit over the original text: ``text[start:end]`` was ``old``, is ``new``."""

    start: int
    end: int
    old: str
    new: str
    p: float = Field(description="The replaced token's probability under the editing LM.")


class EditStatsOut(BaseModel):
    samples: int
    edited_samples: int
    tokens: int
    edits: int
    edit_rate: float = Field(description="Edits per 100 tokens.")


class RoundSummary(BaseModel):
    run_id: str
    round: int
    created_at: str
    job_id: str | None
    budget: int
    samples: int
    selected: int
    feedback_source: FeedbackSource
    alerts: list[Alert]


class RoundList(BaseModel):
    rounds: list[RoundSummary]


class SampleDecisionOut(BaseModel):
    id: str
    selected: bool
    role: Literal["center", "edge"] | None
    cluster: int
    distance: float
    text: str = Field(description="The output text: edited for center samples.")
    edits: list[EditOut]
    reason: str | None = Field(description=(
        "Why not selected: a quality rule that rejected it (e.g. 'near_duplicate', "
        "'too_short'), or, for a sample that passed them all, 'quota_filled' (its cluster "
        "filled its quota with samples ranked ahead) or 'no_quota' (its cluster got no share "
        "of the budget)."))


class SampleFilter(BaseModel):
    """Query parameters of ``GET /rounds/{n}``: the filters keep the ``samples`` whose fields
    equal every given value, then ``offset``/``limit`` page through them (a browser shows a
    page of a 100k-sample round, not all of it). An unknown parameter is a 422, so a misspelt
    filter never returns everything."""

    model_config = ConfigDict(extra="forbid")

    cluster: int | None = Field(None, ge=0, le=MAX_INT, description="Only samples of this cluster.")
    role: Role | None = Field(None, description="Only samples selected in this role.")
    selected: bool | None = Field(None, description="Only selected (true) or unselected (false).")
    reason: str | None = Field(None, min_length=1, max_length=64, description=(
        "Only samples with this reason, e.g. 'quota_filled', 'near_duplicate', 'too_short'."))
    offset: int = Field(0, ge=0, le=MAX_INT, description="Skip this many matching samples.")
    limit: int | None = Field(None, ge=1, le=MAX_PAGE, description=(
        "At most this many samples (default: all). `X-Total-Count` says how many matched."))

    def active(self) -> dict[str, Any]:
        """The filters that were given, as {field: value}; empty when none was."""
        return self.model_dump(exclude_none=True, exclude={"offset", "limit"})


class Shortfall(BaseModel):
    missing: int = Field(description="Samples the round selected fewer than its budget.")
    reason: str


class RoundOut(BaseModel):
    """A committed round: the engine's result plus where it came from."""

    run_id: str
    round: int
    created_at: str
    job_id: str | None
    feedback: dict[str, float] | None
    feedback_source: FeedbackSource
    budget: int
    selected: int
    samples: list[SampleDecisionOut]
    replay: list[SampleDecisionOut] = Field(
        default_factory=list,
        description="Reference exemplars of lost clusters (role 'replay'; `replay.fraction`).")
    clusters: list[ClusterReport] = Field(description="Per cluster, with 'edge_ratio' and why.")
    feedback_signal: dict[str, float]
    health: RoundHealth
    edit_stats: EditStatsOut
    rejected: dict[str, int]
    shortfall: Shortfall | None = Field(
        None, description="Why the round selected fewer than its budget; null when it did not.")
    scores: dict[str, Any] = Field(
        default_factory=dict,
        description="Where confidence came from ('generator', 'lm' or 'none'), the "
                    "'length_trend' removed from the LM's confidence (its span from the "
                    "shortest text to the longest; null unless the LM scored 20 texts or more "
                    "of different lengths), the 'typicality_agreement' of the "
                    "confidence (the LM's, or the generator's at 'score.generator_typicality') "
                    "with the pool's n-gram typicality it was averaged with (their "
                    "rank correlation; null unless averaged over 20 texts or more), the "
                    "'typicality_length_trend' removed from that typicality (a rise in length "
                    "only: short texts must not look surprising for being short; null unless "
                    "averaged over 20 texts or more of different lengths), the "
                    "'implausible_below' cut, the "
                    "'reference_weight' the selection ranked the "
                    "reference affinity with (null when it did not) and, then, the mean "
                    "'affinity' of the candidates and of the selection and the greedy "
                    "reference 'matching' (its steps, candidates per step, kappa, the "
                    "'embedding_share' of the affinity given to embedding herding and the "
                    "herding kernel's 'herding_bandwidth', and 'kl_to_reference' of the "
                    "selection and of as many candidates drawn at random from those no rule "
                    "rejected, over hashed n-grams; null when nothing was selected).")
    timings: dict[str, float]


# -- uploads (chunked rounds) -------------------------------------------------------------------


class UploadOut(BaseModel):
    id: str
    run_id: str
    status: UploadStatus
    parts: int
    samples: int
    created_at: str
    expires_at: str


class PartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: Samples


class PartOut(BaseModel):
    upload: str
    part: int
    samples: int
    total_samples: int
    unchanged: bool = Field(description="True when this part was already stored (a retry).")


# -- feedback, clusters, health -----------------------------------------------------------------


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    round: int | None = Field(
        None, ge=0, le=MAX_INT, description="The finished round these metrics describe "
                                             "(0 is the first); default: the latest round.")
    metrics: Annotated[Metrics, Field(min_length=1)]


class FeedbackOut(BaseModel):
    run_id: str
    round: int
    metrics: dict[str, float] = Field(description="Every metric recorded for the round.")
    created_at: str
    used: list[str] = Field(default_factory=list, description=(
        "Metrics of this post that the feedback signal reads (see /info's feedback_metrics)."))
    ignored: list[str] = Field(default_factory=list, description=(
        "Metrics of this post that DCES does not know: stored and listed, never used."))
    replaced: list[str] = Field(default_factory=list, description=(
        "Metrics this post changed: the round had them with another value. A post merges into "
        "the round's metrics; a metric it does not name keeps its earlier value."))


class FeedbackList(BaseModel):
    feedback: list[FeedbackOut]


class ClustersOut(BaseModel):
    run_id: str
    round: int
    clusters: list[ClusterReport]


class HealthOut(BaseModel):
    run_id: str
    rounds: list[int]
    series: dict[str, list[Any]] = Field(description="Each scalar health metric, one per round.")
    alerts: list[Alert] = Field(description="Alerts of the latest round.")


# -- jobs ---------------------------------------------------------------------------------------

class JobOut(BaseModel):
    id: str
    kind: Literal["round"] = Field("round", description="Every job curates a round.")
    status: JobStatus
    stage: str | None
    progress: float
    run_id: str | None
    round: int | None = Field(description="The committed round once succeeded.")
    samples: int
    attempts: int
    error: dict[str, Any] | None = Field(description="A problem document when failed.")
    note: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    links: dict[str, str]

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        """The public view of a stored job, with its links."""
        return cls.model_validate({**asdict(job), "links": job_links(job)})


# -- stateless ----------------------------------------------------------------------------------


class CurateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: Samples
    budget: int = Field(ge=1, le=MAX_INT)
    config: dict[str, Any] = Field(default_factory=dict)
    reference: list[SampleIn] = Field(default_factory=list)
    state: dict[str, Any] | None = Field(None, description="A state from an earlier call.")
    feedback: Metrics | None = None


class CurateOut(BaseModel):
    result: dict[str, Any]
    state: dict[str, Any]


# -- ops ----------------------------------------------------------------------------------------


class InfoOut(BaseModel):
    version: str
    models: dict[str, Any]
    limits: dict[str, int]
    feedback_metrics: dict[str, str] = Field(description=(
        "The training metrics the feedback signal reads, each with the direction that means "
        "collapse ('rise' or 'fall'); other names are stored but not used."))
    auth: bool
    database: str


class ReadyOut(BaseModel):
    ready: bool
    status: str
    detail: str | None
    queue_depth: int
