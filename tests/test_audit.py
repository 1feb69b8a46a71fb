"""Membership-inference audits can fail: they flag an overfit model and stay below a DP model's claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from models.risk_classifier import DPRiskClassifier
from privacy.audit import (
    AuditResult,
    canary_audit,
    epsilon_lower_bound_from_scores,
    epsilon_lower_bound_one_run,
    threshold_audit,
)

BOUNDS = [(0, 100)] * 5
DELTA = 1e-5
CLAIMED_EPSILON = 2.0


def _students(n, *, seed, label_noise):
    """Synthetic students: five indicators in [0, 100], a risk label with some labels flipped at random."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 100, (n, 5))
    logit = (X[:, 0] - 50) / 10 - (X[:, 1] - 50) / 20
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, np.where(rng.random(n) < label_noise, 1 - y, y)


def _split(X, y):
    half = len(X) // 2
    return dict(X_members=X[:half], y_members=y[:half], X_nonmembers=X[half:], y_nonmembers=y[half:])


# (a) The audit can fail: a non-private forest grown to purity on 200 noisy students memorises them.

@pytest.fixture(scope="module")
def overfit():
    X, y = _students(400, seed=1, label_noise=0.3)
    split = _split(X, y)
    forest = RandomForestClassifier(n_estimators=50, random_state=0)
    model = forest.fit(split["X_members"], split["y_members"])
    return dict(
        threshold=threshold_audit(model, **split, delta=DELTA),
        canaries=canary_audit(forest, split["X_members"], split["y_members"], n_canaries=100, delta=DELTA),
    )


def test_threshold_attack_flags_an_overfit_model(overfit):
    result = overfit["threshold"]
    assert result.attack == "loss_threshold" and (result.n_members, result.n_nonmembers) == (200, 200)
    assert result.auc > 0.8
    assert result.tpr_at_1pct_fpr > 0.1
    assert result.epsilon_lower_bound > 1.0


def test_canary_audit_refutes_a_dp_claim_for_an_overfit_model(overfit):
    result = overfit["canaries"]
    assert result.n_members + result.n_nonmembers == 100 and result.guesses == 20
    assert result.correct_guesses == 20
    assert result.auc > 0.9
    # Had this model claimed ε = 1, the audit would call the claim false.
    assert result.epsilon_lower_bound > 1.0 and result.contradicts(1.0)


# (b) A DP-SGD model at ε = 2 (δ = 1e-5) on 1000 students: no attack gets near the claim.

@pytest.fixture(scope="module")
def private():
    X, y = _students(2000, seed=2, label_noise=0.1)
    split = _split(X, y)
    estimator = DPRiskClassifier(feature_bounds=BOUNDS, epsilon=CLAIMED_EPSILON, delta=DELTA, epochs=20,
                                 batch_size=64, random_state=0)
    model = estimator.fit(split["X_members"], split["y_members"])
    return dict(
        task_auc=roc_auc_score(split["y_nonmembers"], model.predict_proba(split["X_nonmembers"])[:, 1]),
        threshold=threshold_audit(model, **split),  # δ read from the model
        canaries=canary_audit(estimator, split["X_members"], split["y_members"], n_canaries=250),
    )


def test_the_private_model_is_worth_auditing(private):
    assert private["task_auc"] > 0.75  # it learned the task, so a small leak would have had room to show


def test_threshold_attack_stays_below_the_claimed_epsilon(private):
    result = private["threshold"]
    assert result.delta == DELTA
    assert abs(result.auc - 0.5) < 0.05
    assert result.epsilon_lower_bound < CLAIMED_EPSILON and not result.contradicts(CLAIMED_EPSILON)


def test_canary_audit_stays_below_the_claimed_epsilon(private):
    result = private["canaries"]
    assert result.guesses == 50 and result.delta == DELTA
    assert abs(result.auc - 0.5) < 0.1
    assert result.epsilon_lower_bound < CLAIMED_EPSILON and not result.contradicts(CLAIMED_EPSILON)


# (c) The lower-bound math.

def test_perfect_guesses_give_a_finite_bound_that_grows_with_the_number_of_guesses():
    bounds = [epsilon_lower_bound_one_run(canaries=r, guesses=r, correct=r, delta=DELTA) for r in (10, 50, 200, 1000)]
    assert all(np.isfinite(bounds)) and np.all(np.diff(bounds) > 0)
    assert bounds[0] > 0.5 and bounds[-1] < 10


@pytest.mark.parametrize("guesses", [10, 100, 1000])
def test_pure_epsilon_bound_for_perfect_guesses_is_the_closed_form(guesses):
    # With δ = 0 and r right out of r, p(ε) = q^r with q = e^ε / (1 + e^ε): ε_lb = logit(0.05^(1/r)).
    q = 0.05 ** (1 / guesses)
    bound = epsilon_lower_bound_one_run(canaries=guesses, guesses=guesses, correct=guesses, delta=0.0)
    assert bound == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    # δ > 0 only weakens what the same guesses prove.
    assert epsilon_lower_bound_one_run(canaries=guesses, guesses=guesses, correct=guesses, delta=DELTA) <= bound


