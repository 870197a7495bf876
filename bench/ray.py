"""One round embedded here and on a local Ray cluster: time, peak memory, and what 100M samples
would take on N nodes at the measured rates.

    python -m bench.ray [--n 5000] [--address HOST:PORT]

Runs the same round (distinct real texts: the fortunes, then WordNet's word senses as
"lemma: gloss"; no LM; the default CPU embedder: ONNX fp32) three ways, each
in a fresh process with a cold embedding cache: locally, then on the cluster with 1 and with 2
embedding actors (1 CPU each). Without ``--address`` it starts a cluster with scripts/ray.sh (a
head and one worker node, 1 CPU each) and stops it after. Checks that the three rounds decide
every sample alike, samples each process's peak RSS (VmHWM) every 0.2 s, and projects a
100M-sample round from the per-stage rates. Writes bench/results/ray.json and ray.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.corpora import Fortune

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}
DIM = 384  # all-MiniLM-L6-v2
TARGET = 100_000_000
ACTORS_PER_NODE = 16  # the projection's node: one 1-CPU actor per core of a 16-core machine


def one_round(n: int, address: str | None, actors: int) -> dict[str, Any]:
    """The round in this process (``address`` None: embedded here); its timings, decisions'
    digest and peak RSS, with the actors' peaks sampled while it runs."""
    import hashlib

    from bench.corpora import load_fortunes, load_wordnet_senses
    from curation import CurationConfig, Curator
    from curation.config import EmbedConfig
    from curation.embed import load_embedder
    from curation.ray_executor import RayExecutor

    samples = distinct_samples(n, [*load_fortunes(), *load_wordnet_senses()])
    embedder = load_embedder()
    loaded_rss = _rss_mib()
    executor = None
    if address is not None:
        executor = RayExecutor(address, num_actors=actors, batch_size=256, min_samples=1)
    curator = Curator(CurationConfig.from_dict({**NO_LM, "seed": 1}), embedder=embedder,
                      executor=executor)
    actor_peaks: dict[int, float] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_actors, args=(actor_peaks, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    result, _ = curator.curate(samples, budget=n // 10)
    wall = time.perf_counter() - started
    overhead = None
    if executor is not None:
        # One text not in the round, after it: what an execution costs besides the embedding
        # (actors started, the model loaded in each, tasks scheduled).
        started = time.perf_counter()
        executor.embed(load_embedder(), EmbedConfig(), ["A text to time the actors' start."])
        overhead = round(time.perf_counter() - started, 2)
    stop.set()
    sampler.join()
    decisions = json.dumps([[d.id, d.selected, d.role, d.reason, d.cluster]
                            for d in result.decisions])
    return {
        "mode": "local" if address is None else f"ray, {actors} actor(s)",
        "actors": actors if address is not None else 0,
        "wall_s": round(wall, 2),
        "stage_s": result.timings,
        "ray_overhead_s": overhead,
        "driver_rss_after_load_mib": loaded_rss,
        "driver_peak_rss_mib": _peak_rss_mib(),
        "actor_peak_rss_mib": sorted(actor_peaks.values()),
        "decisions_sha1": hashlib.sha1(decisions.encode()).hexdigest(),
        "selected": result.selected,
    }


def distinct_samples(n: int, corpus: list[Fortune]) -> list[dict[str, Any]]:
    """The first ``n`` distinct texts of ``corpus``: the embedding cache dedupes by content, so
    a repeated text would not be embedded again and would flatter the embedding rate."""
    texts = list(dict.fromkeys(entry.text for entry in corpus))
    if n > len(texts):
        raise SystemExit(f"--n {n}: the corpus has {len(texts):,} distinct texts")
    return [{"id": f"s{i}", "text": text} for i, text in enumerate(texts[:n])]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _sample_actors(peaks: dict[int, float], stop: threading.Event) -> None:
    """VmHWM of every `ray::MapWorker` process of this user, until ``stop``."""
    while not stop.wait(0.2):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if not (proc / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                    continue
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        pid = int(proc.name)
                        peaks[pid] = max(peaks.get(pid, 0.0), round(int(line.split()[1]) / 1024, 1))
            except OSError:
                continue


def run_child(n: int, address: str | None, actors: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.ray", "--n", str(n), "--child", str(actors)]
    if address is not None:
        cmd += ["--address", address]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row


def projection(n: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """100M samples on N nodes of C one-CPU actors, from the measured rates: embedding scales
    with actors (the rate of the 1-actor run), the driver's stages (cluster, select, health) are
    linear in n at the local run's rate (an over-estimate for the k-means fit, which runs on a
    fixed-size sample)."""
    local = rows[0]
    one = next(r for r in rows if r["actors"] == 1)
    # texts/s of one 1-CPU actor once started: the round embeds twice (candidates, then the
    # reference: none here, so no execution), each execution pays the overhead once.
    per_actor = n / (one["stage_s"]["embed"] - one["ray_overhead_s"])
    driver_s = sum(local["stage_s"][s] for s in ("cluster", "select", "edit", "health"))
    driver_per_sample = driver_s / n
    vectors_gb = TARGET * DIM * 4 / 1e9
    table = []
    for nodes in (1, 10, 100):
        actors = nodes * ACTORS_PER_NODE
        embed_s = TARGET / (per_actor * actors)
        table.append({"nodes": nodes, "actors": actors, "embed_h": round(embed_s / 3600, 2),
                      "driver_h": round(TARGET * driver_per_sample / 3600, 2),
                      "total_h": round((embed_s + TARGET * driver_per_sample) / 3600, 2)})
    return {"texts_per_s_per_actor": round(per_actor, 1),
            "overhead_s": one["ray_overhead_s"],
            "driver_s_per_sample": driver_per_sample,
            "driver_vectors_gb": round(vectors_gb, 1), "table": table}


def write(n: int, rows: list[dict[str, Any]], proj: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    same = len({r["decisions_sha1"] for r in rows}) == 1
    meta = {"machine": f"{os.cpu_count()} cores ({platform.machine()})",
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg()[0]}
    report = {"n": n, **meta, "same_decisions": same, "runs": rows, "projection": proj}
    (RESULTS / "ray.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Ray benchmark (`python -m bench.ray`)", "",
        f"Machine: {meta['machine']}, no GPU, {meta['date']}, load average "
        f"{meta['load_average']:.2f}. One round of {n:,} distinct real texts (the fortunes, then "
        f"WordNet word senses as `lemma: gloss`; budget {n // 10:,}, no LM, ONNX fp32 "
        "embedder), each run in a fresh process with a cold cache. The cluster "
        "is scripts/ray.sh's: a head and one worker node on this machine, 1 CPU each.", "",
        "| run | wall s | embed s | cluster s | select s | health s | driver peak RSS MiB | "
        "actors' peak RSS MiB | Ray overhead s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["stage_s"]
        actors = ", ".join(f"{m:.0f}" for m in r["actor_peak_rss_mib"]) or "-"
        lines.append(f"| {r['mode']} | {r['wall_s']} | {s['embed']} | {s['cluster']} | "
                     f"{s['select']} | {s['health']} | {r['driver_peak_rss_mib']:.0f} | "
                     f"{actors} | {r['ray_overhead_s'] or '-'} |")
    lines += [
        "", "Actors' peaks: every MapWorker process seen while the run's process lived, the "
        "timing execution's (one text, after the round) among them. The driver's peak grows "
        "with Ray's client and the returned blocks.", "",
        f"Same decisions for every sample in all three runs: **{same}**.", "",
        "## 100M samples on N nodes, projected", "",
        f"Embedding: {proj['texts_per_s_per_actor']} texts/s per 1-CPU actor (the 1-actor run "
        f"once started: its start, {proj['overhead_s']} s an execution, taken off), assumed to "
        "scale linearly with actors; "
        f"{ACTORS_PER_NODE} actors per node (one per core of a 16-core node). Driver stages "
        "(cluster, select, "
        f"health): {proj['driver_s_per_sample'] * 1e6:.2f} µs per sample (the local run), "
        "linear in n. embed h = 1e8 / (rate × actors) / 3600; driver h = 1e8 × µs / 3.6e9.", "",
        "| nodes | actors | embed h | driver h | total h |", "|---|---|---|---|---|",
    ]
    lines += [f"| {t['nodes']} | {t['actors']} | {t['embed_h']} | {t['driver_h']} | "
              f"{t['total_h']} |" for t in proj["table"]]
    lines += [
        "", f"The bound this leaves: the driver holds every vector (1e8 × {DIM} × 4 B = "
        f"{proj['driver_vectors_gb']} GB float32) for clustering, selection and health, so a "
        "100M round needs a driver with that much memory, or those stages distributed too "
        "(assignment and selection are per-sample and per-cluster: the next step).", "",
    ]
    (RESULTS / "ray.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--address", help="an existing Ray cluster (default: start one)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # actors; one run, as JSON
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_round(args.n, args.address, args.child)))
        return
    address, cluster = args.address, None
    if address is None:
        cluster = tempfile.mkdtemp(prefix="dces-ray.")
        address = subprocess.run(["bash", str(ROOT / "scripts" / "ray.sh"), "start", cluster],
                                 capture_output=True, text=True, check=True).stdout.strip()
    try:
        rows = [run_child(args.n, None, 0)]
        rows += [run_child(args.n, address, actors) for actors in (1, 2)]
    finally:
        if cluster is not None:
            subprocess.run(["bash", str(ROOT / "scripts" / "ray.sh"), "stop", cluster],
                           check=False)
    proj = projection(args.n, rows)
    write(args.n, rows, proj)
    print((RESULTS / "ray.md").read_text())


if __name__ == "__main__":
    main()
