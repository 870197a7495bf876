"""Peak memory of `dces curate`'s Parquet path on a 1M-row file, next to pyarrow reading it.

    nice -n 10 python -m bench.parquet_io [--rows 1000000]

Writes a Parquet file of short texts with the columns a training set carries (an integer id, the
text, a source, a score, a list of tags), then measures each path in a fresh process, as the
peak RSS above the RSS after the imports (the kernel's high-water mark, reset once imported):

- ``read_table``: ``pyarrow.parquet.read_table`` of the file, the raw cost of holding it;
- ``dces``: what `dces curate` does around a round, with the functions it calls: ``read_input``
  (every row's sample, the round's input), then ``stage_output`` of a Parquet file (every row
  with its decision joined back, chunk by chunk). The round itself is skipped: one made-up
  decision per sample stands for its result (a tenth selected, the text shared, no edits), as a
  round returns them;
- ``dicts``: the same without chunks, for scale: ``read_table().to_pylist()``, one output dict
  per row, ``Table.from_pylist``, ``write_table``.

Writes bench/results/parquet_io.json and parquet_io.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.formats import Format, read_input, stage_output
from app.formats.atomic import AtomicFiles
from bench.engine import rss_mib
from bench.machine import machine
from curation import SampleDecision
from curation.records import Fields, decision_values

RESULTS = Path(__file__).parent / "results"
FIELDS = Fields()
WORDS = ["model", "data", "round", "text", "sample", "cluster", "token", "train", "loss", "value",
         "signal", "quiet", "river", "stone", "light", "green", "small", "early", "paper", "music",
         "window", "garden", "letter", "winter", "number", "market"]


def write_input(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """``rows`` rows of 6-10 random words (about 50 characters) and four other columns."""
    rng = np.random.default_rng(seed)
    sources = np.array(["web", "books", "code", "chat", "news", "wiki", "forum", "papers"])
    with pq.ParquetWriter(path, pa.schema([
        ("id", pa.int64()), ("text", pa.string()), ("source", pa.string()),
        ("score", pa.float64()), ("tags", pa.list_(pa.string())),
    ])) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            lengths = rng.integers(6, 11, n)
            words = rng.integers(0, len(WORDS), (n, 10))
            src = sources[rng.integers(0, len(sources), n)]
            writer.write_table(pa.table({
                "id": np.arange(start, start + n),
                "text": [" ".join(WORDS[w] for w in words[i, : lengths[i]]) for i in range(n)],
                "source": src,
                "score": rng.random(n),
                "tags": [[s, "synthetic"] for s in src],
            }))


def made_up_decisions(samples: Iterable[tuple[str, str]]) -> list[SampleDecision]:
    """One decision per (id, text), as a round makes them: a tenth selected, texts shared."""
    return [
        SampleDecision(id=sid, selected=i % 10 == 0, role="edge" if i % 10 == 0 else None,
                       cluster=i % 64, distance=0.5, text=text, edits=[],
                       reason=None if i % 10 == 0 else "quota_filled")
        for i, (sid, text) in enumerate(samples)
    ]


def run_read_table(path: Path, out: Path, marks: dict[str, float]) -> None:
    pq.read_table(path)


def run_dces(path: Path, out: Path, marks: dict[str, float]) -> None:
    source = read_input(path, FIELDS)
    marks["after_read_mib"] = rss_mib("VmRSS")
    decisions = made_up_decisions((s.id, s.text) for s in source.samples)
    marks["after_decisions_mib"] = rss_mib("VmRSS")
    files = AtomicFiles()
    stage_output(files, out, Format.PARQUET, source, decisions, FIELDS)
    files.commit()


def run_dicts(path: Path, out: Path, marks: dict[str, float]) -> None:
    rows = pq.read_table(path).to_pylist()
    marks["after_read_mib"] = rss_mib("VmRSS")
    decisions = made_up_decisions((str(r["id"]), r["text"]) for r in rows)
    marks["after_decisions_mib"] = rss_mib("VmRSS")
    joined = [{**r, **decision_values(d, FIELDS)} for r, d in zip(rows, decisions, strict=True)]
    pq.write_table(pa.Table.from_pylist(joined), out)


PATHS: dict[str, Callable[[Path, Path, dict[str, float]], None]] = {
    "read_table": run_read_table, "dces": run_dces, "dicts": run_dicts,
}


def measure_here(name: str, path: Path, out: Path) -> dict[str, float]:
    """Run one path in this (fresh) process; RSS figures are MiB above the RSS before it."""
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = rss_mib("VmRSS")
    marks: dict[str, float] = {}
    start = time.perf_counter()
    PATHS[name](path, out, marks)
    seconds = time.perf_counter() - start
    figures = {"peak_mib": rss_mib("VmHWM") - base, **{k: v - base for k, v in marks.items()}}
    return {"base_mib": base, **figures, "seconds": seconds}


def measure(name: str, path: Path, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.parquet_io", "--measure", name, "--input", str(path),
         "--output", str(out)], capture_output=True, text=True, check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--measure", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_here(args.measure, args.input, args.output)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "in.parquet", Path(tmp) / "out.parquet"
        start = time.perf_counter()
        write_input(path, args.rows)
        report: dict[str, Any] = {
            "machine": machine(),
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "rows": args.rows,
            "file_mib": round(path.stat().st_size / 2**20, 1),
            "write_input_s": round(time.perf_counter() - start, 1),
            "paths": {name: measure(name, path, out) for name in PATHS},
        }
        report["output_mib"] = round(out.stat().st_size / 2**20, 1)
    report["load"] = os.getloadavg()[0]
    peaks = {name: m["peak_mib"] for name, m in report["paths"].items()}
    report["ratio_dces_to_read_table"] = round(peaks["dces"] / peaks["read_table"], 2)
    report["ratio_dicts_to_read_table"] = round(peaks["dicts"] / peaks["read_table"], 2)
    print(json.dumps(report, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parquet_io.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "parquet_io.md").write_text(markdown(report))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Parquet in and out of `dces curate` (`python -m bench.parquet_io`)",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), no GPU, Python {m['python']}, {r['when']}; "
        f"load average {r['load']:.1f} (shared machine: read the ratios). "
        f"{r['rows']:,} rows (int id, ~50-character text, source, score, tags): "
        f"{r['file_mib']} MiB of Parquet in, {r['output_mib']} MiB out.",
        "",
        "Peak RSS above the process's RSS after its imports, each path in a fresh process. "
        "The round itself is skipped: made-up decisions, one per sample, stand for its result.",
        "",
        "| path | peak | after reading | with the decisions | time |",
        "|---|---|---|---|---|",
    ]
    for name, p in r["paths"].items():
        marks = [f"{p[k]} MiB" if k in p else "" for k in ("after_read_mib", "after_decisions_mib")]
        lines.append(f"| `{name}` | **{p['peak_mib']} MiB** | {' | '.join(marks)} "
                     f"| {p['seconds']} s |")
    lines += [
        "",
        f"`dces` / `read_table`: **{r['ratio_dces_to_read_table']}**; "
        f"`dicts` / `read_table`: {r['ratio_dicts_to_read_table']}.",
        "",
        "`read_table` holds the whole file as Arrow. `dces` holds the round's input and output "
        "as Python objects (a `Sample` and a `SampleDecision` per row, which the engine needs "
        "and returns) and one 65,536-row chunk of the other columns at a time. `dicts` holds "
        "every row as a dict, twice.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
