"""《国家学生体质健康标准（2014年修订）》: the vendored tables and the scorer, checked against the spec.

The spec is `shared/data/csphs2014/` (README.md, the JSON, the long-form CSVs). Every test here is
data-driven from those files and vectorised: each builds one `fitness_tests` frame with many rows
and calls `score_fitness_tests` once.

Scope: school grades 1-12. The university columns (`U12`, `U34`, BMI grade `U`) exist in the CSVs
and are skipped on purpose (the contract's grades are 1-12); a test asserts they are there.

Heights are 125 cm (1.25 m, h^2 = 25/16), so weight = BMI x 25/16 is an exact binary fraction for
any BMI with two decimals: the raw BMI the scorer sees is exactly the one the test means.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import TABLES
from features.indicators.fitness import MissingColumnError, score_fitness_tests
from features.standards.csphs2014 import (
    BMI_SCORES,
    GRADES,
    ITEM_BY_NAME,
    ITEMS,
    SCORE_LEVELS,
    SEXES,
    level_for,
    levels_for,
    standard,
)

SPEC_DIR = Path(
    os.environ.get("CSPHS2014_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "csphs2014")
)
FITNESS = TABLES["fitness_tests"]
CONTRACT_COLUMNS = [c.name for c in FITNESS.columns]
SCHOOL_GRADE_CODES = {str(g) for g in GRADES}

HEIGHT_CM = 125.0
H = Fraction(5, 4)  # metres; HEIGHT_CM / 100.0 == 1.25 exactly in binary floating point


# --------------------------------------------------------------------------------------------
# The spec, read from the shared files (strings kept as written, so "exactly" means exactly)
# --------------------------------------------------------------------------------------------


def _read_csv(name: str) -> list[dict[str, str]]:
    path = SPEC_DIR / name
    if not path.is_file():  # never skip: the cell-for-cell check is the point of this file
        raise AssertionError(f"spec file {path} not found (set CSPHS2014_DIR to shared/data/csphs2014)")
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


ITEM_CSV = _read_csv("csphs2014_item_scoring.csv")
BMI_CSV = _read_csv("csphs2014_bmi.csv")
ITEM_ROWS = [r for r in ITEM_CSV if r["grade_code"] in SCHOOL_GRADE_CODES]  # grades 1-12
BMI_ROWS = [r for r in BMI_CSV if r["grade_code"] in SCHOOL_GRADE_CODES]
WALK_ROWS = [r for r in ITEM_ROWS if r["threshold"].strip() != ""]


def _bmi_cell(row: dict[str, str], band: str) -> Fraction:
    key = next(k for k in row if k.split("(")[0] == band)  # "normal_min(100)" -> "normal_min"
    return Fraction(Decimal(row[key]))


BMI_BY_KEY = {(r["sex"].lower(), int(r["grade_code"])): r for r in BMI_ROWS}


def _csv_tables() -> dict[tuple[str, str, int], list[tuple[int, str]]]:
    """(item, sex, grade) -> [(score, threshold string or "")] from 100 down to 10."""
    tables: dict[tuple[str, str, int], list[tuple[int, str]]] = defaultdict(list)
    for r in ITEM_ROWS:
        tables[(r["item"], r["sex"].lower(), int(r["grade_code"]))].append((int(r["score"]), r["threshold"].strip()))
    for cells in tables.values():
        cells.sort(reverse=True)
    return dict(tables)


CSV_TABLES = _csv_tables()


# --------------------------------------------------------------------------------------------
# Building fitness_tests rows
# --------------------------------------------------------------------------------------------


def weight_for(bmi: Fraction) -> float:
    """Weight (kg) at HEIGHT_CM giving exactly this raw BMI (checked: no float rounding)."""
    exact = bmi * H * H
    weight = float(exact)
    assert Fraction(weight) == exact, f"BMI {bmi} is not exact at {HEIGHT_CM} cm"
    return weight


def normal_weight(sex: str, grade: int) -> float:
    row = BMI_BY_KEY.get((sex, grade))
    if row is None:  # bad sex/grade rows: any plausible weight
        return 25.0
    return weight_for(_bmi_cell(row, "normal_min") + 1)  # well inside the normal band


def make_frame(records: list[dict]) -> pd.DataFrame:
    """A fitness_tests frame with every contract column; unspecified items empty, BMI normal."""
    rows = []
    for i, record in enumerate(records):
        row = {name: np.nan for name in CONTRACT_COLUMNS}
        row.update(student_id=f"s{i:06d}", test_date="2025-05-20", school_year=2025, height_cm=HEIGHT_CM)
        row.update(record)
        if "weight_kg" not in record:
            row["weight_kg"] = normal_weight(str(row["sex"]).strip().lower(), row["grade"])
        rows.append(row)
    return pd.DataFrame(rows, columns=CONTRACT_COLUMNS)


def worse(item_name: str, value: float, steps: float = 1) -> float:
    """`steps` recording steps worse than `value` (lower for higher-is-better items, higher for times)."""
    item = ITEM_BY_NAME[item_name]
    delta = item.step * steps
    return round(value - delta if item.higher_is_better else value + delta, 1)


def better(item_name: str, value: float, amount: float) -> float:
    item = ITEM_BY_NAME[item_name]
    return round(value + amount if item.higher_is_better else value - amount, 1)


def threshold(item_name: str, sex: str, grade: int, level: int) -> float:
    return dict(standard().thresholds(item_name, sex, grade))[level]


def raw_for_level(item_name: str, sex: str, grade: int, level: int) -> float:
    """A raw value scoring exactly `level` (0: one step below the lowest threshold)."""
    cells = standard().thresholds(item_name, sex, grade)
    if level == 0:
        return worse(item_name, cells[-1][1])
    return dict(cells)[level]


def all_100(grade: int, sex: str) -> dict:
    """Every tested item on its 100-point threshold (normal BMI comes from make_frame)."""
    record = {"grade": grade, "sex": sex}
    for item in standard().tested_items(grade, sex):
        record[item.column] = threshold(item.name, sex, grade, 100)
    return record


def bands():
    return [(g, s) for g in GRADES for s in SEXES]


def _fail_on(mismatches: list, what: str) -> None:
    if mismatches:
        shown = "\n  ".join(str(m) for m in mismatches[:25])
        pytest.fail(f"{len(mismatches)} {what}:\n  {shown}")


# --------------------------------------------------------------------------------------------
# 1. The vendored tables equal the shared spec, cell for cell
# --------------------------------------------------------------------------------------------


def test_university_columns_exist_and_are_deliberately_skipped():
    item_codes = {r["grade_code"] for r in ITEM_CSV}
    assert item_codes == SCHOOL_GRADE_CODES | {"U12", "U34"}
    assert {r["grade_code"] for r in BMI_CSV} == SCHOOL_GRADE_CODES | {"U"}
    assert len(ITEM_CSV) == 3120
    assert len(ITEM_ROWS) == 3120 - 2 * 240  # U12 and U34: 240 rows each


def test_vendored_json_is_the_shared_json():
    shared = json.loads((SPEC_DIR / "csphs2014_standard.json").read_text(encoding="utf-8"))
    vendored_path = Path(__file__).resolve().parents[1] / "features" / "standards" / "csphs2014.json"
    vendored = json.loads(vendored_path.read_text(encoding="utf-8"))
    assert vendored == shared


def test_item_tables_equal_the_csv_cell_for_cell():
    std = standard()
    mismatches = []
    for r in ITEM_ROWS:
        key = (r["item"], r["sex"].lower(), int(r["grade_code"]))
        cells = std.thresholds(*key)
        served = dict(cells)
        score = int(r["score"])
        if r["threshold"].strip() == "":
            if score in served:
                mismatches.append((key, score, "empty in CSV but served", served[score]))
        elif served.get(score) != float(r["threshold"]):
            mismatches.append((key, score, r["threshold"], served.get(score)))
    _fail_on(mismatches, "cells differ from csphs2014_item_scoring.csv")

    # Whole tables, both directions: same levels, same order (100 -> 10), nothing extra.
    for key, cells in CSV_TABLES.items():
        assert [s for s, _ in cells] == list(SCORE_LEVELS), key
        expected = tuple((s, float(t)) for s, t in cells if t != "")
        assert std.thresholds(*key) == expected, key
    # And the standard serves no (item, sex, grade) table the CSV does not have.
    for item in ITEMS:
        for sex in SEXES:
            for grade in GRADES:
                try:
                    std.thresholds(item.name, sex, grade)
                except KeyError:
                    continue
                assert (item.name, sex, grade) in CSV_TABLES, (item.name, sex, grade)


def test_empty_csv_thresholds_are_only_missing_pull_up_levels():
    empty = [r for r in ITEM_ROWS if r["threshold"].strip() == ""]
    assert empty, "the pull-up tables lack some levels"
    assert {r["item"] for r in empty} == {"pull_up"}


def test_csv_items_units_and_directions_match_the_item_definitions():
    for r in ITEM_ROWS:
        item = ITEM_BY_NAME[r["item"]]
        assert r["unit"] == item.unit, r
        assert r["direction"] == ("higher_better" if item.higher_is_better else "lower_better"), r


def test_every_csv_table_is_tested_in_its_band_and_every_tested_item_has_a_table():
    std = standard()
    for item_name, sex, grade in CSV_TABLES:
        tested = {i.name for i in std.tested_items(grade, sex)}
        assert item_name in tested, f"{item_name} has a table for {sex} grade {grade} but is not tested there"
    for grade, sex in bands():
        for item in std.tested_items(grade, sex):
            assert (item.name, sex, grade) in CSV_TABLES, (item.name, sex, grade)


def test_bmi_bands_equal_the_csv():
    std = standard()
    assert len(BMI_ROWS) == 24
    tenth = Fraction(1, 10)
    for r in BMI_ROWS:
        sex, grade = r["sex"].lower(), int(r["grade_code"])
        served = std.bmi_bands(sex, grade)
        for band in ("underweight_max", "normal_max", "overweight_max"):
            assert getattr(served, band) == float(r[next(k for k in r if k.startswith(band))]), (sex, grade, band)
        # The served object keeps only the three maxima: the CSV's minima must be max + 0.1,
        # so nothing is lost and there is no gap between bands.
        assert _bmi_cell(r, "normal_min") == _bmi_cell(r, "underweight_max") + tenth, (sex, grade)
        assert _bmi_cell(r, "overweight_min") == _bmi_cell(r, "normal_max") + tenth, (sex, grade)
        assert _bmi_cell(r, "obese_min") == _bmi_cell(r, "overweight_max") + tenth, (sex, grade)


# --------------------------------------------------------------------------------------------
# 2. The boundary walk: every threshold, on it and one step worse
# --------------------------------------------------------------------------------------------


def test_csv_thresholds_are_strictly_monotone():
    not_monotone = []
    for key, cells in CSV_TABLES.items():
        item = ITEM_BY_NAME[key[0]]
        values = [float(t) for _, t in cells if t != ""]
        pairs = list(zip(values, values[1:]))
        ok = all(a > b for a, b in pairs) if item.higher_is_better else all(a < b for a, b in pairs)
        if not ok:
            not_monotone.append((key, values))
    _fail_on(not_monotone, "tables are not strictly monotone (the walk below would be meaningless)")


def csv_score(item_name: str, sex: str, grade: int, value: float) -> int:
    """The spec's lookup on the CSV itself, in exact decimals: highest level met, 0 below all."""
    item = ITEM_BY_NAME[item_name]
    v = Decimal(str(value))
    for level, t in CSV_TABLES[(item_name, sex, grade)]:
        if t != "" and (v >= Decimal(t) if item.higher_is_better else v <= Decimal(t)):
            return level
    return 0


