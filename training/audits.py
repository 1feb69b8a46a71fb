"""Audit a DP model and its non-private twin, and write the results where people will read them.

Both attacks of `privacy.audit` run on both models: the loss-threshold attack on the fitted
models (training rows against held-out rows) and the one-run canary audit of each training
procedure (one more training of each, with canaries). Results go to the model's MLflow run
(metrics `audit.<model>.<attack>.*` and `audits.json`) and into its model card.

Audit results are internal, like the non-private twin and its AUC: they are computed inside the
engine from the raw data and shown to the data officer only, never released beyond; so they are
not charged to the privacy ledger (the canary run's model is discarded).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import numpy as np

from privacy.audit import canary_audit, threshold_audit


@dataclass(frozen=True)
class Split:
    """The held-out split a model was trained and evaluated on (one row per student)."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def audit_pair(dp_model, twin, split: Split, *, delta: float, seed: int = 0) -> list[dict]:
    """Both attacks on the DP model and on its twin, as rows for MLflow and the model card."""
    rows = []
    for target, model in (("dp", dp_model), ("nonprivate", twin)):
        for result in (
            threshold_audit(model, X_members=split.X_train, y_members=split.y_train, X_nonmembers=split.X_test,
                            y_nonmembers=split.y_test, delta=delta),
            canary_audit(model, split.X_train, split.y_train, delta=delta, random_state=seed),
        ):
            rows.append(audit_row(target, result))
    return rows


def audit_row(target: str, result) -> dict:
    """One attack's result as a row for MLflow and the model card; target "dp" or "nonprivate"."""
    return {"target": target, **result.to_dict(), "summary": result.summary()}


def audit_metrics(rows: list[dict]) -> dict[str, float]:
    keys = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "epsilon_lower_bound")
    return {f"audit.{row['target']}.{row['attack']}.{key}": float(row[key]) for row in rows for key in keys}


@dataclass(frozen=True)
class RegisteredRun:
    """A registered version, its run and its config read back, for `portrait privacy audit`."""

    client: Any
    name: str
    version: int
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]

    def config(self, config_class):
        """The trainer's config as it was: run params are text ("30", "0.1", "None"), read back as values."""
        from dataclasses import fields

        return config_class(**{f.name: ast.literal_eval(self.params[f"config.{f.name}"])
                               for f in fields(config_class) if f"config.{f.name}" in self.params})

    def audit_again(self, split: Split, twin, *, seed: int) -> tuple[Any, list[dict]]:
        """The registered DP model and `twin` (unfitted; fitted here on the split) attacked again,
        on the training set the version was fitted on (today's lake must still give it)."""
        import mlflow

        if len(split.X_train) != int(self.params["n_train"]):
            raise ValueError(f"{self.name} v{self.version} trained on {self.params['n_train']} students; the lake "
                             f"now gives {len(split.X_train)}: audit it on the lake it was trained on "
                             f"(snapshot {self.params.get('lake_snapshot', '?')})")
        dp_model = mlflow.sklearn.load_model(f"models:/{self.name}/{self.version}")
        twin.fit(split.X_train, split.y_train)
        return dp_model, audit_pair(dp_model, twin, split, delta=dp_model.privacy_.delta, seed=seed)

    def record(self, audits: list[dict], card) -> None:
        """The audits to the run (audits.json, metrics) and the card, republished with them."""
        from dataclasses import replace

        from training.registry import publish_card

        self.client.log_dict(self.run_id, audits, "audits.json")
        for key, value in audit_metrics(audits).items():
            self.client.log_metric(self.run_id, key, value)
        publish_card(self.client, self.name, self.run_id, self.version, replace(card, version=self.version))


def registered_run(settings, name: str, alias: str) -> RegisteredRun:
    from training.registry import mlflow_client

    client = mlflow_client(settings)
    version = client.get_model_version_by_alias(name, alias)
    run = client.get_run(version.run_id)
    return RegisteredRun(client=client, name=name, version=int(version.version), run_id=run.info.run_id,
                         params=dict(run.data.params), metrics=dict(run.data.metrics))
