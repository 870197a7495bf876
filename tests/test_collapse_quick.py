"""The collapse benchmark: its limits (fast) and one real `--quick` run (slow) checked for shape.

The quick run is the whole pipeline on the shipped fortunes sample: BPE tokenizer, GPT training,
KV-cache sampling, every strategy, and a real `dces serve` process driven by ``DCESClient``. It
checks the shape of the results, never which strategy wins.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.collapse.__main__ import main
from bench.collapse.config import DCES_STRATEGIES, NO_LOGPROBS, QUICK, STRATEGIES, BenchConfig
from bench.collapse.data import load_corpus, split_corpus
from bench.collapse.experiment import (
    EXAMPLES,
    examples,
    gen0_settings,
    real_token_share,
    training_docs,
)
from bench.collapse.prepare import reference_sample
from bench.collapse.report import (
    METRICS,
    category_entropy,
    detection_table,
    fallen_at,
    first_alert,
)
from bench.collapse.strategies import FEEDBACK_METRICS
from bench.collapse.textmetrics import CategoryLabeler
from bench.corpora import LEXNAMES, Fortune

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "fortunes-sample.jsonl"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("regimes", ("replace", "sideways")),
        ("strategies", ()),
        ("seeds", 0),
        ("first_seed", -1),
        ("generations", 0),
        ("budget", 9),
        ("pool_factor", 0),
        ("metric_samples", 10_000),
        ("temperature", 0.0),
        ("top_p", 1.5),
        ("anchor_fraction", 1.0),
        ("jobs", 0),
        ("reference_docs", 9),
        ("monitor", ("dces",)),
        ("monitor", ("semdedup",)),  # not among the strategies run
    ],
)
def test_config_limits_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be"):
        QUICK.with_overrides(**{field: value, **({"strategies": ("random", "dces")}
                                                 if field == "monitor" else {})})


def test_cli_rejects_bad_numbers_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--seeds", "0"]) == 2
    assert "seeds: must be in [1, 100], got 0" in capsys.readouterr().err


def test_first_seed_shifts_the_seeds_run() -> None:
    later = QUICK.with_overrides(seeds=2, first_seed=3)
    assert list(later.seed_range) == [3, 4]
    assert list(QUICK.seed_range) == [0]


def test_examples_are_a_fixed_draw_of_each_list_in_its_order() -> None:
    selected, written = [f"s{i}" for i in range(50)], ["w0", "w1"]
    drawn = examples(selected, written, seed=3)
    assert drawn == examples(selected, written, seed=3)
    assert len(drawn["selected"]) == EXAMPLES and set(drawn["selected"]) <= set(selected)
    assert drawn["selected"] == sorted(drawn["selected"], key=selected.index)
    assert drawn["written"] == written  # fewer than EXAMPLES: all of them


def test_tail_coverage_caps_each_tail_category_at_its_real_share() -> None:
    # Three orthogonal categories; "a" is the head, "b" and "c" the tail.
    axes = np.eye(3)
    labeler = CategoryLabeler(["a", "b", "c"], ["b", "c"], axes, ["a", "b", "c"])
    labeler.fit_real(axes[[0] * 6 + [1] * 2 + [2] * 2])  # real mix: 60% / 20% / 20%
    assert labeler.category_metrics(axes[[0] * 6 + [1] * 2 + [2] * 2])["tail_coverage"] == 1.0
    # All tail mass piled onto "b" (the gibberish case): raw tail mass rises, coverage halves.
    piled = labeler.category_metrics(axes[[0] * 2 + [1] * 8])
    assert piled["tail_mass"] == pytest.approx(0.8)
    assert piled["tail_coverage"] == pytest.approx(0.5)
    # The tail lost entirely.
    assert labeler.category_metrics(axes[[0] * 10])["tail_coverage"] == 0.0


def test_split_is_stratified_and_the_tail_is_the_smallest_quarter() -> None:
    sizes = {"big": 80, "mid": 40, "small": 10, "tiny": 4}
    corpus = [Fortune(f"{c}-{i}", f"text {c} {i}", c) for c, n in sizes.items() for i in range(n)]
    split = split_corpus(corpus, test_fraction=0.25)
    assert {f.category for f in split.test} == set(sizes)
    assert not {f.id for f in split.train} & {f.id for f in split.test}
    assert len(split.train) + len(split.test) == len(corpus)
    assert split.categories == ["tiny", "small", "mid", "big"]
    assert split.tail == ["tiny"]


def test_the_reference_is_the_training_split_or_a_fixed_sample_of_it() -> None:
    train = [Fortune(f"f{i}", f"text {i}", "c") for i in range(50)]
    assert reference_sample(train, None) == [{"id": f.id, "text": f.text} for f in train]
    assert reference_sample(train, 50) == reference_sample(train, None)
    sample = reference_sample(train, 10)
    assert len(sample) == 10 and sample == reference_sample(train, 10)  # the same every run
    ids = [int(s["id"][1:]) for s in sample]
    assert ids == sorted(ids) and len(set(ids)) == 10  # in corpus order, no repeats
    # generation 0 does not depend on it: the cached models serve every reference size
    assert gen0_settings(QUICK.with_overrides(reference_docs=20)) == gen0_settings(QUICK)


def test_default_run_covers_the_baselines_and_the_ablations_of_every_default() -> None:
    cfg = BenchConfig()
    assert set(STRATEGIES) - set(cfg.strategies) == {
        "ppl_low", "dces_replay", "dces_no_edit", "dces_match", "dces_no_reference",
        "dces_edit", "dces_edit20", "dces_no_centers", "dces_dedup10", "dces_dedup20",
        "dces_mad2", "dces_mad25", "dces_floor", "dces_floor_half",
        "dces_eta_half", "dces_k40", "dces_k15", "dces_self_anchor",
        "dces_self_anchor_sel"}  # screened, not adopted
    assert cfg.seeds >= 3 and cfg.generations >= 5


def test_every_dces_strategy_has_its_run_config() -> None:
    assert {s for s in STRATEGIES if s.startswith("dces")} == set(DCES_STRATEGIES)


def test_the_real_share_of_training_is_counted_in_tokens() -> None:
    """Under ``anchor`` a tenth of the documents is real; when the synthetic ones are near-empty
    the real ones are nearly all the tokens, and the record says so."""
    cfg = BenchConfig()
    real_texts = [f"real text number {i}" for i in range(1000)]
    selected = ["x"] * 360
    texts, real = training_docs(cfg, real_texts, "anchor", "random", selected, selected, 0, 1)
    assert len(texts) == 400 and real == list(range(360, 400))
    assert all(texts[i] in real_texts for i in real) and texts[:360] == selected
    ids = [[7] * (4 if i in real else 1) for i in range(len(texts))]
    assert real_token_share(ids, real) == pytest.approx(160 / 520)
    # replace: only what a replaying strategy returned is real, and it comes last
    texts, real = training_docs(cfg, real_texts, "replace", "dces", ["s1", "s2", "r1"],
                                ["s1", "s2", "r1"], 0, 1, replayed=1)
    assert texts == ["s1", "s2", "r1"] and real == [2]
    # accumulate: all real data, and this generation's replayed exemplars at the end
    texts, real = training_docs(cfg, real_texts[:3], "accumulate", "dces", ["s2", "r2"],
                                ["s1", "s2", "r2"], 0, 2, replayed=1)
    assert texts == [*real_texts[:3], "s1", "s2", "r2"] and real == [0, 1, 2, 5]


def test_dces_never_sees_the_ground_truth() -> None:
    """No metric computed from the benchmark's category labels is sent as feedback."""
    assert not {"kl_to_real", "tail_mass", "tail_coverage"} & set(FEEDBACK_METRICS)


