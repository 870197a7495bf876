"""The self-training loop: generation 0 on real data, then pool → select → train, per strategy.

Generation 0 (train from scratch, evaluate, sample the first pool) is shared by every strategy
and regime of a seed. A *chain* is one (regime, seed, strategy): round ``r`` selects from the pool
written by generation ``r``, generation ``r + 1`` continues training on the selection (plus real
data under ``anchor``/``accumulate``), is evaluated, and writes the next pool.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel

from bench.collapse.config import REPLAY_STRATEGIES, STRATEGIES, BenchConfig, ModelConfig
from bench.collapse.heldout import score
from bench.collapse.model import copy_model, device, load_model, new_model, pretrained_dir, train
from bench.collapse.sampling import sample
from bench.collapse.strategies import Embed, Pool, make_strategy
from bench.collapse.textmetrics import CategoryLabeler, text_metrics
from bench.collapse.tokenizer import BenchTokenizer

Progress = Callable[[str], None]
# Texts of each generation kept in the results, selected and written, drawn at random: enough
# to read what a chain trained on when its metrics turn (a looping generator, a shrinking text).
EXAMPLES = 5


@dataclass
class Shared:
    """What every task needs, built once in the main process (pickled to workers)."""

    cfg: BenchConfig
    tokenizer: BenchTokenizer
    train_texts: list[str]
    train_ids: list[list[int]]
    reference: list[dict[str, str]]  # the training split as DCES reference samples
    test_ids: list[list[int]]
    labeler: CategoryLabeler
    workdir: Path
    url: str | None  # the DCES service
    # Generation 0 of a seed is reused from here when the same setup trained it before (it is
    # deterministic: the same setup gives the same model on one machine); None: always train.
    gen0_cache: Path | None = None


@dataclass
class Gen0:
    """A seed's generation 0: its saved model, its record and the first candidate pool."""

    seed: int
    model_dir: Path
    record: dict[str, Any]
    pool_texts: list[str]
    pool_ids: list[list[int]]


class Stopwatch:
    """Seconds per named stage, for the runtime breakdown in the results."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(now - self._last, 2)
        self._last = now


def task_seed(*parts: object) -> int:
    """A stable 31-bit seed for one task (the same on every machine and Python run)."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


def prompts(train_ids: Sequence[Sequence[int]], n: int, length: int, seed: int
            ) -> list[list[int]]:
    """``n`` prompts: the first ``length`` tokens of real training entries longer than that,
    drawn with replacement; empty prompts when ``length`` is 0."""
    if length == 0:
        return [[] for _ in range(n)]
    longer = [ids for ids in train_ids if len(ids) > length]
    if not longer:
        raise ValueError(f"prompt_tokens: no training entry is longer than {length} tokens")
    rng = np.random.default_rng(seed)
    return [list(longer[i][:length]) for i in rng.integers(len(longer), size=n)]


def generate(shared: Shared, model: PreTrainedModel, n: int, seed: int
             ) -> tuple[list[str], list[list[int]]]:
    cfg = shared.cfg
    starts = prompts(shared.train_ids, n, cfg.model.prompt_tokens, task_seed("prompts", seed))
    ids = sample(model, starts, cfg.model.continuation_limit, cfg.temperature, cfg.top_p,
                 cfg.sample_batch, seed)
    return shared.tokenizer.decode(ids), ids


def evaluate(shared: Shared, model: PreTrainedModel, texts: list[str], embed: Embed, seed: int
             ) -> dict[str, Any]:
    """Held-out metrics of ``model`` and text metrics of ``texts`` (samples it wrote)."""
    emb = embed(texts)
    return {
        **score(model, shared.test_ids, shared.cfg.model.context).summary(),
        **text_metrics(texts, emb, shared.labeler, seed),
        "category_counts": shared.labeler.counts(emb),
    }


def examples(selected: list[str], written: list[str], seed: int) -> dict[str, list[str]]:
    """``EXAMPLES`` of the texts a generation trained on (its selection) and of those it wrote."""
    rng = np.random.default_rng(seed)

    def pick(texts: list[str]) -> list[str]:
        return [texts[i] for i in sorted(rng.choice(len(texts), min(EXAMPLES, len(texts)),
                                                    replace=False))]

    return {"selected": pick(selected), "written": pick(written)}


PRETRAINED_FIELDS = ("pretrained", "prompt_tokens", "new_tokens")


