import numpy as np
import pytest

from curation.config import QualityConfig
from curation.quality import degenerate_reason, implausible_cut, outlier_cuts

CFG = QualityConfig()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("ok", "too_short"),
        ("x" * 20_001, "too_long"),
        ("1.1.1.1.1.1", "repetitive"),
        ("1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1", "repetitive"),
        ("the the the the the the the the", "repetitive"),
        ("buy now buy now buy now buy now", "repetitive"),
        ("I am happy. " * 20, "repetitive"),
        ("The quick brown fox jumps over the lazy dog.", None),
    ],
)
def test_degenerate_text_gets_its_reason(text: str, reason: str | None) -> None:
    assert degenerate_reason(text, CFG) == reason


def test_no_real_fortune_is_degenerate(fortunes: list[dict]) -> None:
    assert all(degenerate_reason(f["text"], CFG) is None for f in fortunes)


def test_outlier_cut_uses_a_pooled_robust_scale() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1, 1])
    distances = np.concatenate([0.3 + 0.02 * rng.normal(size=29), [0.9], [0.2, 0.29]])
    cuts = outlier_cuts(labels, distances, 2, z=4.0)
    assert cuts[0] < 0.9
    assert np.sum(distances[:30] > cuts[0]) == 1
    assert cuts[1] > 0.29  # a two-member cluster does not flag its farther member


def test_too_few_samples_have_no_outliers() -> None:
    cuts = outlier_cuts(np.array([0, 0, 0]), np.array([0.1, 0.1, 0.9]), 1, z=4.0)
    assert np.isinf(cuts).all()


def test_implausible_cut_is_far_below_the_rounds_own_confidence() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.normal(-4.0, 0.5, 500)
    cut = implausible_cut(confidence, z=6.0)
    assert cut == pytest.approx(np.median(confidence) - 6.0 * 1.4826 * np.median(
        np.abs(confidence - np.median(confidence))))
    assert (confidence < cut).sum() == 0  # fluent-but-surprising text is never cut
    assert implausible_cut(np.append(confidence, -40.0), z=6.0) > -40.0  # garbage is
    assert implausible_cut(confidence[:5], z=6.0) == -np.inf  # too few to estimate a scale
    assert implausible_cut(np.full(50, np.nan), z=6.0) == -np.inf  # unknown confidence
