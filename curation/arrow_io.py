"""Arrow tables in and out of a round, chunk by chunk (the rules are :mod:`curation.records`').

Parquet files and ``datasets`` Datasets are read and written as a stream of ``pyarrow`` tables of
a few tens of thousands of rows: only the columns curation reads become Python objects, and the
decision columns are joined onto each chunk as it passes, so the other columns never do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curation.records import Fields, SampleReader, decision_values
from curation.types import CurationInputError, Sample, SampleDecision

CHUNK_ROWS = 65_536  # rows per chunk: small next to a large file, large enough to be fast

_EDIT = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("old", pa.string()),
                   ("new", pa.string()), ("p", pa.float64())])


def decision_schema(fields: Fields) -> pa.Schema:
    """The decision columns' types, fixed so that every chunk has the same schema (a chunk of
    unselected rows has only nulls in ``role``)."""
    return pa.schema([("selected", pa.bool_()), ("role", pa.string()), ("cluster", pa.int64()),
                      ("distance", pa.float64()), ("edits", pa.list_(_EDIT)),
                      ("reason", pa.string()), (fields.text, pa.string())])


def table_samples(tables: Iterable[pa.Table], fields: Fields, name: str) -> list[Sample]:
    """The samples of a stream of tables (only :meth:`Fields.columns` are needed); errors
    name the row, counted from 0 as in ``dataset[i]``."""
    reader = SampleReader(fields)
    for table in tables:
        for row in table.to_pylist():
            number = len(reader.samples)
            reader.add(row, f"{name} row {number}", f"at row {number}")
    return reader.samples


def table_rows(tables: Iterable[pa.Table]) -> Iterator[dict[str, Any]]:
    """The rows of a stream of tables as dicts, one chunk at a time (for JSONL output)."""
    for table in tables:
        yield from table.to_pylist()


def joined_tables(
    tables: Iterable[pa.Table], decisions: Sequence[SampleDecision], fields: Fields
) -> Iterator[pa.Table]:
    """Each chunk with its ids filled in and the decision columns set (replacing input columns
    of the same names in place, else appended), in input order."""
    schema = decision_schema(fields)
    first = 0
    for table in tables:
        stop = first + table.num_rows
        if stop > len(decisions):
            raise CurationInputError(f"the input has more rows than the {len(decisions)} curated")
        columns = dict(zip(table.column_names, table.columns, strict=True))
        numbers = pa.array(range(first, stop), pa.int64())
        given = columns.get(fields.id)
        columns[fields.id] = (numbers if given is None or pa.types.is_null(given.type)
                              else pc.coalesce(given, numbers.cast(given.type)))
        values = pa.Table.from_pylist(
            [decision_values(d, fields) for d in decisions[first:stop]], schema=schema
        )
        columns.update(zip(values.column_names, values.columns, strict=True))
        yield pa.table(columns)
        first = stop
    if first != len(decisions):
        raise CurationInputError(f"the input has {first} rows, {len(decisions)} were curated")