def test_boundary_walk_every_threshold_on_it_and_one_step_worse():
    assert len(WALK_ROWS) > 2500
    records, cases = [], []
    for r in WALK_ROWS:
        name, sex, grade, score = r["item"], r["sex"].lower(), int(r["grade_code"]), int(r["score"])
        column = ITEM_BY_NAME[name].column
        on = float(r["threshold"])
        below = worse(name, on)
        lowest = min(s for s, t in CSV_TABLES[(name, sex, grade)] if t != "")
        want_below = csv_score(name, sex, grade, below)
        assert want_below < score, (name, sex, grade, score)  # strict monotonicity, again
        if score == lowest:
            assert want_below == 0, (name, sex, grade)
        records.append({"grade": grade, "sex": sex, column: on})
        cases.append((name, sex, grade, score, "on", on, score))
        records.append({"grade": grade, "sex": sex, column: below})
        cases.append((name, sex, grade, score, "one step worse", below, want_below))
    out = score_fitness_tests(make_frame(records))
    assert len(out) == len(records)

    mismatches = []
    for i, (name, sex, grade, score, where, value, want) in enumerate(cases):
        column = ITEM_BY_NAME[name].column
        got = out.at[i, f"score_{name}"]
        problem = out.at[i, "problem"] or ""
        if f"{column}: impossible" in problem or f"{column}: not a number" in problem:
            mismatches.append((name, sex, grade, score, where, value, problem))
        elif not got == want:
            mismatches.append((name, sex, grade, score, where, value, f"want {want}, got {got}"))
    _fail_on(mismatches, "boundary cases scored wrongly (item, sex, grade, level, where, value, result)")


