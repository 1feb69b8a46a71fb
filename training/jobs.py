"""Which models `portrait train` knows, and one Ray session to train any of them in.

Each trainer takes the feature store, the settings and an optional ε (None: its default from the
settings) and returns its result record; it reads from Feast, spends from the ledger, trains the DP
model beside its non-private reference on Ray and registers the DP model in MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.config import Settings


def _fitness_risk(store, settings: Settings, epsilon: float | None):
    from training.fitness_risk import FitnessRiskConfig, train_fitness_risk

    config = FitnessRiskConfig(epsilon=epsilon or settings.fitness_risk_epsilon,
                               max_delta=settings.fitness_risk_max_delta)
    return train_fitness_risk(store, settings, config)


def _growth(store, settings: Settings, epsilon: float | None):
    from training.growth import GrowthConfig, train_growth

    return train_growth(store, settings, GrowthConfig(epsilon=epsilon or settings.growth_epsilon))


def _academic_risk(store, settings: Settings, epsilon: float | None):
    from training.academic_risk import AcademicRiskConfig, train_academic_risk

    return train_academic_risk(store, settings, AcademicRiskConfig(epsilon=epsilon or settings.academic_risk_epsilon))


def _teacher_training(store, settings: Settings, epsilon: float | None):
    from training.teacher_training import TeacherTrainingConfig, train_teacher_training

    return train_teacher_training(store, settings,
                                  TeacherTrainingConfig(epsilon=epsilon or settings.teacher_training_epsilon))


TRAINERS: dict[str, Callable[[Any, Settings, float | None], Any]] = {
    "growth": _growth,
    "fitness_risk": _fitness_risk,
    "academic_risk": _academic_risk,
    "teacher_training": _teacher_training,
}


def train_models(settings: Settings, models: Sequence[str] = (), *, epsilon: float | None = None) -> dict[str, Any]:
    """Train `models` (all by default) in order, in one Ray session; {model: result}."""
    from features.feature_repo import feature_store
    from training.ray_runtime import ray_session

    unknown = [name for name in models if name not in TRAINERS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(TRAINERS)}")
    if epsilon is not None and not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, not {epsilon}")
    store = feature_store(settings)
    with ray_session(settings):
        return {name: TRAINERS[name](store, settings, epsilon) for name in (models or TRAINERS)}
