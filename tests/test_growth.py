"""Student Growth Percentiles: calibration, monotonicity, the statsmodels reference, edges, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.growth import (
    StudentGrowthPercentiles,
    fit_quantiles_highs,
    fit_quantiles_statsmodels,
    percentile_of_scores,
    quantile_levels,
)


def simulated_scores(n_students, n_priors=1, seed=0):
    """Prior scores as a random walk; current = last prior + heteroscedastic normal noise.

    The truth is known: the τ-quantile of the current score given the priors is
    last + noise_scale(last) · Φ⁻¹(τ), whatever the earlier priors.
    """
    rng = np.random.default_rng(seed)
    priors = 500 + 30 * rng.standard_normal((n_students, n_priors)).cumsum(axis=1)
    last = priors[:, -1]
    current = last + noise_scale(last) * rng.standard_normal(n_students)
    return priors, current


def noise_scale(last):
    return 8 + 6 / (1 + np.exp(-(last - 500) / 30))


def pinball_loss(residuals, tau):
    return np.sum(np.maximum(tau * residuals, (tau - 1) * residuals))


@pytest.fixture(scope="module")
def one_prior_model():
    priors, current = simulated_scores(4000, seed=1)
    return StudentGrowthPercentiles().fit(priors, current)


def test_growth_percentiles_are_uniform_and_median_matches_truth(one_prior_model):
    priors, current = simulated_scores(20_000, seed=2)  # new students from the same population
    percentiles = one_prior_model.growth_percentile(priors, current)
    assert percentiles.dtype.kind == "i" and percentiles.min() >= 1 and percentiles.max() <= 99
    # Deciles of growth percentiles each hold about a tenth of the students (±2 points).
    decile_shares = np.bincount((percentiles - 1) // 10, minlength=10)[:10] / len(percentiles)
    assert np.all(np.abs(decile_shares - 0.1) < 0.02), decile_shares
    assert abs(np.mean(percentiles) - 50) < 1.5

    # The fitted conditional median and 90th percentile match the truth inside the data's bulk.
    inside = np.abs(priors[:, -1] - 500) < 60
    quantiles = one_prior_model.predict_quantiles(priors[inside])
    last = priors[inside, -1]
    for tau, tolerance in ((0.5, 0.5), (0.9, 1.0)):  # noise scale is 8–14 points; 4000 students
        column = int(np.argmin(np.abs(one_prior_model.taus_ - tau)))
        truth = last + noise_scale(last) * stats.norm.ppf(tau)
        assert np.mean(np.abs(quantiles[:, column] - truth)) < tolerance


def test_predicted_quantiles_are_monotone_even_where_raw_fits_cross():
    priors, current = simulated_scores(300, seed=3)  # few students: the raw curves cross
    model = StudentGrowthPercentiles().fit(priors, current)
    grid = np.linspace(priors.min() - 40, priors.max() + 40, 400)[:, None]
    raw = model._design(grid, 1) @ model.coef_[1]
    assert np.any(np.diff(raw, axis=1) < 0), "the raw fits should cross somewhere for this test to bite"
    rearranged = model.predict_quantiles(grid)
    assert np.all(np.diff(rearranged, axis=1) >= 0)
    np.testing.assert_allclose(rearranged, np.sort(raw, axis=1))


def test_highs_matches_statsmodels_quantreg_on_the_same_basis():
    priors, current = simulated_scores(2000, n_priors=2, seed=4)
    model = StudentGrowthPercentiles(quantiles=9).fit(priors, current)
    design = model._design(priors, 2)
    taus = [0.1, 0.5, 0.9]
    exact = fit_quantiles_highs(design, current, taus)
    reference = fit_quantiles_statsmodels(design, current, taus)
    for i, tau in enumerate(taus):
        # The LP optimum is never worse than IRLS, and IRLS gets within a hair of it.
        exact_loss = pinball_loss(current - design @ exact[:, i], tau)
        reference_loss = pinball_loss(current - design @ reference[:, i], tau)
        assert exact_loss <= reference_loss * (1 + 1e-9)
        assert reference_loss <= exact_loss * (1 + 1e-4)
        # Fitted quantiles agree to a small fraction of the noise scale (8–14 points).
        np.testing.assert_allclose(design @ exact[:, i], design @ reference[:, i], atol=0.01)
    # The coefficients of the estimator's own fit are the same exact optimum.
    np.testing.assert_allclose(design @ model.coef_[2][:, [0, 4, 8]], design @ exact, atol=1e-6)


@pytest.mark.parametrize("integer_scores", [False, True])
def test_preprocessing_for_large_samples_gives_the_exact_optimum(integer_scores):
    priors, current = simulated_scores(6000, n_priors=2, seed=5)
    if integer_scores:  # real scores are whole points: ties, and optima that are not unique
        priors, current = np.round(priors), np.round(current)
    design = StudentGrowthPercentiles(quantiles=1).fit(priors, current)._design(priors, 2)
    taus = quantile_levels(9)
    direct = fit_quantiles_highs(design, current, taus)
    preprocessed = fit_quantiles_highs(design, current, taus, preprocess_above=1000, random_state=0)
    for i, tau in enumerate(taus):
        direct_loss = pinball_loss(current - design @ direct[:, i], tau)
        preprocessed_loss = pinball_loss(current - design @ preprocessed[:, i], tau)
        assert preprocessed_loss == pytest.approx(direct_loss, rel=1e-10)
    if not integer_scores:  # a unique optimum: the same fit
        np.testing.assert_allclose(design @ preprocessed, design @ direct, atol=1e-6)


def test_far_above_gets_99_and_far_below_gets_1(one_prior_model):
    priors = np.array([[450.0], [500.0], [550.0]])
    typical = one_prior_model.predict_quantiles(priors)[:, 49]
    np.testing.assert_array_equal(one_prior_model.growth_percentile(priors, typical + 200), [99, 99, 99])
    np.testing.assert_array_equal(one_prior_model.growth_percentile(priors, typical - 200), [1, 1, 1])
    middle = one_prior_model.growth_percentile(priors, typical + 1e-6)
    assert np.all((middle >= 49) & (middle <= 51))


def test_coarse_scores_with_few_distinct_values_still_fit_exactly():
    rng = np.random.default_rng(13)
    prior = rng.integers(0, 5, size=3000).astype(float)[:, None]  # a 5-level grade: tied knots
    current = 10 * prior[:, 0] + rng.integers(0, 20, size=3000)
    model = StudentGrowthPercentiles(quantiles=19).fit(prior, current)  # preprocessed (> 2000 rows)
    assert model.knots_[0].size < 6 and set(model.knots_[0]) <= {0, 1, 2, 3, 4}  # tied knots merged
    design = model._design(prior, 1)
    assert np.linalg.matrix_rank(design) < design.shape[1]  # more basis columns than distinct scores
    direct = fit_quantiles_highs(design, current, model.taus_)
    for i, tau in enumerate(model.taus_):
        assert pinball_loss(current - design @ model.coef_[1][:, i], tau) == pytest.approx(
            pinball_loss(current - design @ direct[:, i], tau), rel=1e-10)
    percentiles = model.growth_percentile(prior, current)
    assert percentiles.min() >= 1 and percentiles.max() <= 99 and abs(percentiles.mean() - 50) < 5


def test_ties_count_half_so_a_run_of_equal_quantiles_gives_its_middle():
    quantiles = np.tile(np.arange(1.0, 100.0), (4, 1))
    quantiles[3, 40:61] = 41.0  # 21 quantiles equal, as for a student the fit passes through
    scores = np.array([50.5, 50.0, 50.0 + 1e-12, 41.0])
    # Strictly below 50.5: 50. One tie (50): strict rule, 49, also under rounding noise.
    # Run of 21 ties at 41 with 40 below: 40 + 10.
    np.testing.assert_array_equal(percentile_of_scores(quantiles, scores), [50, 49, 49, 50])
    np.testing.assert_array_equal(percentile_of_scores(quantiles[:2], np.array([0.0, 500.0])), [1, 99])


def test_each_student_is_scored_with_the_highest_order_they_have():
    priors, current = simulated_scores(1500, n_priors=3, seed=6)
    priors[:500, 0] = np.nan  # two priors
    priors[500:700, :2] = np.nan  # one prior
    priors[700:750, 1] = np.nan  # a gap: only the most recent prior counts
    model = StudentGrowthPercentiles(quantiles=5).fit(priors, current)
    assert model.n_rows_by_order_ == {1: 1500, 2: 1250, 3: 750}
    predicted = model.predict_quantiles(priors)
    for rows, order in ((slice(0, 500), 2), (slice(500, 750), 1), (slice(750, None), 3)):
        raw = model._design(priors[rows], order) @ model.coef_[order]
        np.testing.assert_allclose(predicted[rows], np.sort(raw, axis=1))


def test_an_order_with_too_few_students_falls_back_to_the_one_below():
    priors, current = simulated_scores(800, n_priors=2, seed=7)
    priors[10:, 0] = np.nan  # only 10 students have two priors: fewer than 15 parameters
    model = StudentGrowthPercentiles(quantiles=3).fit(priors, current)
    assert sorted(model.coef_) == [1]
    raw = model._design(priors[:10], 1) @ model.coef_[1]
    np.testing.assert_allclose(model.predict_quantiles(priors[:10]), np.sort(raw, axis=1))


def test_more_priors_than_max_priors_uses_the_most_recent():
    priors, current = simulated_scores(600, n_priors=3, seed=8)
    model = StudentGrowthPercentiles(max_priors=1, quantiles=3).fit(priors, current)
    single = StudentGrowthPercentiles(max_priors=1, quantiles=3).fit(priors[:, [-1]], current)
    assert model.n_features_in_ == 3 and model.n_priors_ == 1
    np.testing.assert_allclose(model.predict_quantiles(priors), single.predict_quantiles(priors[:, [-1]]))


@pytest.mark.parametrize("make_bad, message", [
    (lambda p, y: (p[:, 0], y), "2D array"),  # one vector instead of a matrix
    (lambda p, y: (p, y[:-1]), "inconsistent numbers of samples"),
    (lambda p, y: (np.full_like(p, np.nan), y), "most recent prior"),
    (lambda p, y: (np.column_stack([np.full(len(p), np.nan), p]), y), "no scores at all"),
    (lambda p, y: (p[:5], y[:5]), "fewer than the 8 parameters"),
    (lambda p, y: (np.full_like(p, 480.0), y), "constant"),
    (lambda p, y: (p, np.where(np.arange(len(y)) == 3, np.nan, y)), "NaN"),
    (lambda p, y: (np.where(np.arange(len(p))[:, None] == 3, np.inf, p), y), "infinity"),
])
def test_bad_training_input_raises_a_clear_value_error(make_bad, message):
    priors, current = simulated_scores(200, seed=9)
    with pytest.raises(ValueError, match=message):
        StudentGrowthPercentiles(quantiles=3).fit(*make_bad(priors, current))


@pytest.mark.parametrize("parameters", [
    {"max_priors": 0}, {"quantiles": 0}, {"knot_percentiles": (0.5, 0.2)}, {"knot_percentiles": (0.0, 0.5)},
    {"solver": "simplex"}, {"preprocess_above": 10},
])
def test_bad_parameters_raise_when_fit_runs(parameters):
    priors, current = simulated_scores(200, seed=10)
    model = StudentGrowthPercentiles(**parameters)  # construction stores, never checks
    with pytest.raises(ValueError):
        model.fit(priors, current)


def test_bad_scoring_input_raises_a_clear_value_error(one_prior_model):
    priors, current = simulated_scores(20, seed=11)
    with pytest.raises(ValueError, match="features"):
        one_prior_model.predict_quantiles(np.column_stack([priors, priors]))
    with pytest.raises(ValueError, match="most recent prior"):
        one_prior_model.predict_quantiles(np.full_like(priors, np.nan))
    with pytest.raises(ValueError, match="one per student"):
        one_prior_model.growth_percentile(priors, current[:-1])
    with pytest.raises(NotFittedError):
        StudentGrowthPercentiles().predict_quantiles(priors)


def test_scikit_learn_conventions(one_prior_model):
    parameters = {"max_priors": 2, "quantiles": 19, "knot_percentiles": (0.25, 0.5, 0.75), "solver": "highs",
                  "preprocess_above": None, "random_state": 3}
    model = StudentGrowthPercentiles(**parameters)
    assert model.get_params() == parameters
    assert clone(model).get_params() == parameters
    assert model.set_params(quantiles=9).quantiles == 9
    unfitted = clone(one_prior_model)
    assert not hasattr(unfitted, "coef_") and unfitted.get_params() == one_prior_model.get_params()
    assert np.allclose(one_prior_model.taus_, quantile_levels(99)) and one_prior_model.taus_[0] == 0.01
    assert one_prior_model.coef_[1].shape == (8, 99)  # intercept + 7 cubic B-splines (4 interior knots)
    assert len(one_prior_model.knots_) == 1 and one_prior_model.knots_[0].size == 6


@parametrize_with_checks(
    [StudentGrowthPercentiles(quantiles=3)],
    expected_failed_checks=lambda estimator: {
        "check_estimators_pickle": "NaN in the most recent prior is refused on purpose: no prior, no growth",
    },
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_statsmodels_solver_fits_the_same_model():
    priors, current = simulated_scores(1500, seed=12)
    exact = StudentGrowthPercentiles(quantiles=3).fit(priors, current)
    reference = StudentGrowthPercentiles(quantiles=3, solver="statsmodels").fit(priors, current)
    np.testing.assert_allclose(reference.predict_quantiles(priors), exact.predict_quantiles(priors), atol=0.01)