# --------------------------------------------------------------------------------------------
# 3. BMI: band edges and half-up rounding to one decimal
# --------------------------------------------------------------------------------------------

EDGES = (
    ("underweight_max", "underweight"),
    ("normal_min", "normal"),
    ("normal_max", "normal"),
    ("overweight_min", "overweight"),
    ("overweight_max", "overweight"),
    ("obese_min", "obese"),
)


def test_bmi_band_edges_and_half_up_rounding():
    half, just_under_half = Fraction(5, 100), Fraction(4999, 100000)
    records, expected = [], []
    for r in BMI_ROWS:
        sex, grade = r["sex"].lower(), int(r["grade_code"])
        for edge, category in EDGES:
            bmi = _bmi_cell(r, edge)
            records.append({"grade": grade, "sex": sex, "weight_kg": weight_for(bmi)})
            expected.append((sex, grade, f"on {edge}", bmi, category))
        # Rounding across each band boundary: x.x5 rounds up into the next band, x.x4999 stays.
        for upper_edge, lower_cat, upper_cat in (
            ("underweight_max", "underweight", "normal"),
            ("normal_max", "normal", "overweight"),
            ("overweight_max", "overweight", "obese"),
        ):
            edge = _bmi_cell(r, upper_edge)
            records.append({"grade": grade, "sex": sex, "weight_kg": weight_for(edge + half)})
            expected.append((sex, grade, f"{upper_edge}+0.05", edge + Fraction(1, 10), upper_cat))
            raw = edge + just_under_half
            weight = float(raw * H * H)
            seen = Fraction(weight) / (H * H)  # the raw BMI this weight really gives
            assert edge < seen < edge + half, (sex, grade, upper_edge, float(seen))
            records.append({"grade": grade, "sex": sex, "weight_kg": weight})
            expected.append((sex, grade, f"{upper_edge}+0.04999", edge, lower_cat))
    out = score_fitness_tests(make_frame(records))

    mismatches = []
    for i, (sex, grade, what, bmi, category) in enumerate(expected):
        got = (out.at[i, "bmi"], out.at[i, "bmi_category"], out.at[i, "score_bmi"])
        want = (float(bmi), category, BMI_SCORES[category])
        if got != want:
            mismatches.append((sex, grade, what, want, got))
    _fail_on(mismatches, "BMI cases wrong (sex, grade, case, want, got)")
    assert BMI_SCORES == {"normal": 100, "underweight": 80, "overweight": 80, "obese": 60}


