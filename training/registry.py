"""MLflow, once for every model: a run with the privacy guarantee, a registered version, its card, its alias.

Every trainer (fitness risk, growth, academic risk, teacher training) ends with a `Candidate`: the
fitted model, what it spent, its metrics beside its non-private reference, its card, and the files
to keep with it. `register` logs it all to one MLflow run in the model's experiment, registers the
model, tags the version with its guarantee and publishes the card as the run's `model_card.md` and
the version's description.

Aliases. A new version becomes `challenger`. It also becomes `champion` when there is none yet,
when it was trained on a newer data release than the champion (fresh data beats stale), or when on
the same release its primary held-out metric is at least the champion's. Serving and scoring load
`models:/<name>@champion`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from core.config import Settings
from training.model_card import ModelCard


@dataclass
class Candidate:
    """A trained model ready to register, with everything its run must record."""

    name: str  # the registered model's name: growth, fitness_risk, academic_risk, teacher_training
    model: Any  # a fitted estimator (pickled with cloudpickle)
    params: dict[str, Any]  # configuration, data release, feature service, DP parameters
    metrics: dict[str, float]  # DP model and non-private reference, their gap, timings, audits
    card: ModelCard
    primary_metric: str  # the metric that decides champion vs challenger (higher is better)
    data_release: str
    tags: dict[str, Any] = field(default_factory=dict)  # on the version: the guarantee, headline metrics
    dicts: dict[str, Any] = field(default_factory=dict)  # artifact name → JSON-able object
    figures: dict[str, Any] = field(default_factory=dict)  # artifact name → matplotlib figure
    input_example: Any = None  # a few rows of inputs, for the signature


@dataclass(frozen=True)
class Registered:
    run_id: str
    version: int
    aliases: tuple[str, ...]


def dp_params(spent, target_epsilon: float, unit: str | None = None) -> dict[str, Any]:
    """The run params every DP model logs: its guarantee and how it was reached (a `PrivacySpent`)."""
    return {"dp.unit_of_privacy": unit or spent.unit, "dp.accountant": spent.accountant, "dp.delta": spent.delta,
            "dp.noise_multiplier": spent.noise_multiplier, "dp.max_grad_norm": spent.max_grad_norm,
            "dp.sample_rate": spent.sample_rate, "dp.steps": spent.steps, "dp.target_epsilon": target_epsilon}


def mlflow_client(settings: Settings):
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    return mlflow.MlflowClient()


def experiment_id(settings: Settings, name: str) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=settings.mlflow_artifacts_dir.resolve().as_uri())


def register(settings: Settings, candidate: Candidate, *, run_name: str) -> Registered:
    """Log `candidate` to a new run, register it, tag and describe the version, and set its aliases."""
    import matplotlib.pyplot as plt

    import mlflow

    client = mlflow_client(settings)
    with _own_run(experiment_id(settings, candidate.name), run_name) as run:
        mlflow.log_params({key: _param(value) for key, value in candidate.params.items()})
        mlflow.log_metrics(candidate.metrics)
        for artifact, content in candidate.dicts.items():
            mlflow.log_dict(content, artifact)
        for artifact, figure in candidate.figures.items():
            mlflow.log_figure(figure, artifact)
            plt.close(figure)
        signature = None
        if candidate.input_example is not None:
            from mlflow.models import infer_signature

            signature = infer_signature(candidate.input_example, _predict_example(candidate))
        info = mlflow.sklearn.log_model(
            candidate.model, name="model", registered_model_name=candidate.name,
            serialization_format="cloudpickle", signature=signature, pip_requirements=_requirements(),
        )
    version = int(info.registered_model_version)
    for key, value in candidate.tags.items():
        client.set_model_version_tag(candidate.name, str(version), key, str(value))
    client.set_model_version_tag(candidate.name, str(version), "data_release", candidate.data_release)
    client.set_model_version_tag(candidate.name, str(version), "primary_metric", candidate.primary_metric)
    publish_card(client, candidate.name, run.info.run_id, version, replace(candidate.card, version=version))
    aliases = _set_aliases(client, candidate, version)
    return Registered(run_id=run.info.run_id, version=version, aliases=aliases)


@contextmanager
def _own_run(experiment: str, run_name: str):
    """A new run for one model. Under `mlflow run` (MLFLOW_RUN_ID names the project's run) each model
    still gets its own run in its own experiment, tagged as the project run's child: resuming the
    project's run instead would pour every model's params into one run, where they collide."""
    import mlflow

    parent = os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        tags = {"mlflow.parentRunId": parent} if parent else None
        with mlflow.start_run(experiment_id=experiment, run_name=run_name, tags=tags) as run:
            yield run
    finally:
        if parent:
            os.environ["MLFLOW_RUN_ID"] = parent


def publish_card(client, name: str, run_id: str, version: int, card: ModelCard) -> None:
    """The card as the run's `model_card.md` and as the registered version's description."""
    text = card.to_markdown()
    client.log_text(run_id, text, "model_card.md")
    client.update_model_version(name, str(version), description=text)


def _set_aliases(client, candidate: Candidate, version: int) -> tuple[str, ...]:
    from mlflow.exceptions import MlflowException

    client.set_registered_model_alias(candidate.name, "challenger", str(version))
    try:
        champion = client.get_model_version_by_alias(candidate.name, "champion")
    except MlflowException:
        champion = None
    if champion is None or _beats(client, candidate, champion):
        client.set_registered_model_alias(candidate.name, "champion", str(version))
        return ("challenger", "champion")
    return ("challenger",)


def _beats(client, candidate: Candidate, champion) -> bool:
    release = champion.tags.get("data_release", "")
    if candidate.data_release != release:
        return candidate.data_release > release  # releases are school years: the newer data wins
    mine = candidate.metrics.get(candidate.primary_metric)
    if mine is None:  # not measurable on this data (e.g. too few held-out cases): keep the champion
        return False
    metric = client.get_run(champion.run_id).data.metrics.get(candidate.primary_metric)
    return metric is None or mine >= metric


def _predict_example(candidate: Candidate):
    model, example = candidate.model, candidate.input_example
    for method in ("predict_proba", "predict"):
        if hasattr(model, method):
            return getattr(model, method)(example)
    return None


def _param(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in
            ("torch", "opacus", "scikit-learn", "lightgbm", "numpy", "pandas", "portrait-engine")]
