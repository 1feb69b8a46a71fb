"""The DP growth model: monotone quantiles, the exact model's percentile rule, its privacy spend,
agreement with the exact model, bad input, and the group summary that suppresses small groups.

DP noise is drawn fresh in every fit (never from random_state), so assertions on fitted models
leave room for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.growth import StudentGrowthPercentiles
from models import growth_dp
from models.growth_dp import (
    DPGrowthQuantiles,
    MonotoneQuantiles,
    QuantileNetwork,
    growth_agreement,
    median_growth_by_group,
    prior_basis,
)

torch.set_num_threads(1)  # the machine is shared; these networks are too small to gain from more


def test_scores(n_students, seed=0):
    """Scores on 0..100 like a test's: three priors correlated 0.7-0.8 with the current score,
    noise larger for low achievers, some earlier priors missing, a few scores at the bounds."""
    rng = np.random.default_rng(seed)
    ability = rng.standard_normal(n_students)
    growth = 0.3 * rng.standard_normal(n_students)
    priors = np.column_stack([50 + 12 * (ability + 0.3 * term * growth) + 6 * rng.standard_normal(n_students)
                              for term in range(3)])
    spread = 5 + 4 / (1 + np.exp(1.5 * ability))
    current = 52 + 12 * (ability + 0.9 * growth) + spread * rng.standard_normal(n_students)
    priors, current = np.clip(priors, 0, 100), np.clip(current, 0, 100)
    priors[rng.random(n_students) < 0.15, 0] = np.nan
    priors[rng.random(n_students) < 0.05, 1] = np.nan
    return priors, current


test_scores.__test__ = False  # a helper, not a test


# One short epoch for tests of input handling. Small batches keep the sampling rate low: the
# accountant calibrates the noise for a high rate (a few large batches) much more slowly.
QUICK = {"epochs": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def scores():
    return test_scores(5000, seed=1)


@pytest.fixture(scope="module")
def dp_model(scores):
    return DPGrowthQuantiles(epsilon=2.0).fit(*scores)


@pytest.fixture(scope="module")
def small_model():
    """A quick fit for tests of shapes and input handling, not of accuracy."""
    return DPGrowthQuantiles(epochs=2, batch_size=48).fit(*test_scores(600, seed=2))


def test_agrees_with_the_exact_model_and_spends_no_more_than_the_target(scores, dp_model):
    priors, current = scores
    exact = StudentGrowthPercentiles().fit(priors, current).growth_percentile(priors, current)
    agreement = growth_agreement(dp_model.growth_percentile(priors, current), exact)
    # Measured over repeated fits: median 2-3, p90 6-8, Spearman 0.98-0.99.
    assert agreement["n"] == 5000
    assert agreement["median_abs_diff"] <= 8
    assert agreement["p90_abs_diff"] <= 20
    assert agreement["spearman"] > 0.9

    spent = dp_model.privacy_
    assert 0 < spent.epsilon <= 2.0 and spent.delta == 1e-5 and spent.accountant == "prv"
    assert spent.noise_multiplier > 0.3 and spent.steps == 20 * 17  # batches of 5000 // 16 = 312: 17 per epoch
    assert spent.unit == "one example (one student)"


def test_percentiles_are_integers_from_1_to_99_and_spread_over_the_range(scores, dp_model):
    priors, current = scores
    percentiles = dp_model.growth_percentile(priors, current)
    assert percentiles.shape == (5000,) and percentiles.dtype.kind == "i"
    assert percentiles.min() >= 1 and percentiles.max() <= 99
    # Growth percentiles of the training population are about uniform: each decile holds ~10 %.
    decile_shares = np.bincount((percentiles - 1) // 10, minlength=10)[:10] / len(percentiles)
    assert np.all(np.abs(decile_shares - 0.1) < 0.06), decile_shares  # measured: at most 0.04 off
    assert abs(percentiles.mean() - 50) < 5


def test_quantiles_are_monotone_for_every_student_even_far_outside_the_data(dp_model):
    rng = np.random.default_rng(3)
    priors = rng.uniform(-50, 150, (2000, 3))  # beyond the bounds too: clipped first
    priors[rng.random(2000) < 0.3, 0] = np.nan
    priors[rng.random(2000) < 0.3, 1] = np.nan
    quantiles = dp_model.predict_quantiles(priors)
    assert quantiles.shape == (2000, 99) and np.all(np.isfinite(quantiles))
    assert np.all(np.diff(quantiles, axis=1) >= 0)


def test_the_head_cannot_cross_whatever_the_network_outputs():
    head = MonotoneQuantiles(np.arange(1, 100) / 100, shape_terms=6, prior_spread=0.1)
    outputs = 20 * torch.randn(1000, 7, generator=torch.Generator().manual_seed(0))
    quantiles = head(outputs)
    assert quantiles.shape == (1000, 99)
    assert torch.all(quantiles.diff(dim=1) >= 0)
    torch.testing.assert_close(quantiles[:, 49], outputs[:, 0])  # τ = 0.5 is the median output
    # All shape coefficients 0: the quantiles of a normal with sd 0.1 around the median.
    normal = head(torch.zeros(1, 7))[0].numpy()
    np.testing.assert_allclose(normal, 0.1 * stats.norm.ppf(np.arange(1, 100) / 100), atol=1e-6)


def test_a_score_far_above_gets_99_and_far_below_gets_1(small_model):
    priors = np.array([[50.0, 50, 50], [np.nan, 40, 45], [np.nan, np.nan, 55]])
    np.testing.assert_array_equal(small_model.growth_percentile(priors, [100.0, 100, 100]), [99, 99, 99])
    np.testing.assert_array_equal(small_model.growth_percentile(priors, [0.0, 0, 0]), [1, 1, 1])


def test_quantiles_stay_within_the_bounds_so_a_ceiling_score_ties_with_those_there(small_model):
    priors = np.array([[95.0, 98, 99], [1.0, 2, 1]])
    quantiles = small_model.predict_quantiles(priors)
    assert quantiles.min() >= 0 and quantiles.max() <= 100
    assert quantiles[0, -1] == 100 and quantiles[1, 0] == 0  # the clipped ends
    percentiles = small_model.growth_percentile(priors, [100.0, 0.0])
    at_ceiling = np.count_nonzero(quantiles[0] == 100)
    assert percentiles[0] == 99 - at_ceiling + at_ceiling // 2  # the middle of the tied run


def test_scores_outside_the_bounds_count_as_the_bounds(small_model):
    priors = np.array([[40.0, 45, 50], [60.0, 55, 52]])
    np.testing.assert_array_equal(small_model.growth_percentile(priors, [250.0, -40.0]),
                                  small_model.growth_percentile(priors, [100.0, 0.0]))
    beyond = priors.copy()
    beyond[:, 2] = [1e6, -1e6]
    at_bounds = priors.copy()
    at_bounds[:, 2] = [100.0, 0.0]
    np.testing.assert_allclose(small_model.predict_quantiles(beyond), small_model.predict_quantiles(at_bounds))
    # Training targets are clipped too: out-of-range current scores fit without complaint.
    priors, current = test_scores(400, seed=4)
    current[:20] = 180.0
    DPGrowthQuantiles(**QUICK).fit(priors, current)


def test_a_gap_cuts_off_the_earlier_priors_as_in_the_exact_model(small_model):
    with_gap = np.array([[10.0, np.nan, 50], [90.0, np.nan, 50]])
    without = np.array([[np.nan, np.nan, 50], [np.nan, np.nan, 50]])
    np.testing.assert_allclose(small_model.predict_quantiles(with_gap), small_model.predict_quantiles(without))


def test_more_priors_than_max_priors_uses_the_most_recent():
    priors, current = test_scores(500, seed=5)
    four = np.column_stack([np.full(500, 20.0), priors])
    model = DPGrowthQuantiles(**QUICK).fit(four, current)
    assert model.n_features_in_ == 4 and model.n_priors_ == 3
    changed = four.copy()
    changed[:, 0] = 95.0  # the oldest column is beyond max_priors: it must not matter
    np.testing.assert_allclose(model.predict_quantiles(four), model.predict_quantiles(changed))


def test_fewer_quantiles_are_rescaled_to_percentiles():
    priors, current = test_scores(500, seed=6)
    model = DPGrowthQuantiles(quantiles=9, **QUICK).fit(priors, current)
    assert model.predict_quantiles(priors).shape == (500, 9)
    percentiles = model.growth_percentile(priors, current)
    assert set(np.unique(percentiles)) <= {1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99}


def test_the_most_recent_prior_must_be_present_and_the_error_names_the_rows(small_model):
    priors, current = test_scores(300, seed=7)
    priors[[4, 17], 2] = np.nan
    with pytest.raises(ValueError, match=r"most recent prior.*2 rows have none \(rows 4, 17\)"):
        DPGrowthQuantiles(epochs=1).fit(priors, current)
    with pytest.raises(ValueError, match=r"most recent prior.*rows 4, 17"):
        small_model.growth_percentile(priors, current)


def test_bad_scoring_input_raises_a_clear_value_error(small_model):
    priors, current = test_scores(20, seed=8)
    with pytest.raises(ValueError, match="features"):
        small_model.predict_quantiles(priors[:, 1:])  # 2 columns, fitted on 3
    with pytest.raises(ValueError, match="features"):
        small_model.growth_percentile(np.column_stack([priors, priors]), current)
    with pytest.raises(ValueError, match="one per student"):
        small_model.growth_percentile(priors, current[:10])
    with pytest.raises(ValueError, match="one per student"):
        small_model.growth_percentile(priors, np.where(np.arange(20) == 3, np.nan, current))


@pytest.mark.parametrize("parameters", [
    {"score_bounds": (100.0, 0.0)}, {"score_bounds": (0.0, np.inf)}, {"score_bounds": (0, 50, 100)},
    {"max_priors": 0}, {"quantiles": 0}, {"hidden_units": 0}, {"shape_terms": 0}, {"epsilon": 0.0},
    {"spline_knots": 1}, {"spline_knots": -1}, {"spline_knots": 2.5}, {"shape_gain": 0.0}, {"shape_gain": np.nan},
])
def test_bad_parameters_raise_when_fit_runs(parameters):
    priors, current = test_scores(100, seed=9)
    model = DPGrowthQuantiles(**parameters)  # construction stores, never checks
    with pytest.raises(ValueError):
        model.fit(priors, current)


def percentile_rank_scores(n_students, rho=0.94, seed=0):
    """Scores on a percentile-rank scale (the engine's `pct`): uniform marginals, a normal copula
    with correlation `rho` between neighbouring terms. The conditional spread is narrow near 0 and
    100 and wide in the middle, as on the synthetic city."""
    rng = np.random.default_rng(seed)
    latent = [rng.standard_normal(n_students)]
    for _ in range(3):
        latent.append(rho * latent[-1] + np.sqrt(1 - rho ** 2) * rng.standard_normal(n_students))
    scores = 100 * stats.norm.cdf(np.column_stack(latent))
    return scores[:, :3], scores[:, 3]


percentile_rank_scores.__test__ = False


def spread_by_last_prior(model, priors):
    """Median 10-90 % spread of the predicted quantiles for last priors at the edges and in the middle."""
    spread = np.diff(model.predict_quantiles(priors)[:, [9, 89]], axis=1)[:, 0]
    last = priors[:, -1]
    edges, middle = (last < 5) | (last > 95), (last > 40) & (last < 60)
    return np.median(spread[edges]), np.median(spread[middle])


def test_large_releases_learn_a_spread_that_depends_on_the_prior():
    """From LARGE_RELEASE students the spline basis and the shape gain are on: the DP model's spread
    follows the exact model's (narrow at the edges of a percentile scale, wide in the middle),
    where plain DP-SGD kept nearly one spread for everyone."""
    priors, current = percentile_rank_scores(25_000, seed=11)
    exact = StudentGrowthPercentiles().fit(priors, current)
    dp = DPGrowthQuantiles(epsilon=1.0).fit(priors, current)
    assert (dp.spline_knots_, dp.shape_gain_) == (growth_dp.SPLINE_KNOTS, growth_dp.SHAPE_GAIN)
    assert dp.privacy_.epsilon <= 1.0
    exact_edges, exact_middle = spread_by_last_prior(exact, priors)
    dp_edges, dp_middle = spread_by_last_prior(dp, priors)
    assert exact_edges < 0.5 * exact_middle
    # Measured: exact 0.19; DP 0.27-0.28 (median |DP − exact| 2, p90 6, Spearman 0.989); without the
    # spline basis and the gain 0.66-0.67 (4, 11, 0.963).
    assert dp_edges < 0.45 * dp_middle
    held_out, current_held_out = percentile_rank_scores(5000, seed=12)
    agreement = growth_agreement(dp.growth_percentile(held_out, current_held_out),
                                 exact.growth_percentile(held_out, current_held_out))
    assert agreement["median_abs_diff"] <= 3 and agreement["spearman"] > 0.975


def test_small_releases_keep_the_plain_network_and_explicit_values_win(monkeypatch):
    priors, current = test_scores(600, seed=13)
    small = DPGrowthQuantiles(**QUICK).fit(priors, current)
    assert (small.spline_knots_, small.shape_gain_) == (0, 1.0)
    assert small.module_.linear.in_features == 3 + 2  # scaled priors and two missingness indicators
    monkeypatch.setattr(growth_dp, "LARGE_RELEASE", 500)
    large = DPGrowthQuantiles(**QUICK).fit(priors, current)
    assert (large.spline_knots_, large.shape_gain_) == (growth_dp.SPLINE_KNOTS, growth_dp.SHAPE_GAIN)
    assert large.module_.linear.in_features == 3 + 2 + 3 * (growth_dp.SPLINE_KNOTS + 1)  # + cubic B-splines
    chosen = DPGrowthQuantiles(spline_knots=4, shape_gain=2.0, **QUICK).fit(priors, current)
    assert (chosen.spline_knots_, chosen.shape_gain_) == (4, 2.0)
    assert np.all(np.diff(chosen.predict_quantiles(priors), axis=1) >= 0)


def test_the_prior_basis_is_fixed_by_the_knots_alone_and_zero_outside_the_run():
    basis = prior_basis(6).transform(np.linspace(0, 1, 101)[:, None])
    assert basis.shape == (101, 7) and np.all(basis >= 0) and np.all(basis.sum(axis=1) <= 1 + 1e-9)
    np.testing.assert_array_equal(prior_basis(6).transform(np.array([[0.3]])),
                                  prior_basis(6).transform(np.array([[0.3]])))  # no data in it
    model = DPGrowthQuantiles(spline_knots=6)
    model.n_priors_, model.spline_knots_ = 3, 6
    features = model._features(np.array([[np.nan, 50.0, 60.0], [20.0, np.nan, 60.0]]))
    splines = features[:, 5:].reshape(2, 3, 7)
    assert np.all(splines[0, 0] == 0) and np.any(splines[0, 1] > 0)  # the missing oldest prior
    assert np.all(splines[1, :2] == 0)  # a gap cuts off every earlier prior, its basis too
    np.testing.assert_allclose(splines[0, 2], splines[1, 2])  # same most recent prior, same basis


def test_the_shape_gain_leaves_the_starting_quantiles_unchanged():
    taus = np.arange(1, 100) / 100
    features = torch.rand(50, 8, generator=torch.Generator().manual_seed(0))
    outputs = []
    for gain in (1.0, 10.0):
        torch.manual_seed(0)
        outputs.append(QuantileNetwork(8, 2, 16, 6, taus, shape_gain=gain)(features))
    torch.testing.assert_close(outputs[0], outputs[1])


def test_the_seed_fixes_the_initialisation_but_cannot_replay_the_noise():
    priors, current = test_scores(400, seed=10)
    a = DPGrowthQuantiles(random_state=3, **QUICK).fit(priors, current).predict_quantiles(priors)
    b = DPGrowthQuantiles(random_state=3, **QUICK).fit(priors, current).predict_quantiles(priors)
    assert not np.allclose(a, b)


def test_scikit_learn_conventions():
    model = DPGrowthQuantiles(score_bounds=(200.0, 800.0), max_priors=2, epsilon=3.0, shape_terms=4)
    assert clone(model).get_params() == model.get_params()
    assert model.__sklearn_tags__().input_tags.allow_nan


@parametrize_with_checks(
    # The checks' data sets have fewer students than the default batch (256): one step of the
    # Gaussian mechanism, calibrated in no time.
    [DPGrowthQuantiles(quantiles=3, epochs=1, hidden_units=8)],
    expected_failed_checks=lambda estimator: {
        "check_estimators_pickle": "NaN in the most recent prior is refused on purpose: no prior, no growth",
    },
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_growth_agreement_reports_differences_and_rank_correlation():
    exact = np.arange(1, 100)
    same = growth_agreement(exact, exact)
    assert same == {"median_abs_diff": 0.0, "p90_abs_diff": 0.0, "spearman": pytest.approx(1.0), "n": 99}
    shifted = growth_agreement(np.minimum(exact + 3, 99), exact)
    assert shifted["median_abs_diff"] == 3.0 and shifted["p90_abs_diff"] == 3.0
    assert shifted["spearman"] > 0.99
    reversed_ = growth_agreement(exact[::-1], exact)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["median_abs_diff"] == 50.0
    with pytest.raises(ValueError, match="equal length"):
        growth_agreement(exact, exact[:-1])
    with pytest.raises(ValueError, match="non-empty"):
        growth_agreement([], [])


def test_median_growth_by_group_suppresses_small_groups():
    percentiles = np.concatenate([np.arange(1, 13), np.full(10, 70), [5, 95, 50], [33] * 9])
    groups = ["class A"] * 12 + ["class B"] * 10 + ["class C"] * 3 + ["class D"] * 9
    summary = median_growth_by_group(percentiles, groups)
    assert list(summary.columns) == ["group", "students", "median_growth_percentile"]
    expected = pd.DataFrame({"group": ["class A", "class B"], "students": [12, 10],
                             "median_growth_percentile": [6.5, 70.0]})
    pd.testing.assert_frame_equal(summary, expected)
    # A lower threshold shows the groups of 9 and 3 as well; a higher one hides everything.
    assert list(median_growth_by_group(percentiles, groups, min_group_size=3)["group"]) == [
        "class A", "class B", "class C", "class D"]
    assert median_growth_by_group(percentiles, groups, min_group_size=13).empty


def test_median_growth_by_group_leaves_out_students_without_a_group_and_checks_its_input():
    percentiles = np.full(12, 40)
    groups = np.array([7.0] * 10 + [np.nan] * 2)
    summary = median_growth_by_group(percentiles, groups)
    assert summary["students"].tolist() == [10] and summary["group"].tolist() == [7.0]
    with pytest.raises(ValueError, match="one group per percentile"):
        median_growth_by_group(percentiles, groups[:5])
    with pytest.raises(ValueError, match="min_group_size"):
        median_growth_by_group(percentiles, groups, min_group_size=0)
