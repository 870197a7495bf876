"""The values that flow in and out of a curation round.

Everything here converts to and from plain JSON-able dicts, so that the CLI, the service and a
training job can store and exchange them without pickling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeGuard

Role = Literal["center", "edge", "replay"]
# A long call's progress, 0..1, reported between its batches (a stop point for the service).
FractionDone = Callable[[float], None]


class CurationInputError(ValueError):
    """The caller's input is unusable; the message names the item and the problem."""


GENERATOR_FIELDS = ("logprob", "tokens", "token_logprobs")
# |sum(token_logprobs) - logprob| allowed when a sample sends both (float32 sums drift).
_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Sample:
    """One candidate text. ``extra`` carries the caller's other fields through untouched."""

    id: str
    text: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Mean token log-probability under the model that generated the text, when the caller sent
    # it (``logprob`` + ``tokens``, or ``token_logprobs``, kept in ``extra`` as sent).
    confidence: float | None = None

    @classmethod
    def coerce(cls, item: object, index: int) -> Sample:
        if isinstance(item, Sample):
            return item
        if not isinstance(item, Mapping):
            raise CurationInputError(f"sample {index}: expected an object with 'id' and 'text'")
        sid, text = item.get("id"), item.get("text")
        if not isinstance(sid, str) or not sid:
            raise CurationInputError(f"sample {index}: 'id' must be a non-empty string")
        if not isinstance(text, str):
            raise CurationInputError(f"sample {index} (id {sid!r}): 'text' must be a string")
        extra = {k: v for k, v in item.items() if k not in ("id", "text")}
        return cls(sid, text, extra, generator_confidence(item, f"sample {index} (id {sid!r})"))


def coerce_samples(items: Sequence[Sample | Mapping[str, Any]], what: str) -> list[Sample]:
    """Validate a batch: each item has a string id and text, ids are unique."""
    samples = [Sample.coerce(item, i) for i, item in enumerate(items)]
    first_seen: dict[str, str] = {}
    for i, s in enumerate(samples):
        check_new_id(first_seen, s.id, f"{what} {i}", f"at {what} {i}")
    return samples


def check_new_id(first_seen: dict[str, str], sample_id: str, where: str, here: str) -> None:
    """Sample ids are unique within a batch: the one check, for the engine's batches, the API's
    and the CLI's files. Each caller names places its own way ("at samples[3]", "on line 4").

    Records that ``sample_id`` was first seen ``here``; if it was seen before, raises a
    :class:`CurationInputError` at ``where`` that names the first place."""
    first = first_seen.setdefault(sample_id, here)
    if first != here:
        raise CurationInputError(f"{where}: duplicate id {sample_id!r} (first {first})")


def generator_confidence(item: Mapping[str, object], label: str) -> float | None:
    """The mean token log-probability a sample carries, ``None`` when it carries none.

    Raises :class:`CurationInputError` naming the sample and the field for a value no generator
    can produce: a non-finite or positive log-probability, a token count below 1, ``logprob``
    without ``tokens`` (or the reverse), or ``token_logprobs`` that disagree with them.
    """
    logprob, tokens, raw_tokens = (item.get(f) for f in GENERATOR_FIELDS)
    if logprob is None and tokens is None and raw_tokens is None:
        return None
    per_token: list[float] | None = None
    if raw_tokens is not None:
        if not isinstance(raw_tokens, list | tuple) or not raw_tokens:
            raise CurationInputError(
                f"{label}: 'token_logprobs' must be a non-empty list of numbers <= 0"
            )
        per_token = [_logprob(v, f"{label}: 'token_logprobs[{j}]'")
                     for j, v in enumerate(raw_tokens)]
    if logprob is None and tokens is None:
        assert per_token is not None
        return _token_sum(per_token, label) / len(per_token)
    if logprob is None or tokens is None:
        missing = "tokens" if tokens is None else "logprob"
        raise CurationInputError(
            f"{label}: 'logprob' and 'tokens' go together; '{missing}' is missing"
        )
    total = _logprob(logprob, f"{label}: 'logprob'")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise CurationInputError(f"{label}: 'tokens' must be an integer >= 1, got {tokens!r}")
    if per_token is not None:
        if len(per_token) != tokens:
            raise CurationInputError(
                f"{label}: 'token_logprobs' has {len(per_token)} values but 'tokens' is {tokens}"
            )
        summed = _token_sum(per_token, label)
        if abs(summed - total) > _SUM_TOLERANCE * max(1.0, abs(summed)):
            raise CurationInputError(
                f"{label}: 'logprob' is {total!r} but 'token_logprobs' sum to {summed:.6g}"
            )
    return total / tokens


