"""Sample ids are unique within a batch: the one check, for the API's batches and the CLI's files.

Each caller names places its own way ("at samples[3]", "on line 4"); the rule and the message
are the same everywhere.
"""

from __future__ import annotations

from curation.types import CurationInputError


def check_new_id(first_seen: dict[str, str], sample_id: str, where: str, here: str) -> None:
    """Record that ``sample_id`` was first seen ``here``; if it was seen before, raise a
    :class:`CurationInputError` at ``where`` that names the first place."""
    first = first_seen.setdefault(sample_id, here)
    if first != here:
        raise CurationInputError(f"{where}: duplicate id {sample_id!r} (first {first})")
