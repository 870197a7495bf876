"""Writing all of a command's outputs or none of them."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


class AtomicFiles:
    """Stage several files (or directories), then move them all into place: either every output
    is written or none is touched (a crash leaves only temp files beside the targets).

    An output gets the mode a plain ``open(target, "w")`` (or ``mkdir``) would give it: an
    existing target's, else ``0o666 & ~umask`` (``0o777`` for a directory), not the temp
    file's private 0o600."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        umask = os.umask(0)  # the only way to read it; set straight back
        os.umask(umask)
        self._umask = umask

    def stage(self, target: Path, lines: Iterable[str]) -> None:
        """Stage a text file of ``lines``."""

        def write(path: Path) -> None:
            with path.open("w", encoding="utf-8") as fh:
                fh.writelines(lines)

        self.stage_written(target, write)

    def stage_written(
        self, target: Path, write: Callable[[Path], None], *, directory: bool = False
    ) -> None:
        """Stage what ``write`` writes at the path it is given: an empty file, or an empty
        directory when ``directory`` (for writers that open their own files)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = (0o777 if directory else 0o666) & ~self._umask
        prefix = f".{target.name}."
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
            os.close(fd)
            tmp = Path(name)
        self._staged.append((tmp, target))  # first, so that a failed write is discarded too
        write(tmp)
        for path in tmp.rglob("*") if directory else [tmp]:
            if path.is_file():
                _fsync(path)
        tmp.chmod(mode)

    def commit(self) -> None:
        for tmp, target in self._staged:
            if tmp.is_dir() and target.is_dir():  # os.replace cannot replace a full directory
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                os.replace(target, old / target.name)
                os.replace(tmp, target)
                shutil.rmtree(old)
            else:
                os.replace(tmp, target)
        self._staged.clear()

    def discard(self) -> None:
        for tmp, _ in self._staged:
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink(missing_ok=True)
        self._staged.clear()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
