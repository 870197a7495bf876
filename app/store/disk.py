"""A full disk: how it is recognised, and the reserve that lets a client free space.

SQLite needs free space to delete rows too (the write-ahead log grows before pages are freed),
so on a full disk a client could not even delete a run to make room. The service keeps a reserve
file beside the SQLite database: the first disk-full error releases it, which gives a delete the
space it needs, and it comes back once a write succeeds with room to spare. While the disk is
full, ``/readyz`` says so (503) and writes answer 503 with ``Retry-After``
(:class:`app.problems.StorageFull`). On PostgreSQL the disk is the server's: the error is
recognised (SQLSTATE 53100), there is no reserve to release.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger("dces.store")

RESERVE_NAME = ".dces-disk-reserve"
_CHUNK = 1 << 20


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLite's "database or disk is full", PostgreSQL's disk_full (53100) and ENOSPC,
    raw or wrapped by SQLAlchemy."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) == "53100" or getattr(orig, "pgcode", None) == "53100":
        return True
    if isinstance(orig, OSError) and orig.errno == errno.ENOSPC:
        return True
    message = str(orig).lower()
    return "database or disk is full" in message or "no space left on device" in message


class DiskGuard:
    """Tracks whether the database's disk is full, and keeps the reserve (``directory`` None:
    no reserve, e.g. PostgreSQL)."""

    def __init__(self, directory: Path | None, reserve_bytes: int) -> None:
        self.reserve = None if directory is None or reserve_bytes <= 0 else (
            directory / RESERVE_NAME)
        self.reserve_bytes = reserve_bytes
        self.full_since: float | None = None
        self.ensure_reserve()

    @property
    def full(self) -> bool:
        return self.full_since is not None

    def on_full(self) -> None:
        """A write failed for lack of space: release the reserve so that a delete can run."""
        if self.full_since is None:
            self.full_since = time.monotonic()
            log.error("the database's disk is full", extra={"reserve": str(self.reserve)})
        if self.reserve is not None and self.reserve.exists():
            self.reserve.unlink()
            log.warning("disk reserve released so that runs can be deleted",
                        extra={"bytes": self.reserve_bytes})

    def on_write(self) -> None:
        """A write committed: the disk has room again; the reserve comes back when it fits."""
        if self.full_since is not None:
            self.full_since = None
            log.info("the database's disk has room again")
        if self.reserve is not None and not self.reserve.exists():
            self.ensure_reserve()

    def ensure_reserve(self) -> None:
        """Write the reserve file when it is missing and twice its size is free."""
        if self.reserve is None or self.reserve.exists():
            return
        partial = self.reserve.with_name(RESERVE_NAME + ".partial")
        try:
            if shutil.disk_usage(self.reserve.parent).free < 2 * self.reserve_bytes:
                return
            with partial.open("wb") as out:
                for written in range(0, self.reserve_bytes, _CHUNK):
                    out.write(b"\0" * min(_CHUNK, self.reserve_bytes - written))
            partial.rename(self.reserve)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            log.warning("could not write the disk reserve", extra={"error": str(exc)})