def test_bmi_rounding_matches_exact_decimal_arithmetic_on_a_grid():
    """Real recordings (height to 0.5 cm, weight to 0.1 kg): BMI = exact quotient, half-up."""
    heights = [Decimal(h) / 2 for h in range(240, 381)]  # 120.0 .. 190.0 cm
    weights = [Decimal(w) / 10 for w in range(200, 801, 3)]  # 20.0 .. 80.0 kg
    records, expected = [], []
    for h in heights:
        for w in weights:
            bmi = (w / (h / 100) ** 2).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            records.append({"grade": 7, "sex": "m", "height_cm": float(h), "weight_kg": float(w)})
            expected.append(float(bmi))
    # include exact x.x5 cases: 200 cm and weights 2 mod 4 tenths give BMI = w/4 with a 5 in hundredths
    for w in range(402, 1000, 4):
        bmi = (Decimal(w) / 10 / 4).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        assert (Decimal(w) / 10 / 4) % Decimal("0.1") == Decimal("0.05")
        records.append({"grade": 7, "sex": "m", "height_cm": 200.0, "weight_kg": w / 10})
        expected.append(float(bmi))
    out = score_fitness_tests(make_frame(records))
    got = out["bmi"].to_numpy()
    want = np.array(expected)
    bad = np.flatnonzero(got != want)
    _fail_on(
        [(records[i]["height_cm"], records[i]["weight_kg"], want[i], got[i]) for i in bad],
        "BMI values differ from exact half-up rounding (height, weight, want, got)",
    )


# --------------------------------------------------------------------------------------------
# 4. Weights and the all-100 student
# --------------------------------------------------------------------------------------------

PRIMARY_12 = {"bmi": 0.15, "vital_capacity": 0.15, "run_50m": 0.2, "sit_and_reach": 0.3, "rope_skip_1min": 0.2}
PRIMARY_34 = {"bmi": 0.15, "vital_capacity": 0.15, "run_50m": 0.2, "sit_and_reach": 0.2, "rope_skip_1min": 0.2,
              "sit_up_1min": 0.1}
PRIMARY_56 = {"bmi": 0.15, "vital_capacity": 0.15, "run_50m": 0.2, "sit_and_reach": 0.1, "rope_skip_1min": 0.1,
              "sit_up_1min": 0.2, "shuttle_50x8": 0.1}
SECONDARY = {"bmi": 0.15, "vital_capacity": 0.15, "run_50m": 0.2, "sit_and_reach": 0.1, "standing_long_jump": 0.1}
EXPECTED_WEIGHTS = {
    **{(g, s): PRIMARY_12 for g in (1, 2) for s in SEXES},
    **{(g, s): PRIMARY_34 for g in (3, 4) for s in SEXES},
    **{(g, s): PRIMARY_56 for g in (5, 6) for s in SEXES},
    **{(g, "m"): {**SECONDARY, "pull_up": 0.1, "run_1000m": 0.2} for g in range(7, 13)},
    **{(g, "f"): {**SECONDARY, "sit_up_1min": 0.1, "run_800m": 0.2} for g in range(7, 13)},
}


