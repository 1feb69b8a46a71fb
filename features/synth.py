"""A synthetic city written as contract tables (CONTRACT.md), deterministic for a plan, any size.

Structure, not independent noise. The city is cut into attendance zones (学区) of about
ZONE_STUDENTS students, each in one district with its own primary, junior and senior schools;
children move from a zone's primary school to its junior school (mostly the feeder one) and on
to a senior school chosen by ability, so a zone holds whole schools and whole careers. Birth
cohorts enter grade 1 every September and move up a grade each school year; classes of about
45 stay together through a stage, with a head teacher who follows them; subject teachers loop
back to the first grade of their stage when their cohort leaves.

Every number about a zone comes from its own random stream, seeded by (seed, zone, table), so
the city is a function of the plan alone: how it is cut into write chunks changes nothing but
Parquet row-group boundaries, and the in-memory `synthesize` returns exactly what
`write_synthetic_city` writes. Generation is vectorised numpy per zone (no loop over rows);
rows are buffered per table and flushed as row groups at most every `chunk_students` students
(or ROW_GROUP_ROWS rows), so memory is bounded by the chunk, not by the city.

What is modelled:
- grades: a persistent ability per student and subject (general + verbal / quantitative / arts
  factors + specific), individual growth over terms, school, class and teacher effects, exam
  noise; some students (3-4 % of a city, more among those with a high risk propensity) start
  declining sharply at some term (the academic-risk signal): absences and discipline records
  rise, and they drive the grade drop.
- fitness: item values placed on the national standard's own tables (`csphs2014.standard()`)
  from a persistent, year-over-year correlated form per student; BMI placed on the standard's
  own bands so the overweight + obese share rises from ~16 % in primary to ~23 % in senior.
- literacy, conduct, arts and labor records, attendance: correlated with ability and risk.
- teachers: subject, title and experience; digital-literacy assessments on the five
  JY/T 0646—2022 dimensions each October; training courses from three centres; a completed
  course raises the dimensions it targets, more for teachers weak in them. The true effects
  and the rule are written to `_ground_truth/` (ignored by ingest), with the teachers' true
  baselines, the students whose grades decline, and (for a dirty city) every broken row.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import SUBJECTS, TABLES, TEACHER_DIMENSIONS
from features.standards.csphs2014 import ITEMS, standard

ZONE_STUDENTS = 5000  # students per attendance zone, the unit of generation
CLASS_SIZE = 45
MAX_CLASS_SIZE = 56  # the Ministry's upper bound for a "large class"
ROW_GROUP_ROWS = 1_000_000  # a table's buffer is flushed once it holds this many rows
GROUND_TRUTH = "_ground_truth"
# The contract tables a school system exports, all written (the contract's public-dataset
# tables, such as assessment_scores, are not part of a city's export).
CITY_TABLES = (
    "schools", "classes", "students", "class_memberships", "teachers", "teaching_assignments", "terms", "grades",
    "fitness_tests", "literacy_assessments", "conduct_records", "activity_records", "attendance",
    "teacher_assessments", "training_courses", "teacher_trainings",
)

# Qingdao's districts and county-level cities with their administrative division codes
# (the first six digits of a resident identity number).
DISTRICTS = (
    ("Shinan", 370202), ("Shibei", 370203), ("Licang", 370213), ("Laoshan", 370212), ("Huangdao", 370211),
    ("Chengyang", 370214), ("Jimo", 370215), ("Jiaozhou", 370281), ("Pingdu", 370283), ("Laixi", 370285),
)
STAGES = ("primary", "junior", "senior")
STAGE_LETTER = ("P", "J", "S")
STAGE_NAME = ("Primary School", "Middle School", "Senior High School")
STAGE_LOOP = np.array([6, 3, 3])  # grades in a stage: a subject teacher's loop

S = {name: i for i, name in enumerate(SUBJECTS)}
N_SUBJECTS = len(SUBJECTS)
GRADE_SUBJECTS = {
    1: ("chinese", "math", "music", "art", "pe"),
    2: ("chinese", "math", "music", "art", "pe"),
    **{g: ("chinese", "math", "english", "science", "music", "art") for g in (3, 4, 5, 6)},
    7: ("chinese", "math", "english", "politics", "history", "geography", "biology", "music", "art"),
    8: ("chinese", "math", "english", "physics", "politics", "history", "geography", "biology", "pe"),
    9: ("chinese", "math", "english", "physics", "chemistry", "politics", "history", "pe", "labor"),
    10: ("chinese", "math", "english", "physics", "chemistry", "biology", "politics", "history", "geography"),
    # Grades 11-12 ("3+1+2"): the common subjects plus physics or history and two more electives.
    11: ("chinese", "math", "english", "pe", "art"),
    12: ("chinese", "math", "english", "pe", "labor"),
}
GRADE_MASK = np.zeros((13, N_SUBJECTS), dtype=bool)
for _g, _subjects in GRADE_SUBJECTS.items():
    GRADE_MASK[_g, [S[s] for s in _subjects]] = True
SECOND_ELECTIVES = np.array([S["chemistry"], S["biology"], S["politics"], S["geography"]])

VERBAL = [S[s] for s in ("chinese", "english", "history", "geography", "politics")]
QUANT = [S[s] for s in ("math", "physics", "chemistry", "biology", "science", "it")]
ARTS = [S["music"], S["art"]]
# score share = sigmoid(a + stage bonus + b * latent): politics is easy, physics hard, arts generous.
SUBJECT_A = np.array([1.15, 0.95, 1.0, 0.75, 0.85, 1.0, 1.05, 1.05, 1.25, 1.5, 1.5, 2.0, 2.0, 1.7, 2.2])
SUBJECT_B = np.array([0.75, 1.0, 0.95, 1.0, 0.95, 0.85, 0.8, 0.8, 0.7, 0.75, 0.7, 0.6, 0.6, 0.6, 0.5])
STAGE_A = np.array([0.45, 0.1, 0.0])
FULL_MARK = np.full((3, N_SUBJECTS), 100.0)
FULL_MARK[1, [S["chinese"], S["math"], S["english"]]] = 120.0
FULL_MARK[2, [S["chinese"], S["math"], S["english"]]] = 150.0
# Classes of one cohort a subject teacher takes.
TEACHER_LOAD = np.full((3, N_SUBJECTS), 6)
TEACHER_LOAD[0, [S["chinese"], S["math"], S["english"], S["science"]]] = (1, 2, 3, 4)
for _stage in (1, 2):
    TEACHER_LOAD[_stage, [S["chinese"], S["math"], S["english"]]] = 2
    TEACHER_LOAD[_stage, [S["physics"], S["chemistry"], S["biology"]]] = 3
    TEACHER_LOAD[_stage, [S["history"], S["geography"], S["politics"], S["science"]]] = 4
    TEACHER_LOAD[_stage, S["pe"]] = 5
# Specialists (music, art, PE, labor, IT) teach classes of every grade: this many a school year.
SPECIALIST_LOAD = np.zeros(N_SUBJECTS, dtype=np.int64)
SPECIALIST_LOAD[[S["music"], S["art"], S["pe"], S["labor"], S["it"]]] = (8, 8, 6, 10, 10)
# Head teachers teach their class a core subject (a primary class: Chinese).
HEAD_SUBJECT = np.array([[S["chinese"]] * 3, [S["chinese"], S["math"], S["english"]],
                         [S["chinese"], S["math"], S["english"]]])

# Mean height (cm) by grade from Chinese national growth references, boys / girls, and SD.
HEIGHT_MEAN = np.array([
    [120.5, 126.5, 132.0, 137.0, 142.5, 148.5, 155.5, 162.5, 167.0, 169.8, 171.0, 171.8],
    [119.5, 125.0, 131.0, 137.0, 143.5, 149.5, 154.0, 156.5, 157.8, 158.6, 159.2, 159.6],
])
HEIGHT_SD = np.array([
    [5.2, 5.4, 5.7, 6.0, 6.5, 7.2, 7.8, 7.4, 6.6, 6.2, 6.0, 6.0],
    [5.0, 5.3, 5.7, 6.2, 6.6, 6.4, 5.8, 5.5, 5.4, 5.3, 5.3, 5.3],
])
# Overweight + obese share by grade (before the sex split), the obese part of it per sex, and
# the underweight share: matches the direction of CNSSCH surveillance (common, rising with age).
OVERWEIGHT_OR_OBESE = np.array([0.14, 0.145, 0.15, 0.16, 0.17, 0.18, 0.19, 0.20, 0.21, 0.22, 0.23, 0.24])
SEX_OVERWEIGHT_FACTOR = (1.2, 0.8)
OBESE_SHARE = (0.45, 0.35)
UNDERWEIGHT = 0.05
# Fitness: latent item points = mean by grade + item offset + spread * (form, item talent) + noise.
FITNESS_MEAN = np.array([0, 78.5, 78, 77.5, 77, 76.5, 76, 75, 74.5, 74, 74, 74, 74], dtype=float)
FITNESS_SPREAD = 14.0
FITNESS_NOISE = 5.0
ITEM_OFFSET = {
    "vital_capacity": 2.0, "run_50m": 0.0, "sit_and_reach": 1.0, "rope_skip_1min": 4.0,
    "sit_up_1min": 1.0, "shuttle_50x8": -3.0, "standing_long_jump": -2.0, "pull_up": -16.0,
    "run_800m": -5.0, "run_1000m": -6.0,
}
WEIGHT_BEARING = {"run_50m", "rope_skip_1min", "sit_up_1min", "shuttle_50x8", "standing_long_jump",
                  "pull_up", "run_800m", "run_1000m"}
POINTS_MIN, POINTS_MAX, POINTS_STEP = -60.0, 160.0, 0.05

# Teachers' digital literacy (JY/T 0646—2022) and training.
DIMENSIONS = TEACHER_DIMENSIONS
AGE_WEIGHT = np.array([0.15, 0.45, 0.3, 0.05, 0.2])  # points lost per year of age above 40
WEAKNESS_REFERENCE, WEAKNESS_SCALE, WEAKNESS_GAIN, WEAKNESS_CAP = 70.0, 10.0, 0.5, 3.0
SECULAR_DRIFT_PER_YEAR = 0.6
ASSESSMENT_NOISE_SD = 3.5
CENTERS = ("CTR01", "CTR02", "CTR03")  # city teacher development centre, university, online platform
COURSES_PER_CENTER = 14
LEVELS = ("basic", "intermediate", "advanced")
TOPICS = {
    "awareness": ("Digital awareness in teaching", "Understanding educational data",
                  "Digital transformation of schools"),
    "knowledge_skills": ("Multimedia tools for lessons", "The smart education platform", "Learning analytics basics",
                         "AI tools for teachers"),
    "application": ("Designing blended lessons", "Digital assessment and feedback", "Interactive whiteboard teaching",
                    "Project-based learning with digital tools"),
    "responsibility": ("Student data privacy and online safety", "Digital ethics and copyright",
                       "Healthy screen use"),
    "development": ("Online professional learning communities", "Digital research on teaching",
                    "A digital teaching portfolio"),
}
COURSE_SUBJECTS = ("chinese", "math", "english", "physics", "chemistry", "biology", "science")

SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Hu", "Zhu",
            "Gao", "Lin", "He", "Guo", "Ma", "Luo", "Liang", "Song", "Zheng", "Xie", "Han", "Tang", "Feng", "Yu",
            "Dong", "Xiao", "Cheng", "Cao", "Yuan", "Deng", "Fu", "Shen", "Zeng", "Peng", "Lü", "Su")
SURNAME_WEIGHT = np.linspace(3.0, 0.6, len(SURNAMES))
GIVEN = ("zi", "han", "yu", "xuan", "hao", "yi", "xin", "chen", "ming", "jia", "rui", "tian", "jun", "wei", "ning",
         "le", "an", "qi", "yan", "bo", "kai", "jing", "lin", "xi", "mu", "ze", "yang", "shu", "ran", "tong")

# Deliberately bad rows: every ingest rule, in the tables where real exports break them.
DIRTY_TEXT_COLUMNS = {"fitness_tests": ("run_50m_s",), "grades": ("score",), "attendance": ("days_absent",)}
UNKNOWN = "unknown_reference"
DIRT: dict[str, tuple[tuple[str, str | None, object], ...]] = {
    "students": (("duplicate_key", None, None),),
    "class_memberships": (("duplicate_key", None, None), (UNKNOWN, "student_id", None),
                          (UNKNOWN, "class_id", "SCH9999P01-2099-01-01")),
    "grades": (("impossible_value", "score", "250"), ("non_number", "score", "absent"),
               ("unknown_code", "exam", "quiz"), ("empty_required", "score", None),
               ("empty_required", "subject", None), ("duplicate_key", None, None),
               (UNKNOWN, "student_id", None), (UNKNOWN, "term_id", "2099-1")),
    "fitness_tests": (("impossible_value", "run_50m_s", "2.0"), ("impossible_value", "height_cm", 400.0),
                      ("non_number", "run_50m_s", "fast"), ("unknown_code", "sex", "x"),
                      ("empty_required", "weight_kg", None), ("bad_date", "test_date", "2025-13-45"),
                      ("duplicate_key", None, None), (UNKNOWN, "student_id", None)),
    "literacy_assessments": (("impossible_value", "score", 130.0), ("unknown_code", "domain", "math"),
                             ("duplicate_key", None, None), (UNKNOWN, "student_id", None)),
    "conduct_records": (("unknown_code", "kind", "praise"), ("impossible_value", "value", -2.0),
                        ("empty_required", "value", None), (UNKNOWN, "student_id", None)),
    "activity_records": (("unknown_code", "domain", "sports"), ("impossible_value", "value", 5000.0),
                         (UNKNOWN, "student_id", None)),
    "attendance": (("impossible_value", "days_absent", "999"), ("non_number", "days_absent", "n/a"),
                   ("empty_required", "days_enrolled", None), ("duplicate_key", None, None),
                   (UNKNOWN, "student_id", None)),
    "teacher_assessments": (("impossible_value", "score", 120.0), ("unknown_code", "dimension", "creativity"),
                            ("bad_date", "assessed_on", "2024/10/15"), ("duplicate_key", None, None),
                            (UNKNOWN, "teacher_id", None)),
    "teacher_trainings": (("impossible_value", "satisfaction", 9.0), ("bad_date", "enrolled_on", "2023-00-10"),
                          ("duplicate_key", None, None), (UNKNOWN, "course_id", "C999")),
}
DIRT_KINDS = ("impossible_value", "non_number", "unknown_code", "empty_required", "bad_date", "duplicate_key",
              UNKNOWN)

_TAGS = {name: i for i, name in enumerate((
    "layout", "zone", "teachers", "grades", "fitness", "literacy", "conduct", "activity", "attendance",
    "assessments", "trainings", "catalog", "dirt", "names", "teacher_names",
))}


@dataclass(frozen=True)
class CityPlan:
    students: int = 5000
    seed: int = 0
    school_years: int = 6  # 12 terms
    last_school_year: int = 2025
    schools: int | None = None  # None: derived from students (classes of ~45)
    dirty: float = 0.0  # share of rows deliberately broken in the big tables

    def __post_init__(self):
        if self.students < 1:
            raise ValueError("a city needs at least one student")
        if not 1 <= self.school_years <= 12:
            raise ValueError("school_years must be 1-12")
        if self.schools is not None and self.schools < 3:
            raise ValueError("a city needs at least 3 schools (primary, junior, senior)")
        if not 0.0 <= self.dirty <= 0.5:
            raise ValueError("dirty must be a share between 0 and 0.5")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")

    @property
    def first_school_year(self) -> int:
        return self.last_school_year - self.school_years + 1

    @property
    def years(self) -> np.ndarray:
        return np.arange(self.first_school_year, self.last_school_year + 1)


@dataclass
class WriteStats:
    """What the writer held at most at once (for the memory-bound test and the benchmark)."""

    max_buffered_students: int = 0
    max_buffered_rows: int = 0
    max_buffered_bytes: int = 0
    zones: int = 0
    largest_zone: int = 0
    row_groups: dict[str, int] = field(default_factory=dict)


# ============================================================================================
# Public API
# ============================================================================================


def write_synthetic_city(plan: CityPlan, out_dir: Path, *, file_format: str = "parquet",
                         chunk_students: int = 100_000) -> dict[str, int]:
    """Write the city's contract tables to `out_dir/<table>.<format>`, chunk by chunk.

    Returns rows written per table. `out_dir/_ground_truth/` gets the true training effects,
    the teachers' true baselines, the declining students and, for a dirty city, every broken row.
    """
    return _write(plan, Path(out_dir), file_format=file_format, chunk_students=chunk_students)[0]


def synthesize(plan: CityPlan) -> dict:
    """The same city in memory as pandas frames (for tests and small cities)."""
    return synthesize_with_truth(plan)[0]


def synthesize_with_truth(plan: CityPlan) -> tuple[dict, dict]:
    """(contract tables, ground-truth tables) exactly as `write_synthetic_city` writes them."""
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        write_synthetic_city(plan, Path(tmp))
        return read_city(Path(tmp)), read_ground_truth(Path(tmp))


def read_city(folder: Path) -> dict:
    folder = Path(folder)
    tables = {}
    for name in CITY_TABLES:
        parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        if parquet.exists():
            tables[name] = pq.read_table(parquet).to_pandas()
        elif csv.exists():
            tables[name] = pacsv.read_csv(csv).to_pandas()
    return tables


def read_ground_truth(folder: Path) -> dict:
    truth_dir = Path(folder) / GROUND_TRUTH
    return {p.stem: pq.read_table(p).to_pandas() for p in sorted(truth_dir.glob("*.parquet"))}


# ============================================================================================
# Layout: zones, cohorts and schools (cheap, for the whole city, from the plan alone)
# ============================================================================================


@dataclass(frozen=True)
class _Layout:
    cohorts: int  # birth cohorts seen: the ones in grades 1-12 at some point of the plan
    first_entry: int  # school year the oldest cohort entered grade 1
    zone_students: np.ndarray
    zone_offset: np.ndarray  # global index of a zone's first student
    cohort_counts: np.ndarray  # zones x cohorts
    schools: np.ndarray  # zones x 3 stages
    school_number: np.ndarray  # zones x 3: number of the zone's first school in its district and stage
    district: np.ndarray  # zones


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to weights summing to total (largest remainder)."""
    share = total * np.asarray(weights, dtype=float) / np.sum(weights)
    counts = np.floor(share).astype(np.int64)
    rest = int(total - counts.sum())
    if rest:
        counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


