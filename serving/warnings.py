"""Warnings: which students need a look, why, and what to do about it.

Two kinds of reason, always labelled so a reader knows which is which:
- rules over the student's own records (the national fitness standard's pass line, the failed
  streak, attendance, failed subjects): facts, computed exactly;
- a DP risk-warning model's level (fitness risk, academic risk), with the model version and ε it
  came from and the features behind it: red is a high warning, amber a watch, green none. A score
  row without a level (written before the models gave one) is read by its probability against the
  same thresholds.

Thresholds are fixed here, in advance, never fitted to the data (choosing them from private data
would be a release outside the DP guarantee). The model thresholds are those of
`models.academic_risk`: 0.5 ("more likely than not", the classifier's own decision threshold) and
0.25 ("a real chance, worth a look").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PASS_SCORE = 60.0  # the standard's pass line, for the total and (as a guide) for each item
MODEL_HIGH = 0.5
MODEL_WATCH = 0.25
MODEL_LEVELS = {"red": "high", "amber": "watch", "green": None}  # the model's level → the warning's
FAILED_STREAK = 2  # tests failed in a row
DECLINE_POINTS = -10.0  # total fitness score down this much since the previous test
CHRONIC_ABSENCE_RATE = 0.9  # missing 10 % or more of school days (chronic absence)
ACADEMIC_DECLINE = -0.05  # losing 5 % of full mark a term, averaged over subjects (4-term slope)
DISCIPLINE_EVENTS = 2  # discipline records this term


class Level(StrEnum):
    HIGH = "high"
    WATCH = "watch"


class Reason(StrEnum):
    FITNESS_FAILED = "fitness_failed"
    FITNESS_ITEMS_FAILED = "fitness_items_failed"
    FITNESS_FAILED_STREAK = "fitness_failed_streak"
    FITNESS_DECLINING = "fitness_declining"
    OBESE = "obese"
    UNDERWEIGHT = "underweight"
    FITNESS_MODEL_RISK = "fitness_model_risk"
    SUBJECTS_FAILED = "subjects_failed"
    ACADEMIC_DECLINE = "academic_decline"
    CHRONIC_ABSENCE = "chronic_absence"
    DISCIPLINE = "discipline"
    ACADEMIC_MODEL_RISK = "academic_model_risk"


FITNESS_REASONS = frozenset({Reason.FITNESS_FAILED, Reason.FITNESS_ITEMS_FAILED, Reason.FITNESS_FAILED_STREAK,
                             Reason.FITNESS_DECLINING, Reason.OBESE, Reason.UNDERWEIGHT, Reason.FITNESS_MODEL_RISK})


@dataclass(frozen=True)
class Finding:
    reason: Reason
    level: Level
    source: str  # "rule" (the student's records) or "model" (a DP model's probability)
    items: tuple[str, ...] = ()  # fitness items behind it, weakest first
    value: float | None = None  # the figure that triggered it (a probability, a change, a rate)
    model_level: str | None = None  # a model finding: the level the model gave (red, amber)


@dataclass(frozen=True)
class Warnings:
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def level(self) -> Level | None:
        levels = {finding.level for finding in self.findings}
        return Level.HIGH if Level.HIGH in levels else Level.WATCH if levels else None

    def reasons(self) -> set[str]:
        return {finding.reason.value for finding in self.findings}


def model_finding(reason: Reason, probability: float | None, level: str | None = None) -> Finding | None:
    """A risk-warning model's finding: its own level when it gave one (red: high, amber: watch,
    green: none), else its probability against the same fixed thresholds; None without either."""
    if level in MODEL_LEVELS:
        warning = MODEL_LEVELS[level]
        return None if warning is None else Finding(reason, Level(warning), "model", value=probability,
                                                    model_level=level)
    if probability is None or probability < MODEL_WATCH:
        return None
    return Finding(reason, Level.HIGH if probability >= MODEL_HIGH else Level.WATCH, "model", value=probability)


def fitness_findings(fitness: dict[str, Any] | None, risk_probability: float | None,
                     history: list[dict] | None = None, risk_level: str | None = None) -> list[Finding]:
    """From the latest scored test (a `student_fitness` row), the fitness-risk model's probability
    and level and, when given, the test history (for the items that lost points since the previous test)."""
    found: list[Finding] = []
    fitness = fitness or {}
    if (model := model_finding(Reason.FITNESS_MODEL_RISK, risk_probability, risk_level)) is not None:
        found.append(model)
    weak = weak_items(fitness)
    if fitness.get("level") == "fail":
        found.append(Finding(Reason.FITNESS_FAILED, Level.HIGH, "rule", items=weak, value=fitness.get("total_score")))
    elif weak:
        found.append(Finding(Reason.FITNESS_ITEMS_FAILED, Level.WATCH, "rule", items=weak))
    streak = fitness.get("years_failed_in_row")
    if streak is not None and streak >= FAILED_STREAK:
        found.append(Finding(Reason.FITNESS_FAILED_STREAK, Level.HIGH, "rule", value=float(streak)))
    change = fitness.get("total_change")
    if change is not None and change <= DECLINE_POINTS:
        found.append(Finding(Reason.FITNESS_DECLINING, Level.WATCH, "rule", items=declining_items(history or []),
                             value=change))
    if fitness.get("bmi_category") == "obese":
        found.append(Finding(Reason.OBESE, Level.WATCH, "rule", value=fitness.get("bmi")))
    elif fitness.get("bmi_category") == "underweight":
        found.append(Finding(Reason.UNDERWEIGHT, Level.WATCH, "rule", value=fitness.get("bmi")))
    return found


def school_record_findings(academics: dict | None, attendance: dict | None, conduct: dict | None,
                           academic_risk: float | None = None, academic_level: str | None = None) -> list[Finding]:
    """From this term's academics, attendance and conduct rows (and the academic-risk model's
    probability and level once that model is scored)."""
    found: list[Finding] = []
    if (model := model_finding(Reason.ACADEMIC_MODEL_RISK, academic_risk, academic_level)) is not None:
        found.append(model)
    failed = (academics or {}).get("failed_subjects")
    if failed:
        found.append(Finding(Reason.SUBJECTS_FAILED, Level.HIGH if failed >= 2 else Level.WATCH, "rule",
                             value=float(failed)))
    trend = (academics or {}).get("trend")
    if trend is not None and trend <= ACADEMIC_DECLINE:
        found.append(Finding(Reason.ACADEMIC_DECLINE, Level.WATCH, "rule", value=trend))
    rate = (attendance or {}).get("attendance_rate")
    if rate is not None and rate < CHRONIC_ABSENCE_RATE:
        found.append(Finding(Reason.CHRONIC_ABSENCE, Level.WATCH, "rule", value=rate))
    events = (conduct or {}).get("discipline_events")
    if events is not None and events >= DISCIPLINE_EVENTS:
        found.append(Finding(Reason.DISCIPLINE, Level.WATCH, "rule", value=float(events)))
    return found


def weak_items(fitness: dict[str, Any]) -> tuple[str, ...]:
    """Items scored below the pass line, weakest first (the items driving a fitness warning)."""
    scores = [(value, name.removeprefix("score_")) for name, value in fitness.items()
              if name.startswith("score_") and name != "score_bmi" and value is not None and value < PASS_SCORE]
    return tuple(item for _, item in sorted(scores))


def declining_items(history: list[dict]) -> tuple[str, ...]:
    """Items that lost points between the last two tests of `history` (oldest first), most lost first."""
    if len(history) < 2:
        return ()
    before, after = (year.get("scores") or {} for year in history[-2:])
    changes = [(after[item] - before[item], item) for item in after
               if after.get(item) is not None and before.get(item) is not None and after[item] < before[item]]
    return tuple(item for _, item in sorted(changes))


def trend_direction(value: float | None, flat_within: float) -> str | None:
    """"up", "down" or "flat" for a change, None when there is nothing to compare."""
    if value is None:
        return None
    if value > flat_within:
        return "up"
    if value < -flat_within:
        return "down"
    return "flat"