def _token_sum(per_token: list[float], label: str) -> float:
    """The exact sum of finite log-probabilities, which may still overflow a float (two of
    -1e308): ``math.fsum`` then raises OverflowError, a caller's error and not the server's."""
    try:
        return math.fsum(per_token)
    except OverflowError:
        raise CurationInputError(
            f"{label}: 'token_logprobs' sum to less than the lowest float (-1.8e308)"
        ) from None


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (not a bool) that a float holds: ``math.isfinite`` itself raises
    OverflowError for an integer past 1.8e308, which JSON and Python allow."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _logprob(value: object, label: str) -> float:
    if not is_finite_number(value):
        raise CurationInputError(f"{label} must be a finite number <= 0, got {value!r}")
    if value > 0:
        raise CurationInputError(f"{label} must be <= 0 (a log-probability), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Edit:
    """One resampled token, as a replacement of ``original[start:end]`` by ``new``."""

    start: int
    end: int
    old: str
    new: str
    p: float


@dataclass
class SampleDecision:
    """What the round decided for one input sample."""

    id: str
    selected: bool
    role: Role | None
    cluster: int
    distance: float
    text: str
    edits: list[Edit]
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleDecision:
        return cls(**{**data, "edits": [Edit(**e) for e in data.get("edits", [])]})


@dataclass
class RatioDecision:
    """Every number that went into a cluster's edge ratio, so a user can see why."""

    r0: float
    alpha: float
    gamma: float
    dispersion_signal: float  # s_c, positive when tighter than the reference (collapsing)
    feedback_signal: float  # g
    raw: float  # r0 + alpha * s_c + gamma * g
    previous: float | None  # the cluster's ratio last round (the EMA's memory)
    smoothed: float
    ratio: float  # after clipping to [r_min, r_max] (or the static ratio)
    static: bool


@dataclass
class ClusterReport:
    """Per-cluster measurement, decision and outcome of one round."""

    cluster: int
    size: int
    share: float
    dispersion: float
    reference_dispersion: float | None
    reference_source: Literal["reference", "baseline", "none"]
    reference_share: float
    near_duplicates: int
    rejected: int
    # Samples taken from this cluster (selected_center + selected_edge), after dry clusters'
    # shortfall was passed on: not the allocated quota. Named so in the API's round results.
    quota: int
    selected_center: int
    selected_edge: int
    edge_ratio: RatioDecision
    replayed: int = 0  # reference exemplars returned for this (lost) cluster

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EditStats:
    """How much the editor changed the selected center samples."""

    samples: int
    edited_samples: int
    tokens: int
    edits: int

    @property
    def edit_rate(self) -> float:
        """Edits per 100 tokens."""
        return 100.0 * self.edits / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "edit_rate": self.edit_rate}


@dataclass
class RoundResult:
    """The outcome of one round: a decision per input sample, plus why."""

    round: int
    budget: int
    selected: int
    decisions: list[SampleDecision]
    clusters: list[ClusterReport]
    feedback_signal: dict[str, float]
    health: dict[str, Any]
    edit_stats: EditStats
    rejected: dict[str, int]
    timings: dict[str, float]
    # Where confidence came from ("generator", "lm" or "none"), the implausibility cut, the
    # weight of the reference affinity in the selection's order (None: not used) and, when used,
    # the mean affinity of the candidates and of the selection and the reference matching's
    # figures (curation.matching), with the n-gram KL to the reference of the selection and of
    # a random pick of its size.
    scores: dict[str, Any] = field(default_factory=dict)
    # Reference exemplars of lost clusters (role "replay"), part of the budget.
    replay: list[SampleDecision] = field(default_factory=list)
    # When fewer than the budget were selected: {"missing": n, "reason": "..."}.
    shortfall: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "budget": self.budget,
            "selected": self.selected,
            "samples": [d.to_dict() for d in self.decisions],
            "replay": [d.to_dict() for d in self.replay],
            "clusters": [c.to_dict() for c in self.clusters],
            "feedback_signal": self.feedback_signal,
            "health": self.health,
            "edit_stats": self.edit_stats.to_dict(),
            "rejected": self.rejected,
            "shortfall": self.shortfall,
            "scores": self.scores,
            "timings": self.timings,
        }

    def report(self) -> dict[str, Any]:
        """Everything but the per-sample decisions (what ``--report`` writes)."""
        data = self.to_dict()
        data.pop("samples")
        return data
