"""A real `dces serve` process for the benchmark: free loopback port, temporary data dir.

The DCES strategies talk to it only through ``DCESClient``, the way a training job would. The
process is the `dces` console command's own entry point (``python -m app.cli serve``), so it
works whether or not the package's console script is installed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dces_client import DCESClient

READY_TIMEOUT_S = 300.0
LOG_TAIL = 20
LINE_CHARS = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A started `dces serve` process; ``wait_ready`` blocks until its models are loaded."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def wait_ready(self) -> str:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with DCESClient(self.url) as client:
            while not client.ready():
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"dces serve exited with {self.proc.returncode}; see {self.log_path}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dces serve not ready after {READY_TIMEOUT_S:.0f} s")
                time.sleep(0.5)
        return self.url


@contextmanager
def dces_service(log_path: Path) -> Iterator[Service]:
    """Start the service (it loads its models while the caller prepares); SIGTERM on exit."""
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="dces-bench-") as data_dir, \
            log_path.open("w") as log:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "DCES_LOG_LEVEL": "warning"}
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", data_dir],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            yield Service(proc, f"http://127.0.0.1:{port}", log_path)
        except BaseException:
            log.flush()
            tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
            print("dces serve log (last lines):", *(line[:LINE_CHARS] for line in tail),
                  sep="\n", file=sys.stderr)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
