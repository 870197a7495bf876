"""Token editor on real text: how much it edits, how much it hurts, how fast it is.

    python -m bench.editor [--samples 300] [--ppl-samples 100] [--speed-samples 48]
                           [--lm-written 48] [--seed 0]

The editor's input in production is a round's CENTER samples, so the texts are those: a real
round (editing and the perplexity check off) over random Debian fortunes, with a budget that
yields about ``--samples`` centers. ``--lm-written N`` adds a second population, closer to what a
self-training job posts: the LM's own continuations (sampled, temperature 1, 48 new tokens) of
the first four words of N of those centers, on a smaller grid.

1. A grid of settings. Every setting edits the same texts, all from ONE scoring pass
   (``TokenEditor.edit_scored``; the check of the next token re-scores the edited texts), and
   reports the share of samples with at least one edit and edits per 100 scored tokens (all
   samples), and the perplexity ratio edited / original under the same LM on the first
   ``--ppl-samples`` of them (re-scoring the edited texts of every setting is most of the
   bench's time). First the engine's defaults with the check of the next token at several
   strengths (0: off), at the default threshold and at threshold 0 (the purely relative rule the
   collapse benchmark's ``dces_edit`` forces); then the absolute-threshold grid that chose
   ``whole_words`` (every token above p, no ``top_fraction`` cap, no check of the next token).
2. Throughput of ``TokenEditor.edit`` at the engine's defaults (tokenize, forward, reduce,
   resample, re-score the edited texts, splice) vs bare forward passes of the same LM over the
   same texts and batches (the centers, then those with a proposed edit), and vs the first pass
   alone, interleaved, best of 3 by wall clock and by process CPU time (the machine is shared,
   so single timings are noisy).

Writes bench/results/editor.json and editor.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import load_fortunes
from bench.machine import machine
from curation import CurationConfig, Curator
from curation.config import EditConfig
from curation.edit import EditedText, TokenEditor
from curation.lm import CausalLM, load_causal_lm

RESULTS = Path(__file__).parent / "results"
SETTING = ("whole_words", "threshold", "top_fraction", "min_next_ratio", "top_k", "beta",
           "exclude_original")
DEFAULT = EditConfig(enabled=True)


def _setting(**values: object) -> EditConfig:
    """An enabled editor with the absolute-threshold rule alone (no ``top_fraction`` cap, no
    check of the next token), as this grid was first measured."""
    return EditConfig(enabled=True, top_fraction=1.0, min_next_ratio=0.0,
                      **values)  # type: ignore[arg-type]


def grid() -> list[EditConfig]:
    """The defaults and the check of the next token first. In the absolute grid top_k and beta
    barely matter (the original, excluded, held > 90% of the mass), so they get three points;
    the threshold and whole_words are what move the edit rate and damage."""
    out = [replace(DEFAULT, threshold=t, min_next_ratio=r)
           for t in (DEFAULT.threshold, 0.0) for r in (0.0, 0.1, DEFAULT.min_next_ratio, 0.5)]
    out += [
        _setting(whole_words=True, threshold=t, top_k=k, beta=b)
        for t in (0.8, 0.9, 0.95, 0.99)
        for k, b in ((4, 1.0), (8, 1.0), (8, 1.5))
    ]
    out += [_setting(whole_words=False, threshold=t, beta=1.0) for t in (0.9, 0.95, 0.99)]
    out.append(_setting(whole_words=True, threshold=0.9, exclude_original=False))
    return out


def lm_grid() -> list[EditConfig]:
    out = [replace(DEFAULT, min_next_ratio=r) for r in (0.0, DEFAULT.min_next_ratio)]
    out += [_setting(whole_words=True, threshold=t, beta=1.0) for t in (0.8, 0.9, 0.95, 0.97, 0.99)]
    return out + [_setting(whole_words=False, threshold=t, beta=1.0) for t in (0.9, 0.99)]


def lm_written(lm: CausalLM, texts: list[str], seed: int) -> list[str]:
    """The LM's own continuations of the first four words of each text."""
    import torch

    prompts = [" ".join(t.split()[:4]) for t in texts]
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = lm.model.generate(
            **enc,
            max_new_tokens=48,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    return [lm.tokenizer.decode(o, skip_special_tokens=True).strip() for o in out]


def center_texts(n: int, seed: int) -> list[str]:
    """About ``n`` center samples of a real round over random fortunes (no LM involved)."""
    corpus = load_fortunes()
    pick = np.random.default_rng(seed).choice(len(corpus), 5 * n, replace=False)
    samples = [{"id": str(i), "text": corpus[i].text} for i in sorted(pick)]
    config = CurationConfig.from_dict(
        {"seed": seed, "edit": {"enabled": False}, "score": {"lm_fallback": False}}
    )
    result, _ = Curator(config).curate(samples, budget=round(n / 0.7))
    by_id = {s["id"]: s["text"] for s in samples}
    return [by_id[d.id] for d in result.decisions if d.role == "center"][:n]


def measure(
    lm: CausalLM, texts: list[str], settings: list[EditConfig], seed: int, ppl_samples: int
) -> tuple[list[dict[str, Any]], float]:
    """One row per setting, and the median perplexity of the (first ``ppl_samples``) originals."""
    base = settings[0]
    scores = lm.score(
        texts,
        base.max_tokens,
        base.batch_size,
        top_k=max(c.top_k for c in settings),
        top_k_min_p=min(c.threshold for c in settings),
    )
    tokens = sum(len(s) for s in scores)
    original = np.array([s.perplexity() for s in scores[:ppl_samples]])
    rows = []
    for setting in settings:
        edited = TokenEditor(lm, setting).edit_scored(texts, scores, seed)
        changed = [i for i, e in enumerate(edited[:ppl_samples]) if e.edits]
        ratio = np.ones(len(original))
        if changed:
            ppl = lm.perplexity([edited[i].text for i in changed], base.max_tokens, base.batch_size)
            ratio[changed] = ppl / original[changed]
        rows.append(
            {
                **{k: getattr(setting, k) for k in SETTING},
                "edited_share": round(sum(bool(e.edits) for e in edited) / len(texts), 3),
                "edits_per_100_tokens": round(100 * sum(len(e.edits) for e in edited) / tokens, 2),
                "ppl_ratio_mean": round(float(np.nanmean(ratio)), 3),
                "ppl_ratio_geomean": round(float(np.exp(np.nanmean(np.log(ratio)))), 3),
                "ppl_ratio_edited_median": (
                    round(float(np.nanmedian(ratio[changed])), 3) if changed else None
                ),
                "ppl_ratio_max": round(float(np.nanmax(ratio)), 2),
                "examples": examples(texts, edited),
            }
        )
        print({k: v for k, v in rows[-1].items() if k != "examples"}, flush=True)
    return rows, float(np.nanmedian(original))


def examples(texts: list[str], edited: list[EditedText], n: int = 6) -> list[dict[str, Any]]:
    """The first ``n`` edited short samples, to judge by eye whether the edits are noise."""
    picked = [(t, e) for t, e in zip(texts, edited, strict=True) if e.edits and len(t) < 160]
    return [
        {"original": t, "edited": e.text, "edits": [asdict(x) for x in e.edits]}
        for t, e in picked[:n]
    ]


def is_default(row: dict[str, Any]) -> bool:
    return all(row[k] == getattr(DEFAULT, k) for k in SETTING)


def throughput(lm: CausalLM, texts: list[str], setting: EditConfig, repeats: int = 3) -> dict:
    """Editor vs bare forward passes over the same texts and batches, best of ``repeats`` each:
    the texts, then (the check of the next token) the texts with every proposed edit applied,
    as the editor re-scores them; the editor's further checks of a text that lost an edit
    count against it. The first pass alone is timed too."""
    editor = TokenEditor(lm, setting)
    editor.edit(texts[:4], seed=0)  # builds the vocabulary tables once, as a service would
    unchecked = TokenEditor(lm, replace(setting, min_next_ratio=0.0)).edit(texts, seed=0)
    rechecked = [e.text for e in unchecked if e.edits] if setting.min_next_ratio > 0 else []

    def tokenized(batch: list[str]) -> list[np.ndarray]:
        enc = lm.tokenizer(batch, truncation=True, max_length=setting.max_tokens)
        return [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]

    ids, recheck_ids = tokenized(texts), tokenized(rechecked) if rechecked else []
    tokens = sum(len(x) for x in ids)

    def forward(*passes: list[np.ndarray]) -> None:
        for batch in passes:
            for _batch in lm.forward_batches(batch, setting.batch_size):
                pass

    runs = (("first_pass", lambda: forward(ids)),
            ("bare", lambda: forward(ids, recheck_ids)),
            ("editor", lambda: editor.edit(texts, seed=0)))
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in runs}
    for _ in range(repeats):
        for name, run in runs:
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    best = {name: np.min(np.array(runs), axis=0) for name, runs in timings.items()}
    return {
        "samples": len(texts),
        "tokens": tokens,
        "rechecked_samples": len(rechecked),
        "rechecked_tokens": sum(len(x) for x in recheck_ids),
        "bare_forward_wall_cpu_s": [[round(w, 2), round(c, 2)] for w, c in timings["bare"]],
        "first_pass_wall_cpu_s": [[round(w, 2), round(c, 2)] for w, c in timings["first_pass"]],
        "editor_wall_cpu_s": [[round(w, 2), round(c, 2)] for w, c in timings["editor"]],
        "bare_tokens_per_s": round(float(tokens / best["bare"][0]), 1),
        "editor_tokens_per_s": round(float(tokens / best["editor"][0]), 1),
        "throughput_ratio_wall": round(float(best["bare"][0] / best["editor"][0]), 3),
        "throughput_ratio_cpu": round(float(best["bare"][1] / best["editor"][1]), 3),
        "first_pass_ratio_wall": round(float(best["first_pass"][0] / best["editor"][0]), 3),
        "target": 0.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--ppl-samples", type=int, default=100)
    parser.add_argument("--speed-samples", type=int, default=48)
    parser.add_argument("--lm-written", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clock = time.perf_counter()
    load_before = os.getloadavg()
    texts = center_texts(args.samples, args.seed)
    lm = load_causal_lm()
    rows, ppl_median = measure(lm, texts, grid(), args.seed, args.ppl_samples)
    speed = throughput(lm, texts[: args.speed_samples], DEFAULT)
    print(speed, flush=True)
    written = lm_written(lm, texts[: args.lm_written], args.seed) if args.lm_written else []
    written_rows, written_ppl = (
        measure(lm, written, lm_grid(), args.seed, len(written)) if written else ([], None)
    )
    report = {
        "machine": {**machine(), "load_average_before": load_before, "load_after": os.getloadavg()},
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "samples": len(texts),
        "tokens_per_sample_median": float(
            np.median([len(x) for x in lm.tokenizer(texts).input_ids])
        ),
        "ppl_samples": min(args.ppl_samples, len(texts)),
        "ppl_median": round(ppl_median, 1),
        "seed": args.seed,
        "lm": lm.name,
        "dtype": str(lm.model.dtype).removeprefix("torch."),
        "grid": rows,
        "lm_written": {
            "samples": len(written),
            "ppl_median": round(written_ppl, 1) if written_ppl else None,
            "grid": written_rows,
        },
        "defaults": {k: getattr(DEFAULT, k) for k in SETTING},
        "throughput": speed,
        "bench_seconds": round(time.perf_counter() - clock, 1),
        "bench_cpu_seconds": round(time.process_time(), 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "editor.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "editor.md").write_text(markdown(report))


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| whole_words | threshold | top_fraction | min_next_ratio | top_k | beta "
        "| exclude_original | samples edited "
        "| edits / 100 tokens | ppl ratio mean | geomean | median (edited) | max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mark = " **← defaults**" if is_default(row) else ""
        lines.append(
            f"| {row['whole_words']} | {row['threshold']} | {row['top_fraction']} "
            f"| {row['min_next_ratio']} | {row['top_k']} | {row['beta']} "
            f"| {row['exclude_original']} | {row['edited_share']:.0%} "
            f"| {row['edits_per_100_tokens']} | {row['ppl_ratio_mean']} "
            f"| {row['ppl_ratio_geomean']} | {row['ppl_ratio_edited_median']} "
            f"| {row['ppl_ratio_max']}{mark} |"
        )
    return lines


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["throughput"]
    lines = [
        "# Token editor benchmark (`python -m bench.editor`)",
        "",
        f"Machine: {m['cores']}-core CPU ({m['cpu']}), no GPU, torch {m['torch']} with "
        f"{m['torch_threads']} threads, shared with other work (load average "
        f"{m['load_average_before'][0]:.1f} before, {m['load_after'][0]:.1f} after). "
        f"{r['when']}. LM: {r['lm']} ({r['dtype']}). Text: the {r['samples']} center samples of "
        f"a real round over random Debian fortunes (seed {r['seed']}; median "
        f"{r['tokens_per_sample_median']:.0f} tokens, median perplexity {r['ppl_median']}), "
        f"max_tokens 256. Whole bench: "
        f"{r['bench_seconds']} s wall, {r['bench_cpu_seconds']} s CPU.",
        "",
        f"ppl ratio = perplexity of the edited text / of the original under the same LM, on the "
        f"first {r['ppl_samples']} samples (unedited ones count as 1 in mean and geomean). Edit "
        f"shares and rates are over all {r['samples']} samples.",
        "",
        *table(r["grid"]),
    ]
    w = r["lm_written"]
    if w["grid"]:
        lines += [
            "",
            f"## LM-written text ({w['samples']} SmolLM2 continuations of the first four words "
            f"of center samples; median perplexity {w['ppl_median']})",
            "",
            *table(w["grid"]),
        ]
    lines += ["", f"## Examples (fortunes), engine defaults {r['defaults']}, against no check of "
              "the next token", ""]
    for row in [g for g in r["grid"] if g["top_fraction"] == r["defaults"]["top_fraction"]
                and g["threshold"] == r["defaults"]["threshold"]
                and g["min_next_ratio"] in (0.0, r["defaults"]["min_next_ratio"])]:
        lines += [f"min_next_ratio {row['min_next_ratio']}:", ""]
        for ex in row["examples"]:
            lines += [f"- {ex['original']}", f"  → {ex['edited']}"]
        lines.append("")
    lines += [
        "",
        "## Throughput (engine defaults, best of 3, interleaved)",
        "",
        "| | runs: [wall s, CPU s] | tokens/s (wall) |",
        "|---|---|---|",
        f"| bare forward, both passes ({s['samples']} samples, {s['tokens']:,} tokens; then the "
        f"{s['rechecked_samples']} with proposed edits, {s['rechecked_tokens']:,} tokens) "
        f"| {s['bare_forward_wall_cpu_s']} | {s['bare_tokens_per_s']} |",
        f"| bare forward, first pass only | {s['first_pass_wall_cpu_s']} | |",
        f"| TokenEditor.edit | {s['editor_wall_cpu_s']} | {s['editor_tokens_per_s']} |",
        "",
        f"Ratio editor / bare forward over the same passes: **{s['throughput_ratio_wall']}** by "
        f"wall clock, **{s['throughput_ratio_cpu']}** by CPU time (target ≥ {s['target']}). "
        f"Against the first pass alone: {s['first_pass_ratio_wall']} (the check of the next "
        "token re-scores every text with a proposed edit).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
