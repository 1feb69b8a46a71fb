"""The growth trainer's audit score: each student's pinball loss over the 99 quantiles."""

from __future__ import annotations

import numpy as np


def test_mean_pinball_loss_is_smallest_for_the_true_quantiles():
    """The audit's score: a model whose quantiles are the truth's has a lower loss than a shifted one."""
    from types import SimpleNamespace

    from models.growth import quantile_levels
    from training.growth import mean_pinball_loss

    rng = np.random.default_rng(0)
    y = rng.uniform(0, 100, 5000)
    truth = SimpleNamespace(predict_quantiles=lambda X: np.tile(quantile_levels(99) * 100, (len(X), 1)))
    shifted = SimpleNamespace(predict_quantiles=lambda X: np.clip(np.tile(quantile_levels(99) * 100 + 20,
                                                                          (len(X), 1)), 0, 100))
    X = np.zeros((len(y), 1))
    assert mean_pinball_loss(truth, X, y).mean() < mean_pinball_loss(shifted, X, y).mean()
    assert mean_pinball_loss(truth, X[:3], np.array([50.0, 50.0, 50.0])).shape == (3,)