@pytest.mark.parametrize("grade,sex", bands())
def test_weights_per_band(grade, sex):
    weights = standard().weights(grade, sex)
    assert weights == EXPECTED_WEIGHTS[(grade, sex)]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert sum(round(w * 100) for w in weights.values()) == 100  # exact in hundredths
    assert [i.name for i in standard().tested_items(grade, sex)] == [k for k in weights if k != "bmi"]


def test_every_item_100_gives_100_excellent_in_every_band():
    out = score_fitness_tests(make_frame([all_100(g, s) for g, s in bands()]))
    assert out["problem"].isna().all(), out["problem"].dropna().tolist()
    assert (out["standard_score"] == 100.0).all()
    assert (out["bonus"] == 0).all()
    assert (out["total_score"] == 100.0).all()
    assert (out["level"] == "excellent").all()
    assert (out["score_bmi"] == 100).all() and (out["bmi_category"] == "normal").all()
    for i, (g, s) in enumerate(bands()):
        for item in ITEMS:
            value = out.at[i, f"score_{item.name}"]
            if item.name in EXPECTED_WEIGHTS[(g, s)]:
                assert value == 100, (g, s, item.name)
            else:
                assert np.isnan(value), (g, s, item.name)


# --------------------------------------------------------------------------------------------
# 5. Bonus (加分)
# --------------------------------------------------------------------------------------------


def _bonus_frame(cases):
    """cases: (grade, sex, {item: raw or callable(top)}, expected bonus, expected standard score)."""
    records = []
    for grade, sex, changes, _, _ in cases:
        record = all_100(grade, sex)
        for name, change in changes.items():
            top = threshold(name, sex, grade, 100) if (name, sex, grade) in CSV_TABLES else None
            record[ITEM_BY_NAME[name].column] = change(top) if callable(change) else change
        records.append(record)
    return score_fitness_tests(make_frame(records))


def _check_bonus(cases, out):
    mismatches = []
    for i, (grade, sex, changes, bonus, standard_score) in enumerate(cases):
        got = (out.at[i, "bonus"], out.at[i, "standard_score"], out.at[i, "total_score"])
        want = (bonus, standard_score, round(standard_score + bonus, 1))
        if got != want or out.at[i, "problem"] is not None:
            values = {n: out.at[i, ITEM_BY_NAME[n].column] for n in changes}
            mismatches.append((grade, sex, values, "want", want, "got", got, out.at[i, "problem"]))
    _fail_on(mismatches, "bonus cases wrong")


def test_primary_rope_skip_bonus():
    cases = []
    for grade in range(1, 7):
        for sex in SEXES:
            for k in range(0, 21):  # +2k reps -> k points
                cases.append((grade, sex, {"rope_skip_1min": lambda top, k=k: top + 2 * k}, k, 100.0))
            for extra, points in ((1, 0), (3, 1), (39, 19), (40, 20), (41, 20), (42, 20), (100, 20)):
                cases.append((grade, sex, {"rope_skip_1min": lambda top, e=extra: top + e}, points, 100.0))
            # below 100 points: no bonus (95-point threshold scores 95; one rep under 100 too)
            w = standard().weights(grade, sex)["rope_skip_1min"]
            rope_95 = threshold("rope_skip_1min", sex, grade, 95)
            cases.append((grade, sex, {"rope_skip_1min": rope_95}, 0, 100.0 - 5 * w))
            cases.append((grade, sex, {"rope_skip_1min": lambda top: top - 1}, 0, 100.0 - 5 * w))
    cases = [(g, s, c, b, round(st, 1)) for g, s, c, b, st in cases]
    _check_bonus(cases, _bonus_frame(cases))


PULL_UP = dict(zip(range(1, 11), range(1, 11)))
RUN_1000M = dict(zip((4, 8, 12, 16, 20, 23, 26, 29, 32, 35), range(1, 11)))
SIT_UP = dict(zip((2, 4, 6, 7, 8, 9, 10, 11, 12, 13), range(1, 11)))
RUN_800M = dict(zip((5, 10, 15, 20, 25, 30, 35, 40, 45, 50), range(1, 11)))


def _step_points(table: dict[int, int], excess: int) -> int:
    return max([p for need, p in table.items() if excess >= need], default=0)


def test_bonus_tables_as_in_the_spec():
    by_sex = {s: {b.item: b for b in standard().step_bonuses(s)} for s in SEXES}
    for sex, item, table in (("m", "pull_up", PULL_UP), ("m", "run_1000m", RUN_1000M),
                             ("f", "sit_up_1min", SIT_UP), ("f", "run_800m", RUN_800M)):
        rule = by_sex[sex][item]
        assert dict(zip(rule.excess, rule.points)) == {float(k): v for k, v in table.items()}
    assert set(by_sex["m"]) == {"pull_up", "run_1000m"} and set(by_sex["f"]) == {"sit_up_1min", "run_800m"}


