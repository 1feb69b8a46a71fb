"""Fitness (体) indicators: scores under the national standard, then career indicators.

`score_fitness_tests` needs nothing but a `fitness_tests` table (CONTRACT columns), so health
staff can score a raw export with `portrait fitness score` and the pipeline uses the same code.
Arithmetic on scores is done in integer hundredths: weights have two decimals and item scores are
integers, so the standard score is exact and rounding to the one decimal the level cut-offs are
stated in (59.9 / 60.0, 89.9 / 90.0) is half-up, never a float accident.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from features.contract import TABLES
from features.standards.csphs2014 import BMI_SCORES, GRADES, ITEMS, SEXES, level_for, standard

# A float input that should equal a threshold may arrive a hair off (9.3 as 9.299999...).
_TOLERANCE = 1e-9

SCORE_COLUMNS = [f"score_{item.name}" for item in ITEMS]
OUTPUT_COLUMNS = [
    "bmi", "bmi_category", "score_bmi", *SCORE_COLUMNS,
    "standard_score", "bonus", "total_score", "level", "problem",
]


class MissingColumnError(ValueError):
    """The input lacks a column the contract requires: nothing can be scored."""


def score_fitness_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """Score every row of a `fitness_tests` table under CSPHS 2014.

    Returns the input columns plus OUTPUT_COLUMNS. A row that cannot be scored (a tested item
    missing, an impossible value, an unknown grade or sex) keeps an empty total and says why in
    `problem`; item scores that could be computed are still filled in.
    """
    table = TABLES["fitness_tests"]
    missing = [c for c in table.required if c not in tests.columns]
    if missing:
        raise MissingColumnError(
            f"fitness_tests: missing required column(s) {', '.join(missing)} (see CONTRACT.md)"
        )
    std = standard()
    frame = tests.reset_index(drop=True)
    n = len(frame)
    problems: list[list[str]] = [[] for _ in range(n)]

    def note(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask):
            problems[i].append(message)

    grade = pd.to_numeric(frame["grade"], errors="coerce").to_numpy(dtype=float)
    sex = frame["sex"].astype("string").str.strip().str.lower().fillna("").to_numpy(dtype=object)
    bad_grade = ~np.isin(grade, GRADES)
    bad_sex = ~np.isin(sex, SEXES)
    note(bad_grade, "grade: not a school grade 1-12")
    note(bad_sex, "sex: not 'm' or 'f'")

    values, empty = {}, {}
    for column in [c for c in table.columns if c.kind == "float"]:
        raw = frame[column.name]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, copy=True)
        empty[column.name] = raw.astype("string").str.strip().fillna("").eq("").to_numpy()
        unreadable = np.isnan(numeric) & ~empty[column.name]
        out_of_range = (numeric < column.low) | (numeric > column.high)
        note(unreadable, f"{column.name}: not a number")
        note(out_of_range, f"{column.name}: impossible value (allowed {column.low:g}-{column.high:g} {column.unit})")
        numeric[unreadable | out_of_range] = np.nan
        values[column.name] = numeric

    result = {name: np.full(n, np.nan) for name in ["bmi", "score_bmi", *SCORE_COLUMNS, "bonus"]}
    bmi_category = np.full(n, None, dtype=object)
    hundredths = np.zeros(n, dtype=np.int64)  # standard score x 100, exact
    complete = ~(bad_grade | bad_sex)

    # BMI = kg / m^2 rounded half-up to one decimal before the band lookup; kept in tenths.
    height_m = values["height_cm"] / 100.0
    bmi_tenths = np.floor(values["weight_kg"] / (height_m * height_m) * 10 + 0.5 + _TOLERANCE)
    no_bmi = np.isnan(bmi_tenths)
    note(no_bmi & complete, "bmi: needs height_cm and weight_kg")
    complete &= ~no_bmi
    result["bmi"] = bmi_tenths / 10

    for g in GRADES:
        for s in SEXES:
            rows = np.flatnonzero((grade == g) & (sex == s))
            if rows.size == 0:
                continue
            weights = std.weights(g, s)

            bands = std.bmi_bands(s, g)
            tenths = bmi_tenths[rows]
            category = np.select(
                [tenths <= round(bands.underweight_max * 10), tenths <= round(bands.normal_max * 10),
                 tenths <= round(bands.overweight_max * 10), tenths > round(bands.overweight_max * 10)],
                ["underweight", "normal", "overweight", "obese"], default=None,
            )
            bmi_category[rows] = category
            bmi_points = np.array([BMI_SCORES.get(c, np.nan) if c else np.nan for c in category], dtype=float)
            result["score_bmi"][rows] = bmi_points
            hundredths[rows] += np.nan_to_num(bmi_points).astype(np.int64) * round(weights["bmi"] * 100)

            for item in std.tested_items(g, s):
                value = values[item.column][rows]
                points = _item_points(value, std.thresholds(item.name, s, g), item.higher_is_better)
                result[f"score_{item.name}"][rows] = points
                complete[rows[np.isnan(value)]] = False
                absent = empty[item.column][rows]
                if absent.any():
                    note(_mask(n, rows[absent]), f"{item.column}: missing, grade {g} is tested on {item.name}")
                hundredths[rows] += np.nan_to_num(points).astype(np.int64) * round(weights[item.name] * 100)

            result["bonus"][rows] = _bonus(std, g, s, rows, values, result)

    tenths_total = (hundredths + 5) // 10  # half-up to one decimal
    standard_score = np.where(complete, tenths_total / 10, np.nan)
    bonus = np.where(complete, result["bonus"], np.nan)
    total = standard_score + bonus

    out = frame.copy()
    for name in ["bmi", "score_bmi", *SCORE_COLUMNS]:
        out[name] = result[name]
    out["bmi_category"] = bmi_category
    out["standard_score"] = standard_score
    out["bonus"] = bonus
    out["total_score"] = total
    out["level"] = [level_for(t) if not np.isnan(t) else None for t in total]
    out["problem"] = ["; ".join(p) if p else None for p in problems]
    return out[list(frame.columns) + [c for c in OUTPUT_COLUMNS if c not in frame.columns]]


def _item_points(value: np.ndarray, cells, higher_is_better: bool) -> np.ndarray:
    """Highest level whose threshold the value meets; 0 below the lowest; NaN if no value."""
    points = np.zeros(value.shape)
    for level, threshold in cells:
        met = value >= threshold - _TOLERANCE if higher_is_better else value <= threshold + _TOLERANCE
        points = np.where(met, np.maximum(points, level), points)
    return np.where(np.isnan(value), np.nan, points)


def _bonus(std, grade: int, sex: str, rows: np.ndarray, values: dict, result: dict) -> np.ndarray:
    """加分: only on an item that scored 100, for the excess over its 100-point threshold."""
    bonus = np.zeros(rows.size)
    if grade <= 6:
        rope = values["rope_skip_1min"][rows]
        top = std.thresholds("rope_skip_1min", sex, grade)[0][1]
        at_top = result["score_rope_skip_1min"][rows] == 100
        extra = np.floor((rope - top) / std.ROPE_SKIP_REPS_PER_POINT)
        bonus = np.where(at_top, np.minimum(extra, std.ROPE_SKIP_MAX_BONUS), 0.0)
    else:
        for rule in std.step_bonuses(sex):
            item = next(i for i in ITEMS if i.name == rule.item)
            value = values[item.column][rows]
            top = std.thresholds(rule.item, sex, grade)[0][1]
            excess = value - top if item.higher_is_better else top - value
            at_top = result[f"score_{rule.item}"][rows] == 100
            earned = np.zeros(rows.size)
            for needed, points in zip(rule.excess, rule.points):
                earned = np.where(excess >= needed - _TOLERANCE, points, earned)
            bonus += np.where(at_top, earned, 0.0)
    return np.minimum(bonus, std.MAX_BONUS)


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


HISTORY_FIELDS = ["school_year", "grade", "test_date", "total_score", "level", "bmi", "bmi_category", "score_bmi"]


def fitness_indicators(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per student and test: the scores plus indicators over the career so far.

    `event_timestamp` is the test date, so a point-in-time join never sees a later test.
    """
    frame = scored.rename(columns={"student_id": "student_key"}).sort_values(["student_key", "school_year"])
    by_student = frame.groupby("student_key", sort=False)
    frame["total_change"] = by_student["total_score"].diff()
    failed = frame["level"].eq("fail")
    # Consecutive years failed up to and including this one (a new streak restarts at 0).
    streak_id = (~failed).groupby(frame["student_key"]).cumsum()
    frame["years_failed_in_row"] = failed.groupby([frame["student_key"], streak_id]).cumsum().astype("int64")
    frame["tests_taken"] = by_student.cumcount() + 1
    frame["event_timestamp"] = _utc_microseconds(frame["test_date"])
    keep = ["student_key", "event_timestamp", "school_year", "grade", "sex", "height_cm", "weight_kg",
            *[c for c in OUTPUT_COLUMNS if c != "problem"], "total_change", "years_failed_in_row", "tests_taken"]
    return frame[keep].reset_index(drop=True)


def fitness_history(indicators: pd.DataFrame) -> pd.DataFrame:
    """For each student and test, the whole fitness history up to that test, as one JSON document.

    The online store keeps only the latest row per student; the portrait needs every year.
    """
    frame = indicators.copy()
    frame["test_date"] = frame["event_timestamp"].dt.strftime("%Y-%m-%d")
    records = []
    for key, rows in frame.groupby("student_key", sort=False):
        so_far = []
        for row in rows.itertuples(index=False):
            year = {name: _plain(getattr(row, name)) for name in HISTORY_FIELDS}
            year["scores"] = {c.removeprefix("score_"): _plain(getattr(row, c)) for c in SCORE_COLUMNS}
            so_far.append(year)
            records.append((key, row.event_timestamp, json.dumps(so_far, ensure_ascii=False)))
    return pd.DataFrame(records, columns=["student_key", "event_timestamp", "history_json"])


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _utc_microseconds(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
