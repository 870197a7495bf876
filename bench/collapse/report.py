"""Results as JSON (every figure), a Markdown summary and PNG plots (metric vs generation).

The Markdown table is the final generation's mean ± std across seeds, plus how many
generations each seed took until held-out perplexity reached 1.5x its generation 0. Wins and
losses of the DCES variants are called "clear" only when the gap exceeds the sum of the two
standard deviations; everything else is reported as within the seed noise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench.collapse.config import ModelConfig

# (key, label, +1 higher is better / -1 lower is better / 0 neither)
METRICS: list[tuple[str, str, int]] = [
    ("heldout_perplexity", "held-out ppl", -1),
    ("entropy", "next-token entropy", 0),
    ("ece", "ECE", -1),
    ("distinct_1", "distinct-1", +1),
    ("distinct_2", "distinct-2", +1),
    ("distinct_3", "distinct-3", +1),
    ("distinct_2_window", "distinct-2 @1k bigrams", +1),
    ("mean_words", "words/sample", 0),
    ("vendi", "Vendi", +1),
    ("kl_to_real", "KL to real", -1),
    ("tail_mass", "tail mass", 0),  # raw: gibberish inflates it (see textmetrics)
    ("tail_coverage", "tail coverage", +1),
]
PPL_FACTOR = 1.5
BASELINES = ("random", "ppl_low", "ppl_high", "semdedup")


def by_strategy(runs: Sequence[dict[str, Any]], regime: str) -> dict[str, list[dict[str, Any]]]:
    """The chains of ``regime`` grouped by strategy, each list sorted by seed."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        if run["regime"] == regime:
            out.setdefault(run["strategy"], []).append(run)
    return out


def series(chains: list[dict[str, Any]], key: str) -> np.ndarray:
    """(seeds, generations + 1) values of one metric (NaN where a run predates it)."""
    return np.array([[g.get(key, np.nan) for g in c["generations"]] for c in chains],
                    dtype=np.float64)


def gens_to_ppl_factor(chain: dict[str, Any]) -> int | None:
    ppl = [g["heldout_perplexity"] for g in chain["generations"]]
    for g, value in enumerate(ppl):
        if value >= PPL_FACTOR * ppl[0]:
            return g
    return None


def _fmt(mean: float, std: float) -> str:
    if np.isnan(mean):  # a metric newer than a cached generation 0, or no n-gram at all
        return "n/a"
    digits = 1 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _final(chains: list[dict[str, Any]], key: str) -> tuple[float, float]:
    last = series(chains, key)[:, -1]
    return float(last.mean()), float(last.std())


