"""What a run remembers between rounds, as a plain serialisable object."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.ratio import validate_feedback
from curation.types import CurationInputError, is_finite_number

STATE_VERSION = 1
# Round numbers, cluster ids and counts of a state: what an int32 (faiss, SQL) holds.
MAX_COUNT = 2**31 - 1


@dataclass
class RunState:
    """Learned state of a run: centroids (stable cluster ids), per-cluster memory, history.

    ``baseline_dispersion`` is each cluster's dispersion in the round it first appeared: the
    reference when the run has no real-data reference. ``ratios`` is each cluster's last edge
    ratio (the EMA's memory). ``history`` holds one compact entry per round for trends and alerts.
    """

    round: int = 0
    embedding_model: str | None = None
    centroids: np.ndarray | None = None
    baseline_dispersion: dict[int, float] = field(default_factory=dict)
    ratios: dict[int, float] = field(default_factory=dict)
    last_feedback: dict[str, float] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def k(self) -> int:
        return 0 if self.centroids is None else int(self.centroids.shape[0])

    def to_dict(self) -> dict[str, Any]:
        centroids = None
        if self.centroids is not None:
            c = np.ascontiguousarray(self.centroids, dtype="<f4")
            encoded = base64.b64encode(c.tobytes()).decode()
            centroids = {"shape": list(c.shape), "f32le_b64": encoded}
        return {
            "version": STATE_VERSION,
            "round": self.round,
            "embedding_model": self.embedding_model,
            "centroids": centroids,
            "baseline_dispersion": {str(k): v for k, v in self.baseline_dispersion.items()},
            "ratios": {str(k): v for k, v in self.ratios.items()},
            "last_feedback": self.last_feedback,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """A state as :meth:`to_dict` wrote it. It comes back from callers (``POST
        /v1/curate``, ``dces curate --state``), so every field the engine reads is checked
        here: a wrong type, a non-finite number or a malformed history entry is a
        :class:`CurationInputError` naming it, never an engine crash later in the round."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise CurationInputError(f"state: not a DCES run state of version {STATE_VERSION}")
        model = data.get("embedding_model")
        if model is not None and not isinstance(model, str):
            raise CurationInputError("state.embedding_model: must be a string or null")
        last_feedback = data.get("last_feedback")
        if last_feedback is not None:
            last_feedback = validate_feedback(last_feedback, "state.last_feedback")
        history = data.get("history", [])
        if not isinstance(history, list):
            raise CurationInputError("state.history: must be a list of round entries")
        for i, entry in enumerate(history):
            _check_entry(entry, f"state.history[{i}]")
        return cls(
            # One below the bound, so that the round curated from it is numbered within the
            # bound (an int32); a state at the bound is the last and cannot go on.
            round=_count(data.get("round"), "state.round", MAX_COUNT - 1),
            embedding_model=model,
            centroids=_centroids(data.get("centroids")),
            baseline_dispersion=_by_cluster(data.get("baseline_dispersion", {}),
                                            "state.baseline_dispersion"),
            ratios=_by_cluster(data.get("ratios", {}), "state.ratios", unit=True),
            last_feedback=last_feedback,
            history=history,
        )


def _count(value: object, field: str, limit: int = MAX_COUNT) -> int:
    """A JSON integer in [0, limit] (round numbers, cluster ids and counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise CurationInputError(f"{field}: must be an integer in [0, {limit}], got {value!r}")
    return value


def _number(value: object, field: str, unit: bool = False) -> float:
    """A finite JSON number (dispersions, effective cluster counts); with ``unit``, in [0, 1]
    (edge ratios). Dispersions are not bounded below: float32 rounding makes a singleton's
    distance to its own centroid a hair under 0."""
    if not is_finite_number(value) or (unit and not 0 <= value <= 1):
        bound = " in [0, 1]" if unit else ""
        raise CurationInputError(f"{field}: must be a finite number{bound}, got {value!r}")
    return float(value)


def _by_cluster(value: object, field: str, unit: bool = False) -> dict[int, float]:
    """``{"<cluster id>": number}``, as :meth:`RunState.to_dict` writes the per-cluster maps."""
    if not isinstance(value, dict):
        raise CurationInputError(f"{field}: must be an object of cluster id → number")
    clean: dict[int, float] = {}
    for key, item in value.items():
        clean[_cluster_id(key, field)] = _number(item, f"{field}.{key}", unit)
    return clean


def _cluster_id(key: object, field: str) -> int:
    """A cluster id as a JSON object key ("3"); ``int()`` of a long digit string would raise
    ValueError past 4,300 digits, so the length is bounded first."""
    if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 10):
        raise CurationInputError(f"{field}: key {key!r} is not a cluster id")
    return _count(int(key), f"{field}.{key}")


def _centroids(value: object) -> np.ndarray | None:
    """``{"shape": [k, dim], "f32le_b64": ...}``: k >= 1 rows of finite float32 values."""
    if not value:
        return None
    field = "state.centroids"
    if not isinstance(value, dict) or not isinstance(value.get("f32le_b64"), str):
        raise CurationInputError(f"{field}: must be an object with 'shape' and 'f32le_b64'")
    shape = value.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise CurationInputError(f"{field}.shape: must be [clusters, dimension], got {shape!r}")
    rows, dim = (_count(n, f"{field}.shape[{i}]") for i, n in enumerate(shape))
    try:
        raw = base64.b64decode(value["f32le_b64"], validate=True)
    except ValueError as exc:
        raise CurationInputError(f"{field}.f32le_b64: not base64 ({exc})") from None
    if rows < 1 or dim < 1 or len(raw) != 4 * rows * dim:
        raise CurationInputError(
            f"{field}: {len(raw)} bytes do not hold shape {shape} of float32 (at least [1, 1])")
    centroids = np.frombuffer(raw, dtype="<f4").reshape(rows, dim).astype(np.float32)
    if not np.isfinite(centroids).all():
        raise CurationInputError(f"{field}: holds values that are not finite")
    return centroids


def _check_entry(entry: object, field: str) -> None:
    """A history entry: the fields :mod:`curation.health` reads of earlier rounds; an older
    DCES wrote fewer of them, so only ``round`` is required."""
    if not isinstance(entry, dict):
        raise CurationInputError(f"{field}: must be an object")
    _count(entry.get("round"), f"{field}.round")
    for name in ("effective_clusters", "lost_reference_mass"):
        if entry.get(name) is not None:
            _number(entry[name], f"{field}.{name}")
    if "cluster_dispersion" in entry:
        _by_cluster(entry["cluster_dispersion"], f"{field}.cluster_dispersion")
    k = entry.get("k")
    if k is not None:
        _count(k, f"{field}.k")
    if "cluster_counts" in entry:  # read whenever the key is there (null included)
        counts = entry["cluster_counts"]
        if not isinstance(counts, dict):
            raise CurationInputError(f"{field}.cluster_counts: must be an object of cluster "
                                     "id → count")
        for key, n in counts.items():
            cluster = _cluster_id(key, f"{field}.cluster_counts")
            if k is not None and cluster >= k:
                raise CurationInputError(f"{field}.cluster_counts: cluster {key} is not below "
                                         f"k = {k}")
            _count(n, f"{field}.cluster_counts.{key}")
    lost = entry.get("lost_cluster_ids")
    if lost is not None:
        if not isinstance(lost, list):
            raise CurationInputError(f"{field}.lost_cluster_ids: must be a list of cluster ids")
        for j, cluster in enumerate(lost):
            _count(cluster, f"{field}.lost_cluster_ids[{j}]")