def _layout(plan: CityPlan) -> _Layout:
    rng = _rng(plan, 0, "layout")
    cohorts = 11 + plan.school_years
    zones = max(1, round(plan.students / ZONE_STUDENTS))
    if plan.schools is not None:
        zones = max(1, min(zones, plan.schools // 3))
    zone_students = _split(plan.students, rng.lognormal(0.0, 0.2, zones))
    cohort_weights = 1.0 + rng.normal(0.0, 0.06, (zones, cohorts))
    cohort_counts = np.stack([_split(int(n), w) for n, w in zip(zone_students, cohort_weights)])
    per_grade = zone_students / cohorts
    default = np.stack([
        np.maximum(1, np.round(per_grade / (CLASS_SIZE * 2.5))),  # primary: 2-3 classes a grade
        np.maximum(1, np.round(per_grade / (CLASS_SIZE * 8))),  # junior: ~8
        np.maximum(1, np.round(per_grade / (CLASS_SIZE * 10))),  # senior: ~10
    ], axis=1).astype(np.int64)
    if plan.schools is not None:
        extra = _split(plan.schools - 3 * zones, default.ravel())
        default = 1 + extra.reshape(default.shape)
    district = np.arange(zones) % len(DISTRICTS)
    number = np.zeros_like(default)
    for d in range(len(DISTRICTS)):  # running school numbers within a district (10 districts)
        in_d = district == d
        number[in_d] = np.cumsum(default[in_d], axis=0) - default[in_d] + 1
    return _Layout(cohorts, plan.first_school_year - 11, zone_students,
                   np.cumsum(zone_students) - zone_students, cohort_counts, default, number, district)


def _rng(plan: CityPlan, zone: int, tag: str) -> np.random.Generator:
    return np.random.default_rng([plan.seed, zone, _TAGS[tag]])


# ============================================================================================
# Arrow helpers
# ============================================================================================


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string()), width=width, padding="0")


