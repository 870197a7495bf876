"""Hugging Face ``datasets``: curate a ``Dataset`` and get a ``Dataset`` back.

``datasets`` (and ``pyarrow``) are imported when first used, so that importing the engine
stays as light as it was for callers that never touch a Dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from curation.curator import Curator, Progress
from curation.records import DECISION_COLUMNS, Fields
from curation.state import RunState
from curation.types import RoundResult, Sample, SampleDecision

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, Features


def curate_dataset(
    curator: Curator,
    dataset: Dataset,
    budget: int,
    *,
    text_field: str = "text",
    id_field: str = "id",
    state: RunState | None = None,
    reference: Dataset | Sequence[Sample | Mapping[str, Any]] | None = None,
    feedback: Mapping[str, float] | None = None,
    progress: Progress | None = None,
) -> tuple[Dataset, RoundResult, RunState]:
    """One round of :meth:`Curator.curate` over ``dataset``'s rows (the rules of
    :mod:`curation.records`): every row back, in order, with its columns and the decision
    columns; ``.filter(lambda r: r["selected"])`` keeps the selection. A ``reference`` Dataset
    is read with the same fields."""
    from datasets import Dataset

    fields = Fields(text_field, id_field)
    if isinstance(reference, Dataset):
        reference = dataset_samples(reference, fields, "reference")
    samples = dataset_samples(dataset, fields, "dataset")
    result, new_state = curator.curate(samples, budget, state, reference, feedback, progress)
    out = decisions_dataset(dataset_tables(dataset), result.decisions, fields, dataset.features)
    return out, result, new_state


def dataset_samples(dataset: Dataset, fields: Fields, name: str) -> list[Sample]:
    """The samples of ``dataset``, reading only the columns curation needs."""
    from curation.arrow_io import table_samples

    needed = [c for c in fields.columns() if c in dataset.column_names]
    return table_samples(dataset_tables(dataset.select_columns(needed)), fields, name)


def dataset_tables(dataset: Dataset) -> Iterator[pa.Table]:
    """``dataset``'s rows as Arrow chunks, in its order (a ``select``/``shuffle`` included)."""
    from curation.arrow_io import CHUNK_ROWS

    return dataset.with_format("arrow").iter(batch_size=CHUNK_ROWS)


def decisions_dataset(
    tables: Iterable[pa.Table],
    decisions: Sequence[SampleDecision],
    fields: Fields,
    features: Features | None = None,
) -> Dataset:
    """A Dataset of the rows of ``tables`` with the decision columns joined. A carried column
    keeps its feature in ``features`` (a ``ClassLabel`` stays one); the others are inferred."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo
    from datasets import Features as DatasetFeatures

    from curation.arrow_io import joined_tables

    table = pa.concat_tables(joined_tables(tables, decisions, fields))
    inferred = DatasetFeatures.from_arrow_schema(table.schema)
    given = {} if features is None else features
    replaced = {fields.text, *DECISION_COLUMNS}
    out = DatasetFeatures({
        name: given[name] if name in given and name not in replaced else inferred[name]
        for name in table.column_names
    })
    return Dataset(table, info=DatasetInfo(features=out))
