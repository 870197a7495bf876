"""Token-level editing of center samples (ToEdit, arXiv 2412.14689).

One teacher-forced pass scores every token; a token the LM finds over-confident
(``p(token | prefix) > threshold`` and among the text's own most confident ``top_fraction`` of
tokens) is resampled from the top-k of ``softmax(logits / beta)``; the edited texts are scored
again, and every edit after which the next token became less than ``min_next_ratio`` times as
likely is dropped (the replacement was drawn from the left context alone), until the text
returned passes.
Such tokens carry little information for the next training round, and replacing them injects
diversity without rewriting the sample. Every edit is returned as a char span of the ORIGINAL
text, and :func:`apply_edits` is the one place where edits are spliced in.

Unlike the paper, an edit never breaks the text: tokens that are special, layout, partial UTF-8
or not exactly where the offsets say are neither replaced nor inserted, a replacement keeps the
original's leading space, and by default (``whole_words``) only a whole word is replaced, and
only by a whole word. On real fortunes, sub-word edits ("self-destruct" -> "self.ro",
"don't" -> "don’") were the ones that multiplied a sample's perplexity (bench/results/editor.md).
"""

from __future__ import annotations

import math
import unicodedata
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from curation.config import EditConfig
from curation.lm import CausalLM, TokenScores, check_int
from curation.types import CurationInputError, Edit, FractionDone


@dataclass
class EditedText:
    """An edited text, its edits (spans of the original) and how many tokens were scored."""

    text: str
    edits: list[Edit]
    tokens: int


def apply_edits(original: str, edits: Sequence[Edit]) -> str:
    """Replace ``original[e.start:e.end]`` by ``e.new`` for every edit (non-overlapping spans)."""
    parts: list[str] = []
    pos = 0
    for i, e in sorted(enumerate(edits), key=lambda item: (item[1].start, item[1].end)):
        if not 0 <= e.start <= e.end <= len(original):
            raise CurationInputError(
                f"edits[{i}]: span [{e.start}, {e.end}) is outside the text "
                f"(length {len(original)})"
            )
        if e.start < pos:
            raise CurationInputError(f"edits[{i}]: span [{e.start}, {e.end}) overlaps another edit")
        if original[e.start : e.end] != e.old:
            found = original[e.start : e.end]
            raise CurationInputError(f"edits[{i}]: 'old' is {e.old!r} but the text has {found!r}")
        parts += [original[pos : e.start], e.new]
        pos = e.end
    parts.append(original[pos:])
    return "".join(parts)


def check_edit_config(config: EditConfig, max_positions: int | None = None) -> None:
    """Raise :class:`CurationInputError` when ``edit.max_tokens`` exceeds the LM's context length
    (the other limits are checked when the config is built)."""
    check_int("edit.max_tokens", config.max_tokens, 2, max_positions)


