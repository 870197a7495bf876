"""Hugging Face ``datasets`` directories (``Dataset.save_to_disk``) in and out.

A saved Dataset is memory-mapped Arrow: reading it for the output costs no copy, and the
output Dataset is its columns plus the decision columns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from curation.arrow_io import table_rows
from curation.datasets_io import dataset_samples, dataset_tables, decisions_dataset
from curation.records import Fields
from curation.types import CurationInputError, SampleDecision


class DatasetInput:
    """A directory written by ``Dataset.save_to_disk`` (one split, not a ``DatasetDict``)."""

    def __init__(self, path: Path, fields: Fields) -> None:
        self.path = path
        self.name = str(path)
        datasets.disable_progress_bars()  # the command's own lines are its progress
        try:
            loaded = datasets.load_from_disk(str(path))
        except (OSError, ValueError) as exc:
            raise CurationInputError(f"{path}: cannot load a datasets directory ({exc})") from exc
        if not isinstance(loaded, datasets.Dataset):
            raise CurationInputError(
                f"{path}: a DatasetDict ({', '.join(loaded)}); give one split's directory"
            )
        self.dataset = loaded
        self.samples = dataset_samples(loaded, fields, self.name)
        if not self.samples:
            raise CurationInputError(f"{path}: no samples (the dataset has no rows)")

    def tables(self) -> Iterator[pa.Table]:
        return dataset_tables(self.dataset)

    def rows(self) -> Iterator[dict[str, Any]]:
        return table_rows(self.tables())


def write_dataset(
    path: Path,
    tables: Iterable[pa.Table],
    decisions: Sequence[SampleDecision],
    fields: Fields,
    features: datasets.Features | None,
) -> None:
    datasets.disable_progress_bars()
    decisions_dataset(tables, decisions, fields, features).save_to_disk(str(path))