def gen0_settings(cfg: BenchConfig) -> dict[str, Any]:
    """What of the config generation 0 depends on: all of it but the later generations'
    settings and the run's bookkeeping (how many seeds, which pools are monitored)."""
    later = {"regimes", "strategies", "generations", "gen_tokens", "gen_lr", "anchor_fraction",
             "jobs", "seeds", "first_seed", "monitor", "reference_docs"}
    settings = {k: v for k, v in asdict(cfg).items() if k not in later}
    # The pretrained generator's fields, when off, leave the settings as they were before they
    # existed: caches of the from-scratch model stay valid.
    off = asdict(ModelConfig())
    settings["model"] = {k: v for k, v in settings["model"].items()
                         if not (k in PRETRAINED_FIELDS and v == off[k])}
    if cfg.model.pretrained is not None:  # a name or a path says nothing of the weights in it
        settings["weights"] = weights_fingerprint(pretrained_dir(cfg.model.pretrained))
    if (on := device(cfg.model)).type != "cpu":  # another device, another trajectory
        settings["device"] = on.type
    return settings


def gen0_key(shared: Shared, seed: int) -> str:
    """:func:`gen0_settings`, the token ids of the training and test splits, and the seed."""
    digest = hashlib.sha256(json.dumps(gen0_settings(shared.cfg), sort_keys=True).encode())
    digest.update(pickle.dumps((shared.train_ids, shared.test_ids, seed)))
    return digest.hexdigest()[:16]