def test_secondary_step_bonuses():
    cases = []
    for grade in range(7, 13):
        for sex, (strength, s_table), (run, r_table) in (
            ("m", ("pull_up", PULL_UP), ("run_1000m", RUN_1000M)),
            ("f", ("sit_up_1min", SIT_UP), ("run_800m", RUN_800M)),
        ):
            strength_excesses = list(range(0, 15))
            most = max(r_table) + 5  # 40 s (1000 m) / 55 s (800 m): past the last step
            run_excesses = list(range(0, most + 1))  # every second faster, so each step edge is walked
            for e in strength_excesses:
                cases.append((grade, sex, {strength: lambda top, e=e, s=strength: better(s, top, e)},
                              _step_points(s_table, e), 100.0))
            for e in run_excesses:
                cases.append((grade, sex, {run: lambda top, e=e, r=run: better(r, top, e)}, _step_points(r_table, e), 100.0))
            # both together: at most 20
            cases.append((grade, sex, {strength: lambda top, s=strength: better(s, top, 14),
                                       run: lambda top, r=run, m=most: better(r, top, m)}, 20, 100.0))
            cases.append((grade, sex, {strength: lambda top, s=strength: better(s, top, 5),
                                       run: lambda top, r=run: better(r, top, 22)},
                          _step_points(s_table, 5) + _step_points(r_table, 22), 100.0))
            # below 100 on the item: no bonus from it, even with the other item's bonus intact
            w = standard().weights(grade, sex)
            cases.append((grade, sex, {strength: lambda top, s=strength: worse(s, top),
                                       run: lambda top, r=run: better(r, top, 12)},
                          _step_points(r_table, 12), round(100.0 - 5 * w[strength], 1)))
            cases.append((grade, sex, {run: lambda top, r=run: worse(r, top)}, 0, round(100.0 - 5 * w[run], 1)))
    # the examples in the brief
    assert _step_points(RUN_1000M, 22) == 5 and _step_points(SIT_UP, 5) == 2
    out = _bonus_frame(cases)
    _check_bonus(cases, out)


def test_no_bonus_from_items_the_band_does_not_score_for_bonus():
    cases = []
    for grade in range(1, 7):  # primary: only rope skip earns bonus
        for sex in SEXES:
            changes = {"pull_up": 30, "run_1000m": 160, "run_800m": 130}
            if grade >= 3:
                changes["sit_up_1min"] = lambda top: top + 20
            cases.append((grade, sex, changes, 0, 100.0))
    for grade in range(7, 13):  # secondary: no rope-skip bonus; no cross-sex items
        cases.append((grade, "m", {"rope_skip_1min": 300, "sit_up_1min": 90, "run_800m": 130}, 0, 100.0))
        cases.append((grade, "f", {"rope_skip_1min": 300, "pull_up": 40, "run_1000m": 160}, 0, 100.0))
    _check_bonus(cases, _bonus_frame(cases))


# --------------------------------------------------------------------------------------------
# 6. Levels: cut-offs, and exact standard scores built from real item combinations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total,level",
    [(120.0, "excellent"), (90.0, "excellent"), (89.9, "good"), (80.0, "good"), (79.9, "pass"),
     (60.0, "pass"), (59.9, "fail"), (0.0, "fail")],
)
def test_level_for_cut_offs(total, level):
    assert level_for(total) == level
    assert levels_for(np.array([total, np.nan])).tolist() == [level, None]  # the scorer's vector form


def _find_combination(grade: int, sex: str, target: int, fixed: dict[str, int] | None = None):
    """Item levels (BMI included) whose weighted sum is exactly `target` hundredths, or None."""
    return _reachable(grade, sex, tuple(sorted((fixed or {}).items()))).get(target)


@lru_cache(maxsize=None)
def _reachable(grade: int, sex: str, fixed: tuple[tuple[str, int], ...]) -> dict[int, dict[str, int]]:
    """Every exact standard score (hundredths) the band can produce, with one witness each."""
    std = standard()
    pinned = dict(fixed)
    options = {"bmi": sorted(set(BMI_SCORES.values()))}
    for item in std.tested_items(grade, sex):
        options[item.name] = [0] + [level for level, _ in std.thresholds(item.name, sex, grade)]
    reachable: dict[int, dict[str, int]] = {0: {}}
    for name, weight in std.weights(grade, sex).items():
        w = round(weight * 100)
        levels = [pinned[name]] if name in pinned else options[name]
        nxt: dict[int, dict[str, int]] = {}
        for total, combo in reachable.items():
            for level in levels:
                nxt.setdefault(total + level * w, {**combo, name: level})
        reachable = nxt
    return reachable


