"""Sample ids are unique within a batch: the engine's one check,
:func:`curation.types.check_new_id`, for the API's batches and the CLI's files."""

from __future__ import annotations

from curation.types import check_new_id

__all__ = ["check_new_id"]
