"""DCES curation engine: embed, cluster, measure, select and edit synthetic training samples.

A plain library (numpy, torch, faiss): no HTTP, no database. Start with :class:`Curator`;
:func:`curate_dataset` curates a Hugging Face ``Dataset``.
"""

from curation.config import CurationConfig
from curation.curator import Curator
from curation.datasets_io import curate_dataset
from curation.state import RunState
from curation.types import (
    ClusterReport,
    CurationInputError,
    Edit,
    EditStats,
    RatioDecision,
    RoundResult,
    Sample,
    SampleDecision,
)

__all__ = [
    "ClusterReport",
    "CurationConfig",
    "CurationInputError",
    "Curator",
    "Edit",
    "EditStats",
    "RatioDecision",
    "RoundResult",
    "RunState",
    "Sample",
    "SampleDecision",
    "curate_dataset",
]
