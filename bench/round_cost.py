"""What a DCES round of the collapse benchmark costs next to SemDeDup, on the same texts.

    python -m bench.round_cost [--pools 3] [--gen0-cache DIR]

The collapse benchmark's own timings (bench/results/collapse.md) are taken while two training
workers hold both cores, the service runs at a lower CPU priority and SemDeDup finds part of its
pool already embedded by the metrics step: they say little about the cost of the work itself.
Here the same work runs alone, from cold embedding caches on both sides, in one process run:

- the candidate pools are the benchmark's own: each seed's generation-0 model samples 1,200
  candidates (from ``--gen0-cache`` when `bench.collapse` left it there, else trained, ~7 min a
  seed), scored by the model that wrote them (the log-probs a training job sends; not timed);
- **semdedup**: the benchmark's SemDeDup strategy, its embedding of the pool included;
- **engine**: ``Curator.curate`` in this process with the service's default config, the run's
  reference (the 12,464-entry training split) embedded before and carried from a warm-up round
  as a run's state is (steady state: round 1 onward);
- **service**: a real ``dces serve`` process and ``DCESClient.curate_round``, the same run
  history (reference, one warm-up round), timed at the client.

Each pool is timed once per side, in an order that rotates with the pool so that load drift
favours no side. The ratios (engine / semdedup, service / semdedup) are per pool, then the
median. Writes bench/results/round_cost.json and .md.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.server sets it, before torch loads

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.worker.models import EngineModels, base_config
from bench.collapse.config import FULL
from bench.collapse.experiment import Shared, generate, run_gen0
from bench.collapse.model import device, load_model, quiet_transformers
from bench.collapse.prepare import prepare
from bench.collapse.service import dces_service
from bench.collapse.strategies import Embed, Pool, SemDeDupStrategy, round_samples
from bench.machine import machine
from curation.curator import Curator
from curation.embed import load_embedder
from curation.state import RunState
from dces_client import DCESClient

RESULTS = Path(__file__).parent / "results"
WARM_UP_SEED = 10_000  # sampling seed of the warm-up pool (no benchmark pool uses it)


def pool_arguments(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The arguments of a bench over the collapse benchmark's generation-0 pools (also
    bench.fallback_scores's)."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    p.add_argument("--pools", type=int, default=3, help="pools (one per benchmark seed)")
    p.add_argument("--gen0-cache", type=Path, metavar="DIR",
                   help="bench.collapse's generation-0 cache (default: train each seed's)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return pool_arguments("python -m bench.round_cost", __doc__).parse_args(argv)


def candidate_pools(shared: Shared, n: int, embed: Embed) -> tuple[Pool, list[Pool]]:
    """(warm-up pool, the ``n`` benchmark pools): generation 0's candidates of seeds 0..n-1,
    with their log-probs computed here, as the training job has them."""
    pools = []
    for seed in range(n):
        gen0 = run_gen0(shared, seed, embed, lambda msg: print(msg, file=sys.stderr))
        pools.append(Pool(gen0.pool_texts, gen0.pool_ids,
                          load_model(gen0.model_dir, device(shared.cfg.model)), embed,
                          shared.cfg.model))
    model = pools[0].model
    texts, ids = generate(shared, model, shared.cfg.pool_size, WARM_UP_SEED)
    warm_up = Pool(texts, ids, model, embed, shared.cfg.model)
    for pool in [warm_up, *pools]:
        pool.scores  # noqa: B018 - the job's log-probs: computed before any timing
    return warm_up, pools


class Sides:
    """The three ways to select 400 of a pool, each with its own cold embedding cache."""

    def __init__(self, shared: Shared, url: str) -> None:
        self.budget = shared.cfg.budget
        self.reference = shared.reference
        self.semdedup_embedder = load_embedder()
        settings = Settings()
        models = EngineModels(settings)
        models.load_defaults()
        self.curator: Curator = models.curator(base_config(settings))  # seed 0, as the run
        self.state: RunState | None = None
        self.client = DCESClient(url, timeout=600.0, retry_for=300.0)
        self.run_id: str = self.client.create_run("round-cost", {"seed": 0})["id"]
        self.client.add_reference(self.run_id, self.reference)
        self.rounds = 0

    def warm_up(self, pool: Pool) -> None:
        """Round 0 of both DCES sides: the reference embedded, clusters fitted, models hot."""
        self.engine(pool)
        self.service(pool)

    def semdedup(self, pool: Pool) -> dict[str, Any]:
        fresh = Pool(pool.texts, pool.ids, pool.model, self.semdedup_embedder.encode,
                     pool.generator)
        start = time.perf_counter()
        chosen = SemDeDupStrategy("semdedup", 0).select(fresh, self.budget, 0, {})
        return {"seconds": time.perf_counter() - start, "selected": len(chosen.texts)}

    def engine(self, pool: Pool) -> dict[str, Any]:
        samples = round_samples(pool, self.rounds, logprobs=True)
        start = time.perf_counter()
        result, self.state = self.curator.curate(
            samples, self.budget, state=self.state, reference=self.reference)
        return {"seconds": time.perf_counter() - start, "selected": result.selected,
                "timings": result.timings}

    def service(self, pool: Pool) -> dict[str, Any]:
        samples = round_samples(pool, self.rounds, logprobs=True)
        start = time.perf_counter()
        result = self.client.curate_round(self.run_id, samples, self.budget,
                                          idempotency_key=f"round-cost-{self.rounds}")
        self.rounds += 1
        return {"seconds": time.perf_counter() - start, "selected": result["selected"],
                "timings": result["timings"]}


def measure(sides: Sides, pools: list[Pool]) -> list[dict[str, Any]]:
    rows = []
    for i, pool in enumerate(pools):
        order: list[tuple[str, Callable[[Pool], dict[str, Any]]]] = [
            ("semdedup", sides.semdedup), ("engine", sides.engine), ("service", sides.service)]
        order = order[i % 3:] + order[: i % 3]
        row: dict[str, Any] = {"pool": i, "order": [name for name, _ in order]}
        for name, side in order:
            row[name] = side(pool)
        base = row["semdedup"]["seconds"]
        row["engine_ratio"] = row["engine"]["seconds"] / base
        row["service_ratio"] = row["service"]["seconds"] / base
        print(f"pool {i}: semdedup {base:.2f} s, engine {row['engine']['seconds']:.2f} s "
              f"({row['engine_ratio']:.2f}x), service {row['service']['seconds']:.2f} s "
              f"({row['service_ratio']:.2f}x)", file=sys.stderr)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    host = machine()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="round-cost-") as tmp, \
            dces_service(Path(tmp) / "dces-serve.log") as service:
        embedder = load_embedder()
        shared, _real, setup = prepare(FULL, None, Path(tmp), embedder)
        shared.gen0_cache = args.gen0_cache
        warm_up, pools = candidate_pools(shared, args.pools, embedder.encode)
        sides = Sides(shared, service.wait_ready())
        sides.warm_up(warm_up)
        rows = measure(sides, pools)
        sides.client.close()
    results = {
        "command": " ".join(["python -m bench.round_cost", *(argv or sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {**host, "load_average_at_end": os.getloadavg()},
        "setup": {"corpus": setup["corpus"], "candidates": len(pools[0].texts),
                  "budget": shared.cfg.budget, "reference": len(shared.reference)},
        "pools": rows,
        "median_engine_ratio": statistics.median(r["engine_ratio"] for r in rows),
        "median_service_ratio": statistics.median(r["service_ratio"] for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "round_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "round_cost.md").write_text(markdown(results))
    print(f"wrote {args.out / 'round_cost.md'}")
    return 0


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["setup"]
    lines = [
        "# A DCES round against SemDeDup, same texts, same run (`python -m bench.round_cost`)",
        "",
        f"`{r['command']}`, {r['when']}, {r['seconds']:.0f} s. Machine: {m['cpu']}, "
        f"{m['cores']} cores, torch {m['torch']}; load average {m['load_average_at_start'][0]:.2f}"
        f" at the start, {m['load_average_at_end'][0]:.2f} at the end.",
        "",
        f"Each pool: {s['candidates']} candidates written by a generation-0 model of the "
        f"{s['corpus']} collapse benchmark, with their log-probs; budget {s['budget']}; the DCES "
        f"run's reference: {s['reference']} real entries, embedded in a warm-up round (a run's "
        "steady state). Every side embeds the pool from a cold cache.",
        "",
        "| pool | order | SemDeDup s | engine s | engine / SemDeDup | service s | "
        "service / SemDeDup | engine stages (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["pools"]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["engine"]["timings"].items()
                           if k != "total")
        lines.append(
            f"| {row['pool']} | {' → '.join(row['order'])} | {row['semdedup']['seconds']:.2f} | "
            f"{row['engine']['seconds']:.2f} | {row['engine_ratio']:.2f}× | "
            f"{row['service']['seconds']:.2f} | {row['service_ratio']:.2f}× | {stages} |")
    lines += [
        "",
        f"Median: engine **{r['median_engine_ratio']:.2f}×** SemDeDup, service "
        f"**{r['median_service_ratio']:.2f}×** SemDeDup (target of issue 9: within 2×).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