def test_coin_flip_guesses_prove_nothing():
    assert epsilon_lower_bound_one_run(canaries=1000, guesses=200, correct=100, delta=DELTA) == 0.0
    assert epsilon_lower_bound_one_run(canaries=1000, guesses=200, correct=108, delta=DELTA) == 0.0
    assert epsilon_lower_bound_one_run(canaries=10, guesses=0, correct=0, delta=DELTA) == 0.0


def test_threshold_bound_is_zero_for_indistinguishable_scores_and_finite_for_separated_ones():
    rng = np.random.default_rng(0)
    same = epsilon_lower_bound_from_scores(rng.normal(size=500), rng.normal(size=500), delta=DELTA)
    assert same == 0.0
    separated = epsilon_lower_bound_from_scores(np.full(500, 1.0), np.full(500, 0.0), delta=DELTA)
    assert 3.0 < separated < 10.0


# (d) Bad input is refused with a reason.

def test_mismatched_shapes_are_refused():
    X, y = _students(50, seed=3, label_noise=0.0)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="50 rows but y has shape"):
        threshold_audit(forest, X_members=X, y_members=y[:-1], X_nonmembers=X, y_nonmembers=y, delta=DELTA)
    with pytest.raises(ValueError, match="must be rows of the same table"):
        threshold_audit(forest, X_members=X, y_members=y, X_nonmembers=X[:, :4], y_nonmembers=y, delta=DELTA)
    with pytest.raises(ValueError, match="2-D"):
        canary_audit(forest, X[:, 0], y, delta=DELTA)


def test_an_empty_member_set_is_refused():
    X, y = _students(50, seed=3, label_noise=0.0)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="members: the set is empty"):
        threshold_audit(forest, X_members=X[:0], y_members=y[:0], X_nonmembers=X, y_nonmembers=y, delta=DELTA)
    with pytest.raises(ValueError, match="at least one member score"):
        epsilon_lower_bound_from_scores([], [0.1, 0.2], delta=DELTA)


def test_impossible_canary_settings_and_counts_are_refused():
    X, y = _students(50, seed=3, label_noise=0.0)
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    with pytest.raises(ValueError, match="n_canaries"):
        canary_audit(forest, X, y, n_canaries=51, delta=DELTA)
    with pytest.raises(ValueError, match="k_plus"):
        canary_audit(forest, X, y, n_canaries=20, k_plus=15, k_minus=10, delta=DELTA)
    with pytest.raises(ValueError, match="correct"):
        epsilon_lower_bound_one_run(canaries=10, guesses=5, correct=6, delta=DELTA)


def test_a_non_private_twin_must_be_told_which_delta_it_is_compared_at():
    X, y = _students(50, seed=3, label_noise=0.0)
    with pytest.raises(ValueError, match="pass delta="):
        canary_audit(RandomForestClassifier(n_estimators=5), X, y)


# Reuse: the estimator is cloned, never touched; results are reproducible and loggable.

def test_the_given_estimator_is_never_fitted_or_changed():
    X, y = _students(120, seed=4, label_noise=0.2)
    unfitted = RandomForestClassifier(n_estimators=10, random_state=0)
    canary_audit(unfitted, X, y, n_canaries=30, delta=DELTA)
    with pytest.raises(NotFittedError):
        check_is_fitted(unfitted)
    fitted = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    before = fitted.predict_proba(X)
    canary_audit(fitted, X, y, n_canaries=30, delta=DELTA)
    np.testing.assert_array_equal(fitted.predict_proba(X), before)


def test_same_seed_same_audit():
    X, y = _students(120, seed=4, label_noise=0.2)
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    first = canary_audit(forest, X, y, n_canaries=40, delta=DELTA, random_state=7)
    assert canary_audit(forest, X, y, n_canaries=40, delta=DELTA, random_state=7) == first


def test_result_is_frozen_loggable_and_summarised(overfit):
    result: AuditResult = overfit["canaries"]
    with pytest.raises(AttributeError):
        result.auc = 0.5
    as_dict = result.to_dict()
    assert as_dict["attack"] == "one_run_canaries" and as_dict["guesses"] == 20
    metrics = overfit["threshold"].to_metrics()
    assert "audit.loss_threshold.epsilon_lower_bound" in metrics and "audit.loss_threshold.guesses" not in metrics
    assert all(isinstance(value, float) for value in metrics.values())
    line = result.summary()
    assert "\n" not in line and "one_run_canaries" in line and "ε ≥" in line and "20/20" in line
