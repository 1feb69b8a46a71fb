"""A differentially private binary risk classifier, as a scikit-learn estimator.

It trains and predicts without Feast, Ray or MLflow: give it a matrix and labels. Inputs are
clipped to ranges fixed *before* seeing the data (`feature_bounds`, from the contract and the
standard) and scaled to [0, 1]; learning those ranges from the private data would leak outside
the DP guarantee. A missing value (an item the grade band does not test) enters as the low end.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from privacy.dp_sgd import DPSGDConfig, train_dp_sgd


class DPRiskClassifier(ClassifierMixin, BaseEstimator):
    """MLP trained with DP-SGD (Opacus) to a target (ε, δ); one row per person.

    Parameters
    ----------
    feature_bounds : sequence of (low, high) per feature, or None for "already in [0, 1]".
    epsilon, delta : the privacy target of one `fit`.
    max_grad_norm : per-example clipping norm.
    epochs, batch_size, learning_rate : DP-SGD schedule (batch_size is the expected Poisson batch;
        None scales it with the data, `privacy.dp_sgd.default_batch_size`).
    hidden_units : width of the one hidden layer (0 for a logistic regression).
    random_state : seed for the initialisation. DP sampling and noise never come from it (whoever
        knows the seed could replay them), so two fits differ.
    """

    def __init__(self, feature_bounds=None, epsilon=2.0, delta=1e-5, max_grad_norm=1.0, epochs=20,
                 batch_size=None, learning_rate=0.1, hidden_units=32, random_state=0):
        self.feature_bounds = feature_bounds
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden_units = hidden_units
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        if target_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {target_type}.")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self.bounds_ = self._check_bounds(X.shape[1])
        torch.manual_seed(self.random_state)
        module = self._network(X.shape[1])
        config = DPSGDConfig(
            target_epsilon=self.epsilon, target_delta=self.delta, max_grad_norm=self.max_grad_norm,
            epochs=self.epochs, expected_batch_size=self.batch_size, learning_rate=self.learning_rate,
        )
        features = torch.as_tensor(self._scale(X), dtype=torch.float32)
        labels = torch.as_tensor(encoded, dtype=torch.float32)
        self.module_, self.privacy_ = train_dp_sgd(
            module, features, labels, nn.BCEWithLogitsLoss(), config, seed=self.random_state
        )
        self.module_.eval()
        return self

    def predict_proba(self, X):
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        with torch.no_grad():
            logits = self.module_(torch.as_tensor(self._scale(X), dtype=torch.float32))
        positive = torch.sigmoid(logits).numpy().astype(np.float64)
        return np.column_stack([1 - positive, positive])

    def predict(self, X):
        check_is_fitted(self, "module_")
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    def _network(self, n_features: int) -> nn.Module:
        # One logit per example, shape (batch,): per-example losses must be 1-D for ghost clipping.
        if self.hidden_units == 0:
            return nn.Sequential(nn.Linear(n_features, 1), nn.Flatten(0))
        return nn.Sequential(nn.Linear(n_features, self.hidden_units), nn.ReLU(), nn.Linear(self.hidden_units, 1),
                             nn.Flatten(0))

    def _check_bounds(self, n_features: int) -> np.ndarray:
        if self.feature_bounds is None:
            return np.tile([0.0, 1.0], (n_features, 1))
        bounds = np.asarray(self.feature_bounds, dtype=np.float64)
        if bounds.shape != (n_features, 2) or not np.all(bounds[:, 1] > bounds[:, 0]):
            raise ValueError(f"feature_bounds must be {n_features} pairs (low, high) with high > low")
        return bounds

    def _scale(self, X: np.ndarray) -> np.ndarray:
        low, high = self.bounds_[:, 0], self.bounds_[:, 1]
        scaled = (np.clip(X, low, high) - low) / (high - low)
        return np.nan_to_num(scaled, nan=0.0)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags
