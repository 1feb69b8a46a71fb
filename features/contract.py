"""The input contract (shared/CONTRACT.md) as declarations: tables, columns, units, rules.

Ingest, the synthetic city and the fitness scorer all read these, so a rule is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUBJECTS = (
    "chinese", "math", "english", "physics", "chemistry", "biology", "history", "geography",
    "politics", "science", "it", "music", "art", "pe", "labor",
)
TEACHER_DIMENSIONS = ("awareness", "knowledge_skills", "application", "responsibility", "development")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str" | "int" | "float" | "date" | "bool" | "code"
    required: bool = True  # the column must exist in the export
    nullable: bool = False  # an empty cell is allowed
    low: float | None = None  # physical range, inclusive
    high: float | None = None
    codes: tuple[str, ...] | None = None  # allowed lower-case codes (kind "code")
    pseudonym: str | None = None  # identifier namespace: replaced by a keyed pseudonym at ingest
    personal: bool = False  # personal data the engine never stores (dropped at ingest)
    unit: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # a duplicate key is a bad row
    foreign_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (table, column)
    # What a re-export "covers" for a table without a key: its rows replace every earlier row
    # of the same (student, term), so a corrected export of a term's records supersedes it whole.
    covers: tuple[str, ...] = ()

    @property
    def replace_by(self) -> tuple[str, ...]:
        """Columns identifying the earlier rows a re-exported row replaces."""
        return self.key or self.covers

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


def _id(name: str, namespace: str | None = None, **kw) -> Column:
    return Column(name, "str", pseudonym=namespace, **kw)


STAGES = ("primary", "junior", "senior", "nine_year", "twelve_year")
TITLES = ("none", "second", "first", "senior", "full_senior")

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("schools", (
            _id("school_id"), Column("name", "str"), Column("district", "str"),
            Column("stage", "code", codes=STAGES),
        ), key=("school_id",)),
        Table("classes", (
            _id("class_id"), _id("school_id"), Column("school_year", "int", low=2000, high=2100),
            Column("grade", "int", low=1, high=12), _id("head_teacher_id", "teacher"),
        ), key=("class_id",), foreign_keys={"school_id": ("schools", "school_id")}),
        Table("students", (
            _id("student_id", "student"), Column("sex", "code", codes=("m", "f")),
            Column("birth_date", "date"), Column("enrollment_year", "int", low=2000, high=2100),
            Column("name", "str", required=False, nullable=True, personal=True),
            Column("national_id", "str", required=False, nullable=True, personal=True),
        ), key=("student_id",)),
        Table("class_memberships", (
            _id("student_id", "student"), _id("class_id"), Column("school_year", "int", low=2000, high=2100),
        ), key=("student_id", "school_year"),
            foreign_keys={"student_id": ("students", "student_id"), "class_id": ("classes", "class_id")}),
        Table("teachers", (
            _id("teacher_id", "teacher"), _id("school_id"), Column("sex", "code", codes=("m", "f")),
            Column("birth_year", "int", low=1940, high=2010), Column("subject", "code"),
            Column("title", "code", codes=TITLES), Column("years_experience", "int", low=0, high=50),
            Column("name", "str", required=False, nullable=True, personal=True),
        ), key=("teacher_id",), foreign_keys={"school_id": ("schools", "school_id")}),
        Table("teaching_assignments", (
            _id("teacher_id", "teacher"), _id("class_id"), Column("subject", "code"),
            Column("school_year", "int", low=2000, high=2100),
        ), key=("teacher_id", "class_id", "subject", "school_year"),
            foreign_keys={"teacher_id": ("teachers", "teacher_id"), "class_id": ("classes", "class_id")}),
        Table("terms", (
            _id("term_id"), Column("school_year", "int", low=2000, high=2100), Column("term", "int", low=1, high=2),
            Column("start_date", "date"), Column("end_date", "date"),
        ), key=("term_id",)),
        Table("grades", (
            _id("student_id", "student"), _id("term_id"), Column("subject", "code"),
            Column("exam", "code", codes=("midterm", "final")),
            Column("score", "float", low=0, high=200), Column("full_mark", "float", low=1, high=200),
        ), key=("student_id", "term_id", "subject", "exam"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        Table("fitness_tests", (
            _id("student_id", "student"), Column("test_date", "date"),
            Column("school_year", "int", low=2000, high=2100), Column("grade", "int", low=1, high=12),
            Column("sex", "code", codes=("m", "f")),
            Column("height_cm", "float", low=80, high=230, unit="cm"),
            Column("weight_kg", "float", low=10, high=200, unit="kg"),
            Column("vital_capacity_ml", "float", nullable=True, low=200, high=10000, unit="ml"),
            Column("run_50m_s", "float", nullable=True, low=5, high=30, unit="s"),
            Column("sit_and_reach_cm", "float", nullable=True, low=-40, high=60, unit="cm"),
            Column("rope_skip_1min", "float", nullable=True, low=0, high=400, unit="count"),
            Column("sit_up_1min", "float", nullable=True, low=0, high=100, unit="count"),
            Column("shuttle_50x8_s", "float", nullable=True, low=60, high=300, unit="s"),
            Column("standing_long_jump_cm", "float", nullable=True, low=30, high=400, unit="cm"),
            Column("pull_up", "float", nullable=True, low=0, high=100, unit="count"),
            Column("run_800m_s", "float", nullable=True, low=120, high=900, unit="s"),
            Column("run_1000m_s", "float", nullable=True, low=150, high=1000, unit="s"),
        ), key=("student_id", "school_year"), foreign_keys={"student_id": ("students", "student_id")}),
        Table("literacy_assessments", (
            _id("student_id", "student"), _id("term_id"),
            Column("domain", "code", codes=("digital", "reading", "science")),
            Column("score", "float", low=0, high=100),
        ), key=("student_id", "term_id", "domain"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        Table("conduct_records", (
            _id("student_id", "student"), _id("term_id"),
            Column("kind", "code", codes=("volunteer_hours", "honor", "discipline", "class_duty")),
            Column("value", "float", low=0, high=1000),
        ), key=(), covers=("student_id", "term_id"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        Table("activity_records", (
            _id("student_id", "student"), _id("term_id"),
            Column("domain", "code", codes=("aesthetic", "labor")), Column("kind", "code"),
            Column("value", "float", low=0, high=1000),
        ), key=(), covers=("student_id", "term_id"), foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        Table("attendance", (
            _id("student_id", "student"), _id("term_id"),
            Column("days_enrolled", "int", low=0, high=200), Column("days_absent", "int", low=0, high=200),
        ), key=("student_id", "term_id"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        Table("teacher_assessments", (
            _id("teacher_id", "teacher"), Column("assessed_on", "date"),
            Column("dimension", "code", codes=TEACHER_DIMENSIONS), Column("score", "float", low=0, high=100),
        ), key=("teacher_id", "assessed_on", "dimension"), foreign_keys={"teacher_id": ("teachers", "teacher_id")}),
        Table("training_courses", (
            _id("course_id"), _id("center_id"), Column("title", "str"), Column("dimensions", "str"),
            Column("subject", "code"), Column("level", "code", codes=("basic", "intermediate", "advanced")),
            Column("hours", "float", low=0, high=1000),
        ), key=("course_id",)),
        Table("teacher_trainings", (
            _id("teacher_id", "teacher"), _id("course_id"), Column("enrolled_on", "date"),
            Column("completed_on", "date", nullable=True), Column("completed", "bool"),
            Column("satisfaction", "float", required=False, nullable=True, low=1, high=5),
        ), key=("teacher_id", "course_id"),
            foreign_keys={"teacher_id": ("teachers", "teacher_id"), "course_id": ("training_courses", "course_id")}),
        # --- Appended for the public-dataset adapters (features/adapters/): what they needed and
        # the tables above lack. One dated assessment result finer than grades' midterm/final
        # (OULAD's TMA/CMA/Exam; `banked`: carried over from an earlier attempt).
        Table("assessment_scores", (
            _id("student_id", "student"), _id("term_id"), Column("subject", "code"), _id("assessment_id"),
            Column("kind", "code", codes=("coursework", "quiz", "exam")),
            Column("due_date", "date", nullable=True), Column("submitted_on", "date", nullable=True),
            Column("score", "float", nullable=True, low=0, high=200), Column("full_mark", "float", low=1, high=200),
            Column("weight", "float", required=False, nullable=True, low=0, high=100, unit="%"),
            Column("banked", "bool", required=False, nullable=True),
        ), key=("student_id", "term_id", "subject", "assessment_id"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        # A course's outcome for one enrolment: the label table (OULAD's final_result).
        Table("course_outcomes", (
            _id("student_id", "student"), _id("term_id"), Column("subject", "code"),
            Column("final_result", "code", codes=("withdrawn", "fail", "pass", "distinction")),
            Column("registered_on", "date", required=False, nullable=True),
            Column("unregistered_on", "date", required=False, nullable=True),
        ), key=("student_id", "term_id", "subject"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
        # A scaled score on a standardized test, on the test's own scale (no full mark), e.g.
        # STAR's Stanford Achievement Test; `grade` is the grade tested in, 0 = kindergarten.
        Table("standardized_scores", (
            _id("student_id", "student"), _id("term_id"), Column("subject", "code"), Column("test", "code"),
            Column("scale_score", "float", low=0, high=2000),
            Column("grade", "int", required=False, nullable=True, low=0, high=12),
        ), key=("student_id", "term_id", "subject", "test"),
            foreign_keys={"student_id": ("students", "student_id"), "term_id": ("terms", "term_id")}),
    )
}

# Parents before children, so foreign keys can be checked against what already loaded.
LOAD_ORDER = tuple(TABLES)
