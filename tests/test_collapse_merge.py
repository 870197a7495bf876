"""Joining collapse results: more seeds from separate runs, only when the runs are comparable.
The inputs are the recorded fortunes results; the later seeds are that file's chains renamed,
which is all the join looks at."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.collapse.merge import main, merge

RECORDED = Path(__file__).resolve().parent.parent / "bench" / "results" / "collapse.json"


def _recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def _seeds_lower(results: dict[str, Any], variant: str, baseline: str) -> int:
    """In how many seeds ``variant`` ended below ``baseline`` (final held-out perplexity)."""
    final = {(r["strategy"], r["seed"]): r["generations"][-1]["heldout_perplexity"]
             for r in results["runs"] if r["regime"] == "replace"}
    seeds = {seed for _, seed in final}
    return sum(final[(variant, s)] < final[(baseline, s)] for s in seeds)


def _later_seeds(results: dict[str, Any], shift: int) -> dict[str, Any]:
    later = copy.deepcopy(results)
    for run in later["runs"]:
        run["seed"] += shift
    later["config"]["first_seed"] = shift
    later["when"] += " (a later run)"
    return later


def test_runs_of_separate_seeds_join_into_one_report(tmp_path: Path) -> None:
    first = _recorded()
    later = tmp_path / "later.json"
    later.write_text(json.dumps(_later_seeds(first, 3)))
    assert main([str(RECORDED), str(later), "--name", "joined", "--out", str(tmp_path),
                 "--strategies", "ppl_high", "dces"]) == 0
    joined = json.loads((tmp_path / "joined.json").read_text())
    assert joined["config"]["seeds"] == 6 and joined["config"]["strategies"] == ["ppl_high",
                                                                                 "dces"]
    assert sorted({r["seed"] for r in joined["runs"]}) == [0, 1, 2, 3, 4, 5]
    report = (tmp_path / "joined.md").read_text()
    lower = _seeds_lower(first, "dces", "ppl_high")
    assert f"| dces | ppl_high | {2 * lower} of 6 seeds |" in report  # the same seeds, twice
    assert (tmp_path / "joined-replace.png").stat().st_size > 0


def test_a_chain_reproduced_in_two_runs_counts_once() -> None:
    rerun = {**_recorded(), "when": "later"}
    joined = merge([_recorded(), rerun], "twice", None)
    assert len(joined["runs"]) == len(_recorded()["runs"])


def test_the_same_run_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="the same run is given twice"):
        merge([_recorded(), _recorded()], "twice", None)


def test_a_chain_with_two_different_results_is_refused() -> None:
    other = {**_recorded(), "when": "later"}
    other["runs"][0]["generations"][-1]["heldout_perplexity"] += 1.0
    with pytest.raises(ValueError, match=r"seed 0 of .* more than one file with different"):
        merge([_recorded(), other], "twice", None)


@pytest.mark.parametrize(
    ("path", "value", "what"),
    [
        (("machine", "cpu"), "AMD EPYC", "machine.cpu"),
        (("machine", "gpu_name"), "NVIDIA H200", "machine.gpu_name"),
        (("machine", "transformers"), "5.17.0", "machine.transformers"),
        (("config", "top_p"), 1.0, "config"),
        (("setup", "corpus"), "wordnet", "setup"),
    ],
)
def test_runs_that_are_not_comparable_are_refused(path: tuple[str, str], value: object,
                                                  what: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    first, other = _recorded(), _later_seeds(_recorded(), 3)
    first["machine"] = {"gpu_name": None, "transformers": "5.25.0", **first["machine"]}
    other["machine"] = {"gpu_name": None, "transformers": "5.25.0", **other["machine"]}
    other[path[0]][path[1]] = value
    given = tmp_path / "given.json"
    given.write_text(json.dumps(first))
    later = tmp_path / "later.json"
    later.write_text(json.dumps(other))
    assert main([str(given), str(later), "--name", "x", "--out", str(tmp_path)]) == 2
    assert f"{what}: the files differ" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_machine_field_an_older_record_lacks_is_not_compared() -> None:
    """Records before the GPU's name and the transformers version still join newer ones."""
    newer = _later_seeds(_recorded(), 3)
    newer["machine"] = {**newer["machine"], "gpu_name": None, "transformers": "5.25.0"}
    assert "transformers" not in _recorded()["machine"]
    joined = merge([_recorded(), newer], "joined", None)
    assert {r["seed"] for r in joined["runs"]} == {0, 1, 2, 3, 4, 5}


def test_strategies_that_ran_other_seeds_are_refused() -> None:
    later = _later_seeds(_recorded(), 3)
    later["runs"] = [r for r in later["runs"] if r["strategy"] == "dces"]
    with pytest.raises(ValueError, match=r"seeds: every strategy kept must have run the same"):
        merge([_recorded(), later], "uneven", ["ppl_high", "dces"])


def test_runs_from_another_generation_0_are_refused() -> None:
    recorded = _recorded()
    baseline = {**recorded, "runs": [r for r in recorded["runs"] if r["strategy"] == "ppl_high"]}
    other = copy.deepcopy(recorded)
    other["when"] += " (a later run)"
    other["runs"] = [r for r in other["runs"] if r["strategy"] == "dces"]
    other["runs"][0]["generations"][0]["heldout_perplexity"] += 0.1
    with pytest.raises(ValueError, match=r"generation 0 differs between the files"):
        merge([baseline, other], "other-start", ["ppl_high", "dces"])
    same_start = {**other, "runs": [r for r in recorded["runs"] if r["strategy"] == "dces"]}
    assert len(merge([baseline, same_start], "ok", None)["runs"]) == 6


def test_strategies_none_of_which_ran_are_refused() -> None:
    with pytest.raises(ValueError, match="strategies: none of"):
        merge([_recorded()], "none", ["dces_replay"])


def test_a_run_recorded_before_a_setting_existed_joins_one_that_has_it() -> None:
    recorded = _recorded()
    assert "pretrained" not in recorded["config"]["model"]  # recorded before they existed
    later = _later_seeds(recorded, 3)
    later["config"]["model"] |= {"pretrained": None, "prompt_tokens": 0, "new_tokens": None}
    later["config"]["reference_docs"] = None  # added later still: the whole training split
    assert len(merge([recorded, later], "joined", None)["runs"]) == 2 * len(recorded["runs"])
    later["config"]["reference_docs"] = 1000  # DCES saw another reference
    with pytest.raises(ValueError, match="config: the files differ"):
        merge([recorded, later], "joined", None)
    later["config"]["reference_docs"] = None
    later["config"]["model"]["prompt_tokens"] = 8  # a pretrained run is another benchmark
    with pytest.raises(ValueError, match="config: the files differ"):
        merge([recorded, later], "joined", None)
