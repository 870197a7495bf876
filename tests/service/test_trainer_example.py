"""``examples/trainer.py`` against a real ``dces serve``: a narrowing generator is caught.

The example's generator drifts toward one topic (a quarter of the categories by its second
narrowed round); the mode-loss test must say so by then, naming the lost modes with an example
of each, and must not alarm while the generator still writes everything.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import DCESServer

REPO = Path(__file__).resolve().parents[2]


def test_the_example_trainer_ends_with_a_mode_loss_alert(
        start_server: Callable[..., DCESServer]) -> None:
    server = start_server()
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "trainer.py"), "--url", server.url],
        cwd=REPO, env=server.env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    rounds = re.findall(r"^round (\d+): .* alerts (\d+)$", done.stdout, re.MULTILINE)
    assert [int(n) for n, _ in rounds] == [0, 1, 2]
    assert int(rounds[0][1]) == 0, "no alert while the generator still writes every category"
    assert int(rounds[2][1]) >= 1, done.stdout
    alerts = re.findall(r"^  alert: (.*)$", done.stdout, re.MULTILINE)
    lost = [a for a in alerts if a.startswith("candidates have lost")]
    assert lost, done.stdout
    assert re.search(r"cluster \d+ \([\d.]+% of the reference; \d+ candidates? where \d+ were "
                     r"expected; e\.g\. “.+”\)", lost[0]), lost[0]
    assert re.search(r"^trainer: run \S+, 3 rounds, .*, [1-9]\d* alerts$", done.stdout,
                     re.MULTILINE)
