"""What reference matching costs as a round grows, against hashing the same texts.

    python -m bench.matching_scale [--sizes 1200 10000 50000] [--repeats 3]

Reference matching (:mod:`curation.matching`) is the one step of a round whose work grows with
candidates × steps rather than with candidates: each of its at most 512 steps re-measures every
candidate's affinity. This bench times it alone, at the benchmark's size and at the sizes a
shared service sees, with the budget a third of the pool (the collapse benchmark's 1,200 → 400).
Texts are WordNet glosses (Debian `wordnet-base`): candidates and a 12,000-gloss reference drawn
from disjoint halves, confidences drawn at random (matching's cost does not depend on them), and
for the embedding view (:mod:`curation.herding`) random unit vectors of MiniLM's 384 dimensions
(herding's cost depends on the counts, not on the values; embedding 50,000 texts would take
minutes for nothing).

The yardstick is the raw cost of the same texts' n-gram hashing in the same run (``fit``, which
hashes the reference and the candidates once): the ratios matching / fit say how much the greedy
order adds to work every round with a reference does anyway, on any machine, with the n-grams
alone (``score.embedding_share`` 0) and with both views (the default). Each size is timed
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
from curation.herding import EmbeddingHerding
from curation.matching import ReferenceMatching

RESULTS = Path(__file__).parent / "results"
REFERENCE_SIZE = 12_000
DIMENSIONS = 384  # MiniLM's
RADIUS_SQ = 1.06  # the median squared distance of a fortune to its centroid, as in the benchmark


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
    vectors = _unit_rows(rng, size)
    reference_vectors = _unit_rows(rng, REFERENCE_SIZE)
    affinity = ReferenceAffinity()
    fit = _median_seconds(lambda: affinity.fit(reference, candidates), repeats)
    ngrams = ReferenceMatching(0.5, budget)
    alone = _median_seconds(lambda: ngrams.key(affinity, confidence, allowed), repeats)
    both = ReferenceMatching(0.5, budget, embedding_share=0.5)
    herded = _median_seconds(lambda: both.key(
        affinity, confidence, allowed,
        EmbeddingHerding().fit(vectors, reference_vectors, RADIUS_SQ)), repeats)
    return {"candidates": size, "budget": budget, "steps": ngrams.steps_,
            "per_step": ngrams.per_step_, "fit_s": round(fit, 4),
            "ngrams_s": round(alone, 4), "ngrams_over_fit": round(alone / fit, 2),
            "both_s": round(herded, 4), "both_over_fit": round(herded / fit, 2)}


def _unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    rows = rng.normal(size=(count, DIMENSIONS)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


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
        "the greedy order is built from those counts with the n-gram view alone, and with both "
        "views (the default: embedding herding too, fitted inside the timing, on random unit "
        "vectors). Median of the repeats.",
        "",
        "| candidates | budget | steps | per step | fit (s) | n-grams (s) | n-grams / fit "
        "| both views (s) | both / fit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['candidates']:,} | {r['budget']:,} | {r['steps']} | {r['per_step']} | "
              f"{r['fit_s']} | {r['ngrams_s']} | {r['ngrams_over_fit']} | {r['both_s']} | "
              f"{r['both_over_fit']} |" for r in rows]
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
