"""`dces serve` refuses to start on a configuration error: exit 2, the reason, no traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from app.store.database import SCHEMA_VERSION, Database

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
