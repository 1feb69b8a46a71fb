"""The public response shapes: what a caller (and a page) may see, field by field.

Internal rows go through the `from_*` constructors, which name every field they copy, so nothing
reaches a caller by accident: `school_id` never appears in a student's portrait, a teacher's
teaching load never in a training center's view, a quarantined value never in an ingest report.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.model_outputs import json_list

FitnessLevel = Literal["excellent", "good", "pass", "fail"]
WarningLevel = Literal["high", "watch"]
RiskLevel = Literal["red", "amber", "green"]
Direction = Literal["up", "down", "flat"]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class Me(BaseModel):
    username: str
    role: str
    scope: list[str]


# --- where numbers come from ---------------------------------------------------------------


class ModelRef(BaseModel):
    """The registered model a number came from, and the (ε, δ) it was trained under."""

    name: str | None = None
    version: int | None = None
    epsilon: float | None = None
    delta: float | None = None

    @classmethod
    def from_fields(cls, fields: dict[str, Any] | None) -> ModelRef | None:
        return None if fields is None else cls(**fields)


class DPReleaseRef(BaseModel):
    """A differentially private statistics release and the ε it spent per student."""

    release: str
    epsilon: float
    mechanism: str | None = None
    as_of: str | None = None


class RiskReason(BaseModel):
    """One feature behind a risk-warning model's score for one student."""

    feature: str = Field(description="The model's feature (fitness: score_run_50m, total_change, bmi...; "
                                     "academic: attendance_rate, failed_subjects, trend...)")
    value: float | None = Field(None, description="The student's value of the feature")
    reference: float | None = Field(None, description="The neutral value it is compared with, fixed before "
                                                      "training (a pass of 60 for a score, 0 for a change), "
                                                      "when batch scoring writes it")
    effect: float = Field(description="How much the feature moves the risk against the neutral value: "
                                      "> 0 raises it, < 0 lowers it")
    direction: Literal["raises", "lowers"]

    @classmethod
    def from_items(cls, items: list[dict]) -> list[RiskReason]:
        """The readable items of a score row's `reasons_json` (`model_outputs.json_list`), in its order."""
        reasons = []
        for item in items:
            try:
                effect = float(item["effect"])
                value, reference = item.get("value"), item.get("reference")
                reasons.append(cls(feature=str(item["feature"]), effect=effect,
                                   value=None if value is None else float(value),
                                   reference=None if reference is None else float(reference),
                                   direction="raises" if effect > 0 else "lowers"))
            except (KeyError, TypeError, ValueError):
                continue
        return reasons


class WarningReason(BaseModel):
    reason: str
    level: WarningLevel
    source: Literal["rule", "model"]
    items: list[str] = []
    value: float | None = None
    model: ModelRef | None = None
    model_level: RiskLevel | None = Field(None, description="A model warning: the level the model gave "
                                                            "(red: high, amber: watch)")
    model_reasons: list[RiskReason] = Field([], description="A model warning: the features that raise or lower "
                                                            "the student's risk most, largest effect first")


# --- fitness ---------------------------------------------------------------------------------


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
    level: FitnessLevel | None = None

    @classmethod
    def from_record(cls, year: dict[str, Any]) -> FitnessYear:
        return cls(
            school_year=year.get("school_year"), grade=year.get("grade"), test_date=year.get("test_date"),
            bmi=year.get("bmi"), bmi_category=year.get("bmi_category"), bmi_score=year.get("score_bmi"),
            scores=FitnessScores.from_record(year.get("scores")), standard_score=year.get("standard_score"),
            bonus=year.get("bonus"), total_score=year.get("total_score"), level=year.get("level"),
        )


class RiskScore(BaseModel):
    """A differentially private model's probability, its level and the features behind it, with the
    privacy guarantee it was trained under (epsilon, delta) so readers can judge it."""

    probability: float
    level: RiskLevel | None = Field(None, description="red: p ≥ 0.5, amber: p ≥ 0.25, green: below (fixed "
                                                      "thresholds on the DP-calibrated probability)")
    reasons: list[RiskReason] = []
    model_name: str | None = None
    model_version: int | None = None
    epsilon: float | None = None
    delta: float | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any] | None, *, reasons: bool = True) -> RiskScore | None:
        """`reasons=False` leaves the reasons out (a class's summaries: the portrait has them)."""
        if not row or row.get("risk_probability") is None:
            return None
        return cls(probability=row["risk_probability"], level=risk_level(row.get("level")),
                   reasons=RiskReason.from_items(json_list(row, "reasons_json")) if reasons else [],
                   model_name=row.get("model_name"), model_version=row.get("model_version"),
                   epsilon=row.get("model_epsilon"), delta=row.get("model_delta"))


