"""The DP risk classifier is a scikit-learn estimator that keeps its privacy promise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.risk_classifier import DPRiskClassifier


def _problem(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 100, (n, 4))
    logit = (X[:, 0] - 50) / 10 - (X[:, 1] - 50) / 20
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


BOUNDS = [(0, 100)] * 4


def test_learns_under_dp_and_reports_a_spend_within_the_target():
    X, y = _problem()
    model = DPRiskClassifier(feature_bounds=BOUNDS, epsilon=4.0, delta=1e-5, epochs=10).fit(X[:2000], y[:2000])
    auc = roc_auc_score(y[2000:], model.predict_proba(X[2000:])[:, 1])
    assert auc > 0.8
    spent = model.privacy_
    assert 0 < spent.epsilon <= 4.0 + 1e-6
    assert spent.delta == 1e-5 and spent.noise_multiplier > 0.3 and spent.accountant == "prv"
    assert spent.steps > 0 and 0 < spent.sample_rate < 1


def test_the_seed_cannot_replay_the_noise():
    """Whoever knows random_state must not be able to rebuild the batches or subtract the noise: the
    same seed fixes the initialisation only, and two trainings differ."""
    X, y = _problem(800)
    a = DPRiskClassifier(feature_bounds=BOUNDS, epochs=2, random_state=3).fit(X, y).predict_proba(X)
    b = DPRiskClassifier(feature_bounds=BOUNDS, epochs=2, random_state=3).fit(X, y).predict_proba(X)
    assert not np.allclose(a, b)


def test_inputs_are_clipped_to_the_declared_bounds_not_the_data():
    X, y = _problem(800)
    model = DPRiskClassifier(feature_bounds=BOUNDS, epochs=2).fit(X, y)
    far = X[:5].copy()
    far[:, 0] = 1e6
    at_bound = X[:5].copy()
    at_bound[:, 0] = 100
    np.testing.assert_allclose(model.predict_proba(far), model.predict_proba(at_bound))


def test_missing_values_enter_as_the_low_end():
    X, y = _problem(800)
    model = DPRiskClassifier(feature_bounds=BOUNDS, epochs=2).fit(X, y)
    missing, low = X[:5].copy(), X[:5].copy()
    missing[:, 2], low[:, 2] = np.nan, 0
    np.testing.assert_allclose(model.predict_proba(missing), model.predict_proba(low))


@pytest.mark.parametrize("bounds", [[(0, 1)] * 3, [(1, 0)] * 4])
def test_bad_bounds_are_refused(bounds):
    X, y = _problem(200)
    with pytest.raises(ValueError, match="feature_bounds"):
        DPRiskClassifier(feature_bounds=bounds).fit(X, y)


def test_multiclass_target_is_refused():
    X, _ = _problem(200)
    with pytest.raises(ValueError, match="Only binary classification"):
        DPRiskClassifier().fit(X, np.arange(200) % 3)


@parametrize_with_checks(
    [DPRiskClassifier(epochs=2, epsilon=8.0, delta=1e-3, batch_size=32)],
    # Two fits give different models on purpose: DP noise never comes from random_state. The checks
    # that compare two fits' predictions cannot hold.
    expected_failed_checks=lambda estimator: {
        "check_fit_idempotent": "DP-SGD noise is drawn fresh each fit",
        "check_supervised_y_2d": "compares two fits; DP-SGD noise is drawn fresh each fit",
    },
)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("rows, batch_size, epochs", [(93 * 10, 10, 5), (99 * 8, 8, 2), (91 * 4, 4, 10)])
def test_spend_never_passes_the_target_when_epochs_over_sample_rate_rounds_down(rows, batch_size, epochs):
    # Regression: Opacus calibrated for int(epochs / sample_rate) steps, one short for 93 batches
    # an epoch, so the spent ε could end above the target.
    X, y = _problem(rows)
    model = DPRiskClassifier(epsilon=1.0, delta=1e-5, epochs=epochs, batch_size=batch_size).fit(X / 100, y)
    spent = model.privacy_
    assert spent.steps == epochs * round(1 / spent.sample_rate)  # every step, empty Poisson batches too
    assert spent.epsilon <= 1.0


@pytest.mark.parametrize("mode", ["fused", "hooks", "ew", "ghost"])
def test_every_grad_sample_mode_learns_the_same_problem(mode):
    """The per-example gradient machinery is a speed choice, never a utility or privacy one."""
    import torch
    from torch import nn

    from privacy.dp_sgd import DPSGDConfig, train_dp_sgd

    X, y = _problem()
    features = torch.as_tensor(X / 100, dtype=torch.float32)
    labels = torch.as_tensor(y, dtype=torch.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    config = DPSGDConfig(target_epsilon=4.0, target_delta=1e-5, epochs=8, learning_rate=0.2, grad_sample_mode=mode)
    trained, spent = train_dp_sgd(module, features[:2000], labels[:2000], nn.BCEWithLogitsLoss(), config)
    with torch.no_grad():
        auc = roc_auc_score(y[2000:], trained(features[2000:]).numpy())
    assert auc > 0.8 and spent.epsilon <= 4.0


def test_ghost_clipping_refuses_two_dimensional_labels_instead_of_learning_nothing():
    import torch
    from torch import nn

    from privacy.dp_sgd import DPSGDConfig, train_dp_sgd

    config = DPSGDConfig(target_epsilon=1.0, target_delta=1e-5, grad_sample_mode="ghost")
    with pytest.raises(ValueError, match=r"ghost clipping needs 1-D labels.*\(100, 1\)"):
        train_dp_sgd(nn.Linear(4, 1), torch.zeros(100, 4), torch.zeros(100, 1), nn.BCEWithLogitsLoss(), config)
    with pytest.raises(ValueError, match="grad_sample_mode must be one of"):
        DPSGDConfig(target_epsilon=1.0, target_delta=1e-5, grad_sample_mode="fast")


@pytest.mark.parametrize("mode", ["fused", "hooks", "ew"])
def test_an_empty_poisson_batch_still_releases_its_noise(mode, monkeypatch):
    """Regression (Opacus modes): a step whose Poisson batch drew nobody was skipped, releasing no
    noise, so the model showed which batches were empty. Every step must move the model by noise."""
    import torch
    from torch import nn

    import privacy.dp_sgd as dp_sgd

    def nobody(self):
        for _ in range(self.steps):
            yield torch.zeros(0, dtype=torch.int64)

    monkeypatch.setattr(dp_sgd.PoissonBatchSampler, "__iter__", nobody)
    module = nn.Sequential(nn.Linear(3, 1, bias=False))
    nn.init.zeros_(module[0].weight)
    features, labels = torch.randn(64, 3), torch.randint(0, 2, (64, 1)).float()
    config = dp_sgd.DPSGDConfig(target_epsilon=1.0, target_delta=1e-5, max_grad_norm=1.0, epochs=2,
                                expected_batch_size=16, learning_rate=0.1, grad_sample_mode=mode)
    trained, spent = dp_sgd.train_dp_sgd(module, features, labels, nn.BCEWithLogitsLoss(), config)
    assert spent.steps == 2 * 4  # every empty step is accounted ...
    assert torch.count_nonzero(trained[0].weight) == 3  # ... and released noise: nothing else moved the weights
