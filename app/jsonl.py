"""Reading and atomically writing the CLI's JSON and JSONL files."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.sample_ids import check_new_id
from curation.types import CurationInputError, generator_confidence


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file as ``{"id": str, "text": str, ...}``; errors name the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CurationInputError(f"{path}: cannot read ({exc})") from exc
    samples: list[dict[str, Any]] = []
    first_line: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CurationInputError(f"{where}: malformed JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise CurationInputError(f"{where}: expected a JSON object, got {type(item).__name__}")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise CurationInputError(f"{where}: 'id' must be a non-empty string")
        if "text" not in item:
            raise CurationInputError(f"{where}: missing 'text'")
        if not isinstance(item["text"], str):
            raise CurationInputError(f"{where}: 'text' must be a string")
        check_new_id(first_line, item["id"], where, f"on line {number}")
        generator_confidence(item, where)  # bad log-probs are named by their line here
        samples.append(item)
    if not samples:
        raise CurationInputError(f"{path}: no samples (the file is empty)")
    return samples


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurationInputError(f"{what} {path}: cannot read JSON ({exc})") from exc


class AtomicFiles:
    """Stage several files, then move them all into place: either every file is written or
    none is touched (a crash leaves only temp files beside the targets).

    A file gets the mode a plain ``open(target, "w")`` would give it (an existing target's, else
    ``0o666 & ~umask``), not the temp file's private 0o600."""

    def __init__(self) -> None:
        self._staged: list[tuple[str, Path]] = []
        umask = os.umask(0)  # the only way to read it; set straight back
        os.umask(umask)
        self._new_mode = 0o666 & ~umask

    def stage(self, target: Path, lines: Iterable[str]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = self._new_mode
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._staged.append((tmp, target))

    def commit(self) -> None:
        for tmp, target in self._staged:
            os.replace(tmp, target)
        self._staged.clear()

    def discard(self) -> None:
        for tmp, _ in self._staged:
            Path(tmp).unlink(missing_ok=True)
        self._staged.clear()