def risk_level(value: Any) -> str | None:
    """A score row's level when it is one of red, amber, green; None otherwise (older rows have none)."""
    return value if value in ("red", "amber", "green") else None


class StudentFitness(BaseModel):
    """What health staff may see of a student: fitness, its history, its risk and warnings."""

    student_key: str
    class_id: str | None = None
    grade: int | None = None
    sex: Literal["m", "f"] | None = None
    school_year: int | None = None
    latest: FitnessYear | None = None
    history: list[FitnessYear] = []
    risk: RiskScore | None = None
    risk_available: bool = True
    warning_level: WarningLevel | None = None
    warnings: list[WarningReason] = []


# --- the growth portrait -----------------------------------------------------------------------


class FiveDomainScores(BaseModel):
    """德智体美劳, each 0-100 from fixed-range indicators of this term (exact, not a model)."""

    de: float | None = None
    zhi: float | None = None
    ti: float | None = None
    mei: float | None = None
    lao: float | None = None
    overall: float | None = None
    domains_computed: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any] | None) -> FiveDomainScores | None:
        return None if not row else cls(**{name: row.get(name) for name in cls.model_fields})


class DomainNorm(BaseModel):
    domain: str
    p10: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    band: str | None = Field(None, description="Where the student's score falls: below_p10, p10_p25, p25_p50, "
                                               "p50_p75, p75_p90, above_p90")
    standing: Literal["strength", "weakness"] | None = Field(
        None, description="strength: the score is at or above the cohort's p75; weakness: below its p25 "
                          "(the bands' cuts); None: in between, or no score or norm")


class FiveDomainNorms(BaseModel):
    """City norms of the student's grade × sex, from the DP release (never computed here)."""

    grade: int
    sex: str
    count: float | None = None
    suppressed: bool = False
    release: DPReleaseRef
    domains: list[DomainNorm] = []


class FiveDomain(BaseModel):
    scores: FiveDomainScores | None = None
    norms: FiveDomainNorms | None = None
    norms_message: str | None = None
    strengths: list[str] = Field([], description="Domains (de, zhi, ti, mei, lao order) where the student scores at "
                                                 "or above the p75 of the DP norms of their grade and sex")
    weaknesses: list[str] = Field([], description="Domains where the student scores below that cohort's p25; "
                                                  "both lists empty without norms")


class Academics(BaseModel):
    subjects: int | None = None
    mean_share: float | None = None
    mean_z: float | None = None
    imbalance_sd: float | None = None
    imbalance_range: float | None = None
    failed_subjects: int | None = None
    trend: float | None = None


class Literacy(BaseModel):
    digital: float | None = None
    reading: float | None = None
    science: float | None = None
    digital_change: float | None = None
    reading_change: float | None = None
    science_change: float | None = None
    literacy_mean: float | None = None


class Conduct(BaseModel):
    volunteer_hours: float | None = None
    honors: float | None = None
    discipline_events: float | None = None
    class_duty: float | None = None
    discipline_4t: float | None = None
    moral_share: float | None = None


class ArtsAndLabor(BaseModel):
    arts_hours: float | None = None
    performances: float | None = None
    labor_hours: float | None = None
    labor_skill: float | None = None
    music_share: float | None = None
    art_share: float | None = None
    labor_share: float | None = None
    pe_share: float | None = None


class Attendance(BaseModel):
    days_enrolled: int | None = None
    days_absent: int | None = None
    attendance_rate: float | None = None
    rate_change: float | None = None
    attendance_rate_4t: float | None = None


def from_row(model: type[BaseModel], row: dict[str, Any] | None):
    """`model` with the fields it names copied from `row`; None without a row."""
    return None if not row else model(**{name: row.get(name) for name in model.model_fields})


class GrowthPoint(BaseModel):
    subject: str
    term_id: str
    percentile: float


class Growth(BaseModel):
    """Growth percentiles (vertical: against students with the same history), per subject and term."""

    available: bool
    message: str | None = None
    model: ModelRef | None = None
    points: list[GrowthPoint] = []


class AcademicRisk(BaseModel):
    available: bool
    message: str | None = None
    model: ModelRef | None = None
    probability: float | None = None
    level: RiskLevel | None = None
    reasons: list[RiskReason] = []


class SubjectGrowth(BaseModel):
    subject: str
    students: int | None = Field(None, description="Students of the group with a growth percentile in the subject")
    median_growth_percentile: float


class GroupGrowth(BaseModel):
    """The value-added view of a group (here: a class): the median growth percentile per subject in the
    latest term. 50 is typical growth: half of the city's students with the same history grew less."""

    available: bool
    message: str | None = None
    model: ModelRef | None = None
    term_id: str | None = None
    subjects: list[SubjectGrowth] = []


class Trends(BaseModel):
    """Direction since the previous term (academics, attendance) or test (fitness)."""

    academics: Direction | None = None
    fitness: Direction | None = None
    attendance: Direction | None = None


