"""The academic early-warning model: who is at risk of failing, how sure the model is, and why.

Early-warning systems in schools watch the "ABC" indicators, the three that best predict
dropping out or failing (Balfanz, Herzog & Mac Iver 2007; Allensworth & Easton 2007, the
"on-track" indicator):

- **A**ttendance: days absent, chronic absence (missing 10 % or more of the school days);
- **B**ehaviour: incidents, suspensions, (in adult education) late or missing coursework;
- **C**ourse performance: grades and assessment scores so far, courses failed before.

The engine's ABC features will come from Feast (indicator views built from the lake); this model
does not know about Feast. It takes a matrix, one row per student (the unit of privacy), the
human-readable name of every column and the range of every column, fixed *a priori* from the
contract or the codebook (never learned from the data: see `models.risk_classifier`).

What it adds to `DPRiskClassifier` (which it trains, with DP-SGD, to a target (ε, δ)):

1. Levels. The probability of the "at risk" class (the larger of the two labels: 1 for 0/1
   labels, True for booleans) maps to three levels with fixed, documented thresholds:

   ======  =====================  ==============================================================
   level   probability p          meaning
   ======  =====================  ==============================================================
   red     p ≥ red_threshold      the model expects a failure (default 0.5: the classifier's
                                  own decision threshold, "more likely than not")
   amber   amber ≤ p < red        a real chance, worth a look (default 0.25: one in four)
   green   p < amber_threshold    no sign of risk in these features
   ======  =====================  ==============================================================

   Fixed thresholds rather than quantiles of the scores: a quantile rule would always flag the
   same share of students whatever their actual risk, and choosing thresholds from the private
   data would be a release outside the DP guarantee.
2. Calibration (`calibration`, `calibration_report`): the Brier score, the expected calibration
   error and a reliability table (predicted against observed rate per probability bin), so the
   levels can be read as probabilities. Run it on held-out students: its figures use their true
   labels and are not differentially private (they are for the people who validate the model,
   not for release).
3. Reasons (`explain`): for each student, the features that move their predicted probability
   most, with the direction. A feature's effect is p(student) − p(student with that feature set
   to its neutral reference value): positive means the student's value raises the risk compared
   with the reference. References are fixed a priori like the bounds (default: the middle of
   each feature's range; pass e.g. 0 absences, the pass mark, the expected attendance).
   Explanations query only the trained (DP) model and the student's own row, so they cost no
   privacy budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from models.risk_classifier import DPRiskClassifier

LEVELS = ("green", "amber", "red")  # in increasing order of risk
DEFAULT_AMBER_THRESHOLD = 0.25
DEFAULT_RED_THRESHOLD = 0.5
LOGIT_BOUND = 10.0  # the calibrator's input range, fixed a priori: probabilities 4.5e-5 .. 1 − 4.5e-5


def check_thresholds(amber_threshold: float, red_threshold: float) -> None:
    if not (0.0 < amber_threshold < red_threshold < 1.0):
        raise ValueError(f"thresholds must satisfy 0 < amber_threshold < red_threshold < 1, "
                         f"got amber={amber_threshold!r}, red={red_threshold!r}")


def risk_levels(probability, amber_threshold: float = DEFAULT_AMBER_THRESHOLD,
                red_threshold: float = DEFAULT_RED_THRESHOLD) -> np.ndarray:
    """'green' / 'amber' / 'red' for each probability of being at risk (see the module table)."""
    check_thresholds(amber_threshold, red_threshold)
    probability = np.asarray(probability, dtype=np.float64)
    if probability.ndim != 1 or np.any(~np.isfinite(probability)) or np.any((probability < 0) | (probability > 1)):
        raise ValueError("probabilities must be a 1-D array of numbers in [0, 1]")
    # Index into LEVELS: 0 below amber, 1 from amber, 2 from red (thresholds are inclusive).
    index = (probability >= amber_threshold).astype(int) + (probability >= red_threshold).astype(int)
    return np.asarray(LEVELS, dtype=object)[index]


def reliability_table(y_true, probability, n_bins: int = 10) -> pd.DataFrame:
    """Predicted against observed rate in equal-width probability bins (empty bins left out)."""
    y_true, probability = _check_labels_and_probabilities(y_true, probability)
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # A probability of exactly 1 belongs to the last bin, not to a bin of its own.
    bins = np.minimum(np.digitize(probability, edges[1:-1], right=False), n_bins - 1)
    rows = []
    for b in np.unique(bins):
        members = bins == b
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "count": int(members.sum()),
                     "mean_predicted": float(probability[members].mean()),
                     "observed_rate": float(y_true[members].mean())})
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "count", "mean_predicted", "observed_rate"])


def expected_calibration_error(y_true, probability, n_bins: int = 10) -> float:
    """Σ_bins (share of students in the bin) · |mean predicted − observed rate|."""
    table = reliability_table(y_true, probability, n_bins)
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["mean_predicted"] - table["observed_rate"]).abs()).sum())


def calibration_report(y_true, probability, n_bins: int = 10) -> dict:
    """Brier score, expected calibration error (ECE) and the reliability table, in one dict."""
    y_true, probability = _check_labels_and_probabilities(y_true, probability)
    return {
        "n": len(y_true),
        "positive_rate": float(y_true.mean()),
        "brier": float(np.mean((probability - y_true) ** 2)),
        "ece": expected_calibration_error(y_true, probability, n_bins),
        "reliability": reliability_table(y_true, probability, n_bins),
    }


def _check_labels_and_probabilities(y_true, probability) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    probability = np.asarray(probability, dtype=np.float64)
    if y_true.ndim != 1 or probability.shape != y_true.shape or len(y_true) == 0:
        raise ValueError(f"need as many labels as probabilities, both 1-D and non-empty; got shapes "
                         f"{y_true.shape} and {probability.shape}")
    if not np.isin(y_true, [0, 1]).all():
        raise ValueError("labels must be 0/1 (or booleans): 1 = at risk")
    if np.any(~np.isfinite(probability)) or np.any((probability < 0) | (probability > 1)):
        raise ValueError("probabilities must be numbers in [0, 1]")
    return y_true.astype(np.float64), probability


@dataclass(frozen=True)
class Reason:
    """One feature's part in one student's risk."""

    feature: str
    value: float  # the student's value (NaN if missing)
    reference: float  # the neutral value it was compared with
    effect: float  # p(student) − p(student with this feature at its reference)

    @property
    def direction(self) -> str:
        return "raises" if self.effect > 0 else "lowers"

    def __str__(self) -> str:
        value = "missing" if np.isnan(self.value) else f"{self.value:g}"
        return (f"{self.feature} = {value} (reference {self.reference:g}) {self.direction} "
                f"the risk by {abs(self.effect) * 100:.1f} points")


class AcademicRiskModel(ClassifierMixin, BaseEstimator):
    """Academic early warning: a DP risk classifier with levels, calibration and reasons.

    Parameters
    ----------
    feature_names : one human-readable name per column (used in reasons); None → "feature 0", ...
    feature_bounds : (low, high) per column, fixed a priori (see `DPRiskClassifier`).
    reference_values : the neutral value per column that reasons compare with, fixed a priori;
        None → the middle of each column's bounds.
    amber_threshold, red_threshold : level thresholds on the probability of being at risk.
    calibration_fraction : share of the students (an independent coin each) set aside to fit a DP
        Platt scaling of the network's output; 0 (the default) fits no calibrator. Worth it from a
        few thousand students; on a few hundred the noisy calibrator does more harm than good
        (see the module docstring).
    epsilon, delta, epochs, batch_size, learning_rate, hidden_units, max_grad_norm, random_state :
        passed to `DPRiskClassifier`.

    Attributes
    ----------
    classifier_ : the fitted `DPRiskClassifier`; `privacy_` is its privacy spend.
    calibrator_ : the fitted one-input DP logistic regression on the network's logit, or None.
    classes_ : the two labels; the risk is the probability of `classes_[1]`.
    feature_names_ : the names used in reasons.
    reference_ : the reference values used in reasons.
    """

    def __init__(self, feature_names=None, feature_bounds=None, reference_values=None,
                 amber_threshold=DEFAULT_AMBER_THRESHOLD, red_threshold=DEFAULT_RED_THRESHOLD,
                 calibration_fraction=0.0, epsilon=1.0, delta=1e-5, epochs=20, batch_size=None, learning_rate=0.1,
                 hidden_units=32, max_grad_norm=1.0, random_state=0):
        self.feature_names = feature_names
        self.feature_bounds = feature_bounds
        self.reference_values = reference_values
        self.amber_threshold = amber_threshold
        self.red_threshold = red_threshold
        self.calibration_fraction = calibration_fraction
        self.epsilon = epsilon
        self.delta = delta
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden_units = hidden_units
        self.max_grad_norm = max_grad_norm
        self.random_state = random_state

    # --- training and prediction -------------------------------------------------------------

    def fit(self, X, y):
        check_thresholds(self.amber_threshold, self.red_threshold)
        if not (isinstance(self.calibration_fraction, (int, float)) and 0 <= self.calibration_fraction < 1):
            raise ValueError(f"calibration_fraction must be in [0, 1), got {self.calibration_fraction!r}")
        X = self._check_matrix(X, fitting=True)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != X.shape[0]:
            raise ValueError(f"y must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape}")
        if type_of_target(y) != "binary" or len(np.unique(y)) != 2:
            raise ValueError("y must hold exactly two labels (at risk or not); the larger one means at risk")
        self.feature_names_ = self._names(X.shape[1])
        self.n_features_in_ = X.shape[1]
        calibrating = self._calibration_students(len(y))
        self.classifier_ = self._dp_classifier(self.feature_bounds, self.hidden_units).fit(
            X[~calibrating], y[~calibrating])
        self.classes_ = self.classifier_.classes_
        self.reference_ = self._references(self.classifier_.bounds_)
        self.calibrator_ = None
        if calibrating.any():
            # Platt scaling: a one-input DP logistic regression of the label on the model's logit.
            self.calibrator_ = self._dp_classifier([(-LOGIT_BOUND, LOGIT_BOUND)], 0).fit(
                self._logit(X[calibrating]), y[calibrating])
        return self

    def _calibration_students(self, n: int) -> np.ndarray:
        """Which students calibrate rather than train: an independent coin per student.

        A coin per student (not a stratified or index-based split) keeps every other student's
        side unchanged when one student is added or removed, so the two DP fits run on disjoint
        students and together are (ε, δ)-DP by parallel composition. Fresh entropy, like
        DP-SGD's sampling: a seed would let whoever knows it tell the two groups apart.
        """
        if self.calibration_fraction == 0:
            return np.zeros(n, dtype=bool)
        calibrating = np.random.default_rng().random(n) < self.calibration_fraction
        if calibrating.all() or not calibrating.any():
            raise ValueError(f"{n} students are too few to set {self.calibration_fraction:.0%} aside for calibration")
        return calibrating

    def _dp_classifier(self, bounds, hidden_units: int) -> DPRiskClassifier:
        return DPRiskClassifier(
            feature_bounds=bounds, epsilon=self.epsilon, delta=self.delta, max_grad_norm=self.max_grad_norm,
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            hidden_units=hidden_units, random_state=self.random_state)

    def _logit(self, X: np.ndarray) -> np.ndarray:
        """The uncalibrated model's log-odds, clipped to ±LOGIT_BOUND, as a one-column matrix."""
        probability = np.clip(self.classifier_.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
        return np.clip(np.log(probability / (1 - probability)), -LOGIT_BOUND, LOGIT_BOUND)[:, None]

    @property
    def privacy_(self):
        """The risk network's privacy spend; the calibrator (other students) spends the same, in parallel."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.privacy_

    def predict_proba(self, X):
        check_is_fitted(self, "classifier_")
        X = self._check_matrix(X)
        if self.calibrator_ is None:
            return self.classifier_.predict_proba(X)
        return self.calibrator_.predict_proba(self._logit(X))

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    def risk(self, X) -> np.ndarray:
        """The probability of being at risk, one per student."""
        return self.predict_proba(X)[:, 1]

    def predict_level(self, X) -> np.ndarray:
        """'green' / 'amber' / 'red' per student (thresholds in the module docstring)."""
        return risk_levels(self.risk(X), self.amber_threshold, self.red_threshold)

    def calibration(self, X, y, n_bins: int = 10) -> dict:
        """`calibration_report` of the model on (held-out) students X with their labels y (1 = at risk)."""
        y = np.asarray(y)
        return calibration_report((y == self.classes_[1]).astype(int), self.risk(X), n_bins)

    # --- reasons ------------------------------------------------------------------------------

    def feature_effects(self, X) -> np.ndarray:
        """(n, features): p(student) − p(student with feature j at its reference), per student and j."""
        check_is_fitted(self, "classifier_")
        X = self._check_matrix(X)
        base = self.risk(X)
        effects = np.empty_like(X)
        for j in range(X.shape[1]):
            neutral = X.copy()
            neutral[:, j] = self.reference_[j]
            effects[:, j] = base - self.risk(neutral)
        return effects

    def explain(self, X, top: int = 3) -> list[list[Reason]]:
        """For each student, the `top` features with the largest effect on their risk, largest first.

        Features with no effect at all (value equal to the reference, or a flat model) are left
        out, so a student may get fewer than `top` reasons.
        """
        if not (isinstance(top, (int, np.integer)) and top >= 1):
            raise ValueError(f"top must be a positive integer, got {top!r}")
        check_is_fitted(self, "classifier_")
        X = self._check_matrix(X)
        effects = self.feature_effects(X)
        # Stable sort on −|effect| keeps column order among ties, so reasons are reproducible.
        order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :top]
        return [
            [Reason(self.feature_names_[j], float(X[i, j]), float(self.reference_[j]), float(effects[i, j]))
             for j in order[i] if effects[i, j] != 0.0]
            for i in range(X.shape[0])
        ]

    # --- checks -------------------------------------------------------------------------------

    def _check_matrix(self, X, fitting: bool = False) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy()
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"X must be a numeric matrix (one row per student): {error}") from error
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X must be a non-empty 2-D matrix (students × features), got shape {X.shape}")
        if np.isinf(X).any():
            raise ValueError("X has infinite values; use NaN for a missing value")
        expected = len(self.feature_names) if fitting and self.feature_names is not None else (
            None if fitting else self.n_features_in_)
        if expected is not None and X.shape[1] != expected:
            what = "feature_names has" if fitting else "the model was fitted on"
            raise ValueError(f"X has {X.shape[1]} features but {what} {expected}")
        return X

    def _names(self, n_features: int) -> list[str]:
        if self.feature_names is None:
            return [f"feature {j}" for j in range(n_features)]
        names = [str(name) for name in self.feature_names]
        if len(set(names)) != len(names):
            raise ValueError("feature_names must be unique")
        return names

    def _references(self, bounds: np.ndarray) -> np.ndarray:
        if self.reference_values is None:
            return bounds.mean(axis=1)  # the middle of each range: a neutral default, data-free
        reference = np.asarray(self.reference_values, dtype=np.float64)
        if reference.shape != (bounds.shape[0],) or not np.all(np.isfinite(reference)):
            raise ValueError(f"reference_values must be {bounds.shape[0]} finite numbers, one per feature")
        if np.any((reference < bounds[:, 0]) | (reference > bounds[:, 1])):
            raise ValueError("reference_values must lie within feature_bounds")
        return reference
