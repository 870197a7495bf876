import pytest

from curation.config import RatioConfig
from curation.ratio import EdgeRatioPolicy, feedback_signal, validate_feedback
from curation.types import CurationInputError


def test_tighter_than_reference_raises_the_edge_ratio_and_every_input_is_returned() -> None:
    policy = EdgeRatioPolicy(RatioConfig(r0=0.3, alpha=0.6, gamma=0.0, ema=1.0, r_min=0.05))
    d = policy.decide(dispersion=0.2, reference_dispersion=0.4, g=0.0, previous=None)
    assert d.dispersion_signal == pytest.approx(0.5)
    assert d.raw == pytest.approx(0.6) and d.ratio == pytest.approx(0.6)
    looser = policy.decide(dispersion=0.5, reference_dispersion=0.4, g=0.0, previous=None)
    assert looser.ratio < 0.3


def test_ema_remembers_and_clip_bounds() -> None:
    policy = EdgeRatioPolicy(RatioConfig(r0=0.3, alpha=1.0, gamma=0.0, ema=0.5, r_max=0.9))
    d = policy.decide(0.0, 0.4, 0.0, previous=0.9)
    assert d.smoothed == pytest.approx(0.5 * 1.3 + 0.5 * 0.9)
    assert d.ratio == 0.9


def test_static_ratio_bypasses_the_rule() -> None:
    d = EdgeRatioPolicy(RatioConfig(static=0.5)).decide(0.0, 0.4, 1.0, previous=None)
    assert d.ratio == 0.5 and d.static


def test_feedback_signal_is_positive_when_entropy_falls_and_perplexity_rises() -> None:
    prev = {"generation_entropy": 4.0, "heldout_perplexity": 20.0}
    cur = {"generation_entropy": 3.0, "heldout_perplexity": 25.0, "custom": 1.0}
    sig = feedback_signal(cur, prev)
    assert sig["generation_entropy"] == pytest.approx(0.25)
    assert sig["heldout_perplexity"] == pytest.approx(0.25)
    assert sig["g"] == pytest.approx(0.25)
    assert feedback_signal(cur, None) == {"g": 0.0}


@pytest.mark.parametrize("bad", [{"loss": "high"}, {"loss": float("nan")}, {"loss": True}, [1]])
def test_feedback_must_be_finite_numbers(bad: object) -> None:
    with pytest.raises(CurationInputError, match="feedback"):
        validate_feedback(bad)  # type: ignore[arg-type]
