"""`dces serve` at start: it refuses a configuration error (exit 2, the reason, no traceback),
and without an LM it gets ready without loading the libraries only an LM or a reference needs."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.store.database import SCHEMA_VERSION, Database
from curation.device import cuda_available

from .conftest import DCESServer


def serve_fails(server: DCESServer) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "app.cli", "serve"], env=server.env(),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def test_bad_settings_exit_2_naming_each_variable(tmp_path: Path) -> None:
    code, err = serve_fails(DCESServer(tmp_path, queue_size=0, shutdown_grace_s=-1))
    assert code == 2 and "Traceback" not in err, err
    assert "dces serve: invalid settings" in err
    assert "DCES_QUEUE_SIZE: Input should be greater than or equal to 1" in err
    assert "DCES_SHUTDOWN_GRACE_S: Input should be greater than or equal to 0" in err


def test_a_database_from_a_newer_dces_is_refused_and_left_alone(tmp_path: Path) -> None:
    server = DCESServer(tmp_path)
    Database(f"sqlite:///{server.db_path}").close()
    with sqlite3.connect(server.db_path) as con:
        con.execute("UPDATE dces_schema SET version = ?", (SCHEMA_VERSION + 7,))
    code, err = serve_fails(server)
    assert code == 2 and "Traceback" not in err, err
    assert f"schema version {SCHEMA_VERSION + 7} was written by a newer DCES" in err
    with sqlite3.connect(server.db_path) as con:
        assert con.execute("SELECT version FROM dces_schema").fetchall() == [(SCHEMA_VERSION + 7,)]


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU: torch is asked about it")
def test_a_server_without_an_lm_gets_ready_without_torch_transformers_scipy_or_sklearn(
        tmp_path: Path) -> None:
    """What `dces serve` imports and builds before it is ready, in a fresh interpreter: its
    module, the app (``create_app``: database, stores, routes) and the model loader with its
    warm-up round. Each of these libraries took 0.3-1.7 CPU-s of every start, and the suite
    starts ~25 servers."""
    code = ("import sys; import app.server; from app.main import create_app; "
            "from app.settings import Settings; from app.worker.models import load_models; "
            "settings = Settings(); create_app(settings); load_models(settings); "
            "print(sorted({'torch', 'transformers', 'scipy', 'sklearn'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=DCESServer(tmp_path, preload_lm=False).env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