class TokenEditor:
    """Resamples over-confident tokens; deterministic for a given ``seed``."""

    def __init__(self, lm: CausalLM, config: EditConfig) -> None:
        self.lm = lm
        self.config = config

    def edit(
        self, texts: Sequence[str], seed: int, progress: FractionDone | None = None
    ) -> list[EditedText]:
        """Edit every text (only its first ``config.max_tokens`` tokens; the rest is kept).

        ``progress`` gets the fraction done after each LM batch: the first pass over every text
        is the first half, and each pass of the check (see :meth:`_fitting`) half of what is left.
        """
        check_edit_config(self.config, self.lm.max_positions)
        texts = list(texts)
        if not self.config.enabled or not texts:
            return [EditedText(t, [], 0) for t in texts]
        c = self.config
        passes = _Passes(progress, checked=c.min_next_ratio > 0)
        scores = self.lm.score(
            texts, c.max_tokens, c.batch_size, c.top_k, top_k_min_p=c.threshold,
            progress=passes.next(),
        )
        edited = self._edit_scored(texts, scores, seed, passes)
        passes.finish()
        return edited

    def edit_scored(
        self, texts: Sequence[str], scores: Sequence[TokenScores], seed: int
    ) -> list[EditedText]:
        """Apply the editing rule to texts already scored with at least ``config.top_k`` candidates.

        Text ``i`` draws from its own generator seeded by ``(seed, i)``. Scores must be of the
        texts' first ``edit.max_tokens`` tokens, as :meth:`CausalLM.score` gives them: the check
        of the next token compares them with the edited texts scored that way.
        """
        check_edit_config(self.config, self.lm.max_positions)
        ids, _ = self.lm.tokenize(texts, self.config.max_tokens)
        for i, (expected, sc) in enumerate(zip(ids, scores, strict=True)):
            if not np.array_equal(expected, sc.ids):
                raise CurationInputError(
                    f"scores[{i}]: not the scores of texts[{i}]'s first edit.max_tokens "
                    f"({self.config.max_tokens}) tokens: {len(sc)} token ids, expected "
                    f"{len(expected)}" + (" (different ids)" if len(sc) == len(expected) else "")
                )
        return self._edit_scored(texts, scores, seed, _Passes(None, checked=False))

    def _edit_scored(
        self, texts: Sequence[str], scores: Sequence[TokenScores], seed: int, passes: _Passes
    ) -> list[EditedText]:
        vocab = _vocabulary(self.lm)
        proposed = []
        for i, (text, sc) in enumerate(zip(texts, scores, strict=True)):
            if sc.top_ids.shape[1] < self.config.top_k:
                raise CurationInputError(
                    f"scores[{i}]: has {sc.top_ids.shape[1]} candidates, edit.top_k needs "
                    f"{self.config.top_k}"
                )
            rng = np.random.default_rng([seed % 2**64, i])
            proposed.append(_edits(text, sc, vocab, self.config, rng))
        kept = self._fitting(texts, scores, proposed, passes)
        return [EditedText(apply_edits(text, edits), edits, len(sc))
                for text, sc, edits in zip(texts, scores, kept, strict=True)]

    def _fitting(
        self,
        texts: Sequence[str],
        scores: Sequence[TokenScores],
        proposed: list[list[Edit]],
        passes: _Passes,
    ) -> list[list[Edit]]:
        """The proposed edits that the text after them still fits: the token right after an
        edit stays at least ``config.min_next_ratio`` times as likely as it was. The LM chose a
        replacement from the left context alone; "the lid to become" -> "the lid of become" is
        fine from the left, and only the next word shows it broke the sentence. A text that
        lost an edit is checked again with the edits it keeps, until none is dropped: each
        edit was judged with its neighbours' replacements in place, and the last check is of
        the text returned."""
        ratio = self.config.min_next_ratio
        kept = list(proposed)
        if ratio <= 0:
            return kept
        c = self.config
        check = [i for i, edits in enumerate(kept) if edits]
        while check:
            rescored = self.lm.score([apply_edits(texts[i], kept[i]) for i in check],
                                     c.max_tokens, c.batch_size, progress=passes.next())
            changed = []
            for i, after in zip(check, rescored, strict=True):
                drops = next_token_drops(scores[i], after, kept[i])
                fitting = [e for e, drop in zip(kept[i], drops, strict=True)
                           if drop >= math.log(ratio)]
                if len(fitting) < len(kept[i]):
                    kept[i] = fitting
                    if fitting:
                        changed.append(i)
            check = changed
        return kept


class _Passes:
    """Progress over an unknown number of LM passes: pass ``k`` (from 0) fills
    ``[1 - 2**-k, 1 - 2**-(k+1)]`` of the bar, so it only moves forward and reaches 1.0 when the
    editor is done, however many passes the check takes. Unchecked, the one pass fills it all."""

    def __init__(self, progress: FractionDone | None, checked: bool) -> None:
        self.progress = progress
        self.checked = checked
        self.done = 0.0

    def next(self) -> FractionDone | None:
        """The callback of the next pass, or None when nobody listens."""
        if self.progress is None:
            return None
        report, start = self.progress, self.done
        width = (1.0 - start) / 2 if self.checked else 1.0 - start
        self.done = start + width

        def fraction_done(f: float) -> None:
            report(start + width * f)

        return fraction_done

    def finish(self) -> None:
        if self.progress is not None and self.done < 1.0:
            self.progress(1.0)


@dataclass(frozen=True)
class _Vocabulary:
    """Each token id's text, whether it may be edited or inserted, and its leading-space shape."""

    texts: list[str]
    editable: np.ndarray  # (V,) bool
    leading_space: np.ndarray  # (V,) bool
    word: np.ndarray  # (V,) bool: letters only, after an optional leading space


def _vocabulary(lm: CausalLM) -> _Vocabulary:
    """Built once per LM (decoding ~50k tokens one by one takes a fraction of a second)."""
    vocab = _VOCABULARIES.get(lm)
    if vocab is None:
        tok = lm.tokenizer
        known = len(tok)
        texts = tok.batch_decode([[i] for i in range(known)], clean_up_tokenization_spaces=False)
        texts += [""] * max(0, lm.vocab_size - known)
        special = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}))
        editable = np.array([i not in special and _is_plain(t) for i, t in enumerate(texts)])
        leading = np.array([t[:1].isspace() for t in texts], dtype=bool)
        word = np.array([t.lstrip().isalpha() for t in texts], dtype=bool)
        vocab = _VOCABULARIES[lm] = _Vocabulary(texts, editable.astype(bool), leading, word)
    return vocab


