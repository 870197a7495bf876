"""Everything built once per benchmark run: split, tokenizer, encoded data, category labeler."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.collapse.config import BenchConfig
from bench.collapse.data import load_corpus, split_corpus
from bench.collapse.experiment import Shared
from bench.collapse.model import pretrained_dir
from bench.collapse.textmetrics import CategoryLabeler, text_metrics
from bench.collapse.tokenizer import BenchTokenizer
from bench.corpora import Fortune
from curation.embed import Embedder


def reference_sample(train: Sequence[Fortune], size: int | None) -> list[dict[str, str]]:
    """DCES's reference: every training entry, or a fixed random sample of ``size`` of them
    (in corpus order; the same for every seed and strategy)."""
    keep: Iterable[int] = range(len(train))
    if size is not None and size < len(train):
        keep = sorted(np.random.default_rng(0).choice(len(train), size, replace=False).tolist())
    return [{"id": train[i].id, "text": train[i].text} for i in keep]


def prepare(
    cfg: BenchConfig, corpus_path: Path | str | None, workdir: Path, embedder: Embedder
) -> tuple[Shared, dict[str, Any], dict[str, Any]]:
    """(shared task inputs, metrics of real held-out text, setup description)."""
    split = split_corpus(load_corpus(corpus_path), train_cap=cfg.train_docs, test_cap=cfg.test_docs)
    train_texts = [f.text for f in split.train]
    test_texts = [f.text for f in split.test]
    tokenizer = (BenchTokenizer.train(train_texts, cfg.model.vocab_size)
                 if cfg.model.pretrained is None
                 else BenchTokenizer.pretrained(pretrained_dir(cfg.model.pretrained)))
    per_category: dict[str, list[str]] = defaultdict(list)
    for f in split.train:
        if len(per_category[f.category]) < cfg.centroid_docs:
            per_category[f.category].append(f.text)
    centroid_texts = [t for c in split.categories for t in per_category[c]]
    centroid_labels = [c for c in split.categories for _ in per_category[c]]
    labeler = CategoryLabeler(
        split.categories, split.tail, embedder.encode(centroid_texts), centroid_labels
    )
    test_emb = embedder.encode(test_texts)
    labeler.fit_real(test_emb)
    m = min(cfg.metric_samples, len(test_texts))
    real = text_metrics(test_texts[:m], test_emb[:m], labeler, 0)
    shared = Shared(
        cfg=cfg,
        tokenizer=tokenizer,
        train_texts=train_texts,
        train_ids=tokenizer.encode(train_texts),
        reference=reference_sample(split.train, cfg.reference_docs),
        test_ids=tokenizer.encode(test_texts),
        labeler=labeler,
        workdir=workdir,
        url=None,
    )
    setup = {
        "corpus": str(corpus_path or "fortunes"),
        "split": split.describe(),
        "vocab_size": tokenizer.vocab_size,
        "categories": split.categories,
        "real_category_counts": labeler.counts(test_emb),
    }
    return shared, real, setup
