"""Join the runs of several collapse results into one, for more seeds than one run had time for.

    python -m bench.collapse.merge bench/results/collapse.json more-seeds.json \\
        --name collapse-6seeds --strategies ppl_high dces

Runs are joined only when they are comparable: the same corpus and data split, the same
benchmark settings but the seeds and strategies, the same CPU (training's floating point differs
between CPUs, bench/results/collapse-screen-*-xeon.json) and, seed by seed, the same generation 0
(its held-out perplexity to the digit: the runs started from the same model). Each chain (regime,
seed, strategy) counts once: a chain in two files is kept once when both ran it to the same
held-out perplexities, generation by generation (the run reproduced, as it does on one CPU), and
refused when they differ. Every strategy kept must have run the same seeds, so that the per-seed
and paired tables of :mod:`bench.collapse.report` compare like with like.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.collapse.config import BenchConfig
from bench.collapse.report import write

RESULTS = Path(__file__).resolve().parents[1] / "results"
# Settings a joined run may differ in: which seeds and strategies ran, and how.
PER_RUN = {"strategies", "seeds", "first_seed", "jobs", "monitor"}
# What decides a run's floating point, hence its trajectory from a seed: the CPU, the GPU (a
# pretrained generator trains there) and transformers (its API moved: 5.17 took the sampler's
# cache under another name than 5.25).
TRAJECTORY_MACHINE = ("cpu", "simd", "gpu_name", "transformers")


def merge(results: list[dict[str, Any]], name: str, strategies: list[str] | None,
          note: str = "") -> dict[str, Any]:
    """One results dict holding every run of ``results`` (of ``strategies``, when given);
    ``note`` follows the record of what was joined."""
    first = results[0]
    shared = _comparable(first["config"])
    runs_given = [(res["when"], res["command"]) for res in results]
    if len(set(runs_given)) < len(runs_given):
        raise ValueError("results: the same run is given twice")
    for other in results[1:]:
        _same("setup", first["setup"], other["setup"])
        _same("config", shared, _comparable(other["config"]))
        for key in TRAJECTORY_MACHINE:  # a field an older record lacks is not compared
            if key in first["machine"] and key in other["machine"]:
                _same(f"machine.{key}", first["machine"][key], other["machine"][key])
    kept = [r for res in results for r in res["runs"]
            if strategies is None or r["strategy"] in strategies]
    if not kept:
        raise ValueError(f"strategies: none of {strategies} is in the files")
    runs = _check_chains(kept)
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


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The settings two joined runs must share; a setting added since a run was recorded (the
    pretrained generator's, the reference's size) counts as its default, which is what that
    run used."""
    defaults = asdict(BenchConfig())
    shared = {k: v for k, v in {**defaults, **config}.items() if k not in PER_RUN}
    return {**shared, "model": {**defaults["model"], **config["model"]}}


def _check_chains(kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of ``kept``, each chain once; checks one generation 0 per seed and the same
    seeds for every strategy of a regime."""
    runs: dict[tuple[str, int, str], dict[str, Any]] = {}
    gen0: dict[int, float] = {}
    seeds: dict[tuple[str, str], set[int]] = {}
    for r in kept:
        chain = (r["regime"], r["seed"], r["strategy"])
        if _perplexities(runs.setdefault(chain, r)) != _perplexities(r):
            raise ValueError(f"seed {r['seed']} of {r['strategy']} ({r['regime']}) is in more "
                             f"than one file with different results: a chain may count once")
        ppl = r["generations"][0]["heldout_perplexity"]
        if gen0.setdefault(r["seed"], ppl) != ppl:
            raise ValueError(f"seed {r['seed']}: generation 0 differs between the files "
                             f"(held-out perplexity {gen0[r['seed']]} against {ppl}), so their "
                             f"runs did not start from the same model")
        seeds.setdefault((r["regime"], r["strategy"]), set()).add(r["seed"])
    if len({frozenset(s) for s in seeds.values()}) > 1:
        found = "; ".join(f"{strategy} ({regime}): {sorted(s)}"
                          for (regime, strategy), s in seeds.items())
        raise ValueError(f"seeds: every strategy kept must have run the same seeds, got {found}")
    return list(runs.values())


def _perplexities(run: dict[str, Any]) -> list[float]:
    return [g["heldout_perplexity"] for g in run["generations"]]


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
