"""A full disk under a real ``dces serve``: the data directory is a 24 MiB tmpfs.

Writes answer 503 with Retry-After and name the way out, ``/readyz`` says the disk is full, and a
run can still be deleted (the disk reserve is released for it), after which writes work again.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import DCESServer

SIZE_MB = 24


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_503_with_retry_after_and_a_run_can_be_deleted(
        small_disk: Path, tmp_path: Path, problem: Callable[..., Any]) -> None:
    server = DCESServer(small_disk, storage_reserve_mb=4)
    server.log_path = tmp_path / "server.log"  # the log must not fill the small disk
    server.start()
    try:
        reserve = small_disk / ".dces-disk-reserve"
        assert reserve.stat().st_size == 4 << 20
        http = server.http()
        keep = http.post("/v1/runs", json={"name": "keep"}).json()["id"]
        big = http.post("/v1/runs", json={"name": "big"}).json()["id"]
        text = "x" * 20_000
        refused = None
        for batch in range(40):
            samples = [{"id": f"b{batch}-{i}", "text": f"{batch} {i} {text}"}
                       for i in range(100)]
            answer = http.post(f"/v1/runs/{big}/reference", json={"samples": samples})
            if answer.status_code != 200:
                refused = answer
                break
        assert refused is not None, "24 MiB should not hold 80 MB of reference text"
        body = problem(refused, 503, "disk is full")
        assert body["type"] == "urn:dces:problem:storage-full"
        assert "DELETE /v1/runs/{id}" in body["detail"]
        assert refused.headers["retry-after"] == "30"
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "storage-full"
        assert not reserve.exists(), "the reserve is released for deletes"
        assert http.get(f"/v1/runs/{keep}").status_code == 200  # reads still work

        assert http.delete(f"/v1/runs/{big}").status_code == 204
        assert http.get("/readyz").status_code == 200
        assert http.post(f"/v1/runs/{keep}/reference", json={"samples": [
            {"id": "after", "text": "room again after the delete"}]}).status_code == 200
    finally:
        server.stop()