class StudentPortrait(StudentFitness):
    """A class teacher's growth portrait of one student (everything of `StudentFitness`, and more)."""

    five_domain: FiveDomain = FiveDomain()
    academics: Academics | None = None
    literacy: Literacy | None = None
    conduct: Conduct | None = None
    arts_labor: ArtsAndLabor | None = None
    attendance: Attendance | None = None
    trends: Trends = Trends()
    growth: Growth
    academic_risk: AcademicRisk


# --- a class -----------------------------------------------------------------------------------


class StudentSummary(BaseModel):
    student_key: str
    grade: int | None = None
    sex: Literal["m", "f"] | None = None
    five_domain: FiveDomainScores | None = None
    fitness_level: FitnessLevel | None = None
    fitness_total: float | None = None
    risk: RiskScore | None = None
    warning_level: WarningLevel | None = None
    reasons: list[str] = []
    trends: Trends = Trends()


class ClassOutcomes(BaseModel):
    """The class's own term (exact: the teacher sees every student of it anyway)."""

    term_id: str | None = None
    students: int | None = None
    mean_score_share: float | None = None
    pass_rate: float | None = None
    fitness_tested: int | None = None
    mean_fitness_total: float | None = None
    fitness_pass_rate: float | None = None
    fitness_good_rate: float | None = None
    attendance_rate: float | None = None
    median_growth_percentile: float | None = None


class ClassPortraits(BaseModel):
    class_id: str
    grade: int | None = None
    school_year: int | None = None
    outcomes: ClassOutcomes | None = None
    warnings_high: int = 0
    warnings_watch: int = 0
    risk_available: bool = True
    growth: GroupGrowth = GroupGrowth(available=False)
    students: list[StudentSummary] = []


# --- a school's fitness ------------------------------------------------------------------------


class FitnessWarningRow(BaseModel):
    student_key: str
    class_id: str | None = None
    grade: int | None = None
    sex: Literal["m", "f"] | None = None
    level: FitnessLevel | None = None
    total_score: float | None = None
    total_change: float | None = None
    risk: RiskScore | None = None
    warning_level: WarningLevel
    reasons: list[WarningReason] = []


class FitnessWarnings(BaseModel):
    school_id: str
    grade: int | None = None
    level: FitnessLevel | None = None
    reason: str | None = None
    sort: str
    total: int
    offset: int
    limit: int
    risk_available: bool
    warnings: list[FitnessWarningRow] = []


class GradeFitness(BaseModel):
    """One grade of the school (exact: health staff see each of these students anyway)."""

    grade: int
    students: int
    tested: int
    levels: dict[str, int]
    pass_rate: float | None = None
    mean_total: float | None = None
    warnings_high: int = 0


class CityPassRate(BaseModel):
    """City pass rate of a grade (and sex, or both when None), from the DP release."""

    school_year: int
    grade: int
    sex: str | None = None
    tested: float | None = None
    pass_rate: float | None = None
    suppressed: bool


class SchoolFitnessStatistics(BaseModel):
    school_id: str
    grades: list[GradeFitness]
    city: list[CityPassRate] = []
    city_release: DPReleaseRef | None = None
    city_message: str | None = None


# --- training centers ----------------------------------------------------------------------------


class DimensionScore(BaseModel):
    dimension: str
    score: float | None = None
    change: float | None = None


class DigitalLiteracy(BaseModel):
    """The five dimensions of JY/T 0646—2022 at the latest assessment, and the change since the one before."""

    dimensions: list[DimensionScore]
    mean_score: float | None = None
    change_mean_score: float | None = None
    assessments_taken: int | None = None


class TrainingRecord(BaseModel):
    term_id: str | None = None
    hours_completed: float | None = None
    hours_completed_in_term: float | None = None
    courses_completed: int | None = None
    courses_enrolled: int | None = None
    completion_rate: float | None = None
    hours_by_dimension: dict[str, float | None] = {}


class ReasonPart(BaseModel):
    """One clause of why the teacher-training model recommends a course or invites a teacher, so a
    page can say it in the reader's language (`reason` keeps the model's own sentence)."""

    kind: Literal["targets_weakest", "dimension_gain", "off_target"] = Field(
        description="targets_weakest: the course targets one of the teacher's weakest dimensions; "
                    "dimension_gain: the expected gain on one dimension the course targets; off_target: "
                    "the course targets none of the teacher's weakest dimensions")
    dimension: str | None = None
    score: float | None = Field(None, description="The teacher's latest score on `dimension` (0-100)")
    gain: float | None = Field(None, description="Expected points gained on `dimension` (off_target: on the weakest)")
    weakest_rank: int | None = Field(None, description="1: the teacher's weakest dimension, 2: the second weakest")
    targets: list[str] = Field([], description="off_target: the dimensions the course targets")
    weakest: list[str] = Field([], description="off_target: the teacher's weakest dimensions")


