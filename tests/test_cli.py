"""`dces curate`: the contract other tools call, over real files and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.formats.atomic import AtomicFiles

# No LM scoring; editing on and made to fire (most centers, a fifth of each one's tokens
# eligible): this module checks that edits travel through the CLI, not the editor's defaults.
FAST = {"score": {"lm_fallback": False}, "ratio": {"static": 0.3},
        "edit": {"enabled": True, "threshold": 0.0, "top_fraction": 0.2}}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dces(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "app.cli", "curate", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_successive_rounds_through_a_state_file(tmp_path: Path, fortunes: list[dict]) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", fortunes[:120])
    ref = write_jsonl(tmp_path / "ref.jsonl", fortunes[600:900])
    state, out, report = tmp_path / "state.json", tmp_path / "out.jsonl", tmp_path / "report.json"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(FAST))
    # Both rounds share these; each adds its own flags.
    common = (inp, "--budget", "20", "--reference", ref, "--state", state, "--output", out,
              "--config", config)  # fmt: skip
    first = dces(*common, "--report", report, "--seed", "3")
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f["id"] for f in fortunes[:120]]
    assert sum(r["selected"] for r in rows) == 20
    assert set(rows[0]) >= {
        "id",
        "selected",
        "role",
        "cluster",
        "distance",
        "text",
        "edits",
        "reason",
        "category",
    }
    edited = [r for r in rows if r["edits"]]
    assert edited, "an enabled editor must change some center samples"
    originals = {f["id"]: f["text"] for f in fortunes}
    for r in edited:
        assert r["role"] == "center"
        for e in r["edits"]:
            assert originals[r["id"]][e["start"] : e["end"]] == e["old"]
    assert json.loads(state.read_text())["round"] == 1
    assert "clusters" in json.loads(report.read_text())

    feedback = tmp_path / "feedback.json"
    feedback.write_text(json.dumps({"heldout_perplexity": 20.0, "generation_entropy": 3.0}))
    second = dces(*common, "--feedback", feedback, "--no-edit")
    assert second.returncode == 0, second.stderr
    assert json.loads(state.read_text())["round"] == 2
    assert not any(json.loads(line)["edits"] for line in out.read_text().splitlines())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "fine text here"}\n{"id": "b", "text": \n', "line 2: malformed JSON"),
        ('{"id": "a"}\n', "line 1: missing 'text'"),
        ('{"id": "a", "text": 5}\n', "line 1: 'text' must be a string"),
        ('{"id": "", "text": "an empty id"}\n',
         "line 1: 'id' must be a non-empty string or an integer, got ''"),
        ('{"id": true, "text": "a boolean id"}\n',
         "line 1: 'id' must be a non-empty string or an integer, got True"),
        ('["a"]\n', "line 1: expected a JSON object"),
        (
            '{"id": "a", "text": "one text"}\n{"id": "a", "text": "two"}\n',
            "line 2: duplicate id 'a' (first on line 1)",
        ),
        ("", "no samples (the file is empty)"),
        ('{"id": "a", "text": "one text", "logprob": NaN, "tokens": 3}\n',
         "line 1: 'logprob' must be a finite number <= 0, got nan"),
        ('{"id": "a", "text": "one text", "logprob": 2.5, "tokens": 3}\n',
         "line 1: 'logprob' must be <= 0 (a log-probability), got 2.5"),
        ('{"id": "a", "text": "one text", "logprob": -2.5, "tokens": 0}\n',
         "line 1: 'tokens' must be an integer >= 1, got 0"),
        ('{"id": "a", "text": "one text", "token_logprobs": [-1.0], "tokens": 2, '
         '"logprob": -1.0}\n', "line 1: 'token_logprobs' has 1 values but 'tokens' is 2"),
    ],
)
def test_bad_input_exits_non_zero_naming_the_line_and_writes_nothing(
    tmp_path: Path, content: str, message: str
) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(content)
    out, state = tmp_path / "out.jsonl", tmp_path / "state.json"
    result = CliRunner().invoke(
        cli, ["curate", str(inp), "--budget", "2", "--output", str(out), "--state", str(state)]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_budget_below_one_is_refused(tmp_path: Path, budget: str) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "a perfectly fine text"}])
    result = CliRunner().invoke(cli, ["curate", str(inp), "--budget", budget])
    assert result.exit_code == 2 and "--budget: must be >= 1" in result.output


def test_a_malformed_state_or_feedback_file_is_refused(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "a perfectly fine text"}])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for flag in ("--state", "--feedback", "--config"):
        result = CliRunner().invoke(cli, ["curate", str(inp), "--budget", "1", flag, str(bad)])
        assert result.exit_code == 2 and "cannot read JSON" in result.output, flag


def test_atomic_files_write_all_or_nothing(tmp_path: Path) -> None:
    files = AtomicFiles()
    files.stage(tmp_path / "a.txt", ["a"])
    files.stage(tmp_path / "b.txt", ["b"])
    assert not (tmp_path / "a.txt").exists()
    files.discard()
    assert list(tmp_path.iterdir()) == []
