"""How well each fallback confidence ranks a pool like the generator's own log-probs.

    python -m bench.fallback_scores [--pools 3] [--gen0-cache DIR] [--corpus C --train-docs N]

Without the generator's log-probs DCES estimates its surprise (curation/confidence.py). The
pools are the collapse benchmark's own: each seed's generation-0 model samples 1,200 candidates
(from ``--gen0-cache`` when `bench.collapse` left it there, else trained, ~7 min a seed), and
scores them (the per-token log-prob a training job sends: the truth here). Per pool, the
Spearman correlation with it and the share of its most surprising third that each estimate
also puts in its most surprising third (the budget of the benchmark) for:

- **lm**: SmolLM2's per-token log-prob, length-adjusted (``score.pool_typicality`` off);
- **typicality**: the pool's own n-gram typicality (curation/typicality.py) alone, as it is;
- **blend**: the default, the two averaged in robust units, the typicality less its rise in
  length (the confidence DCES computes: curation/confidence.py).

Each estimate's Spearman correlation with the candidates' token counts says how much of its
ranking is length (a length bias that selection would turn into shorter or longer samples).
Writes bench/results/fallback_scores[-CORPUS].json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from bench.collapse.config import FULL
from bench.collapse.model import quiet_transformers
from bench.collapse.prepare import prepare
from bench.machine import machine
from bench.round_cost import candidate_pools, pool_arguments
from curation.confidence import ConfidenceScorer
from curation.embed import load_embedder
from curation.lm import load_causal_lm
from curation.types import Sample
from curation.typicality import pool_typicality


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = pool_arguments("python -m bench.fallback_scores", __doc__)
    p.add_argument("--corpus", help="as bench.collapse's (default: fortunes)")
    p.add_argument("--train-docs", type=int, help="as bench.collapse's")
    return p.parse_args(argv)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    known = np.isfinite(a) & np.isfinite(b)
    return round(float(spearmanr(a[known], b[known])[0]), 4)


def agreement(truth: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """Spearman correlation, and the share of the truth's least confident third that the
    estimate's least confident third holds."""
    known = np.isfinite(truth) & np.isfinite(estimate)
    third = int(known.sum()) // 3
    index = np.flatnonzero(known)
    lowest = set(index[np.argsort(truth[known])[:third]])
    picked = set(index[np.argsort(estimate[known])[:third]])
    return {"spearman": _spearman(truth, estimate),
            "third_overlap": round(len(lowest & picked) / third, 4)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    start = time.perf_counter()
    lm = load_causal_lm()
    with tempfile.TemporaryDirectory(prefix="fallback-scores-") as tmp:
        embedder = load_embedder()
        cfg = FULL.with_overrides(train_docs=args.train_docs)
        shared, _real, setup = prepare(cfg, args.corpus, Path(tmp), embedder)
        shared.gen0_cache = args.gen0_cache
        _warm_up, pools = candidate_pools(shared, args.pools, embedder.encode)
        rows = []
        for seed, pool in enumerate(pools):
            truth = -pool.scores.doc_nll
            samples = [Sample(str(i), t) for i, t in enumerate(pool.texts)]
            views = {"lm": ConfidenceScorer(lambda: lm, pool_typicality=False).score(samples),
                     "typicality": pool_typicality(pool.texts),
                     "blend": ConfidenceScorer(lambda: lm).score(samples)}  # as DCES scores
            tokens = pool.scores.doc_tokens
            rows.append({"pool": seed, "candidates": len(pool.texts),
                         **{name: agreement(truth, v) for name, v in views.items()},
                         "length": {name: _spearman(tokens, v)
                                    for name, v in {"truth": truth, **views}.items()}})
            print(f"pool {seed}: {rows[-1]}", file=sys.stderr)
    results = {
        "command": " ".join(["python -m bench.fallback_scores", *(argv or sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
        "setup": {"corpus": setup["corpus"], "lm": lm.name},
        "pools": rows,
    }
    corpus = setup["corpus"]  # fortunes keeps the first record's name
    stem = "fallback_scores" + ("" if corpus == "fortunes" else f"-{Path(corpus).stem}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    print(f"wrote {args.out / stem}.md")
    return 0


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Fallback confidence against the generator's log-probs (`python -m "
        "bench.fallback_scores`)",
        "",
        f"`{r['command']}`, {r['when']}, {r['seconds']:.0f} s. Machine: {m['cpu']}, "
        f"{m['cores']} cores. Corpus {r['setup']['corpus']}; LM {r['setup']['lm']}.",
        "",
        "Each pool: the candidates a generation-0 model of the collapse benchmark wrote, ranked "
        "by the model's per-token log-prob (the truth) and by each estimate DCES can make "
        "without it. Spearman correlation; in brackets, the share of the truth's most "
        "surprising third that the estimate's most surprising third holds (1/3 by chance).",
        "",
        "| pool | candidates | LM, length-adjusted | pool typicality | both averaged (default) |",
        "|---|---|---|---|---|",
    ]
    for row in r["pools"]:
        cells = [f"{row[v]['spearman']:.3f} ({row[v]['third_overlap']:.2f})"
                 for v in ("lm", "typicality", "blend")]
        lines.append(f"| {row['pool']} | {row['candidates']} | {' | '.join(cells)} |")
    if all("length" in row for row in r["pools"]):
        lines += ["", "Spearman correlation with the candidates' token counts:", "",
                  "| pool | the truth | LM, length-adjusted | pool typicality | both averaged |",
                  "|---|---|---|---|---|"]
        for row in r["pools"]:
            cells = [f"{row['length'][v]:.3f}" for v in ("truth", "lm", "typicality", "blend")]
            lines.append(f"| {row['pool']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
