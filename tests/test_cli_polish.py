"""`dces` polish: --version, boolean flags in --help, output file modes, progress on stderr."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from app import __version__
from app.cli import cli
from app.curate_command import StageLines
from app.formats.atomic import AtomicFiles

NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}
STAGES = ["embed", "cluster", "select", "edit", "health", "done"]
PROGRESS_LINE = re.compile(r"^dces curate: (\w+) (\d+)%$")


def dces(*args: str | Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """The real command, in a child process with a known umask."""
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, umask=umask)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_version_prints_the_package_version_and_exits_0() -> None:
    done = dces("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"dces {__version__}\n"


def test_help_shows_boolean_options_as_flags_with_their_default() -> None:
    result = CliRunner().invoke(cli, ["curate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    edit_line = next(line for line in result.output.splitlines() if "--no-edit" in line)
    assert "--edit / --no-edit" in edit_line and "[default: " in edit_line
    assert re.search(r"^\s+-q, --quiet\s+\S", result.output, re.MULTILINE)
    top = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert "--version" in top.output and "<bool>" not in top.output


def test_curate_writes_outputs_with_the_umask_mode_and_reports_each_stage(
    tmp_path: Path, fortunes: list[dict]
) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(f) + "\n" for f in fortunes[:16]))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(NO_LM))
    out, report, state = tmp_path / "out.jsonl", tmp_path / "report.json", tmp_path / "state.json"
    out.write_text("old\n")
    out.chmod(0o640)  # an existing target keeps its mode, as with open(target, "w")

    done = dces("curate", inp, "--budget", "4", "--config", config, "--output", out,
                "--report", report, "--state", state)
    assert done.returncode == 0, done.stderr
    assert (mode(out), mode(report), mode(state)) == (0o640, 0o644, 0o644)
    assert sum(json.loads(line)["selected"] for line in out.read_text().splitlines()) == 4

    lines = done.stderr.splitlines()
    progress = [PROGRESS_LINE.match(line) for line in lines[:-1]]
    assert all(progress), lines
    stages = [m.group(1) for m in progress if m]
    assert list(dict.fromkeys(stages)) == STAGES, lines
    percents = [int(m.group(2)) for m in progress if m]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents)
    assert lines[-1].startswith("dces curate: round 0: selected 4/16")


def test_quiet_prints_only_the_summary_and_no_edit_overrides_the_config(
    tmp_path: Path, fortunes: list[dict]
) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(f) + "\n" for f in fortunes[:16]))
    config = tmp_path / "config.json"  # editing on: only --no-edit keeps the LM unloaded
    config.write_text(json.dumps({"edit": {"enabled": True}, "score": {"lm_fallback": False}}))
    done = dces("curate", inp, "--budget", "4", "--config", config, "--no-edit", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "dces curate: round 0: selected 4/16 (budget 4), edit rate 0.00/100 tokens"]
    assert not any(json.loads(line)["edits"] for line in done.stdout.splitlines())


def test_stage_lines_print_each_stage_once_then_at_most_every_interval() -> None:
    stream = io.StringIO()
    lines = StageLines(stream, every_s=3600)
    for stage, fraction in [("embed", 0.0), ("embed", 0.1), ("embed", 0.2), ("cluster", 0.3),
                            ("select", 0.5), ("select", 0.6), ("edit", 0.7), ("health", 0.9)]:
        lines(stage, fraction)
    assert stream.getvalue().splitlines() == [
        "dces curate: embed 0%", "dces curate: cluster 30%", "dces curate: select 50%",
        "dces curate: edit 70%", "dces curate: health 90%"]
    every_call = io.StringIO()
    unthrottled = StageLines(every_call, every_s=0)
    for fraction in (0.0, 0.1, 0.2):
        unthrottled("embed", fraction)
    assert len(every_call.getvalue().splitlines()) == 3


def test_atomic_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        files = AtomicFiles()
        files.stage(tmp_path / "a.jsonl", ["a\n"])
        files.commit()
    finally:
        os.umask(previous)
    assert mode(tmp_path / "a.jsonl") == 0o640
