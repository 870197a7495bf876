import json

import numpy as np
import pytest

from curation.state import MAX_COUNT, RunState
from curation.types import CurationInputError


def test_state_round_trips_through_json() -> None:
    state = RunState(
        round=3,
        embedding_model="m",
        centroids=np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32),
        baseline_dispersion={0: 0.3, 2: 0.4},
        ratios={1: 0.5},
        last_feedback={"loss": 1.0},
        history=[{"round": 0}],
    )
    back = RunState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back.round == 3 and back.k == 4
    assert back.centroids is not None and state.centroids is not None
    assert np.array_equal(back.centroids, state.centroids)
    assert back.baseline_dispersion == {0: 0.3, 2: 0.4} and back.ratios == {1: 0.5}


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"version": 1},
        {"version": 1, "round": 0, "centroids": {"shape": [2, 3], "f32le_b64": "AAAA"}},
    ],
)
def test_malformed_state_is_a_clear_error(bad: dict) -> None:
    with pytest.raises(CurationInputError, match="state"):
        RunState.from_dict(bad)


def test_a_state_at_the_last_round_number_is_refused_and_the_one_before_goes_on() -> None:
    """A state is at most one below the bound, so the round curated from it is numbered
    within it; a state at the bound is the last one."""
    last = RunState(round=MAX_COUNT).to_dict()
    limit = rf"^state.round: must be an integer in \[0, {MAX_COUNT - 1}\]"
    with pytest.raises(CurationInputError, match=limit):
        RunState.from_dict(last)
    assert RunState.from_dict({**last, "round": MAX_COUNT - 1}).round == MAX_COUNT - 1
