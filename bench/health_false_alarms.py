"""False alarms of the health alerts on real data: rounds that cannot have collapsed.

    python -m bench.health_false_alarms [--corpus fortunes wordnet] [--seeds 3]
        [--sizes 100 300 1000 3000 5000] [--rounds 3] [--reference 6000]

A corpus is split at random into two halves. The run's reference is ``--reference`` entries of
the first half; each run then curates ``--rounds`` rounds of real text of one size, either
**resampled** from its own reference or **fresh**: entries of the second half, which the
reference does not hold. Every alert such a round raises is a false alarm. The engine runs with
its defaults (the library, the bundled embedder) except that no LM scores the texts: health does
not read confidences, and the LM would only add minutes.

Writes bench/results/health-false-alarms.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.collapse.data import load_corpus
from bench.corpora import Fortune
from bench.machine import machine
from curation import CurationConfig, Curator
from curation.embed import load_embedder

RESULTS = Path(__file__).parent / "results"
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}
SOURCES = ("resampled", "fresh")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", nargs="+", default=["fortunes", "wordnet"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000, 5000])
    p.add_argument("--rounds", type=int, default=3, help="rounds per run (alerts compare rounds)")
    p.add_argument("--reference", type=int, default=6000, help="reference entries per run")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def halves(corpus: list[Fortune], seed: int) -> tuple[list[Fortune], list[Fortune]]:
    entries = corpus[:]
    random.Random(seed).shuffle(entries)
    middle = len(entries) // 2
    return entries[:middle], entries[middle:]


def as_samples(entries: list[Fortune], prefix: str) -> list[dict[str, str]]:
    return [{"id": f"{prefix}-{e.id}", "text": e.text} for e in entries]


def run_one(curator: Curator, reference: list[Fortune], pool: list[Fortune], size: int,
            rounds: int, rng: random.Random) -> list[dict[str, Any]]:
    """One run of ``rounds`` rounds of ``size`` entries drawn from ``pool``."""
    state = None
    out = []
    refs = as_samples(reference, "ref")
    for r in range(rounds):
        batch = as_samples(rng.sample(pool, size), f"r{r}")
        result, state = curator.curate(batch, max(1, size // 3), state=state,
                                       reference=refs)
        health = result.health
        out.append({
            "round": r,
            "alerts": [{"kind": a["kind"], "severity": a["severity"], "message": a["message"]}
                       for a in health["alerts"]],
            **{key: health.get(key) for key in (
                "effective_clusters", "reference_coverage", "lost_reference_mass",
                "missing_mass", "missing_mass_by_chance", "mode_loss_p", "mode_drop_p",
                "tail_coverage")},
        })
    return out


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (corpus, source, size): rounds, rounds with an alert, alerts by kind."""
    table: dict[tuple[str, str, int], dict[str, Any]] = {}
    for run in runs:
        key = (run["corpus"], run["source"], run["size"])
        row = table.setdefault(key, {"corpus": key[0], "source": key[1], "size": key[2],
                                     "rounds": 0, "rounds_alerted": 0, "kinds": Counter(),
                                     "p_below_5pct": 0})
        for r in run["rounds"]:
            row["rounds"] += 1
            row["rounds_alerted"] += bool(r["alerts"])
            row["kinds"].update(a["kind"] for a in r["alerts"])
            row["p_below_5pct"] += (r["mode_loss_p"] or 1.0) < 0.05
    return [{**row, "kinds": dict(row["kinds"])} for row in table.values()]


def markdown(results: dict[str, Any]) -> str:
    rows = results["summary"]
    rounds = sum(r["rounds"] for r in rows)
    alerted = sum(r["rounds_alerted"] for r in rows)
    lines = [
        "# Health alerts on real data: false alarms",
        "",
        f"`{results['command']}` — {results['when']}, {results['machine']['cores']} cores, "
        f"{results['seconds'] / 60:.1f} min.",
        "",
        f"Every round below is real text (see `bench/health_false_alarms.py`): **{alerted} of "
        f"{rounds} rounds raised an alert** ({alerted / max(1, rounds):.1%}). Engine defaults "
        f"(health.mode_loss_alpha {CurationConfig().health.mode_loss_alpha}: the designed "
        "false-alarm rate of the mode tests per round).",
        "",
        "The last column shows that the test is not blind: on real data its p-value should",
        "fall below 0.05 in about 5% of rounds (resampled rounds are exchangeable with the",
        "reference by construction; fresh ones are the same corpus, not the same texts).",
        "",
        "| corpus | rounds drawn | size | rounds | rounds with an alert | alerts by kind "
        "| mode-loss p < 0.05 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["corpus"], r["source"], r["size"])):
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["kinds"].items())) or "-"
        lines.append(f"| {r['corpus']} | {r['source']} | {r['size']} | {r['rounds']} | "
                     f"{r['rounds_alerted']} | {kinds} | {r['p_below_5pct']} |")
    low = sum(r["p_below_5pct"] for r in rows)
    lines += ["", f"Mode-loss p < 0.05 in {low} of {rounds} rounds "
                  f"({low / max(1, rounds):.1%}; chance alone: 5%)."]
    examples = [a["message"] for run in results["runs"] for r in run["rounds"]
                for a in r["alerts"]][:5]
    if examples:
        lines += ["", "Alerts raised (first 5):", ""] + [f"- {m}" for m in examples]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    embedder = load_embedder()
    curator = Curator(CurationConfig.from_dict(NO_LM), embedder=embedder)
    runs = []
    for corpus_name in args.corpus:
        corpus = load_corpus(corpus_name)
        for seed in range(args.seeds):
            first, second = halves(corpus, seed)
            reference = first[: args.reference]
            for source in SOURCES:
                pool = reference if source == "resampled" else second
                for size in args.sizes:
                    if size > len(pool):
                        print(f"skip {corpus_name} {source} {size}: only {len(pool)} entries")
                        continue
                    rng = random.Random(f"{corpus_name}-{seed}-{source}-{size}")
                    rounds = run_one(curator, reference, pool, size, args.rounds, rng)
                    alerts = sum(len(r["alerts"]) for r in rounds)
                    print(f"{corpus_name} seed {seed} {source} {size}: {alerts} alerts",
                          flush=True)
                    runs.append({"corpus": corpus_name, "seed": seed, "source": source,
                                 "size": size, "rounds": rounds})
    results = {
        "command": shlex.join(["python", "-m", "bench.health_false_alarms",
                               *(argv if argv is not None else sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.perf_counter() - start,
        "machine": machine(),
        "setup": {"corpora": args.corpus, "seeds": args.seeds, "sizes": args.sizes,
                  "rounds": args.rounds, "reference": args.reference,
                  "config": CurationConfig.from_dict(NO_LM).to_dict()},
        "summary": [],
        "runs": runs,
    }
    results["summary"] = summarise(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "health-false-alarms.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "health-false-alarms.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
