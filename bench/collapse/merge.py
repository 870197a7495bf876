"""Join the runs of several collapse results into one, for more seeds than one run had time for.

    python -m bench.collapse.merge bench/results/collapse.json more-seeds.json \\
        --name collapse-6seeds --strategies ppl_high dces

Runs are joined only when they are comparable: the same corpus and data split, the same
benchmark settings but the seeds and strategies, and the same CPU (training's floating point
differs between CPUs, bench/results/collapse-screen-*-xeon.json). A seed may appear in one file
only, so that no chain counts twice. The joined results are written (JSON, Markdown, PNG) with
the per-seed and paired tables of :mod:`bench.collapse.report` over every seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.collapse.report import write

RESULTS = Path(__file__).resolve().parents[1] / "results"
# Settings a joined run may differ in: which seeds and strategies ran, and how.
PER_RUN = {"strategies", "seeds", "first_seed", "jobs", "monitor"}


def merge(results: list[dict[str, Any]], name: str, strategies: list[str] | None,
          note: str = "") -> dict[str, Any]:
    """One results dict holding every run of ``results`` (of ``strategies``, when given);
    ``note`` follows the record of what was joined."""
    first = results[0]
    shared = {k: v for k, v in first["config"].items() if k not in PER_RUN}
    for other in results[1:]:
        _same("setup", first["setup"], other["setup"])
        _same("config", shared, {k: v for k, v in other["config"].items() if k not in PER_RUN})
        _same("machine.cpu", (first["machine"]["cpu"], first["machine"].get("simd")),
              (other["machine"]["cpu"], other["machine"].get("simd")))
    runs = [r for res in results for r in res["runs"]
            if strategies is None or r["strategy"] in strategies]
    seen: dict[tuple[str, int, str], int] = {}
    for i, res in enumerate(results):
        for r in res["runs"]:
            chain = (r["regime"], r["seed"], r["strategy"])
            if chain in seen and seen[chain] != i:
                raise ValueError(f"seed {r['seed']} of {r['strategy']} ({r['regime']}) is in "
                                 f"more than one file: a chain may count once")
            seen[chain] = i
    if not runs:
        raise ValueError(f"strategies: none of {strategies} is in the files")
    chosen = list(dict.fromkeys(r["strategy"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    return {
        **first,
        "name": name,
        "command": " && ".join(res["command"] for res in results),
        "seconds": sum(res["seconds"] for res in results),
        "config": {**first["config"], "strategies": chosen, "seeds": len(seeds),
                   "first_seed": seeds[0]},
        "runs": runs,
        "note": f"Joined by bench.collapse.merge from {len(results)} runs: seeds "
                f"{', '.join(map(str, seeds))}. {note}".strip(),
    }


def _same(what: str, a: object, b: object) -> None:
    if a != b:
        raise ValueError(f"{what}: the files differ ({a!r} against {b!r}), so their runs are "
                         f"not comparable")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.collapse.merge",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="results JSON of bench.collapse")
    p.add_argument("--name", required=True, help="file name stem of the joined results")
    p.add_argument("--strategies", nargs="+", help="keep only these strategies' runs")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="", help="what the joined results are for")
    args = p.parse_args(argv)
    try:
        joined = merge([json.loads(f.read_text()) for f in args.files], args.name,
                       args.strategies, args.note)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        print(f"bench.collapse.merge: error: {exc}", file=sys.stderr)
        return 2
    for path in write(joined, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
