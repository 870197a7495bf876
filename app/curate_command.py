"""`dces curate`: one round on files, with no partial output on any error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.jsonl import AtomicFiles, read_json, read_samples
from curation import CurationConfig, CurationInputError, Curator, RunState


def run_curate(
    input: Path,
    budget: int,
    reference: Path | None,
    state_path: Path | None,
    feedback: Path | None,
    output: Path | None,
    report: Path | None,
    config_path: Path | None,
    no_edit: bool,
    seed: int | None,
) -> None:
    """Validate every input first, curate, then write all outputs atomically."""
    if budget < 1:
        raise CurationInputError(f"--budget: must be >= 1, got {budget}")
    samples = read_samples(input)
    refs = read_samples(reference) if reference else None
    state = None
    if state_path is not None and state_path.exists():
        state = RunState.from_dict(read_json(state_path, "--state"))
    metrics = read_json(feedback, "--feedback") if feedback else None
    overrides = read_json(config_path, "--config") if config_path else {}
    config = CurationConfig.from_dict(overrides)
    if no_edit:
        config = config.with_overrides({"edit": {"enabled": False}})
    if seed is not None:
        config = config.with_overrides({"seed": seed})

    result, new_state = Curator(config).curate(samples, budget, state, refs, metrics)

    extras = {str(s["id"]): s for s in samples}
    lines = []
    for decision in result.decisions:
        carried = {k: v for k, v in extras[decision.id].items() if k not in ("id", "text")}
        lines.append(json.dumps({**carried, **decision.to_dict()}, ensure_ascii=False) + "\n")
    files = AtomicFiles()
    try:
        if output is not None:
            files.stage(output, lines)
        if report is not None:
            files.stage(report, [json.dumps(result.report(), indent=2) + "\n"])
        if state_path is not None:
            files.stage(state_path, [json.dumps(new_state.to_dict()) + "\n"])
        files.commit()
    except BaseException:
        files.discard()
        raise
    if output is None:
        sys.stdout.writelines(lines)
    summary = f"round {result.round}: selected {result.selected}/{len(samples)} (budget {budget})"
    print(
        f"dces curate: {summary}, edit rate {result.edit_stats.edit_rate:.2f}/100 tokens",
        file=sys.stderr,
    )
