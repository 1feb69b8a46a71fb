"""Fitness (体) indicators: scores under the national standard, then career indicators.

`score_fitness_tests` needs nothing but a `fitness_tests` table (CONTRACT columns), so health
staff can score a raw export with `portrait fitness score` and the pipeline uses the same code.
Arithmetic on scores is done in integer hundredths: weights have two decimals and item scores are
integers, so the standard score is exact and rounding to the one decimal the level cut-offs are
stated in (59.9 / 60.0, 89.9 / 90.0) is half-up, never a float accident.

Families (`FAMILIES`): `student_fitness` (one row per student and test, true from the test date)
and `student_fitness_history` (every test so far as one JSON document). Both are built in DuckDB
over the lake, scored once per lake in buckets of whole students (see `scored_fitness`), and
computed one bucket at a time so memory is bounded whatever the city's size; nothing loops over
students in Python. The DuckDB plumbing lives in `features/indicators/duck.py`.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import TABLES
from features.indicators.duck import FamilyWriter, duck_session, entity_ranges, spill_dir, sql_literal
from features.indicators.family import IndicatorFamily
from features.standards import csphs2014
from features.standards.csphs2014 import BMI_SCORES, GRADES, ITEMS, SEXES, levels_for, standard

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
    problems: dict[int, list[str]] = {}  # row -> why it cannot be scored (few rows have any)

    def note(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask):
            problems.setdefault(i, []).append(message)

    grade = pd.to_numeric(frame["grade"], errors="coerce").to_numpy(dtype=float)
    # Normalized once per distinct value (a handful), not once per row.
    sex_codes, sex_values = pd.factorize(frame["sex"], use_na_sentinel=True)
    sex_values = pd.Series(sex_values, dtype="string").str.strip().str.lower().fillna("").to_numpy(dtype=object)
    sex = np.append(sex_values, "")[sex_codes]  # code -1 (empty) picks the trailing ""
    bad_grade = ~np.isin(grade, GRADES)
    bad_sex = ~np.isin(sex, SEXES)
    note(bad_grade, "grade: not a school grade 1-12")
    note(bad_sex, "sex: not 'm' or 'f'")

    values, empty = {}, {}
    for column in [c for c in table.columns if c.kind == "float"]:
        raw = frame[column.name]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, copy=True)
        if pd.api.types.is_numeric_dtype(raw.dtype):  # the lake's typed columns: empty is missing
            empty[column.name] = raw.isna().to_numpy()
        else:  # text as exported: blank is empty too
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
            in_band = [tenths <= round(bands.underweight_max * 10), tenths <= round(bands.normal_max * 10),
                       tenths <= round(bands.overweight_max * 10), tenths > round(bands.overweight_max * 10)]
            categories = ["underweight", "normal", "overweight", "obese"]
            bmi_category[rows] = np.select(in_band, categories, default=None)
            bmi_points = np.select(in_band, [float(BMI_SCORES[c]) for c in categories], default=np.nan)
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
    out["level"] = levels_for(total)
    problem = np.full(n, None, dtype=object)
    for i, messages in problems.items():
        problem[i] = "; ".join(messages)
    out["problem"] = problem
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


# ============================================================================================
# Career indicators: the `student_fitness` and `student_fitness_history` families
# ============================================================================================

ITEM_NAMES = [item.name for item in ITEMS]
HISTORY_FIELDS = ["school_year", "grade", "test_date", "total_score", "level", "bmi", "bmi_category", "score_bmi"]
# A fitness test is annual: a value older than this is no longer "the student's fitness"
# (the same TTL as the Feast view in features.feature_repo, which this module must not import).
FITNESS_TTL = timedelta(days=2 * 366)

FITNESS_FIELDS: dict[str, str] = {
    # The test, scored (the fields the Feast view, the portraits and fitness_risk_v1 read).
    "school_year": "int",  # school year of the test (the year it starts)
    "grade": "int",  # 1-12
    "sex": "str",  # m / f
    "height_cm": "float",
    "weight_kg": "float",
    "bmi": "float",  # kg/m², rounded half-up to one decimal as the standard looks it up
    "bmi_category": "str",  # underweight / normal / overweight / obese (the standard's bands)
    "score_bmi": "float",  # 100 / 80 / 80 / 60 points
    **{column: "float" for column in SCORE_COLUMNS},  # item scores 0-100; empty where the grade band does not test
    "standard_score": "float",  # Σ item score × weight, one decimal
    "bonus": "float",  # 加分, 0-20
    "total_score": "float",  # standard score + bonus (学年总分); empty if a tested item is missing
    "level": "str",  # excellent ≥ 90 / good ≥ 80 / pass ≥ 60 / fail
    # Career indicators over the tests so far (all tests of the student up to and including this one).
    "total_change": "float",  # total − total of the previous test
    "years_failed_in_row": "int",  # consecutive tests failed up to and including this one (0 if this one passed)
    "tests_taken": "int",  # tests so far, this one included
    "change_bmi": "float",  # score_bmi − score_bmi of the previous test (points)
    # score_<item> − the previous test's score_<item> (points); empty if either is empty
    **{f"change_{name}": "float" for name in ITEM_NAMES},
    "change_bmi_value": "float",  # bmi − bmi of the previous test (kg/m²)
    "years_since_previous_test": "int",  # school years between this test and the previous one (1 normally)
    "stage": "str",  # primary (grades 1-6) / junior (7-9) / senior (10-12)
    "stage_tests": "int",  # tests so far in this stage, this one included
    # The graduation rule (毕业成绩 = 50 % × final-year total + 50 % × mean of the other years' totals),
    # applied to the tests of this stage so far: 0.5 × this total + 0.5 × mean of the stage's earlier
    # totals (empty totals skipped); the total itself when the stage has no earlier scored test.
    # It is the official graduation score only at the final year of a stage (is_stage_final_year).
    "graduation_score": "float",
    "is_stage_final_year": "int",  # 1 at grades 6, 9 and 12, else 0
}
HISTORY_FAMILY_FIELDS = {"history_json": "json"}

SCORED_SCHEMA = pa.schema(
    [("student_id", pa.string()), ("test_date", pa.timestamp("us")), ("school_year", pa.int64()),
     ("grade", pa.int64()), ("sex", pa.string()), ("height_cm", pa.float64()), ("weight_kg", pa.float64()),
     ("bmi", pa.float64()), ("bmi_category", pa.string()), ("score_bmi", pa.float64())]
    + [(column, pa.float64()) for column in SCORE_COLUMNS]
    + [("standard_score", pa.float64()), ("bonus", pa.float64()), ("total_score", pa.float64()),
       ("level", pa.string()), ("problem", pa.string())]
)
# Tests per scored file: one pandas scoring call and one query of each family; the history's JSON
# grows with the career, so a bucket this size keeps its query near 0.5 GB.
SCORED_BUCKET_ROWS = 150_000
SCORED_DIR = ".fitness_scored"  # under the indicators folder: one folder of scored tests per lake content

_TEST_COLUMNS = ["school_year", "grade", "sex", "height_cm", "weight_kg", "bmi", "bmi_category", "score_bmi",
                 *SCORE_COLUMNS, "standard_score", "bonus", "total_score", "level"]
_FLOAT_COLUMNS = ["height_cm", "weight_kg", "bmi", "score_bmi", *SCORE_COLUMNS, "standard_score", "bonus",
                  "total_score"]
_ORDER = "school_year, event_timestamp"  # a student's tests in time order (school_year is unique per student)


def scored_fitness(lake_dir: Path, cache_root: Path) -> Path | None:
    """The lake's fitness tests scored under CSPHS 2014: a folder of Parquet files (SCORED_SCHEMA).

    One file per bucket of whole students (about SCORED_BUCKET_ROWS tests; ranges of student_id
    when the lake is sorted by student, so each bucket reads only its row groups), files named in
    bucket order, only tests of students in the `students` table (when the lake has one). The
    families that read them take one file at a time: a student's tests are all in one file, and
    no query scans the whole city (buckets by hash did, once per bucket: quadratic in the city).
    Kept under `cache_root/.fitness_scored/<digest>`, the digest covering the lake tables' bytes
    and the scorer's code and tables, so the families that need scores (`student_fitness`,
    `student_fitness_history`, `class_outcomes`) score a lake once. None when the lake has no
    `fitness_tests` table.
    """
    lake_dir, root = Path(lake_dir), Path(cache_root) / SCORED_DIR
    tests, students = lake_dir / "fitness_tests.parquet", lake_dir / "students.parquet"
    if not tests.exists():
        return None
    digest = _digest([tests, students if students.exists() else None, Path(__file__),
                      *sorted(Path(csphs2014.__file__).parent.glob("csphs2014.*"))])
    target = root / digest
    if target.is_dir():
        return target
    building = root / f".{digest}.{uuid.uuid4().hex[:8]}.building"
    building.mkdir(parents=True)
    try:
        with duck_session(building / "_spill") as con:
            source = f"read_parquet({sql_literal(tests)})"
            rows = pq.ParquetFile(tests).metadata.num_rows  # from the footer, no scan
            buckets = entity_ranges(tests, "student_id", math.ceil(rows / SCORED_BUCKET_ROWS)) if rows else []
            pq.write_table(SCORED_SCHEMA.empty_table(), building / "empty.parquet")  # a glob always matches
            for number, bucket in enumerate(buckets):
                enrolled = (f"AND student_id IN (SELECT student_id FROM read_parquet({sql_literal(students)}) "
                            f"WHERE {bucket})" if students.exists() else "")
                batch = con.sql(f"SELECT * FROM {source} WHERE ({bucket}) {enrolled}").to_arrow_table()
                if batch.num_rows == 0:
                    continue
                # Text stays Arrow-backed: converting ids to Python objects and back cost more than scoring.
                frame = batch.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)
                scored = score_fitness_tests(frame)[SCORED_SCHEMA.names]
                table = pa.Table.from_pandas(scored, schema=SCORED_SCHEMA, preserve_index=False)
                pq.write_table(table, building / f"{number:05d}.parquet")
        shutil.rmtree(building / "_spill", ignore_errors=True)
        try:
            os.rename(building, target)
        except OSError:  # another build of the same lake finished first: its folder is the same
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    for stale in root.iterdir():  # scores of earlier lakes
        if stale.is_dir() and not stale.name.startswith(".") and stale.name != digest:
            shutil.rmtree(stale, ignore_errors=True)
    return target


def _digest(paths: list[Path | None]) -> str:
    h = hashlib.blake2b(digest_size=12)
    for path in paths:
        h.update(b"\0" if path is None else str(Path(path).name).encode())
        if path is not None:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
    return h.hexdigest()


def _scored_view(con: duckdb.DuckDBPyConnection, scored_file: Path) -> None:
    """View `tests`: student_key, event_timestamp (test date, 00:00 UTC) and the scored columns."""
    con.execute(f"CREATE OR REPLACE VIEW tests AS SELECT student_id AS student_key, "
                f"timezone('UTC', test_date) AS event_timestamp, {', '.join(_TEST_COLUMNS)} "
                f"FROM read_parquet({sql_literal(scored_file)})")


def _indicator_sql(source: str) -> str:
    """student_fitness rows for the tests in `source` (every test of each student it holds)."""
    lagged = ["school_year", "total_score", "bmi", "score_bmi", *SCORE_COLUMNS]
    lags = ",\n".join(f"lag({c}) OVER w AS prev_{c}" for c in lagged)
    changes = ",\n".join(f"score_{name} - prev_score_{name} AS change_{name}" for name in ["bmi", *ITEM_NAMES])
    everything = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    return f"""
        WITH staged AS (
            SELECT *, CASE WHEN grade BETWEEN 1 AND 6 THEN 'primary' WHEN grade BETWEEN 7 AND 9 THEN 'junior'
                           WHEN grade BETWEEN 10 AND 12 THEN 'senior' END AS stage
            FROM {source}
        ), ordered AS (
            SELECT *, {lags},
                row_number() OVER w AS tests_taken,
                -- a streak of failed tests is the run of rows sharing the count of non-failed tests before them
                sum(CASE WHEN level = 'fail' THEN 0 ELSE 1 END) OVER w AS streak,
                row_number() OVER (PARTITION BY student_key, stage ORDER BY {_ORDER} {everything}) AS stage_tests,
                avg(total_score) OVER (PARTITION BY student_key, stage ORDER BY {_ORDER}
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_mean
            FROM staged
            WINDOW w AS (PARTITION BY student_key ORDER BY {_ORDER} {everything})
        )
        SELECT student_key, event_timestamp, {', '.join(_TEST_COLUMNS)},
            total_score - prev_total_score AS total_change,
            sum(CASE WHEN level = 'fail' THEN 1 ELSE 0 END)
                OVER (PARTITION BY student_key, streak ORDER BY {_ORDER} {everything}) AS years_failed_in_row,
            tests_taken,
            {changes},
            bmi - prev_bmi AS change_bmi_value,
            school_year - prev_school_year AS years_since_previous_test,
            stage, stage_tests,
            CASE WHEN earlier_mean IS NULL THEN total_score
                 ELSE 0.5 * total_score + 0.5 * earlier_mean END AS graduation_score,
            CAST(grade IN (6, 9, 12) AS BIGINT) AS is_stage_final_year
        FROM ordered
        ORDER BY student_key, event_timestamp
    """


def _history_sql(source: str) -> str:
    """student_fitness_history rows: for each test, every test up to it as a JSON list, oldest first.

    The JSON is written exactly as `json.dumps(..., ensure_ascii=False)` writes the same list of
    dicts (", " and ": " separators, floats as Python's shortest repr, which is also DuckDB's), so
    the text is byte-identical to what the per-student implementation produced.
    """
    def number(c: str) -> str:
        return f"coalesce(CAST({c} AS VARCHAR), 'null')"

    def text(c: str) -> str:
        return f"coalesce(to_json({c}), 'null')"

    scores = " || ', ' || ".join(f"'\"{name}\": ' || {number('score_' + name)}" for name in ITEM_NAMES)
    year_json = f"""'{{"school_year": ' || {number('school_year')} || ', "grade": ' || {number('grade')}
        || ', "test_date": "' || strftime(event_timestamp, '%Y-%m-%d')
        || '", "total_score": ' || {number('total_score')} || ', "level": ' || {text('level')}
        || ', "bmi": ' || {number('bmi')} || ', "bmi_category": ' || {text('bmi_category')}
        || ', "score_bmi": ' || {number('score_bmi')} || ', "scores": {{' || {scores} || '}}}}'"""
    # A student's tests in order as one list; test i's history is the list's first i entries
    # (school_year is unique per student, so "up to this test" is a prefix).
    return f"""
        WITH careers AS (
            SELECT student_key,
                   list({year_json} ORDER BY school_year, event_timestamp) AS years,
                   list(event_timestamp ORDER BY school_year, event_timestamp) AS stamps
            FROM {source} GROUP BY student_key
        ), tests AS (
            SELECT student_key, years, stamps, generate_subscripts(years, 1) AS i FROM careers
        )
        SELECT student_key, stamps[i] AS event_timestamp, '[' || array_to_string(years[1:i], ', ') || ']' AS history_json
        FROM tests
        ORDER BY student_key, event_timestamp
    """


def _build_over_tests(family: IndicatorFamily, sql: Callable[[str], str], lake_dir: Path, out_path: Path) -> int:
    """The family's rows, one scored file (a bucket of whole students) at a time."""
    out_path = Path(out_path)
    scored = scored_fitness(lake_dir, out_path.parent)
    # FamilyWriter flushes every 128 MB: the history's JSON would make DuckDB's 1M-row groups
    # several GB each at city scale.
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(family, out_path) as out:
        for scored_file in sorted(scored.glob("*.parquet")) if scored is not None else []:
            _scored_view(con, scored_file)
            out.add_query(con, sql("tests"))
    return out.rows


def build_student_fitness(lake_dir: Path, out_path: Path) -> int:
    """One row per student and test, true from the test date (00:00 UTC)."""
    return _build_over_tests(STUDENT_FITNESS, _indicator_sql, lake_dir, out_path)


def build_student_fitness_history(lake_dir: Path, out_path: Path) -> int:
    """One row per student and test: that test and every earlier one, as JSON (true from the test date)."""
    return _build_over_tests(STUDENT_FITNESS_HISTORY, _history_sql, lake_dir, out_path)


STUDENT_FITNESS = IndicatorFamily(
    name="student_fitness",
    entities=("student",),
    fields=FITNESS_FIELDS,
    ttl=FITNESS_TTL,
    description="Annual fitness test scored under CSPHS 2014, with career indicators "
                "(changes, failed streak, graduation score so far).",
    build=build_student_fitness,
    # Year-on-year changes and stage bookkeeping feed models, not pages (the portrait's year-by-year
    # chart reads the history family): 19 of 42 fields, about a fifth of all online values.
    offline_fields=("height_cm", "weight_kg", "change_bmi", *(f"change_{name}" for name in ITEM_NAMES),
                    "change_bmi_value", "years_since_previous_test", "stage", "stage_tests", "is_stage_final_year"),
)
STUDENT_FITNESS_HISTORY = IndicatorFamily(
    name="student_fitness_history",
    entities=("student",),
    fields=HISTORY_FAMILY_FIELDS,
    ttl=FITNESS_TTL,
    description="Every fitness test so far, oldest first (JSON), for the portrait's history chart.",
    build=build_student_fitness_history,
    # Not its rows: the scored tests student_fitness leaves in the folder (`scored_fitness`). Built
    # after it, a parallel build never scores the same lake twice at once.
    reads=("student_fitness",),
)
FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_FITNESS, STUDENT_FITNESS_HISTORY)
