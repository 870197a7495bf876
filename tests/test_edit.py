"""curation.edit: ToEdit resampling on a tiny random LM (plumbing) and on the real SmolLM2."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from lm_fixtures import (  # noqa: F401
    smollm2_fixture,
    tiny_lm_dir_fixture,
    tiny_lm_fixture,
)

from curation.config import EditConfig
from curation.edit import EditedText, TokenEditor, apply_edits, next_token_drops
from curation.lm import CausalLM, TokenScores
from curation.types import CurationInputError, Edit

TEXT = "The quick brown fox jumps over the lazy dog while the farmer sleeps."
LONG = "It is a truth universally acknowledged that a single man must be in want of a wife. " * 8
# Every token of a random LM qualifies, and every edit is kept (no check of the next token).
EVERY = EditConfig(enabled=True, threshold=0.0, top_fraction=1.0, top_k=8, beta=1.0,
                   min_next_ratio=0.0)
PIECES = replace(EVERY, whole_words=False)


def check_edits(original: str, edited: EditedText, whole_words: bool = True) -> None:
    """Edits are sorted spans of the original holding ``old``; splicing them gives the text."""
    assert apply_edits(original, edited.edits) == edited.text
    ends = [0]
    for e in edited.edits:
        assert e.start >= ends[-1] and original[e.start : e.end] == e.old and e.new != e.old
        assert e.old[:1].isspace() == e.new[:1].isspace()  # word boundaries are kept
        assert e.new.strip() and "\ufffd" not in e.new and "\n" not in e.new
        if whole_words:
            assert is_whole_word(original, e) and e.new.lstrip().isalpha()
        ends.append(e.end)


def is_whole_word(text: str, e: Edit) -> bool:
    """Letters only, and no letter, digit or apostrophe touching it on either side."""
    inside = lambda ch: ch.isalnum() or ch in "'’"  # noqa: E731
    before = e.old[:1].isspace() or e.start == 0 or not inside(text[e.start - 1])
    after = e.end == len(text) or not inside(text[e.end])
    return e.old.lstrip().isalpha() and before and after


def test_threshold_zero_resamples_nearly_every_token(tiny_lm: CausalLM) -> None:
    [s] = tiny_lm.score([TEXT], max_tokens=64, batch_size=1)
    [out] = TokenEditor(tiny_lm, PIECES).edit([TEXT], seed=0)
    check_edits(TEXT, out, whole_words=False)
    assert out.tokens == len(s) and out.text != TEXT
    assert len(out.edits) >= 0.8 * (len(s) - 1)
    assert out.edits[0].start >= s.offsets[0, 1]  # token 0 has no prefix: never edited
    assert all(0.0 < e.p < 1.0 for e in out.edits)


def test_threshold_one_edits_nothing(tiny_lm: CausalLM) -> None:
    out = TokenEditor(tiny_lm, replace(EVERY, threshold=1.0)).edit([TEXT, LONG], seed=0)
    assert [(o.text, o.edits) for o in out] == [(TEXT, []), (LONG, [])]
    assert out[0].tokens > 10


def test_edits_only_tokens_above_the_threshold(tiny_lm: CausalLM) -> None:
    [s] = tiny_lm.score([LONG], max_tokens=64, batch_size=1)
    cut = float(np.nanquantile(s.probs, 0.7))
    [out] = TokenEditor(tiny_lm, replace(EVERY, threshold=cut, max_tokens=64)).edit([LONG], 0)
    check_edits(LONG, out)
    assert out.edits and all(e.p > cut for e in out.edits)
    assert len(out.edits) <= 0.3 * len(s) + 1


def test_same_seed_same_edits_and_batch_neighbours_do_not_matter(tiny_lm: CausalLM) -> None:
    editor = TokenEditor(tiny_lm, EVERY)
    first = editor.edit([TEXT, LONG], seed=7)
    assert editor.edit([TEXT, LONG], seed=7) == first
    # alone, the text is not padded: its scores move in the last float bits, its edits do not
    [alone] = editor.edit([TEXT], seed=7)
    assert alone.text == first[0].text
    assert [replace(e, p=0.0) for e in alone.edits] == [replace(e, p=0.0) for e in first[0].edits]
    np.testing.assert_allclose([e.p for e in alone.edits], [e.p for e in first[0].edits], 1e-4)
    assert editor.edit([TEXT, LONG], seed=8)[0].text != first[0].text
    assert editor.edit([TEXT], seed=-3) == editor.edit([TEXT], seed=-3)


def test_only_the_first_max_tokens_are_edited(tiny_lm: CausalLM) -> None:
    config = replace(EVERY, max_tokens=8)
    [s] = tiny_lm.score([LONG], max_tokens=8, batch_size=1)
    cut = int(s.offsets[-1, 1])
    [out] = TokenEditor(tiny_lm, config).edit([LONG], seed=0)
    check_edits(LONG, out)
    assert out.tokens == 8 and out.edits
    assert all(e.end <= cut for e in out.edits) and out.text.endswith(LONG[cut:])


def test_the_original_may_be_kept_when_not_excluded(tiny_lm: CausalLM) -> None:
    # A text the model writes itself (greedy): the original token is the top-1 everywhere.
    prompt = tiny_lm.tokenizer("The", return_tensors="pt").input_ids
    ids = tiny_lm.model.generate(prompt, max_new_tokens=40, do_sample=False)[0]
    text = tiny_lm.tokenizer.decode(ids)
    keep = replace(EVERY, top_k=1, exclude_original=False)
    assert TokenEditor(tiny_lm, keep).edit([text], seed=0)[0].edits == []
    flat = replace(EVERY, top_k=8, beta=100.0)  # near-equally likely candidates
    [kept] = TokenEditor(tiny_lm, replace(flat, exclude_original=False)).edit([text], seed=0)
    [excluded] = TokenEditor(tiny_lm, flat).edit([text], seed=0)
    check_edits(text, kept)
    check_edits(text, excluded)
    assert len(excluded.edits) >= 30 and 0 < len(kept.edits) < len(excluded.edits)


def test_unicode_split_into_byte_tokens_is_never_broken(tiny_lm: CausalLM) -> None:
    text = "Café au lait, naïve 日本語 — emoji 🙂 and 🦜 stay whole, über alles.\nNew line."
    [out] = TokenEditor(tiny_lm, PIECES).edit([text], seed=1)
    check_edits(text, out, whole_words=False)
    # these are split over byte tokens (or are layout): none of their pieces may be replaced
    assert out.edits and all(ch in out.text for ch in "日語🦜ü\n")


def test_whole_words_only_unless_switched_off(tiny_lm: CausalLM) -> None:
    text = "The self-destruct button doesn't work; naïve users press it anyway, twice."
    assert EditConfig().whole_words and not PIECES.whole_words
    [words] = TokenEditor(tiny_lm, EVERY).edit([text], seed=0)
    [pieces] = TokenEditor(tiny_lm, PIECES).edit([text], seed=0)
    check_edits(text, words)
    check_edits(text, pieces, whole_words=False)
    assert not {e.old for e in words.edits} & {" doesn", "'t", " na", "ïve"}
    assert len(words.edits) >= 5
    assert any(not is_whole_word(text, e) for e in pieces.edits)  # e.g. "ruct", "'t", "ïve"


def test_disabled_or_empty_input(tiny_lm: CausalLM) -> None:
    off = TokenEditor(tiny_lm, replace(EVERY, enabled=False)).edit([TEXT], seed=0)
    assert off == [EditedText(TEXT, [], 0)]
    assert TokenEditor(tiny_lm, EVERY).edit([], seed=0) == []


def test_only_the_texts_own_most_confident_tokens_are_edited(tiny_lm: CausalLM) -> None:
    [s] = tiny_lm.score([LONG], max_tokens=64, batch_size=1)
    config = replace(PIECES, top_fraction=0.1, max_tokens=64)
    [out] = TokenEditor(tiny_lm, config).edit([LONG], seed=0)
    check_edits(LONG, out, whole_words=False)
    assert 1 <= len(out.edits) <= int(0.1 * len(s))
    floor = np.sort(s.probs[1:])[::-1][int(0.1 * len(s)) - 1]  # the 10% most confident
    assert all(e.p >= floor - 1e-6 for e in out.edits)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": -0.1}, r"config.edit.threshold: must be in \[0, 1\], got -0.1"),
        ({"threshold": float("nan")}, r"config.edit.threshold: must be in \[0, 1\], got nan"),
        ({"threshold": 1.5}, r"config.edit.threshold: must be in \[0, 1\]"),
        ({"top_fraction": 0.0}, r"config.edit.top_fraction: must be in \(0, 1\]"),
        ({"top_k": 1}, r"config.edit.top_k: must be in \[2, 1000\]"),
        ({"top_k": 1.5}, r"config.edit.top_k: must be in \[2, 1000\]"),
        ({"beta": 0.0}, r"config.edit.beta: must be in \(0, 100\]"),
        ({"min_next_ratio": 1.5}, r"config.edit.min_next_ratio: must be in \[0, 1\]"),
        ({"min_next_ratio": -0.1}, r"config.edit.min_next_ratio: must be in \[0, 1\]"),
        ({"max_tokens": 1}, r"config.edit.max_tokens: must be in \[2, 8192\]"),
        ({"batch_size": 0}, r"config.edit.batch_size: must be in \[1, 1024\]"),
        ({"enabled": "yes"}, "config.edit.enabled: must be true or false"),
    ],
)
def test_config_limits(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(EVERY, **change)  # type: ignore[arg-type]


def test_max_tokens_is_bounded_by_the_lms_context(tiny_lm: CausalLM) -> None:
    with pytest.raises(CurationInputError, match=r"edit\.max_tokens: must be an integer "
                                                  r"between 2 and 512"):
        TokenEditor(tiny_lm, replace(EVERY, max_tokens=1000)).edit([TEXT], seed=0)


def test_scores_without_enough_candidates_are_refused(tiny_lm: CausalLM) -> None:
    scores = tiny_lm.score([TEXT], max_tokens=16, batch_size=1, top_k=2)
    with pytest.raises(CurationInputError, match=r"scores\[0\]: has 2 candidates"):
        TokenEditor(tiny_lm, EVERY).edit_scored([TEXT], scores, seed=0)


def test_scores_of_another_text_or_length_are_refused(tiny_lm: CausalLM) -> None:
    """The check of the next token compares the caller's scores with the edited text scored at
    ``edit.max_tokens``: scores of fewer tokens or of another text would judge the wrong token."""
    editor = TokenEditor(tiny_lm, replace(EVERY, max_tokens=32))
    short = tiny_lm.score([LONG], max_tokens=16, batch_size=1, top_k=8)
    with pytest.raises(CurationInputError, match=r"scores\[0\]: not the scores of texts\[0\]'s "
                                                  r"first edit\.max_tokens \(32\) tokens: 16 "
                                                  r"token ids, expected 32$"):
        editor.edit_scored([LONG], short, seed=0)
    other = tiny_lm.score([TEXT.upper()], max_tokens=32, batch_size=1, top_k=8)
    with pytest.raises(CurationInputError, match=r"scores\[0\]: not the scores"):
        editor.edit_scored([TEXT], other, seed=0)
    right = tiny_lm.score([LONG], max_tokens=32, batch_size=1, top_k=8)
    [edited] = editor.edit_scored([LONG], right, seed=0)
    assert edited.edits and edited.tokens == 32


def test_apply_edits_splices_in_any_order_and_checks_every_edit() -> None:
    text = "one two three"
    edits = [Edit(8, 13, "three", "3", 0.9), Edit(0, 3, "one", "1", 0.9)]
    assert apply_edits(text, edits) == "1 two 3"
    assert apply_edits(text, []) == text
    with pytest.raises(CurationInputError, match=r"edits\[0\]: span \[10, 14\) is outside"):
        apply_edits(text, [Edit(10, 14, "ree", "x", 0.9)])
    with pytest.raises(CurationInputError, match=r"edits\[1\]: span \[2, 5\) overlaps"):
        apply_edits(text, [Edit(0, 3, "one", "1", 0.9), Edit(2, 5, "e t", "x", 0.9)])
    with pytest.raises(CurationInputError, match=r"edits\[0\]: 'old' is 'two' but the text has"):
        apply_edits(text, [Edit(0, 3, "two", "2", 0.9)])


def test_next_token_drops_compare_the_token_after_each_edit(tiny_lm: CausalLM) -> None:
    text = "one two three four"
    edits = [Edit(3, 7, " two", " ten", 0.9), Edit(13, 18, " four", " five", 0.9)]
    edited = apply_edits(text, edits)
    before, after = tiny_lm.score([text, edited], max_tokens=16, batch_size=2)
    drops = next_token_drops(before, after, edits)
    j = int(np.flatnonzero(before.offsets[:, 1] > 7)[0])  # " three", after " two"
    k = int(np.flatnonzero(after.offsets[:, 1] > 7)[0])
    assert before.ids[j] == after.ids[k]
    assert drops[0] == pytest.approx(float(after.logprobs[k] - before.logprobs[j]))
    assert drops[1] == -np.inf  # nothing follows the last word: its fit cannot be checked


def test_a_next_token_that_changed_counts_as_no_fit() -> None:
    """Scores written out by hand: the text after the edit tokenized differently."""
    def scores(ids: list[int], ends: list[int]) -> TokenScores:
        starts = [0, *ends[:-1]]
        return TokenScores(np.array(ids), np.array(list(zip(starts, ends, strict=True))),
                           np.array([np.nan, -1.0, -2.0], dtype=np.float32),
                           np.full((3, 1), -1), np.full((3, 1), -np.inf, dtype=np.float32))
    edit = Edit(3, 7, " two", " tw", 0.9)
    assert next_token_drops(scores([1, 2, 3], [3, 7, 13]), scores([1, 5, 4], [3, 6, 12]),
                            [edit]) == [-np.inf]
    assert next_token_drops(scores([1, 2, 3], [3, 7, 13]), scores([1, 5, 3], [3, 6, 12]),
                            [edit]) == [0.0]  # the same token, as likely as before


def test_an_edit_the_next_word_no_longer_fits_is_dropped(smollm2: CausalLM) -> None:
    text = "Any shag carpet that causes the lid to become top-heavy, thus creating annoyance."
    start = text.index(" to become")
    broken = Edit(start, start + 3, " to", " of", 0.9)  # "the lid of become": fine from the left
    fine = Edit(start, start + 3, " to", " will", 0.9)  # "the lid will become"
    drops = {}
    for e in (broken, fine):
        before, after = smollm2.score([text, apply_edits(text, [e])], 64, 2)
        [drops[e.new]] = next_token_drops(before, after, [e])
    assert drops[" of"] < np.log(EditConfig().min_next_ratio) <= drops[" will"]


def test_every_kept_edit_keeps_the_next_token_likely(
    smollm2: CausalLM, fortunes: list[dict[str, str]]
) -> None:
    """Every word a candidate, so that neighbours are edited too: each kept edit fits the text
    returned, not only the text with its dropped neighbours' replacements."""
    texts = [f["text"] for f in fortunes if len(f["text"]) < 200][:48]
    checked = EditConfig(enabled=True, threshold=0.0, top_fraction=1.0)
    out = TokenEditor(smollm2, checked).edit(texts, seed=0)
    unchecked = TokenEditor(smollm2, replace(checked, min_next_ratio=0.0)).edit(texts, seed=0)
    kept = sum(len(o.edits) for o in out)
    assert 0 < kept < sum(len(o.edits) for o in unchecked)
    edited = [(t, o) for t, o in zip(texts, out, strict=True) if o.edits]
    before = smollm2.score([t for t, _ in edited], 256, 16)
    after = smollm2.score([o.text for _, o in edited], 256, 16)
    worst = min(min(next_token_drops(b, a, o.edits))
                for b, a, (_, o) in zip(before, after, edited, strict=True))
    # bf16 scores move by up to ~0.4 between batches; a broken fit drops by several nats
    assert worst >= np.log(checked.min_next_ratio) - 0.5


def test_real_lm_edits_fortunes_at_the_default_config(
    smollm2: CausalLM, fortunes: list[dict[str, str]]
) -> None:
    texts = [f["text"] for f in fortunes if len(f["text"]) < 200][:24]  # short: a fast test
    config = EditConfig(enabled=True)  # the other defaults, as a user who opts in gets them
    out = TokenEditor(smollm2, config).edit(texts, seed=0)
    for text, edited in zip(texts, out, strict=True):
        check_edits(text, edited)
        assert all(e.p > config.threshold for e in edited.edits)
    edits = sum(len(o.edits) for o in out)
    tokens = sum(o.tokens for o in out)
    assert sum(bool(o.edits) for o in out) >= 2  # an editor that changes nothing is broken
    assert 0.2 <= 100 * edits / tokens <= 10  # ... and one that rewrites everything too
