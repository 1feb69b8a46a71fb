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

from dataclasses import dataclass

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
            rows.append({"target": target, **result.to_dict(), "summary": result.summary()})
    return rows


def audit_metrics(rows: list[dict]) -> dict[str, float]:
    keys = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "epsilon_lower_bound")
    return {f"audit.{row['target']}.{row['attack']}.{key}": float(row[key]) for row in rows for key in keys}