def test_bible_verses_come_with_their_book() -> None:
    verses = load_corpus("bible")
    books = {v.category for v in verses}
    assert len(books) == 66 and len(verses) > 30_000
    first = next(v for v in verses if v.id == "Ge-1-1")
    assert first.text.startswith("In the beginning God created") and first.category == "Ge"


def test_shakespeare_speeches_come_with_their_play() -> None:
    speeches = load_corpus("shakespeare")
    plays = {s.category for s in speeches}
    assert len(plays) == 37 and "hamlet" in plays and "sonnets" not in plays
    assert len(speeches) > 25_000
    hamlet = [s.text for s in speeches if s.category == "hamlet"]
    assert "Nay, answer me: stand, and unfold yourself." in hamlet
    assert any(t.startswith("Is she to be buried in Christian burial") for t in hamlet)  # 1 Clown.
    assert any(t.startswith("I'll cross it, though it blast me") for t in hamlet)  # resumed
    assert not any(set(s.text) & set("[]{}") for s in speeches)  # stage directions
    assert not any(s.text.startswith(("Claudius, King of Denmark", "Scene", "SCENE", "Act "))
                   for s in speeches)  # the cast, the headings


def test_german_fortunes_come_with_their_file() -> None:
    entries = load_corpus("fortunes-de")
    files = {e.category for e in entries}
    assert len(entries) > 18_000 and len(files) == 42 and "asciiart" not in files
    assert sum(e.category == "zitate" for e in entries) > 0.6 * len(entries)
    assert "Einer muß den Frieden beginnen wie den Krieg. -- Stefan Zweig" in {
        e.text for e in entries if e.category == "zitate"}  # UTF-8, not latin-1


def test_wordnet_glosses_come_with_their_lexicographer_file() -> None:
    glosses = load_corpus("wordnet")
    assert len(glosses) > 100_000
    assert len({g.category for g in glosses}) == 45
    assert all(g.text and g.category in LEXNAMES for g in glosses[:1000])


