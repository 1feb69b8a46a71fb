"""The models whose outputs the service shows, and where batch scoring writes each of them.

Serving never runs a model: it reads the scores the champion wrote to the online store, each row
with the model's name, registered version and (ε, δ), so every number on a page can say which
model and which privacy guarantee it came from. A model whose view is not in the online store
yet is shown as "not yet available", never with made-up numbers.

The contract for a model's score view (`training.score` writes them; `features.feature_repo.SCORE_VIEWS`
declares them to Feast):
- entity: the one named below; one row per entity, its current score;
- `model_name` (str), `model_version` (int), `model_epsilon` (float), `model_delta` (float);
- the payload fields named below; a list is a JSON string (Feast `String`) of objects.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Any

from serving.online import FeatureReader


@dataclass(frozen=True)
class ModelOutput:
    model: str  # registered model name in MLflow
    view: str  # online feature view batch scoring publishes
    entity: str
    payload: tuple[str, ...]  # fields beyond the model_* ones
    # The roles that see the output (`serving.access` says why; empty: held in the store, shown to no one).
    shown_to: tuple[str, ...] = ()


# The risk-warning models (fitness risk, academic risk) share one shape:
# risk_probability (DP-calibrated); level "red" | "amber" | "green" at fixed thresholds 0.5 / 0.25;
# reasons_json = [{"feature": "score_run_50m", "value": 41.0, "effect": 0.1}, ...]: the three features
# that raise (effect > 0) or lower (effect < 0) the student's risk most, each against a neutral value
# fixed in advance (a pass of 60 for a score, no change for a trend); "reference" when scoring writes it.
RISK_PAYLOAD = ("risk_probability", "level", "reasons_json")
# Class teachers: portrait and class overview; health staff: fitness record and school warnings.
FITNESS_RISK = ModelOutput("fitness_risk", "fitness_risk_score", "student", RISK_PAYLOAD,
                           ("class_teacher", "health_staff"))
# Growth percentiles per subject and term, oldest first:
# growth_json = [{"subject": "math", "term_id": "2024-2", "percentile": 63}, ...]
GROWTH = ModelOutput("growth", "growth_score", "student", ("growth_json",), ("class_teacher",))
ACADEMIC_RISK = ModelOutput("academic_risk", "academic_risk_score", "student", RISK_PAYLOAD, ("class_teacher",))
# The value-added view: the latest term's median growth percentile per subject of a class, a teacher
# (the classes they teach the subject in) or a school; groups under 10 students left out by scoring.
# growth_json = [{"subject": "math", "students": 45, "median_growth_percentile": 52.0}, ...]
GROUP_GROWTH_PAYLOAD = ("term_id", "growth_json")
# The class's own teacher, on the class overview (page and class portraits JSON).
CLASS_GROWTH = ModelOutput("growth", "class_growth_score", "class", GROUP_GROWTH_PAYLOAD, ("class_teacher",))
TEACHER_GROWTH = ModelOutput("growth", "teacher_growth_score", "teacher", GROUP_GROWTH_PAYLOAD)
SCHOOL_GROWTH = ModelOutput("growth", "school_growth_score", "school", GROUP_GROWTH_PAYLOAD)
# recommendations_json = [{"course_id": str, "expected_gain": float, "dimension": str, "reason": str}, ...]
TEACHER_RECOMMENDATIONS = ModelOutput("teacher_training", "teacher_training_score", "teacher",
                                      ("recommendations_json",), ("training_center",))
# invites_json = [{"teacher_key": str, "expected_gain": float, "dimension": str, "reason": str}, ...]
COURSE_INVITES = ModelOutput("teacher_training", "course_invite_score", "course", ("invites_json",),
                             ("training_center",))

MODEL_OUTPUTS = (FITNESS_RISK, GROWTH, ACADEMIC_RISK, CLASS_GROWTH, TEACHER_GROWTH, SCHOOL_GROWTH,
                 TEACHER_RECOMMENDATIONS, COURSE_INVITES)
# The outputs /readyz requires: the models trained today. The others are reported, not required.
REQUIRED_OUTPUTS = (FITNESS_RISK,)

NOT_YET_AVAILABLE = "not yet available: the {model} model has not been scored into the online store"


def is_available(reader: FeatureReader, output: ModelOutput) -> bool:
    return output.view in reader.views()


def unavailable_message(output: ModelOutput) -> str:
    return NOT_YET_AVAILABLE.format(model=output.model)


def model_fields(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The model_* fields of a score row as (name, version, epsilon, delta), None without a row."""
    if not row or row.get("model_name") is None:
        return None
    return {"name": row.get("model_name"), "version": row.get("model_version"),
            "epsilon": row.get("model_epsilon"), "delta": row.get("model_delta")}


def json_list(row: dict[str, Any] | None, field: str) -> list[dict]:
    """A JSON list field of a score row; [] when missing or malformed."""
    text = (row or {}).get(field)
    if not text:
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class _InviteIndex:
    """teacher key → the courses whose invite list names them, built from every catalog course's
    `course_invite_score` row in one read, once per online-store version and catalog."""

    def __init__(self) -> None:
        self._built: weakref.WeakKeyDictionary[FeatureReader, tuple[Hashable, Collection[str], dict]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def courses_inviting(self, reader: FeatureReader, catalog: Collection[str], teacher_key: str) -> frozenset[str]:
        # The view's presence is part of the version: the registry may list it a little after a publish.
        available = is_available(reader, COURSE_INVITES)
        version = (reader.version(), available)
        with self._lock:
            built = self._built.get(reader)
        if built is None or built[0] != version or built[1] is not catalog:
            built = (version, catalog, self._build(reader, catalog) if available else {})
            with self._lock:
                self._built[reader] = built
        return built[2].get(teacher_key, frozenset())

    @staticmethod
    def _build(reader: FeatureReader, catalog: Collection[str]) -> dict[str, frozenset[str]]:
        index: dict[str, set[str]] = {}
        ordered = sorted(catalog)
        for course_id, row in zip(ordered, reader.read(COURSE_INVITES.view, ordered) if ordered else ()):
            for item in json_list(row, "invites_json"):
                if item.get("teacher_key"):
                    index.setdefault(str(item["teacher_key"]), set()).add(course_id)
        return {key: frozenset(courses) for key, courses in index.items()}


_INVITES = _InviteIndex()


def courses_inviting(reader: FeatureReader, catalog: Collection[str], teacher_key: str) -> frozenset[str]:
    """The courses of `catalog` (every course id; pass the same object each time, e.g. the
    directory's `courses`, for the index to be reused) whose invite list names the teacher.

    The invite lists of the whole catalog are read and indexed once per online-store version (a
    publish) and catalog, so a check is a dictionary lookup. A store without the view invites nobody.
    """
    return _INVITES.courses_inviting(reader, catalog, teacher_key)
