"""Parquet in and out, by record batches: the file is read twice (the columns curation needs,
then every column for the output), and written one joined chunk at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.arrow_io import CHUNK_ROWS, table_rows, table_samples
from curation.records import Fields
from curation.types import CurationInputError


class ParquetInput:
    """A Parquet file (stdin cannot be one: its footer, at the end, is read first)."""

    def __init__(self, path: Path, fields: Fields) -> None:
        self.path = path
        self.name = str(path)
        try:
            self._file = pq.ParquetFile(path)
            names = self._file.schema_arrow.names
            needed = [c for c in fields.columns() if c in names]
            self.samples = table_samples(self.tables(needed), fields, self.name)
        except (OSError, pa.ArrowException) as exc:
            raise CurationInputError(f"{path}: cannot read Parquet ({exc})") from exc
        if not self.samples:
            raise CurationInputError(f"{path}: no samples (the file has no rows)")

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        for batch in self._file.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            yield pa.Table.from_batches([batch])

    def rows(self) -> Iterator[dict[str, Any]]:
        return table_rows(self.tables())


def write_parquet(path: Path, tables: Iterable[pa.Table]) -> None:
    """Write ``tables`` (all of one schema) to ``path``, one row group or more per table."""
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
