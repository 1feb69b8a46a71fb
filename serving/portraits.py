"""Portraits from the online feature store: one read of every view a portrait needs."""

from __future__ import annotations

import json

from core.config import Settings
from features.feature_repo import ITEM_SCORE_FIELDS, feature_store

ENROLLMENT = ["student_enrollment:class_id", "student_enrollment:school_id", "student_enrollment:grade",
              "student_enrollment:school_year"]
FITNESS = ["student_fitness:sex", "student_fitness:school_year", "student_fitness:grade", "student_fitness:bmi",
           "student_fitness:bmi_category", "student_fitness:score_bmi", "student_fitness:standard_score",
           "student_fitness:bonus", "student_fitness:total_score", "student_fitness:level",
           *[f"student_fitness:{name}" for name in ITEM_SCORE_FIELDS]]
HISTORY = ["student_fitness_history:history_json"]
RISK = ["fitness_risk_score:risk_probability", "fitness_risk_score:model_name", "fitness_risk_score:model_version",
        "fitness_risk_score:model_epsilon", "fitness_risk_score:model_delta"]


class FeastPortraitReader:
    def __init__(self, settings: Settings):
        self._store = feature_store(settings)
        views = {view.name for view in self._store.list_feature_views()}
        # Until a model has been scored the risk view does not exist; portraits still serve.
        self._features = ENROLLMENT + FITNESS + HISTORY + (RISK if "fitness_risk_score" in views else [])

    def ready(self) -> bool:
        return bool(self._store.list_feature_views())

    def portrait(self, student_key: str) -> dict | None:
        # Feature names are unique across these views except grade/school_year, so ask with
        # full names and map by name (response order is not request order).
        row = self._store.get_online_features(
            features=self._features, entity_rows=[{"student_key": student_key}], full_feature_names=True
        ).to_dict()
        value = {name: values[0] for name, values in row.items()}
        if value.get("student_enrollment__class_id") is None:
            return None
        fitness = {name.split(":")[1]: value.get(name.replace(":", "__")) for name in FITNESS}
        latest = None
        if fitness["school_year"] is not None:
            latest = {
                "school_year": fitness["school_year"], "grade": fitness["grade"], "bmi": fitness["bmi"],
                "bmi_category": fitness["bmi_category"], "score_bmi": fitness["score_bmi"],
                "scores": {name.removeprefix("score_"): fitness[name] for name in ITEM_SCORE_FIELDS},
                "standard_score": fitness["standard_score"], "bonus": fitness["bonus"],
                "total_score": fitness["total_score"], "level": fitness["level"],
            }
        history = json.loads(value.get("student_fitness_history__history_json") or "[]")
        if latest is not None and history:
            latest["test_date"] = history[-1]["test_date"]
        risk = None
        if value.get("fitness_risk_score__risk_probability") is not None:
            risk = {
                "probability": value["fitness_risk_score__risk_probability"],
                "model_name": value["fitness_risk_score__model_name"],
                "model_version": value["fitness_risk_score__model_version"],
                "epsilon": value["fitness_risk_score__model_epsilon"],
                "delta": value["fitness_risk_score__model_delta"],
            }
        return {
            "student_key": student_key,
            "class_id": value["student_enrollment__class_id"],
            "school_id": value["student_enrollment__school_id"],
            "grade": value["student_enrollment__grade"],
            "school_year": value["student_enrollment__school_year"],
            "sex": fitness["sex"],
            "fitness_latest": latest,
            "fitness_history": history,
            "risk": risk,
        }
