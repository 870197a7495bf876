"""How values become column text and back: compact JSON, content hashes, samples as columns.

A sample is stored as ``sample_id`` + ``text`` + ``extra_json`` (every other field the caller
sent), so lookups by id need no JSON, and reads give back exactly what was sent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.store.records import SampleJson
from app.store.tables import ReferenceRow, UploadSampleRow

IN_CHUNK = 500  # ids per IN (...) clause, well under every database's parameter limit


def dumps(value: Any) -> str:
    """Compact ASCII JSON (storable in any database, whatever the text holds); NaN/inf (e.g. an
    undefined metric) become null instead of invalid JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"))


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def content_hash(value: Any) -> str:
    """SHA-256 of canonical JSON: equal requests hash equally whatever their key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def row_sample(row: ReferenceRow | UploadSampleRow) -> SampleJson:
    return {**(loads(row.extra_json) or {}), "id": row.sample_id, "text": row.text}


def sample_columns(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a sample is stored in (the row's other columns are the caller's)."""
    extra = {k: v for k, v in sample.items() if k not in ("id", "text")}
    return {"sample_id": sample["id"], "text": sample["text"],
            "extra_json": dumps(extra) if extra else None}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