def weights_fingerprint(model_dir: Path) -> list[list[Any]]:
    """A model directory's config and the name, size and modification time of every weight
    file in it: what changes when its weights are replaced, without reading gigabytes."""
    weights = sorted(p for p in model_dir.iterdir() if p.suffix in {".safetensors", ".bin"})
    return [["config.json", (model_dir / "config.json").read_text()],
            *([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in weights)]


def run_gen0(shared: Shared, seed: int, embed: Embed, progress: Progress) -> Gen0:
    """A seed's generation 0, from ``shared.gen0_cache`` when it holds this setup's."""
    cached = None if shared.gen0_cache is None else shared.gen0_cache / gen0_key(shared, seed)
    model_dir = shared.workdir / f"gen0-seed{seed}"
    if cached is not None and (cached / "gen0.pkl").exists():
        gen0: Gen0 = pickle.loads((cached / "gen0.pkl").read_bytes())
        shutil.copytree(cached / "model", model_dir)
        gen0.model_dir = model_dir
        gen0.record.setdefault("real_token_share", 1.0)  # cached before it was recorded
        progress(f"seed {seed} generation 0 (cached)")
        return gen0
    gen0 = train_gen0(shared, seed, embed, model_dir)
    if cached is not None:
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(model_dir, partial / "model")
        (partial / "gen0.pkl").write_bytes(pickle.dumps(gen0))
        partial.rename(cached)
    progress(f"seed {seed} generation 0")
    return gen0


def train_gen0(shared: Shared, seed: int, embed: Embed, model_dir: Path) -> Gen0:
    cfg = shared.cfg
    clock = Stopwatch()
    model = new_model(cfg.model, shared.tokenizer.vocab_size, seed)
    fit = train(model, shared.train_ids, cfg.model.context, cfg.gen0_tokens, cfg.batch_size,
                cfg.gen0_lr, seed)
    model.save_pretrained(str(model_dir))
    clock.lap("train")
    texts, ids = generate(shared, model, cfg.pool_size, task_seed("pool", seed, 0))
    clock.lap("sample")
    scored = evaluate(shared, model, texts[: cfg.metric_samples], embed, seed)
    clock.lap("evaluate")
    record = {
        "generation": 0,
        **scored,
        "real_token_share": 1.0,
        "train": {**fit, "docs": len(shared.train_ids)},
        "seconds": clock.laps,
    }
    return Gen0(seed, model_dir, record, texts, ids)


def training_docs(cfg: BenchConfig, real_texts: list[str], regime: str, strategy: str,
                  selected: list[str], kept: list[str], seed: int, generation: int,
                  replayed: int = 0) -> tuple[list[str], list[int]]:
    """The next generation's training texts under ``regime`` and the positions of the real ones
    among them: the benchmark's real data, and the last ``replayed`` of ``selected`` (the real
    exemplars a replaying strategy returned with its selection)."""
    own = list(range(len(selected) - replayed, len(selected)))
    if regime == "replace" or (regime == "anchor" and strategy in REPLAY_STRATEGIES):
        return selected, own
    if regime == "anchor":
        n_real = cfg.budget - selection_budget(cfg, regime, strategy)
        rng = np.random.default_rng(task_seed("anchor", seed, generation))
        real = [real_texts[i] for i in rng.choice(len(real_texts), n_real, replace=False)]
        return selected + real, own + list(range(len(selected), len(selected) + n_real))
    if regime == "accumulate":
        start = len(real_texts) + len(kept) - len(selected)  # ``kept`` ends with them
        return real_texts + kept, list(range(len(real_texts))) + [start + i for i in own]
    raise ValueError(f"regime: unknown {regime!r}")


def real_token_share(ids: Sequence[Sequence[int]], real: Sequence[int]) -> float:
    """The real texts' share of a generation's training tokens: under ``anchor`` a strategy
    that selects near-empty synthetic text trains almost on real text alone, and held-out
    perplexity rewards it (bench/results/collapse-anchor-all.md, ``ppl_low``)."""
    total = sum(len(x) for x in ids)
    return sum(len(ids[i]) for i in real) / total if total else 0.0


def selection_budget(cfg: BenchConfig, regime: str, strategy: str) -> int:
    """Samples a strategy keeps per generation (under `anchor` the rest is random real data,
    unless the strategy replays real data itself)."""
    if regime == "anchor" and strategy not in REPLAY_STRATEGIES:
        return cfg.budget - round(cfg.anchor_fraction * cfg.budget)
    return cfg.budget


def run_chain(shared: Shared, regime: str, seed: int, strategy_name: str, gen0: Gen0,
              embed: Embed, progress: Progress) -> dict[str, Any]:
    """Generations 1..G of one strategy; returns every generation's record (gen 0 included).

    Training order and sampling use the same random streams for every strategy of a (regime,
    seed, generation) (common random numbers): strategies differ by what they select only."""
    cfg = shared.cfg
    tag = STRATEGIES.index(strategy_name)
    strategy = make_strategy(strategy_name, task_seed("strategy", regime, seed, tag), shared.url,
                             shared.reference, f"collapse-{regime}-{strategy_name}-seed{seed}",
                             seed, monitor=strategy_name in cfg.monitor)
    model = load_model(gen0.model_dir, device(cfg.model))
    pool = Pool(gen0.pool_texts, gen0.pool_ids, model, embed, cfg.model)
    metrics: dict[str, Any] = gen0.record
    records = [gen0.record]
    kept: list[str] = []  # every synthetic sample selected so far (for `accumulate`)
    budget = selection_budget(cfg, regime, strategy_name)
    for g in range(1, cfg.generations + 1):
        clock = Stopwatch()
        chosen = strategy.select(pool, budget, g - 1, metrics)
        clock.lap("select")
        kept += chosen.texts
        texts, real = training_docs(cfg, shared.train_texts, regime, strategy_name, chosen.texts,
                                    kept, seed, g, int(chosen.info.get("replayed", 0)))
        ids = shared.tokenizer.encode(texts)
        model = copy_model(model)
        fit = train(model, ids, cfg.model.context, cfg.gen_tokens, cfg.batch_size, cfg.gen_lr,
                    task_seed("train", regime, seed, g))
        clock.lap("train")
        n = cfg.pool_size if g < cfg.generations else cfg.metric_samples
        pool_texts, pool_ids = generate(shared, model, n, task_seed("pool", regime, seed, g))
        clock.lap("sample")
        scored = evaluate(shared, model, pool_texts[: cfg.metric_samples], embed, seed)
        clock.lap("evaluate")
        metrics = {
            "generation": g,
            **scored,
            "selected": len(chosen.texts),
            "real_token_share": real_token_share(ids, real),
            "train": {**fit, "docs": len(texts), "real_docs": len(real)},
            "selection": chosen.info,
            "examples": examples(chosen.texts, pool_texts, task_seed("examples", seed, g)),
            "seconds": clock.laps,
        }
        records.append(metrics)
        pool = Pool(pool_texts, pool_ids, model, embed, cfg.model)
        progress(f"{regime} seed {seed} {strategy_name} generation {g}")
    service = strategy.finish(metrics)
    return {"regime": regime, "seed": seed, "strategy": strategy_name,
            "generations": records, **({"service": service} if service else {})}
