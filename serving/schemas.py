"""The public response shapes. Internal records go through `from_record`, which names every
field it copies, so nothing reaches a caller by accident (e.g. `school_id` never does)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel

Level = Literal["excellent", "good", "pass", "fail"]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"


class Health(BaseModel):
    status: str


class FitnessScores(BaseModel):
    """Item scores (0-100 points, not raw measurements); None when the item was not tested."""

    vital_capacity: float | None = None
    run_50m: float | None = None
    sit_and_reach: float | None = None
    rope_skip_1min: float | None = None
    sit_up_1min: float | None = None
    shuttle_50x8: float | None = None
    standing_long_jump: float | None = None
    pull_up: float | None = None
    run_800m: float | None = None
    run_1000m: float | None = None

    @classmethod
    def from_record(cls, scores: dict[str, Any] | None) -> FitnessScores:
        scores = scores or {}
        return cls(**{item: scores.get(item) for item in cls.model_fields})


class FitnessYear(BaseModel):
    """One school year's test. The latest year carries standard score and bonus; history
    entries carry the test date."""

    school_year: int | None = None
    grade: int | None = None
    test_date: dt.date | None = None
    bmi: float | None = None
    bmi_category: str | None = None
    bmi_score: float | None = None
    scores: FitnessScores = FitnessScores()
    standard_score: float | None = None
    bonus: float | None = None
    total_score: float | None = None
    level: Level | None = None

    @classmethod
    def from_record(cls, year: dict[str, Any]) -> FitnessYear:
        return cls(
            school_year=year.get("school_year"),
            grade=year.get("grade"),
            test_date=year.get("test_date"),
            bmi=year.get("bmi"),
            bmi_category=year.get("bmi_category"),
            bmi_score=year.get("score_bmi"),
            scores=FitnessScores.from_record(year.get("scores")),
            standard_score=year.get("standard_score"),
            bonus=year.get("bonus"),
            total_score=year.get("total_score"),
            level=year.get("level"),
        )


class RiskScore(BaseModel):
    """A differentially private model's probability, with the privacy guarantee it was
    trained under (epsilon, delta) so readers can judge it."""

    probability: float
    model_name: str | None = None
    model_version: int | None = None
    epsilon: float | None = None
    delta: float | None = None

    @classmethod
    def from_record(cls, risk: dict[str, Any] | None) -> RiskScore | None:
        if not risk or risk.get("probability") is None:
            return None
        return cls(
            probability=risk["probability"],
            model_name=risk.get("model_name"),
            model_version=risk.get("model_version"),
            epsilon=risk.get("epsilon"),
            delta=risk.get("delta"),
        )


class StudentPortrait(BaseModel):
    student_key: str
    class_id: str | None = None
    grade: int | None = None
    sex: Literal["m", "f"] | None = None
    school_year: int | None = None
    latest: FitnessYear | None = None
    history: list[FitnessYear] = []
    risk: RiskScore | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StudentPortrait:
        latest = record.get("fitness_latest")
        return cls(
            student_key=record["student_key"],
            class_id=record.get("class_id"),
            grade=record.get("grade"),
            sex=record.get("sex"),
            school_year=record.get("school_year"),
            latest=FitnessYear.from_record(latest) if latest else None,
            history=[FitnessYear.from_record(year) for year in record.get("fitness_history") or ()],
            risk=RiskScore.from_record(record.get("risk")),
        )
