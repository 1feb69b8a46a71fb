"""The academic early-warning model: levels, calibration figures, per-student reasons, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from models.academic_risk import (
    LEVELS,
    AcademicRiskModel,
    Reason,
    calibration_report,
    expected_calibration_error,
    reliability_table,
    risk_levels,
)

NAMES = ["days absent", "behaviour incidents", "grade average", "shoe size"]
BOUNDS = [(0, 40), (0, 10), (0, 20), (30, 48)]
REFERENCE = [0, 0, 10, 39]  # no absence, no incident, the pass mark, the middle of the shoe range


def abc_students(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Risk rises with absences and incidents, falls with grades; shoe size is noise."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.integers(0, 41, n), rng.integers(0, 11, n), rng.uniform(0, 20, n),
                         rng.uniform(30, 48, n)]).astype(float)
    logit = 0.15 * X[:, 0] + 0.3 * X[:, 1] - 0.5 * (X[:, 2] - 10) - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared with timing benchmarks
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted():
    X, y = abc_students(4000)
    model = AcademicRiskModel(feature_names=NAMES, feature_bounds=BOUNDS, reference_values=REFERENCE, epsilon=8.0,
                              delta=1e-5, epochs=10, hidden_units=0, learning_rate=0.5)
    return model.fit(X, y)


# --- levels ------------------------------------------------------------------------------------

def test_levels_are_monotone_in_the_probability_and_thresholds_inclusive():
    probability = np.linspace(0, 1, 1001)
    levels = risk_levels(probability)
    rank = np.array([LEVELS.index(level) for level in levels])
    assert np.all(np.diff(rank) >= 0)
    assert set(levels) == set(LEVELS)
    assert list(risk_levels([0.2499, 0.25, 0.4999, 0.5, 1.0])) == ["green", "amber", "amber", "red", "red"]
    assert list(risk_levels([0.1, 0.3, 0.7], amber_threshold=0.05, red_threshold=0.8)) == ["amber", "amber", "amber"]


@pytest.mark.parametrize("amber, red", [(0.5, 0.5), (0.6, 0.4), (0.0, 0.5), (0.2, 1.0)])
def test_levels_reject_thresholds_out_of_order(amber, red):
    with pytest.raises(ValueError, match="0 < amber_threshold < red_threshold < 1"):
        risk_levels([0.5], amber, red)


@pytest.mark.parametrize("bad", [[0.2, 1.2], [-0.1], [np.nan], [[0.2, 0.3]]])
def test_levels_reject_what_is_not_a_probability(bad):
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        risk_levels(bad)


# --- calibration -------------------------------------------------------------------------------

def test_calibration_of_true_probabilities_is_near_perfect():
    rng = np.random.default_rng(1)
    probability = rng.uniform(0, 1, 50_000)
    y = (rng.random(50_000) < probability).astype(int)
    report = calibration_report(y, probability)
    assert report["n"] == 50_000
    assert report["ece"] < 0.01
    assert report["brier"] == pytest.approx(np.mean((probability - y) ** 2))
    assert report["brier"] == pytest.approx(1 / 6, abs=0.01)  # E[p(1 − p)] for p ~ U(0, 1)
    table = report["reliability"]
    assert table["count"].sum() == 50_000 and len(table) == 10
    assert np.allclose(table["mean_predicted"], table["observed_rate"], atol=0.02)


def test_calibration_sees_an_overconfident_model():
    rng = np.random.default_rng(2)
    truth = rng.uniform(0.3, 0.7, 20_000)
    y = (rng.random(20_000) < truth).astype(int)
    overconfident = np.where(truth > 0.5, 0.95, 0.05)
    assert expected_calibration_error(y, overconfident) > 0.3
    assert expected_calibration_error(y, truth) < 0.02


def test_reliability_puts_probability_one_in_the_last_bin_and_leaves_empty_bins_out():
    table = reliability_table([0, 1, 1], [0.0, 1.0, 1.0], n_bins=4)
    assert list(table["bin_low"]) == [0.0, 0.75] and list(table["count"]) == [1, 2]


@pytest.mark.parametrize("y, p, message", [
    ([0, 1], [0.5], "as many labels as probabilities"),
    ([0, 2], [0.5, 0.5], "labels must be 0/1"),
    ([0, 1], [0.5, 1.5], "in \\[0, 1\\]"),
    ([], [], "non-empty"),
])
def test_calibration_rejects_bad_input_clearly(y, p, message):
    with pytest.raises(ValueError, match=message):
        calibration_report(y, p)


# --- the model ---------------------------------------------------------------------------------

def test_fitted_model_ranks_risk_and_spends_what_it_promised(fitted):
    X, y = abc_students(2000, seed=3)
    risk = fitted.risk(X)
    assert risk.shape == (2000,) and np.all((risk >= 0) & (risk <= 1))
    assert np.corrcoef(risk, y)[0, 1] > 0.4
    assert fitted.privacy_.epsilon <= 8.0
    assert list(fitted.classes_) == [0, 1]
    assert np.array_equal(fitted.predict(X), (risk >= 0.5).astype(int))
    report = fitted.calibration(X, y)
    assert report["brier"] < 0.2 and 0 <= report["ece"] < 0.2


def test_levels_follow_the_risk(fitted):
    X, _ = abc_students(500, seed=4)
    risk, levels = fitted.risk(X), fitted.predict_level(X)
    order = np.argsort(risk)
    rank = np.array([LEVELS.index(level) for level in levels[order]])
    assert np.all(np.diff(rank) >= 0)
    assert np.all((levels == "red") == (risk >= fitted.red_threshold))


def test_reasons_name_real_features_with_the_right_direction(fitted):
    worrying = np.array([[35.0, 8.0, 4.0, 39.0]])  # absent, in trouble, failing, average shoes
    fine = np.array([[0.0, 0.0, 17.0, 39.0]])
    assert fitted.predict_level(worrying)[0] == "red" and fitted.predict_level(fine)[0] == "green"

    reasons = fitted.explain(worrying)[0]
    assert 1 <= len(reasons) <= 3
    assert all(isinstance(r, Reason) and r.feature in NAMES for r in reasons)
    assert {r.feature for r in reasons} == {"days absent", "behaviour incidents", "grade average"}
    assert all(r.direction == "raises" and r.effect > 0 for r in reasons)
    effects = [abs(r.effect) for r in reasons]
    assert effects == sorted(effects, reverse=True)
    # Shoe size equals its reference here: no effect, never a reason.
    assert "shoe size" not in {r.feature for r in reasons}

    good = fitted.explain(fine)[0]
    assert {r.feature for r in good if r.feature != "shoe size"} <= {"grade average"}
    assert good[0].feature == "grade average" and good[0].direction == "lowers"
    assert "grade average = 17 (reference 10) lowers the risk by" in str(good[0])


def test_effect_is_the_change_in_probability_at_the_reference(fitted):
    X, _ = abc_students(50, seed=5)
    effects = fitted.feature_effects(X)
    neutral = X.copy()
    neutral[:, 2] = REFERENCE[2]
    assert np.allclose(effects[:, 2], fitted.risk(X) - fitted.risk(neutral))
    top = fitted.explain(X, top=1)
    assert all(len(r) <= 1 for r in top)
    assert [r[0].feature for r in top if r] == [NAMES[j] for j in np.argmax(np.abs(effects), axis=1)]


def test_missing_values_enter_and_read_as_missing(fitted):
    X = np.array([[np.nan, 0.0, 10.0, 39.0]])
    reasons = fitted.explain(X)[0]
    assert np.isfinite(fitted.risk(X)).all()
    assert all("missing" in str(r) for r in reasons if r.feature == "days absent")


def test_default_names_and_references():
    X, y = abc_students(600, seed=6)
    model = AcademicRiskModel(feature_bounds=BOUNDS, epsilon=8.0, epochs=2, hidden_units=0).fit(X, y)
    assert model.feature_names_ == ["feature 0", "feature 1", "feature 2", "feature 3"]
    assert np.allclose(model.reference_, [20, 5, 10, 39])  # the middle of each range


def test_dp_platt_calibration_uses_disjoint_students_and_keeps_the_ranking():
    X, y = abc_students(4000, seed=7)
    model = AcademicRiskModel(feature_names=NAMES, feature_bounds=BOUNDS, reference_values=REFERENCE, epsilon=8.0,
                              epochs=10, hidden_units=0, learning_rate=0.5, calibration_fraction=0.25).fit(X, y)
    assert model.calibrator_ is not None and model.calibrator_.privacy_.epsilon <= 8.0
    assert model.calibrator_.n_features_in_ == 1
    # About a quarter of the students calibrate; a fresh coin each time (not a seeded split).
    first, second = model._calibration_students(4000), model._calibration_students(4000)
    assert 900 < first.sum() < 1100 and not np.array_equal(first, second)
    X_new, _ = abc_students(1000, seed=8)
    raw = model.classifier_.predict_proba(X_new)[:, 1]
    calibrated = model.risk(X_new)
    assert np.all((calibrated > 0) & (calibrated < 1))
    # Platt scaling is monotone: it may move probabilities, never reorder students.
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(calibrated[order]) >= -1e-12)


# --- bad input ---------------------------------------------------------------------------------

def test_prediction_before_fit_is_refused():
    model = AcademicRiskModel(feature_names=NAMES, feature_bounds=BOUNDS)
    for method in (model.predict_proba, model.predict_level, model.explain, model.feature_effects):
        with pytest.raises(NotFittedError):
            method(np.zeros((1, 4)))


def test_bad_input_errors_are_clear(fitted):
    X, y = abc_students(300, seed=9)
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 4"):
        fitted.predict_level(X[:, :3])
    with pytest.raises(ValueError, match="X has 4 features but feature_names has 3"):
        AcademicRiskModel(feature_names=NAMES[:3], feature_bounds=BOUNDS[:3]).fit(X, y)
    with pytest.raises(ValueError, match="feature_bounds must be 4 pairs"):
        AcademicRiskModel(feature_names=NAMES, feature_bounds=BOUNDS[:3]).fit(X, y)
    with pytest.raises(ValueError, match="exactly two labels"):
        AcademicRiskModel(feature_names=NAMES, feature_bounds=BOUNDS).fit(X, np.arange(300) % 3)
    with pytest.raises(ValueError, match="one label per row"):
        AcademicRiskModel(feature_names=NAMES, feature_bounds=BOUNDS).fit(X, y[:-1])
    with pytest.raises(ValueError, match="amber_threshold < red_threshold"):
        AcademicRiskModel(feature_bounds=BOUNDS, amber_threshold=0.6, red_threshold=0.4).fit(X, y)
    with pytest.raises(ValueError, match="feature_names must be unique"):
        AcademicRiskModel(feature_names=["a", "a", "b", "c"], feature_bounds=BOUNDS).fit(X, y)
    with pytest.raises(ValueError, match="reference_values must lie within feature_bounds"):
        AcademicRiskModel(feature_bounds=BOUNDS, reference_values=[0, 0, 25, 39], epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="calibration_fraction must be in"):
        AcademicRiskModel(feature_bounds=BOUNDS, calibration_fraction=1.0).fit(X, y)
    with pytest.raises(ValueError, match="non-empty 2-D matrix"):
        fitted.predict_proba(np.zeros(4))
    with pytest.raises(ValueError, match="numeric matrix"):
        fitted.predict_proba([["a", "b", "c", "d"]])
    with pytest.raises(ValueError, match="infinite"):
        fitted.predict_proba(np.array([[np.inf, 0, 10, 39]]))
    with pytest.raises(ValueError, match="top must be a positive integer"):
        fitted.explain(X, top=0)
