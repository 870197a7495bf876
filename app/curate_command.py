"""`dces curate`: one round on files, with no partial output on any error."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from app.formats import (
    STDIO,
    Format,
    input_format,
    output_format,
    output_lines,
    read_input,
    stage_output,
)
from app.formats.atomic import AtomicFiles
from app.formats.jsonl import read_json
from app.logs import disable_hub_progress_bars
from curation import CurationConfig, CurationInputError, Curator, RunState
from curation.ray_executor import RayExecutor
from curation.records import Fields


def run_curate(
    input: Path,
    budget: int,
    reference: Path | None,
    state_path: Path | None,
    feedback: Path | None,
    output: Path | None,
    report: Path | None,
    config_path: Path | None,
    edit: bool | None,
    seed: int | None,
    quiet: bool,
    fields: Fields,
    chosen_format: Format | None,
    ray_address: str | None = None,
) -> None:
    """Validate every input first, curate, then write all outputs atomically. ``edit`` None
    leaves token editing to the config; ``chosen_format`` None writes the output in the format
    of its extension, else of the input; ``ray_address`` embeds every new text on that Ray
    cluster (asked for by name: no minimum round size)."""
    if budget < 1:
        raise CurationInputError(f"--budget: must be >= 1, got {budget}")
    if input == STDIO and reference == STDIO:
        raise CurationInputError("--reference: stdin ('-') is already the input")
    target = None if output == STDIO else output  # None: stdout
    fmt = output_format(target, chosen_format, input_format(input))
    source = read_input(input, fields)
    refs = read_input(reference, fields).samples if reference else None
    state = None
    if state_path is not None and state_path.exists():
        state = RunState.from_dict(read_json(state_path, "--state"))
    metrics = read_json(feedback, "--feedback") if feedback else None
    overrides = read_json(config_path, "--config") if config_path else {}
    config = CurationConfig.from_dict(overrides)
    if edit is not None:
        config = config.with_overrides({"edit": {"enabled": edit}})
    if seed is not None:
        config = config.with_overrides({"seed": seed})

    # The stage lines are the command's progress: the library's bars (model loading) would
    # break them up, and would make --quiet noisy.
    disable_hub_progress_bars()
    progress = None if quiet else StageLines(sys.stderr)
    executor = RayExecutor(ray_address, min_samples=1) if ray_address is not None else None
    result, new_state = Curator(config, executor=executor).curate(
        source.samples, budget, state, refs, metrics, progress
    )

    files = AtomicFiles()
    try:
        if target is not None:
            stage_output(files, target, fmt, source, result.decisions, fields)
        if report is not None:
            files.stage(report, [json.dumps(result.report(), indent=2) + "\n"])
        if state_path is not None:
            files.stage(state_path, [json.dumps(new_state.to_dict()) + "\n"])
        files.commit()
    except BaseException:
        files.discard()
        raise
    if target is None:
        sys.stdout.writelines(output_lines(source, result.decisions, fields))
    total = len(source.samples)
    summary = f"round {result.round}: selected {result.selected}/{total} (budget {budget})"
    print(
        f"dces curate: {summary}, edit rate {result.edit_stats.edit_rate:.2f}/100 tokens",
        file=sys.stderr,
    )


class StageLines:
    """The round's progress on stderr, so a long round is visibly alive: a line when a stage
    (embed, cluster, select, edit, health, done) starts, then at most one every ``every_s`` s."""

    def __init__(self, stream: TextIO, every_s: float = 1.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self.stage: str | None = None
        self.printed_at = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self.printed_at < self.every_s:
            return
        self.stage, self.printed_at = stage, now
        print(f"dces curate: {stage} {fraction:.0%}", file=self.stream, flush=True)
