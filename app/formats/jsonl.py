"""JSONL in and out, and the JSON documents the CLI reads (state, feedback, config).

A file is read twice, once for the samples and once for the output, rather than held as dicts;
stdin, which cannot be read twice, is held as its lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.formats import STDIO
from curation.records import Fields, SampleReader, joined_rows
from curation.types import CurationInputError, SampleDecision

if TYPE_CHECKING:
    import pyarrow as pa


class JsonlInput:
    """A JSONL file, or stdin for ``-``: one JSON object per line, blank lines skipped."""

    def __init__(self, path: Path, fields: Fields) -> None:
        self.path = path
        self.name = "stdin" if path == STDIO else str(path)
        self._held = _read_stdin() if path == STDIO else None
        reader = SampleReader(fields)
        for number, row in self._numbered_rows():
            reader.add(row, f"{self.name} line {number}", f"on line {number}")
        if not reader.samples:
            raise CurationInputError(f"{self.name}: no samples (the file is empty)")
        self.samples = reader.samples

    def rows(self) -> Iterator[dict[str, Any]]:
        return (row for _, row in self._numbered_rows())

    def tables(self) -> Iterator[pa.Table]:
        """The rows as one Arrow table (for Parquet or Dataset output): a column per field of
        any row, its type inferred from all of its values."""
        import pyarrow as pa

        rows = list(self.rows())
        names = dict.fromkeys(name for row in rows for name in row)
        try:
            table = pa.table({name: [row.get(name) for row in rows] for name in names})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise CurationInputError(f"{self.name}: cannot convert to a table ({exc})") from exc
        yield table

    def _open(self) -> AbstractContextManager[Iterable[str]]:
        return nullcontext(self._held) if self._held is not None else self.path.open(
            encoding="utf-8")

    def _numbered_rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            with self._open() as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        yield number, _parse(line, f"{self.name} line {number}")
        except (OSError, UnicodeDecodeError) as exc:
            raise CurationInputError(f"{self.name}: cannot read ({exc})") from exc


def jsonl_lines(
    rows: Iterable[dict[str, Any]], decisions: Sequence[SampleDecision], fields: Fields
) -> Iterator[str]:
    """The output lines; values JSON has no type for (a Parquet timestamp) are written as
    strings."""
    for row in joined_rows(rows, decisions, fields):
        yield json.dumps(row, ensure_ascii=False, default=str) + "\n"


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurationInputError(f"{what} {path}: cannot read JSON ({exc})") from exc


def _read_stdin() -> list[str]:
    try:
        return list(sys.stdin)
    except (OSError, UnicodeDecodeError) as exc:
        raise CurationInputError(f"stdin: cannot read ({exc})") from exc


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CurationInputError(f"{where}: malformed JSON ({exc.msg})") from exc
    if not isinstance(item, dict):
        raise CurationInputError(f"{where}: expected a JSON object, got {type(item).__name__}")
    return item