_VOCABULARIES: weakref.WeakKeyDictionary[CausalLM, _Vocabulary] = weakref.WeakKeyDictionary()


def _is_plain(token: str) -> bool:
    """Safe to remove or insert: visible text, no partial UTF-8, no newline or control char.

    A single space followed by the word is fine; whitespace-only or layout tokens are not.
    """
    if not token.strip() or "\ufffd" in token:
        return False
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in token)


def _edits(
    text: str, sc: TokenScores, vocab: _Vocabulary, config: EditConfig, rng: np.random.Generator
) -> list[Edit]:
    """The edits of one text, in text order."""
    probs = sc.probs
    whole_words = config.whole_words
    spans = {
        int(i): span
        for i in over_confident(probs, config.threshold, config.top_fraction)
        if i >= 1
        and (span := _span(text, sc, vocab, int(i))) is not None
        and (not whole_words or _is_whole_word(text, span, vocab.word[sc.ids[i]]))
    }
    if not spans:
        return []
    pos = np.fromiter(spans, dtype=np.int64)
    orig = sc.ids[pos]
    cand = sc.top_ids[pos, : config.top_k]
    safe = np.maximum(cand, 0)  # -1: no candidates were kept at that position
    ok = (cand >= 0) & vocab.editable[safe]
    ok &= vocab.leading_space[safe] == vocab.leading_space[orig][:, None]
    if config.exclude_original:
        ok &= cand != orig[:, None]
    if whole_words:
        ok &= vocab.word[safe]
    logits = np.where(ok, sc.top_logits[pos, : config.top_k] / config.beta, -np.inf)
    draws = rng.random(len(pos))  # one per position, so a skipped one never shifts the others
    edits: list[Edit] = []
    for row, i in enumerate(pos):
        if not ok[row].any():
            continue
        weights = np.exp(logits[row] - logits[row].max())
        cdf = np.cumsum(weights)
        pick = int(np.searchsorted(cdf, draws[row] * cdf[-1], side="right"))
        new = int(cand[row, min(pick, int(np.flatnonzero(weights)[-1]))])
        if new != orig[row]:
            start, end = spans[int(i)]
            edits.append(Edit(start, end, text[start:end], vocab.texts[new], float(probs[i])))
    return edits


def next_token_drops(before: TokenScores, after: TokenScores, edits: Sequence[Edit]
                     ) -> list[float]:
    """For each edit (sorted, non-overlapping), how much the log-probability of the token
    right after it changed when the edits were applied; -inf where that cannot be checked
    (nothing follows within the scored tokens: "-- Mark Twain" -> "-- Mark Humph") or the text
    after the edit no longer tokenizes the same."""
    drops = []
    shift = 0
    for e in edits:
        shift += len(e.new) - len(e.old)
        j = np.flatnonzero(before.offsets[:, 1] > e.end)
        k = np.flatnonzero(after.offsets[:, 1] > e.end + shift)
        if not len(j) or not len(k) or before.ids[j[0]] != after.ids[k[0]]:
            drops.append(-math.inf)
        else:
            drops.append(float(after.logprobs[k[0]] - before.logprobs[j[0]]))
    return drops


def over_confident(probs: np.ndarray, threshold: float, top_fraction: float) -> np.ndarray:
    """Positions with ``p > threshold`` among the text's ``top_fraction`` most confident tokens
    (at least one position when any passes the threshold)."""
    above = np.flatnonzero(probs > threshold)
    if len(above) == 0:
        return above
    keep = max(1, math.floor(top_fraction * len(probs)))
    if len(above) <= keep:
        return above
    best = above[np.argsort(-probs[above], kind="stable")[:keep]]
    return np.sort(best)


def _is_whole_word(text: str, span: tuple[int, int], is_word: bool) -> bool:
    """A letters-only token with a word boundary on both sides: not a piece of a word, nor the
    "doesn" of "doesn't"."""
    start, end = span
    before = text[start].isspace() or start == 0 or not _in_word(text[start - 1])
    after = end == len(text) or not _in_word(text[end])
    return bool(is_word) and before and after


def _in_word(ch: str) -> bool:
    return ch.isalnum() or ch in "'’"


def _span(text: str, sc: TokenScores, vocab: _Vocabulary, i: int) -> tuple[int, int] | None:
    """The char span of token ``i`` if it is an editable token whose text is exactly there.

    Offsets may exclude a leading space the token carries, and a character split over several
    byte tokens has overlapping offsets: both cases are resolved by checking the decoded text.
    """
    tid = int(sc.ids[i])
    if not vocab.editable[tid]:
        return None
    piece = vocab.texts[tid]
    end = int(sc.offsets[i, 1])
    start = end - len(piece)
    if start < 0 or text[start:end] != piece:
        return None
    return start, end
