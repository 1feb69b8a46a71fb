"""Batch scoring: the champion model scores every student; scores go back to the online store.

Serving never runs a model: it reads these scores, with the model version and its ε beside them.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from core.config import Settings
from features.feature_repo import publish, score_views
from features.lake import write_parquet
from training.fitness_risk import FEATURE_SERVICE, FEATURES, MODEL_NAME
from training.registry import mlflow_client


def score_fitness_risk(store, settings: Settings, *, alias: str = "champion") -> int:
    """Score each student's latest fitness features with `models:/fitness_risk@<alias>`."""
    import mlflow

    version = mlflow_client(settings).get_model_version_by_alias(MODEL_NAME, alias)
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version.version}")

    now = datetime.now(timezone.utc)
    source = store.get_feature_view("student_fitness").batch_source.path
    keys = pd.read_parquet(source, columns=["student_key"]).drop_duplicates()
    entity_rows = keys.assign(event_timestamp=pd.Timestamp(now).as_unit("us"))
    features = store.get_historical_features(
        entity_df=entity_rows, features=store.get_feature_service(FEATURE_SERVICE)
    ).to_df()
    features = features.dropna(subset=["total_score"])  # no test within the view's TTL: nothing to score

    scores = pd.DataFrame({
        "student_key": features["student_key"].astype("string"),
        "event_timestamp": pd.Timestamp(now).as_unit("us"),
        "risk_probability": model.predict_proba(features[FEATURES].to_numpy(dtype=float))[:, 1],
        "model_name": MODEL_NAME,
        "model_version": int(version.version),
        "model_epsilon": float(version.tags["epsilon"]),
        "model_delta": float(version.tags["delta"]),
    })
    settings.scores_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(scores, settings.scores_dir / "fitness_risk_score.parquet")
    publish(store, score_views(settings.scores_dir))
    return len(scores)
