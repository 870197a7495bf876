"""Everything built once per benchmark run: split, tokenizer, encoded data, category labeler."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.collapse.config import BenchConfig
from bench.collapse.data import load_corpus, split_corpus
from bench.collapse.experiment import Shared
from bench.collapse.model import pretrained_dir
from bench.collapse.textmetrics import CategoryLabeler, text_metrics
from bench.collapse.tokenizer import BenchTokenizer
from curation.embed import Embedder


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
        reference=[{"id": f.id, "text": f.text} for f in split.train],
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
