"""The CLI's data in and out: JSONL (stdin and stdout too), Parquet, ``datasets`` directories.

Every input offers its samples (only the fields curation reads, see :mod:`curation.records`)
and its rows again for the output: as dicts for JSONL, as Arrow chunks for Parquet and
Datasets. The format modules are imported when used, so that a JSONL round (and ``--help``)
never loads pyarrow or ``datasets``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from app.formats.atomic import AtomicFiles
    from curation.records import Fields
    from curation.types import Sample, SampleDecision

STDIO = Path("-")  # stdin as the input, stdout as the output


class Format(StrEnum):
    JSONL = "jsonl"
    PARQUET = "parquet"
    DATASET = "dataset"  # a directory of Dataset.save_to_disk


# Any other file name is JSONL (as before there were formats); a directory is a Dataset.
_SUFFIXES = {".jsonl": Format.JSONL, ".ndjson": Format.JSONL,
             ".parquet": Format.PARQUET, ".pq": Format.PARQUET}


class Input(Protocol):
    name: str
    samples: list[Sample]

    def rows(self) -> Iterator[dict[str, Any]]:
        """The input's rows again, in order, as dicts."""

    def tables(self) -> Iterator[pa.Table]:
        """The input's rows again, in order, as Arrow chunks."""


def input_format(path: Path) -> Format:
    if path == STDIO:
        return Format.JSONL
    if path.is_dir():
        return Format.DATASET
    return _SUFFIXES.get(path.suffix.lower(), Format.JSONL)


def read_input(path: Path, fields: Fields) -> Input:
    """Read ``path``'s samples (a bad row is a CurationInputError naming it and the field)."""
    fmt = input_format(path)
    if fmt is Format.PARQUET:
        from app.formats.parquet import ParquetInput

        return ParquetInput(path, fields)
    if fmt is Format.DATASET:
        from app.formats.hf_dataset import DatasetInput

        return DatasetInput(path, fields)
    from app.formats.jsonl import JsonlInput

    return JsonlInput(path, fields)


def output_format(output: Path | None, chosen: Format | None, input: Format) -> Format:
    """``--output-format``, else the output's extension, else the input's format. stdout
    (``output`` None) takes JSONL only."""
    from curation.types import CurationInputError

    if output is None:
        if chosen not in (None, Format.JSONL):
            raise CurationInputError(f"--output-format {chosen}: needs an --output file "
                                     "(stdout takes JSONL)")
        return Format.JSONL
    return chosen or _SUFFIXES.get(output.suffix.lower()) or input


def stage_output(
    files: AtomicFiles,
    target: Path,
    fmt: Format,
    source: Input,
    decisions: Sequence[SampleDecision],
    fields: Fields,
) -> None:
    """Stage ``source``'s rows joined with their decisions at ``target``, in ``fmt``."""
    if fmt is Format.JSONL:
        files.stage(target, output_lines(source, decisions, fields))
    elif fmt is Format.PARQUET:
        from app.formats.parquet import write_parquet
        from curation.arrow_io import joined_tables

        files.stage_written(
            target, lambda path: write_parquet(path, joined_tables(source.tables(), decisions,
                                                                   fields)))
    else:
        from app.formats.hf_dataset import DatasetInput, write_dataset

        features = source.dataset.features if isinstance(source, DatasetInput) else None
        files.stage_written(
            target, lambda path: write_dataset(path, source.tables(), decisions, fields,
                                               features), directory=True)


def output_lines(
    source: Input, decisions: Sequence[SampleDecision], fields: Fields
) -> Iterator[str]:
    """The JSONL output (for a file or stdout)."""
    from app.formats.jsonl import jsonl_lines

    return jsonl_lines(source.rows(), decisions, fields)
