"""Engine throughput and memory on real text, as ratios to the raw cost of the same work.

    python -m bench.engine [--n 10000] [--skip-memory]

1. Engine without the LM (no editing, no perplexity check) vs a bare sentence-transformers
   ``encode`` of the same texts, same model, dtype and batch size, in the same process.
2. The editor (inside a full round) vs a bare forward pass of the same LM over the same center
   samples, same batch size and token limit.
3. Peak RSS of a whole round (no LM) for 10,000 and 100,000 samples, each in a fresh process.

Writes bench/results/engine.json and engine.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.corpora import load_fortunes
from bench.machine import machine
from curation import CurationConfig, Curator
from curation.embed import Embedder, load_embedder
from curation.lm import load_causal_lm

RESULTS = Path(__file__).parent / "results"
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}


def texts_for(n: int) -> list[dict[str, Any]]:
    """``n`` real fortunes; past the corpus size they repeat (ids stay unique)."""
    corpus = load_fortunes()
    return [{"id": f"s{i}", "text": corpus[i % len(corpus)].text} for i in range(n)]


def bench_engine(samples: list[dict[str, Any]], pairs: int) -> dict[str, Any]:
    """Interleaved pairs (bare encode, then the engine on a cold cache), so that load from
    other processes hits both sides alike; the median ratio is the figure."""
    shared = load_embedder()
    texts = [s["text"] for s in samples]
    rows: list[dict[str, Any]] = []
    for _ in range(pairs):
        start = time.perf_counter()
        shared.model.encode(
            texts, batch_size=shared.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        bare = time.perf_counter() - start
        cold = Embedder(shared.model, shared.name, shared.precision, shared.batch_size)
        curator = Curator(CurationConfig.from_dict(NO_LM), embedder=cold)
        start = time.perf_counter()
        result, _ = curator.curate(samples, budget=len(samples) // 10)
        engine = time.perf_counter() - start
        rows.append(
            {
                "bare_encode_s": round(bare, 2),
                "engine_s": round(engine, 2),
                "ratio": round(bare / engine, 3),
                "engine_stage_s": result.timings,
            }
        )
        print(rows[-1], flush=True)
    return {
        "samples": len(samples),
        "embedding_precision": shared.precision,
        "pairs": rows,
        "throughput_ratio": round(statistics.median(r["ratio"] for r in rows), 3),
        "target": 0.85,
        "clusters": len(result.clusters),
    }


def bench_editor(samples: list[dict[str, Any]]) -> dict[str, Any]:
    embedder = load_embedder()
    lm = load_causal_lm()
    config = CurationConfig.from_dict({"score": {"lm_fallback": False},
                                       "edit": {"enabled": True}})
    curator = Curator(config, embedder=embedder, lm=lm)
    result, _ = curator.curate(samples, budget=len(samples) // 10)
    centers = [d for d in result.decisions if d.role == "center"]
    originals = {s["id"]: s["text"] for s in samples}
    center_texts = [originals[d.id] for d in centers]
    edit_s = result.timings["edit"]
    bare_s = bare_forward(lm, center_texts, config.edit.max_tokens, config.edit.batch_size)
    return {
        "center_samples": len(center_texts),
        "tokens": result.edit_stats.tokens,
        "edit_s": round(edit_s, 2),
        "bare_forward_s": round(bare_s, 2),
        "editor_tokens_per_s": round(result.edit_stats.tokens / edit_s, 1),
        "throughput_ratio": round(bare_s / edit_s, 3),
        "target": 0.8,
        "edit_stats": result.edit_stats.to_dict(),
    }


def bare_forward(lm: Any, texts: list[str], max_tokens: int, batch_size: int) -> float:
    """The raw cost: tokenize and run the LM forward, nothing else (length-sorted batches)."""
    ordered = sorted(texts, key=len)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(ordered), batch_size):
            batch = lm.tokenizer(
                ordered[i : i + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_tokens,
            )
            lm.model(**batch)
    return time.perf_counter() - start


def peak_memory(n: int) -> dict[str, Any]:
    """Run one no-LM round of ``n`` samples in a fresh process: RSS once the models are loaded,
    and the peak RSS during the round (the kernel's high-water mark, reset after loading so that
    the loading transient does not hide the round)."""
    code = (
        "import json;from pathlib import Path;from bench.engine import texts_for,NO_LM,rss_mib;"
        "from curation import CurationConfig,Curator;"
        f"s=texts_for({n});c=Curator(CurationConfig.from_dict(NO_LM));c.embedder;"
        "Path('/proc/self/clear_refs').write_text('5');base=rss_mib('VmRSS');"
        "r,_=c.curate(s,budget=len(s)//10);"
        "print(json.dumps({'models_loaded_mib':base,'peak_mib':rss_mib('VmHWM'),"
        "'seconds':r.timings['total']}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    unique = min(n, len(load_fortunes()))
    return {"samples": n, "unique_texts": unique, **{k: round(v, 1) for k, v in row.items()}}


def rss_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--skip-editor", action="store_true")
    parser.add_argument(
        "--memory-only", action="store_true", help="re-measure memory into the recorded results"
    )
    args = parser.parse_args()
    if args.memory_only:
        recorded = json.loads((RESULTS / "engine.json").read_text())
        recorded["peak_memory"] = [peak_memory(n) for n in (10_000, 100_000)]
        (RESULTS / "engine.json").write_text(json.dumps(recorded, indent=2) + "\n")
        (RESULTS / "engine.md").write_text(markdown(recorded))
        return
    samples = texts_for(args.n)
    report: dict[str, Any] = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "load": os.getloadavg()[0],
    }
    report["engine_vs_encode"] = bench_engine(samples, args.pairs)
    print(json.dumps(report["engine_vs_encode"], indent=1), flush=True)
    if not args.skip_editor:
        report["editor_vs_forward"] = bench_editor(samples)
        print(json.dumps(report["editor_vs_forward"], indent=1), flush=True)
    if not args.skip_memory:
        report["peak_memory"] = [peak_memory(n) for n in (10_000, 100_000)]
        print(json.dumps(report["peak_memory"], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "engine.md").write_text(markdown(report))


def markdown(r: dict[str, Any]) -> str:
    e = r["engine_vs_encode"]
    lines = [
        "# Engine benchmark (`python -m bench.engine`)",
        "",
        f"Machine: {r['machine']['cores']} cores ({r['machine']['cpu']}), no GPU, "
        f"torch {r['machine']['torch']}, {r['when']}; load average {r['load']}. "
        "Real text: Debian fortunes.",
        "",
        f"## Engine without the LM vs bare `encode` ({e['samples']:,} samples, "
        f"{e['embedding_precision']})",
        "",
        "| pair | bare encode s | engine s | ratio |",
        "|---|---|---|---|",
        *[
            f"| {i + 1} | {p['bare_encode_s']} | {p['engine_s']} | {p['ratio']} |"
            for i, p in enumerate(e["pairs"])
        ],
        "",
        f"Median ratio **{e['throughput_ratio']}** (target ≥ {e['target']}). "
        f"Engine stages of the last pair (s): {e['pairs'][-1]['engine_stage_s']}",
        "",
    ]
    if "editor_vs_forward" in r:
        ed = r["editor_vs_forward"]
        lines += [
            f"## Editor vs bare LM forward ({ed['center_samples']:,} center samples, "
            f"{ed['tokens']:,} tokens)",
            "",
            f"Bare forward {ed['bare_forward_s']} s, editor {ed['edit_s']} s: ratio "
            f"**{ed['throughput_ratio']}** (target ≥ {ed['target']}); "
            f"{ed['editor_tokens_per_s']} tokens/s. Edit stats: {ed['edit_stats']}",
            "",
        ]
    if "peak_memory" in r:
        lines += [
            "## Peak memory of one round (no LM), fresh process each",
            "",
            "| samples | unique texts | RSS after model load | peak RSS | round time |",
            "|---|---|---|---|---|",
        ]
        for m in r["peak_memory"]:
            lines.append(
                f"| {m['samples']:,} | {m['unique_texts']:,} | {m['models_loaded_mib']} MiB "
                f"| {m['peak_mib']} MiB | {m['seconds']} s |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