def final_table(groups: dict[str, list[dict[str, Any]]], real: dict[str, Any]) -> list[str]:
    generations = len(next(iter(groups.values()))[0]["generations"]) - 1
    head = ["strategy", *(label for _, label, _ in METRICS),
            f"gens to {PPL_FACTOR}x gen-0 ppl (per seed)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    real_cells = [f"{real[k]:.3f}" if k in real else "" for k, _, _ in METRICS]
    lines.append("| real held-out text | " + " | ".join(real_cells) + " | |")
    first = next(iter(groups.values()))
    gen0 = [_fmt(float(series(first, k)[:, 0].mean()), float(series(first, k)[:, 0].std()))
            for k, _, _ in METRICS]
    lines.append("| generation 0 (shared) | " + " | ".join(gen0) + " | |")
    for name, chains in groups.items():
        cells = [_fmt(*_final(chains, k)) for k, _, _ in METRICS]
        reached = [gens_to_ppl_factor(c) for c in chains]
        cells.append(", ".join(str(r) if r is not None else f">{generations}" for r in reached))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def trajectory_table(groups: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    generations = len(next(iter(groups.values()))[0]["generations"])
    head = ["strategy", *(f"gen {g}" for g in range(generations))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, chains in groups.items():
        values = series(chains, key)
        cells = [_fmt(float(values[:, g].mean()), float(values[:, g].std()))
                 for g in range(generations)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _final_by_seed(groups: dict[str, list[dict[str, Any]]], key: str
                   ) -> dict[str, dict[int, float]]:
    """Each strategy's final-generation ``key``, by seed."""
    return {name: {c["seed"]: c["generations"][-1][key] for c in chains}
            for name, chains in groups.items()}


def per_seed_table(groups: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    """Final-generation ``key`` of every strategy in every seed: strategies of a seed share
    generation 0 and their random streams, so a comparison is paired by seed. Each DCES row ends
    with the seeds in which it is lower than every baseline in the run."""
    seeds = sorted({c["seed"] for chains in groups.values() for c in chains})
    final = _final_by_seed(groups, key)
    baselines = [b for b in BASELINES if b in final and b != "ppl_low"]
    lines = ["| strategy | " + " | ".join(f"seed {s}" for s in seeds)
             + f" | lower than {', '.join(baselines)} in |", "|" + "---|" * (len(seeds) + 2)]
    for name, values in final.items():
        wins = "" if not name.startswith("dces") or not baselines else (
            f"{sum(all(values[s] < final[b][s] for b in baselines) for s in seeds)} of "
            f"{len(seeds)} seeds")
        lines.append(f"| {name} | " + " | ".join(f"{values[s]:.1f}" for s in seeds)
                     + f" | {wins} |")
    return lines


def paired_table(groups: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    """Each DCES variant against each baseline (and each ablation against the default `dces`),
    paired by seed: in how many seeds it is lower, and the mean relative difference with its 95%
    interval (Student's t over the seeds' paired differences). The interval is what a few seeds
    can say; a verdict needs it to exclude 0."""
    final = _final_by_seed(groups, key)
    baselines = [b for b in BASELINES if b in final and b != "ppl_low"]
    lines = ["| DCES variant | baseline | lower in | mean difference | 95% interval |",
             "|---|---|---|---|---|"]
    for name in (n for n in final if n.startswith("dces")):
        for base in [*baselines, *(["dces"] if name != "dces" and "dces" in final else [])]:
            seeds = sorted(set(final[name]) & set(final[base]))
            diff = np.array([final[name][s] / final[base][s] - 1.0 for s in seeds])
            if not len(diff) or not np.isfinite(diff).all():
                continue  # no seed in common, or a run that diverged: nothing to pair
            mean = float(diff.mean())
            half = (float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1)
                          / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"))
            interval = "-" if np.isnan(half) else f"{mean - half:+.1%} to {mean + half:+.1%}"
            lines.append(f"| {name} | {base} | {int((diff < 0).sum())} of {len(seeds)} seeds | "
                         f"{mean:+.1%} | {interval} |")
    return lines


def comparison(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each DCES variant against each baseline, metric by metric, at the final generation."""
    lines = []
    if len(next(iter(groups.values()))) < 2:
        lines.append("One seed only: no spread to judge against, so no difference below is a "
                     "verdict.")
    for variant in (s for s in groups if s.startswith("dces")):
        for base in (b for b in BASELINES if b in groups):
            wins: list[str] = []
            losses: list[str] = []
            ties: list[str] = []
            for key, label, direction in METRICS:
                if direction == 0:
                    continue
                (m1, s1), (m2, s2) = _final(groups[variant], key), _final(groups[base], key)
                better = direction * (m1 - m2) > 0
                text = f"{label} {m1:.3g} vs {m2:.3g}"
                if abs(m1 - m2) <= s1 + s2:
                    ties.append(text)
                else:
                    (wins if better else losses).append(text)
            lines.append(f"- **{variant} vs {base}**: clearly better on "
                         f"{'; '.join(wins) or 'nothing'} — clearly worse on "
                         f"{'; '.join(losses) or 'nothing'} — within seed noise: "
                         f"{len(ties)} metric(s).")
    return lines


def service_table(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What the service decided and measured each round (mean over seeds)."""
    lines = ["| strategy | round | edge ratio | center/edge | edits per 100 tok | rejected "
             "| ref. coverage | eff. clusters | alerts |", "|" + "---|" * 9]
    for name, chains in groups.items():
        if not name.startswith("dces"):
            continue
        rounds = len(chains[0]["generations"]) - 1
        for r in range(rounds):
            info = [c["generations"][r + 1]["selection"] for c in chains]
            ratio = np.mean([i["mean_edge_ratio"] for i in info])
            center = np.mean([i["selected_center"] for i in info])
            edge = np.mean([i["selected_edge"] for i in info])
            edits = np.mean([i["edit_stats"]["edit_rate"] for i in info])
            rejected = np.mean([sum(i["rejected"].values()) for i in info])
            cover = np.mean([i["health"]["reference_coverage"] or 0.0 for i in info])
            eff = np.mean([i["health"]["effective_clusters"] for i in info])
            alerts = np.mean([len(i["health"]["alerts"]) for i in info])
            lines.append(f"| {name} | {r} | {ratio:.2f} | {center:.0f}/{edge:.0f} | {edits:.2f} "
                         f"| {rejected:.0f} | {cover:.2f} | {eff:.1f} | {alerts:.1f} |")
    return lines


# Ground truth of a collapse (the benchmark knows every sample's category; DCES does not): the
# generated samples' tail mass down by a quarter, or their category entropy down by 5%, against
# generation 0. Fixed before the alerts were looked at.
TAIL_FALL = 0.75
ENTROPY_FALL = 0.95


def category_entropy(counts: Sequence[int]) -> float:
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def fallen_at(chain: dict[str, Any]) -> int | None:
    """The first generation whose samples have clearly lost the tail or the category mix."""
    gens = chain["generations"]
    tail0, entropy0 = gens[0]["tail_mass"], category_entropy(gens[0]["category_counts"])
    for g in gens[1:]:
        if (g["tail_mass"] <= TAIL_FALL * tail0
                or category_entropy(g["category_counts"]) <= ENTROPY_FALL * entropy0):
            return int(g["generation"])
    return None


def first_alert(chain: dict[str, Any], kind: str) -> int | None:
    """The first round (= the generation whose pool it curated) with an alert of ``kind``."""
    for g in chain["generations"][1:]:
        health = (g.get("selection") or {}).get("health") or {}
        if any(a["kind"] == kind for a in health.get("alerts", [])):
            return int(g["generation"]) - 1
    return None


def detection_table(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per chain whose pools DCES saw: when the ground truth fell and when each mode alert first
    fired (rounds curate generations 0..G-1, so an alert can come no later than G-1)."""
    lines = ["| strategy | seed | ground truth fell at gen | first `mode_loss` | first "
             "`mode_drop` | delay of `mode_drop` (gens) |", "|" + "---|" * 6]
    for name, chains in groups.items():
        if not any((c["generations"][1].get("selection") or {}).get("health") for c in chains):
            continue
        for chain in chains:
            fell, loss, drop = (fallen_at(chain), first_alert(chain, "mode_loss"),
                                first_alert(chain, "mode_drop"))
            delay = "-" if fell is None or drop is None else str(drop - fell)
            lines.append(f"| {name} | {chain['seed']} | {_or_dash(fell)} | {_or_dash(loss)} | "
                         f"{_or_dash(drop)} | {delay} |")
    return lines


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def cluster_diagnosis(selection: dict[str, Any]) -> dict[str, float]:
    """Why a DCES round chose what it chose, from the per-cluster health the service returned.

    ``tighter``: the share of candidates in clusters less dispersed than the reference there
    (the only condition under which the dispersion term raises the edge ratio). ``lost_reference``:
    reference mass in clusters that received no candidate at all (no selection can restore it).
    ``tv_candidates`` / ``tv_selected``: total-variation distance of the candidates' and of the
    selection's cluster mix to the reference's; the drop between them is what allocation
    recovered.
    """
    clusters = selection["clusters"]
    chosen = sum(c["center"] + c["edge"] for c in clusters) or 1
    occupied = [c for c in clusters if c["size"] > 0]
    return {
        "clusters": len(clusters),
        "occupied": len(occupied),
        "tighter": sum(c["share"] for c in occupied if c["reference_dispersion"] is not None
                       and c["dispersion"] < c["reference_dispersion"]),
        "lost_reference": sum(c["reference_share"] for c in clusters if c["size"] == 0),
        "tv_candidates": 0.5 * sum(abs(c["share"] - c["reference_share"]) for c in clusters),
        "tv_selected": 0.5 * sum(abs((c["center"] + c["edge"]) / chosen - c["reference_share"])
                                 for c in clusters),
    }


def diagnosis_table(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """`cluster_diagnosis` of every DCES round, mean over seeds."""
    keys = ["clusters", "occupied", "tighter", "lost_reference", "tv_candidates", "tv_selected"]
    lines = ["| strategy | round | clusters | with candidates "
             "| candidates in clusters tighter than reference "
             "| reference mass with no candidates | TV candidates→reference "
             "| TV selection→reference |", "|" + "---|" * 8]
    for name, chains in groups.items():
        if not name.startswith("dces"):
            continue
        for r in range(len(chains[0]["generations"]) - 1):
            rows = [cluster_diagnosis(c["generations"][r + 1]["selection"]) for c in chains]
            mean = {k: float(np.mean([row[k] for row in rows])) for k in keys}
            lines.append(f"| {name} | {r} | {mean['clusters']:.0f} | {mean['occupied']:.0f} "
                         f"| {mean['tighter']:.3f} | {mean['lost_reference']:.3f} "
                         f"| {mean['tv_candidates']:.3f} | {mean['tv_selected']:.3f} |")
    return lines


def runtime_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Mean seconds per stage of one generation, by strategy (generation 0 separately)."""
    stages = ["select", "train", "sample", "evaluate"]
    lines = ["| strategy | " + " | ".join(stages) + " | total |", "|" + "---|" * 6]
    gen0 = [r["generations"][0]["seconds"] for r in runs]
    cells = [f"{np.mean([g.get(k, 0.0) for g in gen0]):.1f}" for k in stages]
    total = np.mean([sum(g.values()) for g in gen0])
    lines.append("| generation 0 (once per seed) | " + " | ".join(cells) + f" | {total:.1f} |")
    names = dict.fromkeys(r["strategy"] for r in runs)
    for name in names:
        laps = [g["seconds"] for r in runs if r["strategy"] == name for g in r["generations"][1:]]
        cells = [f"{np.mean([lap.get(k, 0.0) for lap in laps]):.1f}" for k in stages]
        total = np.mean([sum(lap.values()) for lap in laps])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {total:.1f} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    setup = results["setup"]
    out = [
        f"# Collapse benchmark — {', '.join(cfg['regimes'])}",
        "",
        f"`{results['command']}` — {results['when']}, {_machine(results['machine'])}, "
        f"{results['seconds'] / 60:.1f} min.",
        *(["", f"> {results['note']}"] if results.get("note") else []),
        "",
        f"Model: {_model(cfg['model'], setup)} "
        f"Data: {setup['split']['train_entries']} real training entries, "
        f"{setup['split']['test_entries']} held-out ({cfg['test_docs']} scored), "
        f"{setup['split']['categories']} categories; tail = the "
        f"{len(setup['split']['tail_categories'])} smallest "
        f"({setup['split']['tail_train_share']:.1%} of the training split). "
        f"Generation 0: {cfg['gen0_tokens']:,} token passes "
        f"{'from scratch' if cfg['model'].get('pretrained') is None else 'of fine-tuning'}; "
        f"each later generation "
        f"continues for {cfg['gen_tokens']:,} token passes on {cfg['budget']} samples chosen from "
        f"a pool of {cfg['budget'] * cfg['pool_factor']} sampled at temperature "
        f"{cfg['temperature']}, top-p {cfg['top_p']}. {cfg['seeds']} seed(s) from seed "
        f"{cfg.get('first_seed', 0)}, "
        f"{cfg['generations']} generations after generation 0. Text metrics on "
        f"{cfg['metric_samples']} generated samples per generation.",
    ]
    for regime in cfg["regimes"]:
        groups = by_strategy(results["runs"], regime)
        out += ["", f"## Regime `{regime}`: final generation, mean ± std over seeds", "",
                *final_table(groups, results["real"]), "",
                "### Final held-out perplexity by seed (paired)", "",
                *per_seed_table(groups, "heldout_perplexity"), "",
                *paired_table(groups, "heldout_perplexity"), "",
                "### Held-out perplexity by generation", "",
                *trajectory_table(groups, "heldout_perplexity"), "",
                "### Tail coverage by generation", "",
                *trajectory_table(groups, "tail_coverage"), "",
                "### Tail mass (raw) by generation", "", *trajectory_table(groups, "tail_mass"), "",
                *([] if regime == "replace" else [
                    "### Real text's share of the training tokens by generation", "",
                    *trajectory_table(groups, "real_token_share"), ""]),
                "### DCES against the baselines (final generation)", "", *comparison(groups)]
        if any(s.startswith("dces") for s in groups):
            out += ["", "### What the service measured and decided (mean over seeds)", "",
                    *service_table(groups), "",
                    "### Per-cluster diagnosis from the service's health (mean over seeds)", "",
                    *diagnosis_table(groups)]
        if any((g.get("selection") or {}).get("health") for c in results["runs"]
               for g in c["generations"][1:]):
            out += ["", "### Health alerts against the ground truth", "",
                    f"Ground truth: the generated samples' tail mass at most {TAIL_FALL} x "
                    f"generation 0's, or their category entropy at most {ENTROPY_FALL} x; "
                    "`mode_loss` compares a round's candidates with the reference, `mode_drop` "
                    "with an earlier round of the run (up to health.alert_window back). A "
                    "negative delay is an alert before the ground truth fell.", "",
                    *detection_table(groups)]
        out += ["", f"![metrics against generation]({results['name']}-{regime}.png)"]
    out += ["", "## Runtime: seconds per generation (wall clock in a worker, mean)", "",
            *runtime_table(results["runs"])]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], regime: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    groups = by_strategy(results["runs"], regime)
    rows = -(-len(METRICS) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4 * rows))
    for ax in axes.flat[len(METRICS):]:
        ax.axis("off")
    for ax, (key, label, direction) in zip(axes.flat, METRICS, strict=False):
        for name, chains in groups.items():
            values = series(chains, key)
            mean, std = values.mean(0), values.std(0)
            x = np.arange(len(mean))
            ax.plot(x, mean, marker="o", ms=3, label=name, lw=2 if name == "dces" else 1.2)
            ax.fill_between(x, mean - std, mean + std, alpha=0.12)
        if key in results["real"]:
            ax.axhline(results["real"][key], color="k", ls="--", lw=0.8, label="real text")
        arrow = {1: " (higher is better)", -1: " (lower is better)", 0: ""}[direction]
        ax.set_title(label + arrow)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key == "heldout_perplexity":
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"Collapse benchmark, regime {regime} (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def rerender(json_path: Path) -> list[Path]:
    """Rewrite the Markdown and PNGs next to an existing results JSON (after a report change)."""
    return write(json.loads(json_path.read_text()), json_path.parent)


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``<name>.json``, ``<name>.md`` and one PNG per regime; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = results["name"]
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown(results))
    for regime in results["config"]["regimes"]:
        png = out_dir / f"{name}-{regime}.png"
        plot(results, regime, png)
        paths.append(png)
    return paths


def _model(model: dict[str, Any], setup: dict[str, Any]) -> str:
    """The generator in a sentence: a GPT-2 from scratch, or a pretrained model and its prompts
    (results recorded before pretrained generators existed have no ``pretrained`` key)."""
    if model.get("pretrained") is None:
        return (f"GPT-2 style, {setup['parameters']:,} parameters ({model['n_layer']} layers, "
                f"width {model['n_embd']}, context {model['context']}, BPE vocabulary "
                f"{setup['vocab_size']}).")
    prompt = (f"each sample continues the first {model['prompt_tokens']} tokens of a random real "
              f"training entry" if model["prompt_tokens"] else "each sample starts from scratch")
    limit = ModelConfig(**model).continuation_limit
    return (f"pretrained `{model['pretrained']}`, {setup['parameters']:,} parameters, fine-tuned "
            f"(vocabulary {setup['vocab_size']}, context {model['context']}); {prompt} for up to "
            f"{limit} tokens.")


def _machine(m: dict[str, Any]) -> str:
    """Cores, the CPU where it was recorded and the GPU if any: training's floating point
    differs between them, so the same seeds follow other trajectories on another one."""
    cpu = f" ({m['cpu']}; {', '.join(m['simd']) or 'no AVX'})" if "simd" in m else ""
    gpu = f", {m['gpu_name']}" if m.get("gpu_name") else ""
    return f"{m['cores']} cores{cpu}{gpu}"


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or ["--help"]:
        if arg.startswith("-"):
            sys.exit("usage: python -m bench.collapse.report RESULTS.json ...  (re-renders the "
                     "Markdown and PNGs beside each JSON)")
        for written in rerender(Path(arg)):
            print(f"wrote {written}")