def _chain(tail: list[float], counts: list[list[int]], alerts: list[list[str]]
           ) -> dict[str, object]:
    gens: list[dict[str, object]] = [
        {"generation": g, "tail_mass": t, "category_counts": c}
        for g, (t, c) in enumerate(zip(tail, counts, strict=True))]
    for g, kinds in enumerate(alerts, start=1):  # round g-1 curated generation g-1's pool
        gens[g]["selection"] = {"health": {"alerts": [{"kind": k} for k in kinds]}}
    return {"seed": 0, "generations": gens}


def test_detection_reads_the_ground_truth_and_the_first_alert_of_each_kind() -> None:
    even = [10, 10, 10, 10]
    chain = _chain([0.2, 0.19, 0.14, 0.1], [even, even, even, [37, 1, 1, 1]],
                   [["mode_loss"], ["mode_loss"], ["mode_loss", "mode_drop"]])
    assert fallen_at(chain) == 2  # 0.14 <= 0.75 x 0.2
    assert first_alert(chain, "mode_loss") == 0 and first_alert(chain, "mode_drop") == 2
    assert first_alert(chain, "dispersion_drop") is None
    narrowed = _chain([0.2, 0.2, 0.2], [even, even, [20, 20, 0, 0]], [[], []])
    assert fallen_at(narrowed) == 2  # entropy ln 2 <= 0.95 x ln 4
    assert category_entropy([5, 5]) == pytest.approx(math.log(2))
    table = detection_table({"random": [chain]})
    assert table[-1] == "| random | 0 | 2 | 0 | 2 | 0 |"


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.mark.slow
def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.collapse", "--quick", "--corpus", str(SAMPLE),
         "--monitor", "random", "--out", str(tmp_path), "--name", "q"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "q.json").read_text())
    cfg = results["config"]
    assert cfg["regimes"] == ["replace"] and cfg["generations"] == QUICK.generations
    runs = results["runs"]
    assert sorted(r["strategy"] for r in runs) == sorted(QUICK.strategies)
    assert results["setup"]["corpus"] == str(SAMPLE)
    for run in runs:
        gens = run["generations"]
        assert [g["generation"] for g in gens] == list(range(QUICK.generations + 1))
        assert gens[0] == runs[0]["generations"][0]  # generation 0 is shared
        for g in gens:
            assert all(_finite(g[key]) for key, _, _ in METRICS), g
            assert sum(g["category_counts"]) == QUICK.metric_samples
        for g in gens[1:]:
            assert 0 < g["selected"] <= QUICK.budget
            assert len(g["examples"]["selected"]) == min(EXAMPLES, g["selected"])
            assert len(g["examples"]["written"]) == EXAMPLES
            if not run["strategy"].startswith("dces"):
                assert g["selected"] == QUICK.budget
            if run["strategy"] == "random":  # monitored: DCES saw its pools, for health only
                assert "lost_reference_mass" in g["selection"]["health"]
        if run["strategy"].startswith("dces"):
            rounds = [g["selection"] for g in gens[1:]]
            assert [r["round"] for r in rounds] == list(range(QUICK.generations))
            assert all(r["clusters"] and "reference_coverage" in r["health"] for r in rounds)
            health = run["service"]["health"]
            assert len(health["rounds"]) == QUICK.generations
        if run["strategy"] == "dces_static":
            assert all(r["mean_edge_ratio"] == pytest.approx(0.8) for r in rounds)
        if run["strategy"] in NO_LOGPROBS:  # the LM scores them, its length trend removed
            assert all(r["scores"]["source"] == "lm" for r in rounds)
            assert all(r["scores"]["length_trend"] is not None for r in rounds)
            assert all(r["scores"]["typicality_agreement"] is not None for r in rounds)
            assert all(r["scores"]["typicality_length_trend"] is not None
                       and r["scores"]["typicality_length_trend"] >= 0 for r in rounds)
        elif run["strategy"] == "dces_no_typicality":  # the generator's scores as sent
            assert all(r["scores"]["source"] == "generator"
                       and r["scores"]["typicality_agreement"] is None
                       and r["scores"]["typicality_length_trend"] is None for r in rounds)
        elif run["strategy"].startswith("dces"):  # averaged with the pool's typicality
            assert all(r["scores"]["source"] == "generator"
                       and r["scores"]["typicality_agreement"] is not None for r in rounds)
        if run["strategy"] == "dces_no_edit":
            assert all(r["edit_stats"]["tokens"] == 0 for r in rounds)
    markdown = (tmp_path / "q.md").read_text()
    for strategy in QUICK.strategies:
        assert f"| {strategy} |" in markdown
    assert "### Health alerts against the ground truth" in markdown
    assert "| random | 0 |" in markdown.split("against the ground truth")[1]
    assert (tmp_path / "q-replace.png").read_bytes().startswith(b"\x89PNG")
