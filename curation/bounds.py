"""Each config setting's accepted values, declared once as data next to its field.

A :class:`Bound` is both the check and the limit text that error messages, the CLI and the
service's 422 problems quote, so the two cannot drift apart, and :func:`iter_bounds` lists every
setting for tests and docs. A value outside its bound raises :class:`ConfigError`, which carries
the setting's dotted path so that callers never parse the message to find it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import Field, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
_BOUND = "bound"


class ConfigError(ValueError):
    """A config setting that is unknown or outside its bound; ``field`` is its dotted path
    (``config.edit.threshold``), ``message`` says what is wrong and names the limit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # The default rebuilds from ``args`` (one string) and would fail to unpickle.
        return type(self), (self.field, self.message)


@dataclass(frozen=True)
class Bound:
    """The values one setting accepts: a ``kind`` (int, float, bool or str), then for numbers an
    interval, for strings optional ``choices``. Floats must be finite; bools are not numbers."""

    kind: type
    low: float | str | None = None  # a number, or the name of an EARLIER field (r_max >= r_min)
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    low_without: tuple[str, float] | None = None  # (flag, low): the low bound while flag is off

    @property
    def text(self) -> str:
        """The limit as messages state it: ``in [0, 1]``, ``>= min_chars``, ``null or > 0``..."""
        if self.kind is bool:
            text = "true or false"
        elif self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind is str:
            text = "a string"
        elif self.low is not None and self.high is not None:
            text = (f"in {'(' if self.low_open else '['}{self.low}, "
                    f"{self.high}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {self.high}"
        else:
            text = "an integer" if self.kind is int else "a finite number"
        if self.low_without is not None:
            flag, low = self.low_without
            text += f" ({low} allowed without {flag})"
        return f"null or {text}" if self.nullable else text

    def limits(self, section: object) -> tuple[float | None, float | None]:
        """The numeric ``(low, high)`` in effect for ``section``, whose fields a bound may name."""
        low = getattr(section, self.low) if isinstance(self.low, str) else self.low
        if self.low_without is not None and not getattr(section, self.low_without[0]):
            low = self.low_without[1]
        return low, self.high

    def accepts(self, value: object, section: object) -> bool:
        if value is None:
            return self.nullable
        if self.kind is bool or self.kind is str:
            return isinstance(value, self.kind) and (not self.choices or value in self.choices)
        number = int if self.kind is int else int | float
        if isinstance(value, bool) or not isinstance(value, number):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low, high = self.limits(section)
        above_low = low is None or (value > low if self.low_open else value >= low)
        below_high = high is None or (value < high if self.high_open else value <= high)
        return above_low and below_high


def setting(default: T, bound: Bound) -> T:
    """A dataclass field whose bound travels in its metadata: declared once, beside the field."""
    return field(default=default, metadata={_BOUND: bound})


class Section:
    """Base of a config dataclass: ``class X(Section, path="config.x")``. Construction checks
    every field against its bound, in declaration order, so an invalid config never exists."""

    path: ClassVar[str]

    def __init_subclass__(cls, path: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.path = path

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]  # every subclass is a dataclass
            if _is_section(f):
                continue  # checked when it was built
            bound: Bound = f.metadata[_BOUND]  # KeyError: a setting declared without a bound
            value = getattr(self, f.name)
            if not bound.accepts(value, self):
                raise ConfigError(f"{self.path}.{f.name}", f"must be {bound.text}, got {value!r}")


def iter_bounds(cls: type[Section]) -> Iterator[tuple[str, Bound]]:
    """``(dotted path, bound)`` of every setting of ``cls`` and of its nested sections."""
    for f in fields(cls):  # type: ignore[arg-type]
        if _is_section(f):
            yield from iter_bounds(f.default_factory)  # type: ignore[arg-type]
        else:
            yield f"{cls.path}.{f.name}", f.metadata[_BOUND]


def _is_section(f: Field[Any]) -> bool:
    return is_dataclass(f.default_factory)