def _record_for(grade: int, sex: str, combo: dict[str, int]) -> dict:
    record = {"grade": grade, "sex": sex}
    bmi_row = BMI_BY_KEY[(sex, grade)]
    edge = {100: "normal_min", 80: "overweight_min", 60: "obese_min"}[combo["bmi"]]
    record["weight_kg"] = weight_for(_bmi_cell(bmi_row, edge))
    for name, level in combo.items():
        if name != "bmi":
            record[ITEM_BY_NAME[name].column] = raw_for_level(name, sex, grade, level)
    return record


# exact hundredths of the standard score -> (standard score, level)
TARGETS = {
    9000: (90.0, "excellent"), 8995: (90.0, "excellent"), 8990: (89.9, "good"), 8985: (89.9, "good"),
    8000: (80.0, "good"), 7995: (80.0, "good"), 7990: (79.9, "pass"), 7985: (79.9, "pass"),
    6000: (60.0, "pass"), 5995: (60.0, "pass"), 5990: (59.9, "fail"), 5985: (59.9, "fail"),
}


def test_level_edges_end_to_end_with_exact_standard_scores():
    records, expected, missing = [], [], []
    for grade, sex in bands():
        for target, (score, level) in TARGETS.items():
            combo = _find_combination(grade, sex, target)
            if combo is None:
                missing.append((grade, sex, target))
                continue
            records.append(_record_for(grade, sex, combo))
            expected.append((grade, sex, target, combo, score, level))
    # every band must reach every edge (the weights are multiples of 0.05 and scores include 85/95)
    assert not missing, missing
    out = score_fitness_tests(make_frame(records))

    mismatches = []
    for i, (grade, sex, target, combo, score, level) in enumerate(expected):
        item_scores = {n: out.at[i, "score_bmi" if n == "bmi" else f"score_{n}"] for n in combo}
        got = (out.at[i, "standard_score"], out.at[i, "bonus"], out.at[i, "total_score"], out.at[i, "level"])
        if item_scores != {n: float(v) for n, v in combo.items()} or got != (score, 0, score, level):
            mismatches.append((grade, sex, target, combo, item_scores, got, out.at[i, "problem"]))
    _fail_on(mismatches, "level edge rows wrong (grade, sex, hundredths, combo, item scores, got, problem)")


def test_bonus_lifts_the_total_across_a_level_edge():
    """total = standard score (1 decimal) + bonus; the level is the total's."""
    records, expected = [], []
    for grade in range(1, 7):
        for sex in SEXES:
            for target, bonus, total, level in ((8500, 5, 90.0, "excellent"), (8490, 5, 89.9, "good"),
                                                (5495, 5, 60.0, "pass")):
                combo = _find_combination(grade, sex, target, fixed={"rope_skip_1min": 100})
                assert combo is not None, (grade, sex, target)
                record = _record_for(grade, sex, combo)
                record["rope_skip_1min"] += 2 * bonus
                records.append(record)
                expected.append((grade, sex, bonus, total, level))
    for grade in range(7, 13):
        for sex, item in (("m", "pull_up"), ("f", "sit_up_1min")):
            for target, extra, total, level in ((7995, 1, 81.0, "good"), (8900, 1, 90.0, "excellent")):
                combo = _find_combination(grade, sex, target, fixed={item: 100})
                assert combo is not None, (grade, sex, target)
                record = _record_for(grade, sex, combo)
                record[ITEM_BY_NAME[item].column] += {"pull_up": 1, "sit_up_1min": 2}[item] * extra
                records.append(record)
                expected.append((grade, sex, extra, total, level))
    out = score_fitness_tests(make_frame(records))
    for i, (grade, sex, bonus, total, level) in enumerate(expected):
        got = (out.at[i, "bonus"], out.at[i, "total_score"], out.at[i, "level"])
        assert got == (bonus, total, level), (grade, sex, got, out.at[i, "standard_score"])


# --------------------------------------------------------------------------------------------
# 7. Bad input
# --------------------------------------------------------------------------------------------


def test_a_missing_tested_item_empties_the_total_and_names_the_column():
    records, expected = [], []
    for grade, sex in bands():
        for item in standard().tested_items(grade, sex):
            for empty in (np.nan, None, "", "  "):
                record = all_100(grade, sex)
                record[item.column] = empty
                records.append(record)
                expected.append((grade, sex, item))
    frame = make_frame(records)
    out = score_fitness_tests(frame)
    assert out["total_score"].isna().all()
    assert out["standard_score"].isna().all()
    assert out["bonus"].isna().all()
    assert out["level"].isna().all() and all(v is None for v in out["level"])
    for i, (grade, sex, item) in enumerate(expected):
        problem = out.at[i, "problem"]
        assert problem and item.column in problem and "missing" in problem, (grade, sex, item.name, problem)
        assert np.isnan(out.at[i, f"score_{item.name}"])
        for other in standard().tested_items(grade, sex):  # the rest are still scored
            if other is not item:
                assert out.at[i, f"score_{other.name}"] == 100, (grade, sex, item.name, other.name)
        assert out.at[i, "score_bmi"] == 100