def _join(*parts, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _take(words, index: np.ndarray) -> pa.Array:
    return pa.array(words, pa.string()).take(pa.array(np.asarray(index, dtype=np.int64)))


def _dates(days: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(days, dtype="datetime64[D]")), pa.string())


def _day(year, month: int, day: int) -> np.ndarray:
    """datetime64[D] of year-month-day, vectorised over year."""
    months = (np.asarray(year, dtype=np.int64) - 1970) * 12 + (month - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]") + (day - 1)


def _floats(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.float64), pa.float64(), from_pandas=True)  # NaN -> null


def _names(rng: np.random.Generator, n: int) -> pa.Array:
    surname = rng.choice(len(SURNAMES), n, p=SURNAME_WEIGHT / SURNAME_WEIGHT.sum())
    first = rng.integers(0, len(GIVEN), n)
    second = np.where(rng.random(n) < 0.75, rng.integers(0, len(GIVEN), n), len(GIVEN))
    given = _join(pc.utf8_capitalize(_take(GIVEN, first)), _take(GIVEN + ("",), second))
    return _join(_take(SURNAMES, surname), given, sep=" ")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_ARROW_TYPES = {"str": pa.string(), "code": pa.string(), "date": pa.string(), "int": pa.int64(),
                "float": pa.float64(), "bool": pa.bool_()}


def _schema(name: str, dirty: bool) -> pa.Schema:
    text = DIRTY_TEXT_COLUMNS.get(name, ()) if dirty else ()
    return pa.schema([(c.name, pa.string() if c.name in text else _ARROW_TYPES[c.kind])
                      for c in TABLES[name].columns])


def _table(name: str, columns: dict, dirty: bool) -> pa.Table:
    schema = _schema(name, dirty)
    arrays = []
    for f in schema:
        value = columns[f.name]
        if not isinstance(value, (pa.Array, pa.ChunkedArray)):
            kind = TABLES[name].column(f.name).kind
            value = _floats(value) if kind == "float" else pa.array(value, _ARROW_TYPES[kind])
        if value.type != f.type:
            value = pc.cast(value, f.type)
        arrays.append(value)
    return pa.Table.from_arrays(arrays, schema=schema)


# ============================================================================================
# Calibration tables built once from the national standard
# ============================================================================================


@lru_cache(maxsize=1)
def _fitness_grid() -> tuple[np.ndarray, np.ndarray]:
    """value[grade, sex, item, points index]: the raw value that scores those points, NaN if untested.

    Interpolated on the standard's own (level, threshold) cells; below the lowest level the last
    step continues, above 100 half of it (the rare athlete who earns a bonus).
    """
    std = standard()
    points = np.arange(POINTS_MIN, POINTS_MAX + POINTS_STEP / 2, POINTS_STEP)
    grid = np.full((13, 2, len(ITEMS), points.size), np.nan)
    index = {item.name: k for k, item in enumerate(ITEMS)}
    fitness = TABLES["fitness_tests"]
    for grade in range(1, 13):
        for s, sex in enumerate(("m", "f")):
            for item in std.tested_items(grade, sex):
                cells = std.thresholds(item.name, sex, grade)
                levels = np.array([level for level, _ in cells][::-1], dtype=float)
                values = np.array([threshold for _, threshold in cells][::-1], dtype=float)
                value = np.interp(points, levels, values)
                low = points < levels[0]
                value[low] = values[0] + (values[1] - values[0]) / (levels[1] - levels[0]) * (points[low] - levels[0])
                high = points > levels[-1]
                slope = (values[-1] - values[-2]) / (levels[-1] - levels[-2])
                value[high] = values[-1] + 0.5 * slope * (points[high] - levels[-1])
                column = fitness.column(item.column)
                value = np.clip(value, max(column.low, 0.0), column.high)
                grid[grade, s, index[item.name]] = np.round(value, 1 if item.step < 1 else 0)
    return points, grid


