"""The service's floors: every import of ``app/`` and ``curation/`` points down, never up.

``curation`` is the engine and knows nothing of the service. Inside ``app``, each module belongs
to exactly one floor of :data:`FLOORS` and may import its own floor and the ones listed before
it. Imports are read from the source (``ast``), so lazy imports inside functions and
``TYPE_CHECKING`` imports count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A name stands for that module and, unless it is ``app`` itself, everything
# below it. A new module must be placed here, or the test fails.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("shared", ("app", "app.settings", "app.problems", "app.metrics", "app.run_metrics",
                "app.logs", "app.sample_ids")),
    ("store", ("app.store",)),
    ("worker", ("app.worker",)),
    ("service", ("app.service",)),
    ("api", ("app.api",)),
    ("entry", ("app.main", "app.server", "app.cli", "app.curate_command", "app.formats",
               "app.db_command")),
]


def floor_of(module: str) -> int | None:
    for level, (_, names) in enumerate(FLOORS):
        for name in names:
            if module == name or (name != "app" and module.startswith(name + ".")):
                return level
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file; ``from x import y`` yields
    ``x.y`` as well as ``x``, since ``y`` may be a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def test_every_app_module_has_a_floor() -> None:
    lost = [module_name(p) for p in modules("app") if floor_of(module_name(p)) is None]
    assert not lost, f"place these modules on a floor in FLOORS: {lost}"


def test_the_engine_never_imports_the_service() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in modules("curation") for line, name in imports(p)
           if name == "app" or name.startswith("app.")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules("app"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_reaches_a_higher_floor(path: Path) -> None:
    own = floor_of(module_name(path))
    assert own is not None
    bad: dict[int, str] = {}  # by line: ``from x import y`` is reported once
    for line, name in imports(path):
        target = floor_of(name) if name == "app" or name.startswith("app.") else None
        if target is not None and target > own:
            bad.setdefault(line, f"line {line}: {name} ({FLOORS[target][0]}) from the "
                                 f"{FLOORS[own][0]} floor")
    assert not bad, "\n".join(bad.values())