class CourseRecommendation(BaseModel):
    course_id: str
    title: str | None = None
    center_id: str | None = Field(None, description="The training center running the course (public catalog)")
    expected_gain: float | None = Field(None, description="Expected points gained on the teacher's weakest "
                                                          "dimensions, summed (what the model ranks by)")
    dimension: str | None = Field(None, description="The weakest dimension the course raises")
    reason: str | None = None
    reason_parts: list[ReasonPart] = []


class TeacherRecommendations(BaseModel):
    teacher_key: str
    available: bool
    message: str | None = None
    model: ModelRef | None = None
    recommendations: list[CourseRecommendation] = []


class TeacherPortrait(BaseModel):
    """What a training center may see of a teacher: digital literacy and training, nothing else."""

    teacher_key: str
    digital_literacy: DigitalLiteracy | None = None
    training: TrainingRecord | None = None
    courses_here: list[str] = Field([], description="The caller's center's courses the teacher enrolled in")
    invited_to: list[str] = Field([], description="The caller's center's courses whose invite list names the teacher")


class CourseStats(BaseModel):
    term_id: str | None = None
    enrolled: int | None = None
    enrolled_in_term: int | None = None
    completed: int | None = None
    completion_rate: float | None = None
    ratings: int | None = None
    mean_satisfaction: float | None = None


class CourseSummary(BaseModel):
    course_id: str
    title: str
    subject: str | None = None
    level: str | None = None
    hours: float | None = None
    dimensions: list[str] = []
    stats: CourseStats | None = None
    invited: int | None = Field(None, description="Teachers on the course's invite list (None: not scored yet)")


class CourseInvite(BaseModel):
    teacher_key: str
    expected_gain: float | None = Field(None, description="Expected points gained on the dimensions the course "
                                                          "targets, summed (what the model ranks by)")
    dimension: str | None = Field(None, description="The targeted dimension with the largest expected gain")
    reason: str | None = None
    reason_parts: list[ReasonPart] = []
    enrolled: bool = Field(False, description="The teacher already enrolled in this course")


class CourseInvites(BaseModel):
    course: CourseSummary
    available: bool
    message: str | None = None
    model: ModelRef | None = None
    invites: list[CourseInvite] = []
    enrolled_teachers: list[str] = []


class CenterOverview(BaseModel):
    center_id: str
    courses: list[CourseSummary]
    teachers_trained: int
    invites_available: bool


# --- the data officer ----------------------------------------------------------------------------


class LedgerSpend(BaseModel):
    id: int
    what: str
    mechanism: str
    accountant: str
    epsilon: float
    delta: float
    snapshot: str
    spent_at: str


class LedgerRelease(BaseModel):
    release: str
    epsilon_total: float
    delta_total: float
    epsilon_spent: float
    delta_spent: float
    epsilon_left: float
    delta_left: float
    spends: list[LedgerSpend] = []


class Ledger(BaseModel):
    composition: str = "basic: the ε's and δ's of a release's spends add up"
    releases: list[LedgerRelease] = []


class AuditResult(BaseModel):
    target: str
    attack: str
    auc: float | None = None
    tpr_at_1pct_fpr: float | None = None
    tpr_at_01pct_fpr: float | None = None
    epsilon_lower_bound: float | None = None


class ModelVersionSummary(BaseModel):
    name: str
    version: int
    aliases: list[str] = []
    created_at: str | None = None
    epsilon: float | None = None
    delta: float | None = None
    data_release: str | None = None
    audits: list[AuditResult] = []


class ModelCard(ModelVersionSummary):
    card_markdown: str
    metrics: dict[str, float] = {}


class ModelOutputStatus(BaseModel):
    model: str
    view: str
    available: bool
    shown_to: list[str] = Field([], description="The roles whose pages and API show the output; empty: kept in "
                                                "the online store, shown to no role")


class ModelsOverview(BaseModel):
    versions: list[ModelVersionSummary] = []
    outputs: list[ModelOutputStatus] = []


class LakeTableRow(BaseModel):
    table: str
    rows: int
    rows_quarantined: int
    written_at: str


class QuarantineRow(BaseModel):
    table: str
    column: str
    rule: str
    rows: int


class IngestReport(BaseModel):
    lake_version: str | None = None
    tables: list[LakeTableRow] = []
    quarantine: list[QuarantineRow] = []


class AuditLogEntry(BaseModel):
    at: str
    user: str
    role: str
    read: str | None = None
    denied: str | None = None
    key: str | None = None


class AuditLogPage(BaseModel):
    entries: list[AuditLogEntry] = []


class ErrorMessage(BaseModel):
    detail: str
    code: str | None = None