def test_run_50m_missing_example():
    out = score_fitness_tests(make_frame([{**all_100(7, "m"), "run_50m_s": np.nan}]))
    assert np.isnan(out.at[0, "total_score"])
    assert out.at[0, "level"] is None
    assert "run_50m_s" in out.at[0, "problem"]


@pytest.mark.parametrize(
    "change,column",
    [
        ({"run_50m_s": 3.0}, "run_50m_s"),
        ({"height_cm": -150.0}, "height_cm"),
        ({"weight_kg": 500.0}, "weight_kg"),
        ({"vital_capacity_ml": -1.0}, "vital_capacity_ml"),
        ({"run_1000m_s": 30.0}, "run_1000m_s"),
    ],
)
def test_impossible_values(change, column):
    out = score_fitness_tests(make_frame([{**all_100(10, "m"), **change}]))
    assert np.isnan(out.at[0, "total_score"]) and out.at[0, "level"] is None
    problem = out.at[0, "problem"]
    assert column in problem and "impossible" in problem, problem


def test_unreadable_value():
    out = score_fitness_tests(make_frame([{**all_100(4, "f"), "sit_and_reach_cm": "abc"}]))
    assert np.isnan(out.at[0, "total_score"])
    assert "sit_and_reach_cm" in out.at[0, "problem"] and "not a number" in out.at[0, "problem"]


def test_bad_sex_and_grade():
    good = all_100(7, "m")
    records = [
        {**good, "sex": "x"},
        {**good, "grade": 13},
        {**good, "grade": 0},
        {**good, "grade": "U12"},
        {**good, "grade": 7.5},
        {**good, "sex": None},
        {**good, "sex": "x", "grade": 13},
    ]
    for r in records:
        r["weight_kg"] = 40.0
    out = score_fitness_tests(make_frame(records))
    assert out["total_score"].isna().all() and out["level"].isna().all()
    problems = out["problem"].tolist()
    assert "sex" in problems[0] and "grade" not in problems[0]
    for p in problems[1:5]:
        assert "grade" in p and "1-12" in p, p
    assert "sex" in problems[5]
    assert "sex" in problems[6] and "grade" in problems[6]


def test_codes_are_case_insensitive_and_grades_may_be_text():
    records = [all_100(7, "m"), {**all_100(7, "m"), "sex": " M "}, {**all_100(7, "m"), "grade": "7"},
               all_100(3, "f"), {**all_100(3, "f"), "sex": "F"}]
    out = score_fitness_tests(make_frame(records))
    assert out["problem"].isna().all(), out["problem"].tolist()
    assert out["total_score"].tolist() == [100.0] * 5


@pytest.mark.parametrize("column", ["sex", "grade", "height_cm", "run_50m_s", "pull_up", "run_800m_s"])
def test_missing_required_column(column):
    frame = make_frame([all_100(7, "m")]).drop(columns=[column])
    with pytest.raises(MissingColumnError) as error:
        score_fitness_tests(frame)
    assert "fitness_tests" in str(error.value) and column in str(error.value)


def test_items_the_band_does_not_test_stay_empty_even_with_a_value():
    given = {"vital_capacity_ml": 3000, "run_50m_s": 8.0, "sit_and_reach_cm": 10.0, "rope_skip_1min": 150,
             "sit_up_1min": 40, "shuttle_50x8_s": 110, "standing_long_jump_cm": 200, "pull_up": 10,
             "run_800m_s": 220, "run_1000m_s": 240}
    records = []
    for grade, sex in bands():
        records.append({**given, **all_100(grade, sex)})
    out = score_fitness_tests(make_frame(records))
    assert out["problem"].isna().all(), out["problem"].dropna().tolist()
    assert (out["standard_score"] == 100.0).all()
    for i, (grade, sex) in enumerate(bands()):
        tested = EXPECTED_WEIGHTS[(grade, sex)]
        for item in ITEMS:
            value = out.at[i, f"score_{item.name}"]
            assert (value == 100) if item.name in tested else np.isnan(value), (grade, sex, item.name, value)


def test_the_input_frame_is_not_modified():
    records = [all_100(g, s) for g, s in bands()]
    records += [{**all_100(7, "m"), "sex": " M ", "run_50m_s": ""}, {**all_100(3, "f"), "grade": "13"}]
    frame = make_frame(records)
    frame.index = pd.Index(range(100, 100 + len(frame)), name="row")
    frame["extra_note"] = "kept"
    before = frame.copy(deep=True)
    out = score_fitness_tests(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert len(out) == len(frame)
    assert list(out.columns[: len(frame.columns)]) == list(frame.columns)
    assert (out["extra_note"] == "kept").all()
    assert out["student_id"].tolist() == frame["student_id"].tolist()
