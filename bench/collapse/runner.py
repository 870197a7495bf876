"""Runs every generation 0 and chain, in worker processes (``jobs``) or in this process.

Small models use CPU cores badly from one process (a 128-wide matmul does not split well
across threads), so ``jobs`` independent single-threaded processes get more from the machine
than one process with ``jobs`` threads. A seed's chains start as soon as its generation 0 is
done. Workers report each finished generation on a queue that feeds the progress bar.
"""

from __future__ import annotations

import os
import pickle
import queue
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.collapse.config import BenchConfig
from bench.collapse.experiment import Gen0, Shared, run_chain, run_gen0
from bench.collapse.model import quiet_transformers
from curation.embed import Embedder, load_embedder

_WORKER: dict[str, Any] = {}


def _embed(texts: Any) -> np.ndarray:
    embedder: Embedder | None = _WORKER.get("embedder")
    if embedder is None:
        embedder = _WORKER["embedder"] = load_embedder()
    return embedder.encode(list(texts))


def _init_worker(shared_path: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    quiet_transformers()
    _WORKER["shared"] = pickle.loads(shared_path.read_bytes())


class TaskFailed(RuntimeError):
    """A worker's exception as text: some exceptions (e.g. DCESError) do not survive pickling."""


def _gen0_task(seed: int, events: Any) -> Gen0:
    try:
        return run_gen0(_WORKER["shared"], seed, _embed, events.put)
    except Exception as exc:
        raise TaskFailed(f"generation 0 of seed {seed}:\n{traceback.format_exc()}") from exc


def _chain_task(regime: str, seed: int, strategy: str, gen0: Gen0, events: Any
                ) -> dict[str, Any]:
    try:
        return run_chain(_WORKER["shared"], regime, seed, strategy, gen0, _embed, events.put)
    except Exception as exc:
        raise TaskFailed(f"{regime} seed {seed} {strategy}:\n{traceback.format_exc()}") from exc


def total_steps(shared: Shared) -> int:
    cfg = shared.cfg
    return cfg.seeds + len(cfg.regimes) * cfg.seeds * len(cfg.strategies) * cfg.generations


def run_all(shared: Shared, embedder: Embedder, progress: Callable[[str], None]
            ) -> tuple[list[Gen0], list[dict[str, Any]]]:
    """Every seed's generation 0 and every (regime, seed, strategy) chain."""
    cfg = shared.cfg
    gen0s: list[Gen0] = []
    chains: list[dict[str, Any]] = []
    if cfg.jobs == 1:
        _WORKER["shared"], _WORKER["embedder"] = shared, embedder
        gen0s = [run_gen0(shared, seed, _embed, progress) for seed in cfg.seed_range]
        chains = [run_chain(shared, regime, g.seed, strategy, g, _embed, progress)
                  for g in gen0s for regime in cfg.regimes for strategy in cfg.strategies]
        return gen0s, chains
    shared_path = shared.workdir / "shared.pkl"
    shared_path.write_bytes(pickle.dumps(shared))
    threads = max(1, (os.cpu_count() or 1) // cfg.jobs)
    ctx = get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(
        cfg.jobs, mp_context=ctx, initializer=_init_worker, initargs=(shared_path, threads)
    ) as pool:
        events = manager.Queue()
        pending: dict[Future[Any], str] = {
            pool.submit(_gen0_task, seed, events): "gen0" for seed in cfg.seed_range}
        try:
            _run_pending(pool, pending, events, cfg, gen0s, chains, progress)
        except BaseException:
            # A failed task or a stop (Ctrl-C, SIGTERM): end the workers now rather than wait
            # for their running chains, which take minutes each.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return sorted(gen0s, key=lambda g: g.seed), chains


def _run_pending(pool: ProcessPoolExecutor, pending: dict[Future[Any], str], events: Any,
                 cfg: BenchConfig, gen0s: list[Gen0], chains: list[dict[str, Any]],
                 progress: Callable[[str], None]) -> None:
    """Collect finished tasks; each finished generation 0 submits its seed's chains."""
    while pending:
        done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        _drain(events, progress)
        for future in done:
            kind = pending.pop(future)
            result = future.result()  # a failed task stops the benchmark here
            if kind == "chain":
                chains.append(result)
                continue
            gen0s.append(result)
            for regime in cfg.regimes:
                for strategy in cfg.strategies:
                    pending[pool.submit(_chain_task, regime, result.seed, strategy,
                                        result, events)] = "chain"
    _drain(events, progress)


def _drain(events: Any, progress: Callable[[str], None]) -> None:
    while True:
        try:
            progress(events.get_nowait())
        except queue.Empty:
            return
