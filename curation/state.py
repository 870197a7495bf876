"""What a run remembers between rounds, as a plain serialisable object."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.types import CurationInputError

STATE_VERSION = 1


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
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise CurationInputError(f"state: not a DCES run state of version {STATE_VERSION}")
        try:
            centroids = None
            if data.get("centroids"):
                raw = base64.b64decode(data["centroids"]["f32le_b64"])
                shape = tuple(data["centroids"]["shape"])
                centroids = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
            return cls(
                round=int(data["round"]),
                embedding_model=data.get("embedding_model"),
                centroids=centroids,
                baseline_dispersion={
                    int(k): float(v) for k, v in data.get("baseline_dispersion", {}).items()
                },
                ratios={int(k): float(v) for k, v in data.get("ratios", {}).items()},
                last_feedback=data.get("last_feedback"),
                history=list(data.get("history", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CurationInputError(f"state: malformed ({exc})") from exc
