"""Data in and out: Parquet, `datasets` directories and Datasets, chat records, stdin/stdout,
other text and id fields; through the real `dces curate` and the library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.formats import Format, read_input, stage_output
from app.formats.atomic import AtomicFiles
from curation import CurationConfig, Curator, Edit, SampleDecision, curate_dataset
from curation.records import DECISION_COLUMNS, Fields, decision_values, flatten_messages
from curation.types import CurationInputError

NO_LM = {"score": {"lm_fallback": False}, "edit": {"enabled": False}}


def dces(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "curate", *map(str, args)],
                          input=stdin, capture_output=True, text=True, timeout=300)


def no_lm_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(NO_LM))
    return path


def test_parquet_in_parquet_out_keeps_every_column_and_integer_ids(
    tmp_path: Path, fortunes: list[dict[str, Any]]
) -> None:
    n = 60
    ids: list[int | None] = [1000 + i for i in range(n)]
    ids[5] = None  # no id: the row number
    table = pa.table({
        "id": pa.array(ids, pa.int64()),
        "content": [f["text"] for f in fortunes[:n]],
        "category": [f["category"] for f in fortunes[:n]],
        "tags": [[f["category"], "fortune"] for f in fortunes[:n]],
        "text": [f"not the text {i}" for i in range(n)],  # curated from --text-field content
    })
    inp, out = tmp_path / "data.parquet", tmp_path / "out.parquet"
    pq.write_table(table, inp, row_group_size=16)
    done = dces(inp, "--text-field", "content", "--budget", "10", "--output", out,
                "--config", no_lm_config(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    result = pq.read_table(out)
    assert result.column_names == [*table.column_names, *DECISION_COLUMNS]
    assert result.column("id").to_pylist() == [*ids[:5], 5, *ids[6:]]
    for name in ("content", "category", "tags", "text"):
        assert result.schema.field(name).type == table.schema.field(name).type
        assert result.column(name).to_pylist() == table.column(name).to_pylist()
    rows = result.to_pylist()
    assert sum(r["selected"] for r in rows) == 10
    assert {r["role"] for r in rows if r["selected"]} <= {"center", "edge"}
    assert all(r["reason"] is None for r in rows if r["selected"])


def test_a_saved_dataset_through_the_cli_replaces_its_output_directory(
    tmp_path: Path, fortunes: list[dict[str, Any]]
) -> None:
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["short", "long"])})
    texts = [f["text"] for f in fortunes[:40]]
    saved = datasets.Dataset.from_dict(
        {"text": texts, "label": [int(len(t) > 80) for t in texts]}, features=features
    )
    inp, out = tmp_path / "in_ds", tmp_path / "out_ds"
    saved.save_to_disk(str(inp))
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier round")
    done = dces(inp, "--budget", "8", "--output", out, "--config", no_lm_config(tmp_path),
                "--quiet")
    assert done.returncode == 0, done.stderr
    assert not (out / "stale.txt").exists()
    curated = datasets.load_from_disk(str(out))
    assert isinstance(curated, datasets.Dataset)
    assert curated.features["label"] == features["label"]
    assert curated["text"] == texts and curated["label"] == saved["label"]
    assert curated["id"] == list(range(40))
    assert sum(curated["selected"]) == 8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_dataset_through_the_library(embedder: Any, fortunes: list[dict[str, Any]]) -> None:
    dataset = datasets.Dataset.from_dict({
        "uid": [f"f{i}" for i in range(60)],
        "body": [f["text"] for f in fortunes[:60]],
        "category": [f["category"] for f in fortunes[:60]],
    }).shuffle(seed=0)  # an indices mapping: rows come back in the shuffled order
    reference = datasets.Dataset.from_dict({"body": [f["text"] for f in fortunes[600:700]]})
    curator = Curator(CurationConfig.from_dict(NO_LM), embedder=embedder)
    out, result, state = curate_dataset(curator, dataset, 12, text_field="body", id_field="uid",
                                        reference=reference)
    assert out.column_names == ["uid", "body", "category", *DECISION_COLUMNS]
    assert out["uid"] == dataset["uid"] and out["body"] == dataset["body"]
    assert [d.id for d in result.decisions] == dataset["uid"]
    selected = out.filter(lambda row: row["selected"])
    assert len(selected) == result.selected == 12
    assert state.round == 1


def test_chat_records_from_stdin_to_stdout(tmp_path: Path, fortunes: list[dict[str, Any]]) -> None:
    rows: list[dict[str, Any]] = []
    for i, f in enumerate(fortunes[:40]):
        if i % 2:
            rows.append({"id": i, "messages": [{"role": "user", "content": "Tell me a fortune."},
                                               {"role": "assistant", "content": f["text"]}]})
        else:
            rows.append({"text": f["text"], "n": i})  # no id: the row number
    stdin = "".join(json.dumps(r) + "\n" for r in rows)
    done = dces("-", "--budget", "6", "--output", "-", "--config", no_lm_config(tmp_path),
                "--quiet", stdin=stdin)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in out] == list(range(40))
    assert sum(r["selected"] for r in out) == 6
    for given, got in zip(rows, out, strict=True):
        assert {k: got[k] for k in given} == given
        if "messages" in given:
            assert got["text"] == flatten_messages(given["messages"], "")
    assert out[1]["text"] == f"user: Tell me a fortune.\nassistant: {fortunes[1]['text']}"
    assert list(tmp_path.iterdir()) == [tmp_path / "config.json"]


def test_flattening_a_chat_record() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert flatten_messages(messages, "row 0") == "system: Be brief.\nuser: Hi"
    with pytest.raises(CurationInputError, match=r"^row 3: 'messages\[1\]' must have string"):
        flatten_messages([messages[0], {"role": "user"}], "row 3")


def _parquet(tmp_path: Path, columns: dict[str, list[Any]]) -> Path:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def _chat_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": 1, "messages": [{"role": "user", "content": 7}]}) + "\n")
    return path


def _dataset_dict(tmp_path: Path) -> Path:
    split = datasets.Dataset.from_dict({"text": ["a fine text to curate"]})
    datasets.DatasetDict({"train": split}).save_to_disk(str(tmp_path / "dd"))
    return tmp_path / "dd"


def _not_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    path.write_text("id,text\n1,not parquet at all\n")
    return path


def _empty_dir(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


GOOD = ["a text long enough to curate", "another text long enough to curate"]


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda p: _parquet(p, {"id": [1, 2], "body": GOOD}), ["--text-field", "content"],
         "in.parquet row 0: missing 'content' (and no 'messages')"),
        (lambda p: _parquet(p, {"id": [1, 2], "content": [3, 4]}), ["--text-field", "content"],
         "in.parquet row 0: 'content' must be a string, got int"),
        (lambda p: _parquet(p, {"id": [1.5, 2.5], "text": GOOD}), [],
         "in.parquet row 0: 'id' must be a non-empty string or an integer, got 1.5"),
        (lambda p: _parquet(p, {"key": [7, 7], "text": GOOD}), ["--id-field", "key"],
         "in.parquet row 1: duplicate id '7' (first at row 0)"),
        (lambda p: _parquet(p, {"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}),
         [], "in.parquet: no samples"),
        (_not_parquet, [], "in.parquet: cannot read Parquet"),
        (_chat_jsonl, [], "in.jsonl line 1: 'messages[0]' must have string 'role' and 'content'"),
        (_empty_dir, [], "empty: cannot load a datasets directory"),
        (_dataset_dict, [], "dd: a DatasetDict (train); give one split's directory"),
        (lambda p: _parquet(p, {"text": GOOD}), ["--output-format", "parquet"],
         "--output-format parquet: needs an --output file"),
    ],
)
def test_bad_input_exits_2_naming_the_row_and_field_and_writes_nothing(
    tmp_path: Path, make: Any, args: list[str], message: str
) -> None:
    inp = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out.parquet" if "--output-format" not in args else None
    output = ["--output", str(out)] if out else []
    result = CliRunner().invoke(
        cli, ["curate", str(inp), "--budget", "1", *output, "--state",
              str(tmp_path / "state.json"), *args],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before


def test_stdin_cannot_be_both_the_input_and_the_reference() -> None:
    result = CliRunner().invoke(cli, ["curate", "-", "--reference", "-", "--budget", "1"],
                                input="")
    assert result.exit_code == 2
    assert "--reference: stdin ('-') is already the input" in result.output


def _write(fmt: Format, path: Path, rows: list[dict[str, Any]]) -> None:
    if fmt is Format.JSONL:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt is Format.PARQUET:
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        datasets.Dataset.from_list(rows).save_to_disk(str(path))


def _read(fmt: Format, path: Path) -> list[dict[str, Any]]:
    if fmt is Format.JSONL:
        return [json.loads(line) for line in path.read_text().splitlines()]
    if fmt is Format.PARQUET:
        return pq.read_table(path).to_pylist()
    return datasets.load_from_disk(str(path)).to_list()


NAMES = {Format.JSONL: "rows.jsonl", Format.PARQUET: "rows.parquet", Format.DATASET: "rows_ds"}


@pytest.mark.parametrize("source_format", list(Format))
@pytest.mark.parametrize("target_format", list(Format))
def test_every_format_is_written_in_every_other(
    tmp_path: Path, source_format: Format, target_format: Format
) -> None:
    """The I/O path alone (decisions made up, no model): rows and decisions survive any pair."""
    rows = [{"id": 10 + i, "text": f"text number {i}", "score": i / 4, "tags": ["a", str(i)]}
            for i in range(5)]
    inp = tmp_path / "in" / NAMES[source_format]
    inp.parent.mkdir()
    _write(source_format, inp, rows)
    fields = Fields()
    source = read_input(inp, fields)
    assert [(s.id, s.text) for s in source.samples] == [(str(r["id"]), r["text"]) for r in rows]
    decisions = [
        SampleDecision(id=s.id, selected=i < 2, role="center" if i < 2 else None, cluster=i % 2,
                       distance=0.25, text=s.text.replace("text", "tekst") if i == 0 else s.text,
                       edits=[Edit(0, 4, "text", "tekst", 0.5)] if i == 0 else [],
                       reason=None if i < 2 else "quota_filled")
        for i, s in enumerate(source.samples)
    ]
    target = tmp_path / "out" / NAMES[target_format]
    files = AtomicFiles()
    stage_output(files, target, target_format, source, decisions, fields)
    files.commit()
    expected = [{**r, **decision_values(d, fields)} for r, d in zip(rows, decisions, strict=True)]
    assert _read(target_format, target) == expected
