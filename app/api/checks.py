"""Request checks that name the field and the limit: sample batches against the settings'
limits, strings that no database or tokenizer can hold, feedback metrics, duplicate ids.

They run in the routes (and :func:`check_params` as a dependency of every /v1 route), because
the limits come from the settings while pydantic constraints are fixed at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from starlette.requests import Request

from app.problems import InvalidInput, LimitExceeded
from app.sample_ids import check_new_id
from app.settings import Settings


def check_samples(samples: Sequence[Any], settings: Settings, field: str = "samples") -> None:
    """Count, ids, texts and extra fields of a batch against the settings; the 422 names each
    offender."""
    limit = settings.max_samples_per_request
    if len(samples) > limit:
        raise LimitExceeded(
            f"{field}: {len(samples)} samples exceed max_samples_per_request = {limit} "
            "(send larger rounds as an upload: the client does this for you)",
            errors=[{"field": field, "message": f"at most {limit} samples", "limit": limit}],
        )
    errors: list[dict[str, Any]] = []
    for i, sample in enumerate(samples):
        for name in ("id", "text"):
            problem = _unstorable(getattr(sample, name))
            if problem:
                errors.append({"field": f"{field}[{i}].{name}", "message": problem})
        errors.extend(islice(_unstorable_strings(sample.model_extra or {}, f"{field}[{i}]"), 20))
        if len(sample.id) > settings.max_id_chars:
            errors.append({
                "field": f"{field}[{i}].id",
                "message": f"{len(sample.id)} characters exceed max_id_chars",
                "limit": settings.max_id_chars,
            })
        if len(sample.text) > settings.max_text_chars:
            errors.append({
                "field": f"{field}[{i}].text",
                "message": f"{len(sample.text)} characters exceed max_text_chars",
                "limit": settings.max_text_chars,
            })
        if len(errors) >= 20:
            break
    if errors:
        raise LimitExceeded(_summary(errors), errors=errors)


def check_strings(value: Any, field: str) -> None:
    """A 422 naming each string nested in ``value`` (a run's config, a state, an upload id, a
    run's name) that cannot be stored or sent back: keys included, since errors and stored JSON
    repeat them. Pydantic refuses a lone surrogate in a typed string field, but not a NUL."""
    errors = list(islice(_unstorable_strings(value, field), 20))
    if errors:
        raise InvalidInput(_summary(errors), errors=errors)


async def check_params(request: Request) -> None:
    """A 422 naming each path or query parameter that cannot be stored, before any route looks
    it up: PostgreSQL text cannot hold a NUL, so a lookup by such an id would fail, not miss.
    Fields are named as FastAPI names them (``path.run_id``, ``query.run_id``)."""
    errors = list(_unstorable_strings(dict(request.path_params), "path"))
    for key, value in request.query_params.multi_items():
        errors.extend(_unstorable_strings({key: value}, "query"))
    if errors:
        raise InvalidInput(_summary(errors), errors=errors[:20])


def _summary(errors: Sequence[Mapping[str, Any]]) -> str:
    first = errors[0]
    bound = f" = {first['limit']}" if "limit" in first else ""
    return (f"{first['field']}: {first['message']}{bound}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


def check_unique_ids(samples: Sequence[Any], field: str = "samples") -> None:
    """Duplicate ids in one batch are a 422 that names both positions."""
    first_seen: dict[str, str] = {}
    for i, sample in enumerate(samples):
        check_new_id(first_seen, sample.id, f"{field}[{i}].id", f"at {field}[{i}]")


def check_metrics(metrics: Mapping[str, float] | None, settings: Settings, field: str) -> None:
    """At most ``max_feedback_metrics`` training metrics per feedback."""
    limit = settings.max_feedback_metrics
    if metrics is not None and len(metrics) > limit:
        raise LimitExceeded(
            f"{field}: {len(metrics)} metrics exceed max_feedback_metrics = {limit}",
            errors=[{"field": field, "message": "too many metrics", "limit": limit}])


def _unstorable(value: str) -> str | None:
    """NUL and lone surrogates (JSON allows both) break tokenizers and SQL text columns."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def _unstorable_strings(value: Any, field: str) -> Iterator[dict[str, str]]:
    """Each string nested in ``value``, keys included, that :func:`_unstorable` refuses, as an
    error naming its field (a bad key names the object holding it: the key itself can't be
    quoted). Bodies nest at most :data:`app.api.body_limit.MAX_JSON_DEPTH` deep, which bounds
    the recursion."""
    if isinstance(value, str):
        if problem := _unstorable(value):
            yield {"field": field, "message": problem}
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if problem := _unstorable(key):
                yield {"field": field, "message": f"a key {problem}"}
            else:
                yield from _unstorable_strings(item, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unstorable_strings(item, f"{field}[{i}]")
