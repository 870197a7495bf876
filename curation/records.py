"""Callers' rows in and out: which field holds the text and which the id, and how a round's
decisions join back onto the rows they came from.

Rows are whatever a caller's data holds (a JSONL line, a Parquet or ``datasets`` row). The engine
sees only :class:`~curation.types.Sample` (a string id, a text, the generator's confidence); every
other field stays with the caller and is joined back by position, so nothing but the fields
named in :meth:`Fields.columns` ever has to be held as Python objects.

Rules, the same for every format:

- the id is the ``id`` field as given, a non-empty string or an integer; a row without one (absent
  or null) gets its row number, counted from 0 over the input's rows;
- the text is the ``text`` field; a row without one (absent or null) that has ``messages``, a list
  of ``{"role", "content"}``, is a chat record: its text is :func:`flatten_messages` of them;
- the output row is the input row, its id filled in as above, plus the decision columns
  (:data:`DECISION_COLUMNS`), the text field holding the curated text (edited where the round
  edited it; for a chat record, the flattened text the edits refer to).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from curation.types import (
    GENERATOR_FIELDS,
    CurationInputError,
    Sample,
    SampleDecision,
    check_new_id,
    generator_confidence,
)

MESSAGES_FIELD = "messages"
# What a decision adds to its row besides the text: SampleDecision's fields but the two that
# come from the row (its id, kept as given, and its text, written to the text field).
DECISION_COLUMNS = tuple(
    f.name for f in dataclasses.fields(SampleDecision) if f.name not in ("id", "text")
)
# A sample carries no fields of its row, not even its log-probs (a list per row): they stay in
# the source and are joined back by position. One shared empty mapping, not a dict per sample.
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Fields:
    """The names of the fields that hold each row's text and id."""

    text: str = "text"
    id: str = "id"

    def columns(self) -> tuple[str, ...]:
        """The only fields curation reads; every other one is carried through untouched."""
        return (self.id, self.text, MESSAGES_FIELD, *GENERATOR_FIELDS)


def flatten_messages(messages: object, where: str) -> str:
    """A chat record's text: one ``role: content`` line per message, joined by newlines, e.g.
    ``"user: Hi\\nassistant: Hello!"``. The role stays in the text so that a conversation's
    shape, not only its words, counts when rounds are clustered and compared."""
    if not isinstance(messages, list) or not messages:
        raise CurationInputError(
            f"{where}: '{MESSAGES_FIELD}' must be a non-empty list of {{role, content}}"
        )
    lines = []
    for j, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise CurationInputError(
                f"{where}: '{MESSAGES_FIELD}[{j}]' must have string 'role' and 'content'"
            )
        lines.append(f"{role}: {content}")
    return "\n".join(lines)


def row_id(row: Mapping[str, Any], number: int, fields: Fields) -> Any:
    """The row's id as given, or its row number when it has none."""
    given = row.get(fields.id)
    return number if given is None else given


class SampleReader:
    """Turns a source's rows, in order, into the engine's samples; every error names the row
    (``where``) and the field."""

    def __init__(self, fields: Fields) -> None:
        self.fields = fields
        self.samples: list[Sample] = []
        self._first_seen: dict[str, str] = {}

    def add(self, row: Mapping[str, Any], where: str, here: str) -> None:
        """Read one row; ``here`` names it in a later duplicate's message ("on line 3")."""
        fields = self.fields
        given = row_id(row, len(self.samples), fields)
        if isinstance(given, bool) or not isinstance(given, str | int) or given == "":
            raise CurationInputError(
                f"{where}: '{fields.id}' must be a non-empty string or an integer, got {given!r}"
            )
        text = row.get(fields.text)
        if text is None:
            messages = row.get(MESSAGES_FIELD)
            if messages is None:
                raise CurationInputError(
                    f"{where}: missing '{fields.text}' (and no '{MESSAGES_FIELD}')"
                )
            text = flatten_messages(messages, where)
        if not isinstance(text, str):
            raise CurationInputError(
                f"{where}: '{fields.text}' must be a string, got {type(text).__name__}"
            )
        sample_id = str(given)
        check_new_id(self._first_seen, sample_id, where, here)
        confidence = generator_confidence(row, where)
        self.samples.append(Sample(sample_id, text, _NO_EXTRA, confidence))


def decision_values(decision: SampleDecision, fields: Fields) -> dict[str, Any]:
    """What a decision adds to its row: :data:`DECISION_COLUMNS` and the curated text."""
    values = decision.to_dict()
    del values["id"]
    values[fields.text] = values.pop("text")
    return values


def joined_rows(
    rows: Iterable[Mapping[str, Any]], decisions: Sequence[SampleDecision], fields: Fields
) -> Iterator[dict[str, Any]]:
    """Each input row with its id filled in and its decision's values, in input order."""
    for number, (row, decision) in enumerate(zip(rows, decisions, strict=True)):
        yield {**row, fields.id: row_id(row, number, fields), **decision_values(decision, fields)}
