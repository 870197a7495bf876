"""What reference matching costs as a round grows, against hashing the same texts.

    python -m bench.matching_scale [--sizes 1200 10000 50000] [--repeats 3]

Reference matching (:mod:`curation.matching`) is the one step of a round whose work grows with
candidates × steps rather than with candidates: each of its at most 512 steps re-measures every
candidate's affinity. This bench times it alone, at the benchmark's size and at the sizes a
shared service sees, with the budget a third of the pool (the collapse benchmark's 1,200 → 400).
Texts are WordNet glosses (Debian `wordnet-base`): candidates and a 12,000-gloss reference drawn
from disjoint halves, confidences drawn at random (matching's cost does not depend on them).

The yardstick is the raw cost of the same texts' n-gram hashing in the same run (``fit``, which
hashes the reference and the candidates once): the ratio matching / fit says how much the greedy
order adds to work every round with a reference does anyway, on any machine. Each size is timed
``--repeats`` times and the median kept. Writes bench/results/matching_scale.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import load_wordnet
from bench.machine import machine
from curation.affinity import ReferenceAffinity
from curation.matching import ReferenceMatching

RESULTS = Path(__file__).parent / "results"
REFERENCE_SIZE = 12_000


def _median_seconds(work: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(texts: list[str], size: int, repeats: int, seed: int) -> dict[str, Any]:
    """Median seconds of ``fit`` and of ``key`` for ``size`` candidates, budget a third."""
    rng = np.random.default_rng(seed)
    half = len(texts) // 2
    reference = [texts[i] for i in rng.choice(half, REFERENCE_SIZE, replace=False)]
    candidates = [texts[half + i] for i in rng.choice(len(texts) - half, size, replace=False)]
    confidence = rng.normal(-5.0, 1.0, size)
    allowed = np.ones(size, dtype=bool)
    budget = size // 3
    affinity = ReferenceAffinity()
    fit = _median_seconds(lambda: affinity.fit(reference, candidates), repeats)
    matching = ReferenceMatching(0.5, budget)
    key = _median_seconds(lambda: matching.key(affinity, confidence, allowed), repeats)
    return {"candidates": size, "budget": budget, "steps": matching.steps_,
            "per_step": matching.per_step_, "fit_s": round(fit, 4), "matching_s": round(key, 4),
            "matching_over_fit": round(key / fit, 2)}


def write(rows: list[dict[str, Any]], command: str, info: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "matching_scale.json").write_text(json.dumps(
        {"command": command, "machine": info, "reference": REFERENCE_SIZE, "rows": rows},
        indent=2) + "\n")
    lines = [
        "# Reference matching at scale",
        "",
        f"`{command}` on {info['cpu']} ({info['cores']} cores, load average at start "
        f"{info['load_average_at_start'][0]:.2f}). Reference: {REFERENCE_SIZE:,} WordNet "
        "glosses; candidates from the other half of WordNet; budget a third of the candidates. "
        "`fit` hashes the reference and the candidates (work every round with a reference does); "
        "`matching` builds the greedy order from those counts. Median of the repeats.",
        "",
        "| candidates | budget | steps | per step | fit (s) | matching (s) | matching / fit |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['candidates']:,} | {r['budget']:,} | {r['steps']} | {r['per_step']} | "
              f"{r['fit_s']} | {r['matching_s']} | {r['matching_over_fit']} |" for r in rows]
    (RESULTS / "matching_scale.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_200, 10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    texts = [g.text for g in load_wordnet()]
    rows = []
    for size in args.sizes:
        rows.append(measure(texts, size, args.repeats, seed=size))
        print(rows[-1], flush=True)
    sizes = " ".join(str(s) for s in args.sizes)
    write(rows, f"python -m bench.matching_scale --sizes {sizes} --repeats {args.repeats}", info)


if __name__ == "__main__":
    main()