@lru_cache(maxsize=1)
def _bmi_model() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log BMI = mu + sigma * h(z), z ~ N(0, 1), per grade and sex; see `_bmi`.

    h(z) = z + kappa * max(z, 0)^2 up to the obesity quantile z_obese, then linear: a
    right-skewed shape (children's BMI has a long heavy tail) fitted on the standard's own bands
    so the underweight, overweight + obese and obese shares are the targets exactly: the three
    cut-offs give three equations for mu, sigma and kappa.
    """
    std, inv = standard(), NormalDist().inv_cdf
    mu, sigma, kappa, z_obese = (np.zeros((13, 2)) for _ in range(4))
    for grade in range(1, 13):
        for s, sex in enumerate(("m", "f")):
            bands = std.bmi_bands(sex, grade)
            heavy = OVERWEIGHT_OR_OBESE[grade - 1] * SEX_OVERWEIGHT_FACTOR[s]
            z_thin, z_normal, z_over = -inv(UNDERWEIGHT), inv(1 - heavy), inv(1 - heavy * OBESE_SHARE[s])
            a = np.log(bands.normal_max / bands.underweight_max)
            b = np.log(bands.overweight_max / bands.underweight_max)
            k = (b * (z_thin + z_normal) - a * (z_thin + z_over)) / (a * z_over**2 - b * z_normal**2)
            kappa[grade, s], z_obese[grade, s] = max(k, 0.0), z_over
            sigma[grade, s] = a / (z_thin + z_normal + kappa[grade, s] * z_normal**2)
            mu[grade, s] = np.log(bands.underweight_max) + z_thin * sigma[grade, s]
    return mu, sigma, kappa, z_obese


def _bmi(z: np.ndarray, grade: np.ndarray, sex: np.ndarray) -> np.ndarray:
    mu, sigma, kappa, z_obese = (a[grade, sex] for a in _bmi_model())
    z = np.clip(z, -3.5, 3.5)
    bend = np.clip(z, 0, z_obese)
    return np.exp(mu + sigma * (z + kappa * (bend**2 + 2 * z_obese * np.maximum(z - z_obese, 0))))


# ============================================================================================
# Course catalog (global, small)
# ============================================================================================


@dataclass(frozen=True)
class _Catalog:
    table: pa.Table
    targets: np.ndarray  # courses x 5 bool
    effect: np.ndarray  # courses x 5: points gained by a teacher at or above the reference
    subject: np.ndarray  # courses: subject index, -1 for any
    level: np.ndarray
    hours: np.ndarray
    quality: np.ndarray
    truth: pa.Table


def _catalog(plan: CityPlan) -> _Catalog:
    rng = _rng(plan, 0, "catalog")
    n = len(CENTERS) * COURSES_PER_CENTER
    center = np.repeat(np.arange(len(CENTERS)), COURSES_PER_CENTER)
    main = rng.integers(0, len(DIMENSIONS), n)
    second = (main + rng.integers(1, len(DIMENSIONS), n)) % len(DIMENSIONS)
    targets = np.zeros((n, len(DIMENSIONS)), dtype=bool)
    targets[np.arange(n), main] = True
    two = rng.random(n) < 0.3
    targets[np.flatnonzero(two), second[two]] = True
    subject = np.where(rng.random(n) < 0.35, rng.integers(0, len(COURSE_SUBJECTS), n), -1)
    level = rng.choice(3, n, p=[0.45, 0.35, 0.2])
    hours = rng.choice(np.array([8, 12, 16, 24, 32, 40]), n)
    quality = rng.lognormal(0.0, 0.35, n)
    quality[rng.random(n) < 0.15] = rng.uniform(0.02, 0.2)  # some courses barely work
    base = np.array([2.5, 3.5, 4.5])[level] * np.sqrt(hours / 16.0) * quality
    effect = np.round(np.where(targets, base[:, None] * np.where(two, 0.7, 1.0)[:, None], 0.0), 2)

    topic_index = rng.integers(0, 1 << 30, n)
    topic_title = []
    for d, dimension in enumerate(DIMENSIONS):  # five dimensions, not rows
        topics = TOPICS[dimension]
        topic_title.append(_take(topics, topic_index % len(topics)))
    title = pa.array([None] * n, pa.string())
    for d in range(len(DIMENSIONS)):
        title = pc.if_else(pa.array(main == d), topic_title[d], title)
    for_subject = _join(" for ", _take(COURSE_SUBJECTS, np.maximum(subject, 0)), " teachers")
    suffix = pc.if_else(pa.array(subject >= 0), for_subject, pa.array([""] * n))
    title = _join(title, suffix, " (", _take(LEVELS, level), ")")
    course_id = _join("C", _digits(np.arange(1, n + 1), 3))
    dims_text = pa.array([""] * n)
    for d, dimension in enumerate(DIMENSIONS):
        hit = pa.array(targets[:, d])
        joined = pc.if_else(pc.equal(dims_text, ""), dimension, _join(dims_text, ";" + dimension))
        dims_text = pc.if_else(hit, joined, dims_text)
    table = _table("training_courses", {
        "course_id": course_id, "center_id": _take(CENTERS, center), "title": title, "dimensions": dims_text,
        "subject": pc.if_else(pa.array(subject >= 0), _take(COURSE_SUBJECTS, np.maximum(subject, 0)), "any"),
        "level": _take(LEVELS, level), "hours": hours.astype(float),
    }, dirty=False)
    rule = (
        "gain on dimension d of teacher t after completing course c (completed_on before the assessment) = "
        "effect[c, d] * (1 + weakness_gain * clip((weakness_reference - baseline[t, d]) / weakness_scale, 0, "
        "weakness_cap)); baseline = the teacher's true level before any training (teacher_baselines.parquet). "
        "Enrolments not completed have no effect. Observed score = baseline + secular_drift_per_year * "
        "(school year - first school year) + sum of gains + N(0, assessment_noise_sd), clipped to 0-100, "
        "rounded to 0.1. Teachers choose courses aimed at their weak dimensions more often (selection)."
    )
    rows = n * len(DIMENSIONS)
    truth = pa.table({
        "course_id": pc.take(course_id, pa.array(np.repeat(np.arange(n), len(DIMENSIONS)))),
        "center_id": _take(CENTERS, np.repeat(center, len(DIMENSIONS))),
        "dimension": _take(DIMENSIONS, np.tile(np.arange(len(DIMENSIONS)), n)),
        "targeted": pa.array(targets.ravel()),
        "effect": pa.array(effect.ravel()),
        "weakness_reference": pa.array(np.full(rows, WEAKNESS_REFERENCE)),
        "weakness_scale": pa.array(np.full(rows, WEAKNESS_SCALE)),
        "weakness_gain": pa.array(np.full(rows, WEAKNESS_GAIN)),
        "weakness_cap": pa.array(np.full(rows, WEAKNESS_CAP)),
        "secular_drift_per_year": pa.array(np.full(rows, SECULAR_DRIFT_PER_YEAR)),
        "assessment_noise_sd": pa.array(np.full(rows, ASSESSMENT_NOISE_SD)),
        "rule": pa.array([rule] * rows),
    })
    return _Catalog(table, targets, effect, subject, level, hours, quality, truth)


def _terms_table(plan: CityPlan) -> pa.Table:
    years = np.repeat(plan.years, 2)
    term = np.tile([1, 2], plan.school_years)
    start = np.where(term == 1, _day(years, 9, 1), _day(years + 1, 2, 20))
    end = np.where(term == 1, _day(years + 1, 1, 20), _day(years + 1, 7, 10))
    return _table("terms", {
        "term_id": _join(_digits(years, 4), "-", _digits(term, 1)), "school_year": years, "term": term,
        "start_date": _dates(start), "end_date": _dates(end),
    }, dirty=False)


# ============================================================================================
# One zone: its schools, students, classes, teachers, and every record about them
# ============================================================================================


class _Zone:
    def __init__(self, plan: CityPlan, layout: _Layout, z: int, catalog: _Catalog):
        self.plan, self.layout, self.z, self.catalog = plan, layout, z, catalog
        self.dirty = plan.dirty > 0
        rng = _rng(plan, z, "zone")
        years = plan.years
        K, Y = layout.cohorts, plan.school_years
        self.T = 2 * Y
        counts = layout.cohort_counts[z]
        n = self.n = int(counts.sum())
        cohort = self.cohort = np.repeat(np.arange(K), counts)
        entry = self.entry = layout.first_entry + cohort  # school year of grade 1
        self.male = rng.random(n) < 0.52
        self.student_id = _join(f"S{plan.seed % 100:02d}", _digits(layout.zone_offset[z] + np.arange(n), 8))
        late = rng.random(n) < 0.03  # started school a year late
        self.birth = _day(entry - 7, 9, 1) + rng.integers(0, 365, n) - 365 * late

        # Persistent traits. Ability factors, engagement, risk propensity, fitness and body.
        general = rng.normal(size=n)
        verbal, quant, arts = rng.normal(size=(3, n))
        self.engagement = 0.4 * general + 0.92 * rng.normal(size=n)
        self.risk = -0.55 * self.engagement + 0.83 * rng.normal(size=n)
        fit0 = 0.15 * general + 0.99 * rng.normal(size=n)
        ability = 0.45 * rng.normal(size=(n, N_SUBJECTS)) + 0.7 * general[:, None]
        ability[:, VERBAL] += 0.45 * verbal[:, None]
        ability[:, QUANT] += 0.45 * quant[:, None]
        ability[:, ARTS] += 0.45 * arts[:, None] - 0.35 * general[:, None]
        ability[:, S["pe"]] += 0.75 * fit0 - 0.45 * general
        ability[:, S["labor"]] += 0.5 * self.engagement - 0.4 * general
        self.ability, self.general, self.arts = ability, general, arts
        self.growth = rng.normal(0.0, 0.035, n)
        self.talent = rng.normal(size=(n, len(ITEMS)))  # per fitness item
        self.decliner = rng.random(n) < _sigmoid(-3.4 + 1.0 * self.risk)
        self.onset = rng.integers(1, max(self.T, 2), n)  # first term of the decline (index from 0)
        # Senior electives ("3+1+2"): physics or history, then two of four, by ability.
        physics = (ability[:, S["physics"]] + ability[:, S["math"]] + rng.normal(0, 0.8, n)
                   > ability[:, S["history"]] + ability[:, S["chinese"]] - 0.3)
        electives = np.zeros((n, N_SUBJECTS), dtype=bool)
        electives[:, S["physics"]] = physics
        electives[:, S["history"]] = ~physics
        liking = ability[:, SECOND_ELECTIVES] + rng.normal(0, 0.7, (n, 4))
        top_two = np.argsort(-liking, axis=1)[:, :2]
        electives[np.arange(n)[:, None], SECOND_ELECTIVES[top_two]] = True
        self.electives = electives

        # Per-year traits with year-over-year persistence (AR(1), stationary N(0, 1)).
        self.form, self.body, self.height_z = (np.empty((n, Y)) for _ in range(3))
        self.form[:, 0], self.body[:, 0], self.height_z[:, 0] = fit0, rng.normal(size=n), rng.normal(size=n)
        for y in range(1, Y):
            self.form[:, y] = 0.85 * self.form[:, y - 1] + 0.527 * rng.normal(size=n)
            self.body[:, y] = 0.9 * self.body[:, y - 1] + 0.436 * rng.normal(size=n)
            self.height_z[:, y] = 0.95 * self.height_z[:, y - 1] + 0.312 * rng.normal(size=n)

        # Schools: primaries by catchment, juniors mostly from their feeder primary, seniors by ability.
        P, J, Sn = (int(v) for v in layout.schools[z])
        self.n_schools = P + J + Sn
        primary = rng.choice(P, n, p=_split(10_000, rng.lognormal(0, 0.3, P)) / 10_000)
        junior = np.where(rng.random(n) < 0.85, primary * J // P, rng.integers(0, J, n))
        score = general + 0.5 * rng.normal(size=n)
        cuts = np.array([NormalDist(0, 1.118).inv_cdf(k / Sn) for k in range(1, Sn)])
        senior = Sn - 1 - np.searchsorted(cuts, score)  # school 0 is the key school
        self.school_of = np.stack([primary, P + junior, P + J + senior])
        self.school_stage = np.repeat(np.arange(3), [P, J, Sn])
        self.school_index = np.concatenate([np.arange(P), np.arange(J), np.arange(Sn)])
        district = int(layout.district[z])
        self.district, self.region = DISTRICTS[district]
        letter = _take(STAGE_LETTER, self.school_stage)
        self.school_id = _join("SCH", _digits(np.full(self.n_schools, z), 4), letter,
                               _digits(self.school_index + 1, 2))
        self.school_number = layout.school_number[z][self.school_stage] + self.school_index
        self.school_effect = rng.normal(0, 0.15, self.n_schools)
        self.school_day = rng.integers(0, 40, self.n_schools)  # fitness test day after Oct 8
        self.school_calendar = rng.integers(-2, 3, self.n_schools)

        # Classes: a stage's cohort in a school split by a fixed seat order; stays intact.
        self.class_k = np.zeros((3, n), dtype=np.int64)
        for stage in range(3):
            group = self.school_of[stage] * K + cohort
            size = np.bincount(group, minlength=self.n_schools * K)
            n_classes = np.maximum(np.maximum(1, np.round(size / CLASS_SIZE)), np.ceil(size / MAX_CLASS_SIZE))
            order = np.lexsort((rng.random(n), group))
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n) - (np.cumsum(size) - size)[group[order]]
            self.class_k[stage] = rank * n_classes[group].astype(np.int64) // np.maximum(size[group], 1)

        # Roster: one row per student enrolled in a school year (year-major, then student).
        parts = []
        for y, year in enumerate(years):
            grade = year - entry + 1
            idx = np.flatnonzero((grade >= 1) & (grade <= 12))
            parts.append((idx, np.full(idx.size, y), grade[idx]))
        self.r_i = np.concatenate([p[0] for p in parts])
        self.r_y = np.concatenate([p[1] for p in parts])
        self.r_g = np.concatenate([p[2] for p in parts]).astype(np.int64)
        self.r_stage = np.where(self.r_g <= 6, 0, np.where(self.r_g <= 9, 1, 2))
        self.r_sch = self.school_of[self.r_stage, self.r_i]
        r_k = self.class_k[self.r_stage, self.r_i]
        KMAX = 1 << 20
        key = ((self.r_y * self.n_schools + self.r_sch) * 13 + self.r_g) * KMAX + r_k
        class_keys, self.r_c = np.unique(key, return_inverse=True)
        self.c_k = class_keys % KMAX
        rest = class_keys // KMAX
        self.c_g = rest % 13
        rest //= 13
        self.c_sch = rest % self.n_schools
        self.c_y = rest // self.n_schools
        self.c_stage = np.where(self.c_g <= 6, 0, np.where(self.c_g <= 9, 1, 2))
        self.c_cohort = years[self.c_y] - self.c_g + 1 - layout.first_entry
        persistent = (self.c_sch * K + self.c_cohort) * KMAX + self.c_k
        _, inverse = np.unique(persistent, return_inverse=True)
        self.class_effect = rng.normal(0, 0.2, inverse.max() + 1 if inverse.size else 0)[inverse]
        self.class_id = _join(pc.take(self.school_id, pa.array(self.c_sch)), "-", _digits(years[self.c_y], 4), "-",
                              _digits(self.c_g, 2), "-", _digits(self.c_k + 1, 2))

        # Subjects a student takes in a year, and a class's subjects (electives: any member).
        self.r_subjects = GRADE_MASK[self.r_g] | (self.electives[self.r_i] & (self.r_g >= 11)[:, None])
        class_subjects = np.zeros((class_keys.size, N_SUBJECTS), dtype=bool)
        rows, subjects = np.nonzero(self.r_subjects)
        class_subjects[self.r_c[rows], subjects] = True

        # Teachers: one per (school, loop position, subject, group of classes) who follows a cohort
        # through the stage and loops back; specialists take a run of the school's classes a year.
        self.a_c, self.a_s = np.nonzero(class_subjects)
        stage = self.c_stage[self.a_c]
        school_year = self.c_y * self.n_schools + self.c_sch  # class-years are sorted by it
        ordinal = np.arange(class_keys.size) - np.searchsorted(school_year, school_year)
        specialist = SPECIALIST_LOAD[self.a_s] > 0
        loop = np.where(specialist, 6, self.c_cohort[self.a_c] % STAGE_LOOP[stage])
        group = np.where(specialist, ordinal[self.a_c] // np.maximum(SPECIALIST_LOAD[self.a_s], 1),
                         self.c_k[self.a_c] // TEACHER_LOAD[stage, self.a_s])
        teacher_key = ((self.c_sch[self.a_c] * 7 + loop) * N_SUBJECTS + self.a_s) * KMAX + group
        # Turnover: a quarter of the posts pass to a newly hired teacher in some school year.
        trng = _rng(plan, z, "teachers")
        slot_keys, a_slot = np.unique(teacher_key, return_inverse=True)
        change = np.where(trng.random(slot_keys.size) < 0.25, trng.integers(1, max(Y, 2), slot_keys.size), Y + 1)
        era = (self.c_y[self.a_c] >= change[a_slot]).astype(np.int64)
        teacher_keys, self.a_t = np.unique(teacher_key * 2 + era, return_inverse=True)
        self.teacher_of = np.full((class_keys.size, N_SUBJECTS), -1, dtype=np.int64)
        self.teacher_of[self.a_c, self.a_s] = self.a_t
        self.head = self.teacher_of[np.arange(class_keys.size), HEAD_SUBJECT[self.c_stage, self.c_k % 3]]
        nt = self.nt = teacher_keys.size
        newly_hired = teacher_keys % 2 == 1
        self.t_subject = (teacher_keys // 2 // KMAX) % N_SUBJECTS
        self.t_sch = teacher_keys // 2 // KMAX // N_SUBJECTS // 7
        first = np.full(nt, Y - 1)
        np.minimum.at(first, self.a_t, self.c_y[self.a_c])
        self.t_last = np.zeros(nt, dtype=np.int64)  # last school year (index) taught in the city
        np.maximum.at(self.t_last, self.a_t, self.c_y[self.a_c])
        self.teacher_id = _join(f"T{plan.seed % 100:02d}", _digits(np.full(nt, z), 4), _digits(np.arange(nt), 5))

        t_stage = self.school_stage[self.t_sch]
        female_share = np.array([0.82, 0.7, 0.58])[t_stage] - 0.35 * (self.t_subject == S["pe"])
        self.t_male = trng.random(nt) >= female_share
        before = np.where(newly_hired, np.round(trng.exponential(1.5, nt)), np.round(trng.gamma(1.6, 7.0, nt)))
        self.t_exp = np.minimum(40, (Y - 1 - first) + before).astype(np.int64)
        self.t_birth = plan.last_school_year - 23 - self.t_exp - trng.integers(0, 4, nt)
        u = trng.random(nt)
        self.t_title = np.select(
            [self.t_exp < 1, self.t_exp < 6, self.t_exp < 14, (self.t_exp >= 25) & (u < 0.06), self.t_exp >= 15],
            [0, 1, 2, 4, np.where(u < 0.6, 3, 2)], default=np.where(u < 0.15, 3, 2))
        self.t_effect = trng.normal(0, 0.12, nt) + 0.08 * np.tanh(self.t_exp / 8.0) - 0.05
        age = plan.last_school_year - self.t_birth
        self.t_general = trng.normal(size=nt)
        baseline = (66 + 7 * self.t_general[:, None] + 6 * trng.normal(size=(nt, len(DIMENSIONS)))
                    - AGE_WEIGHT[None, :] * (age[:, None] - 40))
        baseline += np.where(np.isin(self.t_subject, [S["math"], S["physics"], S["it"]]), 3.0, 0.0)[:, None]
        self.t_baseline = np.round(np.clip(baseline, 20, 97), 2)
        self.t_hire = plan.last_school_year - self.t_exp

        # Risk by term: decline state, absences and discipline, and the grade shift they drive.
        tt = 2 * self.r_y[:, None] + np.arange(2)[None, :]  # rows x 2 terms
        state = np.clip(tt - self.onset[self.r_i][:, None] + 1, 0, 4) * self.decliner[self.r_i][:, None]
        calendar = self.school_calendar[self.r_sch][:, None]
        self.enrolled_days = (np.array([95, 88])[None, :] + calendar).astype(np.int64)  # school days a term
        arng = _rng(plan, z, "attendance")
        rate = np.exp(0.1 + 0.4 * self.risk[self.r_i])[:, None] * 1.2 + 2.5 * state
        self.absent = np.minimum(arng.poisson(rate), self.enrolled_days)
        self.discipline = arng.poisson(0.03 * np.exp(0.8 * self.risk[self.r_i])[:, None] + 0.4 * state)
        self.state = state
        self.shift = -0.22 * state - 0.03 * np.maximum(self.absent - 4, 0) - 0.12 * self.discipline

    # ---------------------------------------------------------------------------------------
    def batches(self):
        """(table, arrow batch) in a fixed order; ground-truth tables are named '_ground_truth/...'."""
        yield "schools", self._schools()
        yield "classes", self._classes()
        yield "students", self._students()
        yield "class_memberships", self._memberships()
        yield "teachers", self._teachers()
        yield "teaching_assignments", self._assignments()
        grng = _rng(self.plan, self.z, "grades")
        for y in range(self.plan.school_years):
            yield "grades", self._grades(grng, y)
        yield "fitness_tests", self._fitness()
        yield "literacy_assessments", self._literacy()
        yield "conduct_records", self._conduct()
        yield "activity_records", self._activity()
        yield "attendance", self._attendance()
        assessments, trainings, baselines = self._teacher_development()
        yield "teacher_assessments", assessments
        yield "teacher_trainings", trainings
        yield f"{GROUND_TRUTH}/teacher_baselines", baselines
        yield f"{GROUND_TRUTH}/academic_decline", self._decline_truth()

    def _schools(self) -> pa.Table:
        name = _join(f"Qingdao {self.district} No. ", pc.cast(pa.array(self.school_number), pa.string()), " ",
                     _take(STAGE_NAME, self.school_stage))
        return _table("schools", {
            "school_id": self.school_id, "name": name, "district": pa.array([self.district.lower()] * self.n_schools),
            "stage": _take(STAGES, self.school_stage),
        }, False)

    def _classes(self) -> pa.Table:
        return _table("classes", {
            "class_id": self.class_id, "school_id": pc.take(self.school_id, pa.array(self.c_sch)),
            "school_year": self.plan.years[self.c_y], "grade": self.c_g,
            "head_teacher_id": pc.take(self.teacher_id, pa.array(self.head)),
        }, False)

    def _students(self) -> pa.Table:
        rng = _rng(self.plan, self.z, "names")
        b = self.birth
        year = b.astype("datetime64[Y]").astype(np.int64) + 1970
        month = b.astype("datetime64[M]").astype(np.int64) % 12 + 1
        day = (b - b.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        # Sequence number: unique per region, birth date and sex, odd for a boy, as registries issue them.
        order = np.lexsort((self.male, b))
        key = b.astype(np.int64) * 2 + self.male
        first = np.searchsorted(key[order], key[order])
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n) - first
        in_district = (self.z // len(DISTRICTS), -(-len(self.layout.zone_students) // len(DISTRICTS)))
        sequence = ((rank * in_district[1] + in_district[0]) % 500) * 2 + self.male
        body = (self.region * 10**8 + year * 10**4 + month * 100 + day) * 1000 + sequence
        digits = np.stack([(body // 10**p) % 10 for p in range(16, -1, -1)], axis=1)
        weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
        check = _take(tuple("10X98765432"), (digits @ weights) % 11)
        return _table("students", {
            "student_id": self.student_id, "sex": _take(("f", "m"), self.male.astype(int)),
            "birth_date": _dates(b), "enrollment_year": self.entry,
            "name": _names(rng, self.n), "national_id": _join(pc.cast(pa.array(body), pa.string()), check),
        }, self.dirty)

    def _memberships(self) -> pa.Table:
        return _table("class_memberships", {
            "student_id": self.student_id.take(pa.array(self.r_i)),
            "class_id": self.class_id.take(pa.array(self.r_c)),
            "school_year": self.plan.years[self.r_y],
        }, self.dirty)

    def _teachers(self) -> pa.Table:
        return _table("teachers", {
            "teacher_id": self.teacher_id, "school_id": pc.take(self.school_id, pa.array(self.t_sch)),
            "sex": _take(("f", "m"), self.t_male.astype(int)), "birth_year": self.t_birth,
            "subject": _take(SUBJECTS, self.t_subject),
            "title": _take(("none", "second", "first", "senior", "full_senior"), self.t_title),
            "years_experience": self.t_exp, "name": _names(_rng(self.plan, self.z, "teacher_names"), self.nt),
        }, False)

    def _assignments(self) -> pa.Table:
        order = np.lexsort((self.a_s, self.a_c))
        return _table("teaching_assignments", {
            "teacher_id": self.teacher_id.take(pa.array(self.a_t[order])),
            "class_id": self.class_id.take(pa.array(self.a_c[order])),
            "subject": _take(SUBJECTS, self.a_s[order]), "school_year": self.plan.years[self.c_y[self.a_c[order]]],
        }, False)

    def _grades(self, rng: np.random.Generator, y: int) -> pa.Table:
        rows = np.flatnonzero(self.r_y == y)
        rr, ss = np.nonzero(self.r_subjects[rows])
        rr = rows[rr]
        pair = np.tile(np.repeat(np.arange(rr.size), 2), 2)  # term 1 (mid, final), term 2 (mid, final)
        term = np.repeat([0, 1], 2 * rr.size)
        exam = np.tile([0, 1], 2 * rr.size)
        r, s = rr[pair], ss[pair]
        i, c = self.r_i[r], self.r_c[r]
        tt = 2 * y + term
        latent = (self.ability[i, s] + self.school_effect[self.r_sch[r]] + self.class_effect[c]
                  + self.t_effect[self.teacher_of[c, s]] + self.growth[i] * tt + self.shift[r, term]
                  + rng.normal(0, 0.32, r.size))
        stage = self.r_stage[r]
        full = FULL_MARK[stage, s]
        share = _sigmoid(SUBJECT_A[s] + STAGE_A[stage] + SUBJECT_B[s] * latent)
        score = np.round(share * full * 2) / 2
        return _table("grades", {
            "student_id": self.student_id.take(pa.array(i)),
            "term_id": _take(self._term_ids(), tt), "subject": _take(SUBJECTS, s),
            "exam": _take(("midterm", "final"), exam), "score": score, "full_mark": full,
        }, self.dirty)

    def _term_ids(self) -> tuple[str, ...]:
        return tuple(f"{year}-{t}" for year in self.plan.years for t in (1, 2))  # 2 per school year

    def _fitness(self) -> pa.Table:
        rng = _rng(self.plan, self.z, "fitness")
        r_i, r_y, g = self.r_i, self.r_y, self.r_g
        s = (~self.male[r_i]).astype(np.int64)  # 0 boys, 1 girls
        n = r_i.size
        form, body, hz = self.form[r_i, r_y], self.body[r_i, r_y], self.height_z[r_i, r_y]
        height = HEIGHT_MEAN[s, g - 1] + HEIGHT_SD[s, g - 1] * hz
        bmi = _bmi(body, g, s)
        height = np.round(height, 1)
        weight = np.round(bmi * (height / 100) ** 2, 1)
        points_axis, grid = _fitness_grid()
        talent = 0.8 * self.talent[r_i] + 0.6 * rng.normal(size=(n, len(ITEMS)))  # persistent + this year
        columns = {}
        heavy = np.maximum(0.0, body - 0.8)
        for k, item in enumerate(ITEMS):
            points = (FITNESS_MEAN[g] + ITEM_OFFSET[item.name]
                      + FITNESS_SPREAD * (0.72 * form + 0.4 * talent[:, k]) + FITNESS_NOISE * rng.normal(size=n))
            if item.name in WEIGHT_BEARING:
                points -= 7.0 * heavy
            if item.name == "vital_capacity":
                points += 4.0 * hz + 2.0 * body
            index = np.clip(np.rint((points - POINTS_MIN) / POINTS_STEP), 0, points_axis.size - 1).astype(np.int64)
            columns[item.column] = grid[g, s, k, index]
        test_day = _day(self.plan.years[r_y], 10, 8) + self.school_day[self.r_sch] + rng.integers(0, 3, n)
        return _table("fitness_tests", {
            "student_id": self.student_id.take(pa.array(r_i)), "test_date": _dates(test_day),
            "school_year": self.plan.years[r_y], "grade": g, "sex": _take(("m", "f"), s),
            "height_cm": height, "weight_kg": weight, **columns,
        }, self.dirty)

    def _literacy(self) -> pa.Table:
        rng = _rng(self.plan, self.z, "literacy")
        rows = np.flatnonzero(self.r_g >= 3)
        i = self.r_i[rows]
        a = self.ability[i]
        latent = np.stack([
            0.3 * self.general[i] + 0.3 * self.engagement[i] + 0.25 * a[:, S["math"]],  # digital
            0.6 * a[:, S["chinese"]] + 0.25 * a[:, S["english"]],  # reading
            0.45 * a[:, S["math"]] + 0.35 * a[:, S["science"]] + 0.2 * a[:, S["physics"]],  # science
        ], axis=1) + 0.45 * rng.normal(size=(rows.size, 3)) - 0.2 * self.state[rows, 1][:, None]
        score = np.round(100 * _sigmoid(0.9 + 0.85 * latent), 1)
        return _table("literacy_assessments", {
            "student_id": self.student_id.take(pa.array(np.repeat(i, 3))),
            "term_id": _take(self._term_ids(), np.repeat(2 * self.r_y[rows] + 1, 3)),
            "domain": _take(("digital", "reading", "science"), np.tile(np.arange(3), rows.size)),
            "score": score.ravel(),
        }, self.dirty)

    def _records(self, name: str, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                 kinds: tuple[str, ...], domains: tuple[str, ...] | None = None) -> pa.Table:
        """Rows (roster row, term, kind, value) in term, student, kind order."""
        r = np.concatenate([p[0] for p in parts])
        term = np.concatenate([p[1] for p in parts])
        kind = np.concatenate([p[2] for p in parts])
        value = np.concatenate([p[3] for p in parts]).astype(float)
        order = np.lexsort((kind, r, 2 * self.r_y[r] + term))
        r, term, kind, value = r[order], term[order], kind[order], value[order]
        columns = {
            "student_id": self.student_id.take(pa.array(self.r_i[r])),
            "term_id": _take(self._term_ids(), 2 * self.r_y[r] + term), "kind": _take(kinds, kind), "value": value,
        }
        if domains is not None:
            columns["domain"] = _take(domains, kind)
        return _table(name, columns, self.dirty)

    def _conduct(self) -> pa.Table:
        rng = _rng(self.plan, self.z, "conduct")
        R = self.r_i.size
        r = np.repeat(np.arange(R), 2)
        term = np.tile([0, 1], R)
        i = self.r_i[r]
        duty = 4 + rng.poisson(4, r.size)
        hours = np.round(rng.gamma(2.0, np.exp(0.9 + 0.35 * self.engagement[i])) * (self.r_g[r] >= 4), 1)
        honor = rng.poisson(0.15 * np.exp(0.6 * self.general[i] + 0.2 * self.engagement[i]))
        discipline = self.discipline.ravel()
        parts = [(r, term, np.zeros(r.size, np.int64), duty)]
        for k, value in ((1, hours), (2, honor), (3, discipline)):
            keep = value > 0
            parts.append((r[keep], term[keep], np.full(keep.sum(), k), value[keep]))
        return self._records("conduct_records", parts, ("class_duty", "volunteer_hours", "honor", "discipline"))

    def _activity(self) -> pa.Table:
        rng = _rng(self.plan, self.z, "activity")
        R = self.r_i.size
        r = np.repeat(np.arange(R), 2)
        term = np.tile([0, 1], R)
        i = self.r_i[r]
        arts = np.round(rng.gamma(2.0, np.exp(1.3 + 0.4 * self.arts[i])), 1)
        performance = rng.poisson(0.2 * np.exp(0.8 * self.arts[i]))
        declining = np.where(self.state.ravel() > 0, 0.6, 1.0)
        labor = np.round(rng.gamma(2.0, np.exp(1.5 + 0.3 * self.engagement[i]) * declining), 1)
        skill = 3 + 0.8 * self.engagement[i] + 0.1 * (self.r_g[r] - 6) + rng.normal(0, 0.7, r.size)
        skill = np.clip(np.round(skill), 1, 5)
        parts = [(r, term, np.zeros(r.size, np.int64), arts)]
        keep = performance > 0
        parts.append((r[keep], term[keep], np.full(keep.sum(), 1), performance[keep]))
        parts.append((r, term, np.full(r.size, 2), labor))
        second = term == 1
        parts.append((r[second], term[second], np.full(second.sum(), 3), skill[second]))
        return self._records("activity_records", parts,
                             ("arts_practice_hours", "performance", "labor_hours", "labor_skill"),
                             domains=("aesthetic", "aesthetic", "labor", "labor"))

    def _attendance(self) -> pa.Table:
        return _table("attendance", {
            "student_id": self.student_id.take(pa.array(np.repeat(self.r_i, 2))),
            "term_id": _take(self._term_ids(), (2 * self.r_y[:, None] + np.arange(2)).ravel()),
            "days_enrolled": self.enrolled_days.ravel(), "days_absent": self.absent.ravel(),
        }, self.dirty)

    def _teacher_development(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        plan, cat, nt = self.plan, self.catalog, self.nt
        rng = _rng(plan, self.z, "trainings")
        years, Y, D = plan.years, plan.school_years, len(DIMENSIONS)
        base = self.t_baseline
        # Enrolments: weak teachers pick courses aimed at their weak dimensions (selection).
        weak = np.clip((WEAKNESS_REFERENCE - base) / 15.0, 0, 2)
        course_subject = np.array(COURSE_SUBJECTS)[np.maximum(cat.subject, 0)]
        allowed = (cat.subject[None, :] < 0) | (course_subject[None, :] == np.array(SUBJECTS)[self.t_subject][:, None])
        preference = rng.gumbel(size=(nt, cat.subject.size)) + 1.5 * (weak @ cat.targets.T.astype(float)) \
            + 0.5 * (cat.subject[None, :] >= 0)
        preference[~allowed] = -np.inf
        wanted = np.minimum(rng.poisson(0.35 * Y, nt), 6)
        ranked = np.argsort(-preference, axis=1, kind="stable")[:, :6]
        slot = np.arange(6)[None, :]
        take = (slot < wanted[:, None]) & np.isfinite(np.take_along_axis(preference, ranked, axis=1))
        e_t = np.repeat(np.arange(nt), take.sum(axis=1))
        e_c = ranked[take]
        window_start = np.maximum(_day(years[0], 11, 1), _day(self.t_hire, 11, 1))[e_t]
        # Late enough that a later October assessment sees the course (one-year plans: none does).
        window_end = _day(plan.last_school_year, 7, 31) if Y > 1 else _day(years[0] + 1, 6, 30)
        window_end = np.minimum(window_end, _day(years[self.t_last] + 1, 6, 30))[e_t]  # a teacher who left
        span = np.maximum((window_end - window_start).astype(np.int64), 1)
        enrolled = window_start + (rng.random(e_t.size) * span).astype(np.int64)
        completed = rng.random(e_t.size) < 0.9 - 0.08 * cat.level[e_c] - 0.003 * cat.hours[e_c]
        done = enrolled + np.round(cat.hours[e_c] * 1.5).astype(np.int64) + rng.integers(0, 15, e_t.size)
        quality_z = np.log(cat.quality[e_c]) / 0.35
        satisfaction = np.where(completed, 3.4 + 0.35 * quality_z, 2.0) + rng.normal(0, 0.8, e_t.size)
        satisfaction = np.clip(np.round(satisfaction), 1, 5)
        satisfaction = np.where(rng.random(e_t.size) < 0.2, np.nan, satisfaction)
        order = np.lexsort((enrolled, e_t))
        trainings = _table("teacher_trainings", {
            "teacher_id": self.teacher_id.take(pa.array(e_t[order])),
            "course_id": cat.table.column("course_id").take(pa.array(e_c[order])),
            "enrolled_on": _dates(enrolled[order]),
            "completed_on": pc.if_else(pa.array(completed[order]), _dates(done[order]), pa.scalar(None, pa.string())),
            "completed": pa.array(completed[order]), "satisfaction": satisfaction[order],
        }, self.dirty)

        # Assessments each October from the teacher's first school year on.
        multiplier = 1 + WEAKNESS_GAIN * np.clip((WEAKNESS_REFERENCE - base) / WEAKNESS_SCALE, 0, WEAKNESS_CAP)
        assessed = _day(years, 10, 10)[None, :] + self.school_day[self.t_sch][:, None] // 3  # nt x Y
        gain = np.zeros((nt, Y, D))
        for y in range(Y):  # school years, not rows
            after = completed & (done < assessed[e_t, y])
            np.add.at(gain[:, y, :], e_t[after], cat.effect[e_c[after]] * multiplier[e_t[after]])
        score = (base[:, None, :] + SECULAR_DRIFT_PER_YEAR * np.arange(Y)[None, :, None] + gain
                 + rng.normal(0, ASSESSMENT_NOISE_SD, (nt, Y, D)))
        score = np.round(np.clip(score, 0, 100), 1)
        present = (years[None, :] >= self.t_hire[:, None]) & (np.arange(Y)[None, :] <= self.t_last[:, None])
        t_idx, y_idx = np.nonzero(present)
        assessments = _table("teacher_assessments", {
            "teacher_id": self.teacher_id.take(pa.array(np.repeat(t_idx, D))),
            "assessed_on": _dates(np.repeat(assessed[t_idx, y_idx], D)),
            "dimension": _take(DIMENSIONS, np.tile(np.arange(D), t_idx.size)),
            "score": score[t_idx, y_idx].ravel(),
        }, self.dirty)
        baselines = pa.table({
            "teacher_id": self.teacher_id.take(pa.array(np.repeat(np.arange(nt), D))),
            "dimension": _take(DIMENSIONS, np.tile(np.arange(D), nt)),
            "baseline": pa.array(base.ravel()),
            "multiplier": pa.array(np.round(multiplier.ravel(), 4)),
        })
        return assessments, trainings, baselines

    def _decline_truth(self) -> pa.Table:
        onset = self.onset
        year = onset // 2
        grade = self.plan.years[np.minimum(year, self.plan.school_years - 1)] - self.entry + 1
        show = self.decliner & (onset < self.T) & (grade >= 1) & (grade <= 12)
        idx = np.flatnonzero(show)
        return pa.table({
            "student_id": self.student_id.take(pa.array(idx)),
            "onset_term_id": _take(self._term_ids(), onset[idx]),
            "grade_at_onset": pa.array(grade[idx]),
            "grade_shift_per_term": pa.array(np.full(idx.size, -0.22)),
            "rule": pa.array(["from the onset term the decline state rises by 1 a term (cap 4): absences "
                              "+2.5 days and discipline +0.4 a term per unit; grades (logit scale) shift by "
                              "-0.22 per unit, -0.03 per absent day above 4 and -0.12 per discipline record"]
                             * idx.size),
        })


# ============================================================================================
# Dirt
# ============================================================================================


def _make_dirty(name: str, table: pa.Table, rng: np.random.Generator, share: float, offset: int,
                seed: int) -> tuple[pa.Table, pa.Table | None]:
    """Break `share` of the rows, one rule each; duplicates are appended copies of clean rows.

    Returns the batch and the manifest (table, row counted from 1 in the written file, kind, column, value).
    """
    spec = DIRT.get(name)
    n = table.num_rows
    if not spec or n == 0:
        return table, None
    hit = np.flatnonzero(rng.random(n) < share)
    kind_of = rng.integers(0, len(spec), hit.size)
    manifest = []
    duplicates = np.array([], dtype=np.int64)
    for k, (kind, column, value) in enumerate(spec):
        rows = hit[kind_of == k]
        if rows.size == 0:
            continue
        if kind == "duplicate_key":
            duplicates = rows
            continue
        field_type = table.schema.field(column).type
        if kind == UNKNOWN and value is None:
            prefix = f"S{seed % 100:02d}9" if column == "student_id" else f"T{seed % 100:02d}99"
            replacement = _join(prefix, _digits((offset + rows) % 10**7, 7))
        elif value is None:
            replacement = pa.nulls(rows.size, field_type)
        else:
            replacement = pa.array([value] * rows.size, field_type)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        position = table.schema.get_field_index(column)
        patched = pc.replace_with_mask(table.column(position).combine_chunks(), pa.array(mask), replacement)
        table = table.set_column(position, column, patched)
        manifest.append((offset + rows + 1, kind, column, pc.cast(replacement, pa.string())))
    if duplicates.size:
        table = pa.concat_tables([table, table.take(pa.array(duplicates))])
        manifest.append((offset + n + np.arange(duplicates.size) + 1, "duplicate_key", None,
                         pa.nulls(duplicates.size, pa.string())))
    if not manifest:
        return table, None
    sizes = [m[0].size for m in manifest]

    def repeated(values) -> pa.Array:
        return pa.array(values, pa.string()).take(pa.array(np.repeat(np.arange(len(sizes)), sizes)))

    return table, pa.table({
        "table": pa.array([name] * sum(sizes), pa.string()),
        "row": pa.array(np.concatenate([m[0] for m in manifest]).astype(np.int64)),
        "kind": repeated([m[1] for m in manifest]),
        "column": repeated([m[2] for m in manifest]),
        "value": pa.chunked_array([m[3] for m in manifest], pa.string()).combine_chunks(),
    })


# ============================================================================================
# Writing
# ============================================================================================


class _Sink:
    def __init__(self, path: Path, schema: pa.Schema, file_format: str):
        self.path, self.schema, self.format = path, schema, file_format
        if file_format == "csv":
            self.writer = pacsv.CSVWriter(path, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
        else:
            self.writer = pq.ParquetWriter(path, schema, compression="snappy")
        self.buffer: list[pa.Table] = []
        self.buffered_rows = 0
        self.rows = 0
        self.row_groups = 0

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered_rows += table.num_rows
        self.rows += table.num_rows
        if self.buffered_rows >= ROW_GROUP_ROWS:
            self.flush()

    @property
    def buffered_bytes(self) -> int:
        return sum(t.nbytes for t in self.buffer)

    def flush(self) -> None:
        if not self.buffer:
            return
        table = pa.concat_tables(self.buffer)
        if self.format == "csv":
            self.writer.write_table(table)
        else:
            self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.row_groups += 1
        self.buffer, self.buffered_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _write(plan: CityPlan, out_dir: Path, *, file_format: str = "parquet",
           chunk_students: int = 100_000) -> tuple[dict[str, int], WriteStats]:
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"unknown format {file_format!r}: parquet or csv")
    if chunk_students < 1:
        raise ValueError("chunk_students must be positive")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / GROUND_TRUTH).mkdir(exist_ok=True)
    # One city per folder: an earlier city's files in the other format or its dirt manifest would
    # otherwise be read along with this one.
    for name in CITY_TABLES:
        for suffix in (".csv", ".parquet"):
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
    for stale in (out_dir / GROUND_TRUTH).glob("*.parquet"):
        stale.unlink()
    layout, catalog = _layout(plan), _catalog(plan)
    stats = WriteStats(zones=len(layout.zone_students), largest_zone=int(layout.zone_students.max()))
    dirty = plan.dirty > 0
    sinks = {name: _Sink(out_dir / f"{name}.{file_format}", _schema(name, dirty), file_format)
             for name in CITY_TABLES}
    truth: dict[str, _Sink] = {}
    batches_seen: dict[str, int] = {}

    def add(name: str, table: pa.Table, zone: int) -> None:
        if name.startswith(GROUND_TRUTH):
            if name not in truth:
                truth[name] = _Sink(out_dir / f"{name}.parquet", table.schema, "parquet")
            truth[name].add(table)
            return
        if dirty:
            batch = batches_seen.get(name, 0)
            batches_seen[name] = batch + 1
            rng = np.random.default_rng([plan.seed, zone, _TAGS["dirt"], CITY_TABLES.index(name), batch])
            table, manifest = _make_dirty(name, table, rng, plan.dirty, sinks[name].rows, plan.seed)
            if manifest is not None:
                add(f"{GROUND_TRUTH}/dirty_rows", manifest, zone)
        sinks[name].add(table)

    try:
        add("terms", _terms_table(plan), 0)
        add("training_courses", catalog.table, 0)
        add(f"{GROUND_TRUTH}/training_effects", catalog.truth, 0)
        students_buffered = 0
        for z in range(stats.zones):
            zone = _Zone(plan, layout, z, catalog)
            for name, table in zone.batches():
                add(name, table, z)
            students_buffered += zone.n
            everything = list(sinks.values()) + list(truth.values())
            stats.max_buffered_students = max(stats.max_buffered_students, students_buffered)
            stats.max_buffered_rows = max(stats.max_buffered_rows, sum(s.buffered_rows for s in everything))
            stats.max_buffered_bytes = max(stats.max_buffered_bytes, sum(s.buffered_bytes for s in everything))
            if students_buffered >= chunk_students:
                for sink in everything:
                    sink.flush()
                students_buffered = 0
    finally:
        for sink in list(sinks.values()) + list(truth.values()):
            sink.close()
    plan_json = {**asdict(plan), "zones": stats.zones, "generator": "features.synth v2"}
    (out_dir / GROUND_TRUTH / "plan.json").write_text(json.dumps(plan_json, indent=2, sort_keys=True) + "\n")
    stats.row_groups = {name: sink.row_groups for name, sink in sinks.items()}
    return {name: sink.rows for name, sink in sinks.items()}, stats


__all__ = ["CITY_TABLES", "CityPlan", "WriteStats", "read_city", "read_ground_truth", "synthesize",
           "synthesize_with_truth", "write_synthetic_city"]
