"""Shared fixtures: the real bundled embedding model and the shipped real-text sample."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning, as under `dces serve` (app/server.py sets it
# before torch loads, and so must this, the first file pytest imports): the in-process service
# tests run the app's event loop, its model worker and the test itself in this one process,
# where spinning threads take the cores from the others (on a shared 2-core machine they slowed
# the engine tests too, by half).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PATH = ROOT / "examples" / "fortunes-sample.jsonl"


@pytest.fixture(scope="session")
def fortunes() -> list[dict[str, Any]]:
    """~1,500 real fortunes (Debian `fortunes`), 40 per category, with a `category` field."""
    return [json.loads(line) for line in SAMPLE_PATH.read_text().splitlines()]


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from curation.embed import load_embedder

    return load_embedder()

# The longest test files (their --durations sums in bench/results/test-suite.md, the runs of
# 8a0a23d), longest first, started first:
# scripts/test.sh runs one file per worker (pytest-xdist, --dist loadfile, in this order with
# --no-loadscope-reorder; xdist's own order, most tests first, started the longest files last),
# and a long file handed out last leaves the other workers idle while it runs. Only the order of
# files changes, never what a test sees.
LONG_FILES = (
    "tests/test_ray_executor.py",
    "tests/service/test_restart.py",
    "tests/service/test_trainer_example.py",
    "tests/service/test_schemathesis.py",
    "tests/test_embed_backends.py",
    "tests/service/test_worker.py",
    "tests/service/test_api.py",
    "tests/service/test_ui.py",
    "tests/service/test_training_callback.py",
    "tests/service/test_replicas.py",
    "tests/test_cli.py",
    "tests/service/test_migrations.py",
)


@pytest.hookimpl(trylast=True)  # after pytest has grouped each file's tests by fixture
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONG_FILES)))
