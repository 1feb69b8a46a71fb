"""Students' portraits: one student's growth portrait or fitness record, and a class at a glance.

Each function reads what it needs from the online store (`serving.online`), decides access on
the student's enrollment row (`serving.access`), audits the read (`serving.audit`) and returns the
public shape (`serving.schemas`). The JSON API and the pages both call these, so a page shows
exactly what the API would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from serving import model_outputs
from serving.access import Resource, may_read_student, out_of_scope, require_role
from serving.audit import AuditLog
from serving.directory import ClassInfo
from serving.dp_releases import DPReleases
from serving.dp_releases import FiveDomainNorms as ReleasedNorms
from serving.model_outputs import ACADEMIC_RISK, CLASS_GROWTH, FITNESS_RISK, GROWTH
from serving.online import FeatureReader, Row
from serving.schemas import (
    AcademicRisk,
    Academics,
    ArtsAndLabor,
    Attendance,
    ClassOutcomes,
    ClassPortraits,
    Conduct,
    DomainNorm,
    DPReleaseRef,
    FitnessYear,
    FiveDomain,
    FiveDomainNorms,
    FiveDomainScores,
    GroupGrowth,
    Growth,
    GrowthPoint,
    Literacy,
    ModelRef,
    RiskReason,
    RiskScore,
    StudentFitness,
    StudentPortrait,
    StudentSummary,
    SubjectGrowth,
    Trends,
    WarningReason,
    from_row,
    risk_level,
)
from serving.users import User
from serving.warnings import Finding, Warnings, fitness_findings, school_record_findings, trend_direction

ENROLLMENT = "student_enrollment"
FITNESS = "student_fitness"
HISTORY = "student_fitness_history"
FIVE_DOMAIN = "student_five_domain"
ACADEMICS = "student_academics"
LITERACY = "student_literacy"
MORAL = "student_moral"
ARTS_LABOR = "student_aesthetic_labor"
ATTENDANCE = "student_attendance"
CLASS_OUTCOMES = "class_outcomes"

FITNESS_VIEWS = (ENROLLMENT, FITNESS, HISTORY, FITNESS_RISK.view)
PORTRAIT_VIEWS = (*FITNESS_VIEWS, FIVE_DOMAIN, ACADEMICS, LITERACY, MORAL, ARTS_LABOR, ATTENDANCE,
                  GROWTH.view, ACADEMIC_RISK.view)
SUMMARY_VIEWS = (ENROLLMENT, FITNESS, FITNESS_RISK.view, FIVE_DOMAIN, ACADEMICS, ATTENDANCE, MORAL,
                 ACADEMIC_RISK.view)
DOMAINS = ("de", "zhi", "ti", "mei", "lao")
NORM_BANDS = (("p10", "below_p10"), ("p25", "p10_p25"), ("p50", "p25_p50"), ("p75", "p50_p75"), ("p90", "p75_p90"))
# Changes smaller than these read as "flat": about one point of fitness, 1 % of full mark a term,
# one school day in fifty.
FLAT_FITNESS, FLAT_ACADEMICS, FLAT_ATTENDANCE = 2.0, 0.01, 0.02

CORE_SUBJECTS = ("chinese", "math", "english")  # listed first, as the growth chart opens on them

StudentRows = dict[str, Row | None]


def read_students(reader: FeatureReader, keys: Sequence[str], views: Sequence[str]) -> dict[str, StudentRows]:
    """{student key: {view: row or None}}, one store read per view for all the keys."""
    rows: dict[str, StudentRows] = {key: {} for key in keys}
    present = reader.views()
    for view in views:
        values = reader.read(view, keys) if view in present else [None] * len(keys)
        for key, row in zip(keys, values):
            rows[key][view] = row
    return rows


def student_fitness(user: User, reader: FeatureReader, audit: AuditLog, student_key: str) -> StudentFitness:
    rows = _read_one(user, reader, audit, student_key, Resource.STUDENT_FITNESS, FITNESS_VIEWS)
    return StudentFitness(**_fitness_fields(student_key, rows, reader))


def student_portrait(user: User, reader: FeatureReader, releases: DPReleases, audit: AuditLog,
                     student_key: str) -> StudentPortrait:
    rows = _read_one(user, reader, audit, student_key, Resource.STUDENT_PORTRAIT, PORTRAIT_VIEWS)
    fields = _fitness_fields(student_key, rows, reader)
    academic_risk = _academic_risk(reader, rows.get(ACADEMIC_RISK.view))
    findings = [*fitness_warning_findings(rows, fields["history"]),
                *school_record_findings(rows.get(ACADEMICS), rows.get(ATTENDANCE), rows.get(MORAL),
                                        academic_risk.probability, academic_risk.level)]
    warnings = Warnings(tuple(findings))
    return StudentPortrait(
        **{**fields, "warnings": warning_reasons(findings, rows), "warning_level": warnings.level},
        five_domain=_five_domain(rows.get(FIVE_DOMAIN), releases, fields["grade"], fields["sex"]),
        academics=from_row(Academics, rows.get(ACADEMICS)),
        literacy=from_row(Literacy, rows.get(LITERACY)),
        conduct=from_row(Conduct, rows.get(MORAL)),
        arts_labor=from_row(ArtsAndLabor, rows.get(ARTS_LABOR)),
        attendance=from_row(Attendance, rows.get(ATTENDANCE)),
        trends=_trends(rows),
        growth=_growth(reader, rows.get(GROWTH.view)),
        academic_risk=academic_risk,
    )


def class_portraits(user: User, reader: FeatureReader, audit: AuditLog, info: ClassInfo) -> ClassPortraits:
    """Every student of a class the caller may open (`access.class_in_scope` has checked the class)."""
    rows = read_students(reader, list(info.students), SUMMARY_VIEWS)
    # The directory proposes the roster; each student's own enrollment row decides.
    keys = [key for key in info.students if may_read_student(user, Resource.STUDENT_PORTRAIT, rows[key][ENROLLMENT])
            and rows[key][ENROLLMENT]["class_id"] == info.class_id]
    audit.read(user, "class_portraits", keys)
    students = [_summary(key, rows[key]) for key in keys]
    present = reader.views()
    [outcomes] = reader.read(CLASS_OUTCOMES, [info.class_id]) if CLASS_OUTCOMES in present else [None]
    return ClassPortraits(
        class_id=info.class_id, grade=info.grade, school_year=info.school_year,
        outcomes=from_row(ClassOutcomes, outcomes),
        warnings_high=sum(student.warning_level == "high" for student in students),
        warnings_watch=sum(student.warning_level == "watch" for student in students),
        risk_available=FITNESS_RISK.view in present,
        growth=class_growth(reader, info.class_id),
        students=students,
    )


def class_growth(reader: FeatureReader, class_id: str) -> GroupGrowth:
    """The class's median growth percentile per subject (the value-added view), for its class teacher
    (`access.class_in_scope` has checked the class). Never another class's, a teacher's or the school's:
    `serving.access` says why."""
    if not model_outputs.is_available(reader, CLASS_GROWTH):
        return GroupGrowth(available=False, message=model_outputs.unavailable_message(CLASS_GROWTH))
    [row] = reader.read(CLASS_GROWTH.view, [class_id])
    subjects = []
    for item in model_outputs.json_list(row, "growth_json"):
        try:
            students = item.get("students")
            subjects.append(SubjectGrowth(subject=str(item["subject"]),
                                          students=None if students is None else int(students),
                                          median_growth_percentile=float(item["median_growth_percentile"])))
        except (KeyError, TypeError, ValueError):
            continue
    subjects.sort(key=lambda s: (CORE_SUBJECTS.index(s.subject) if s.subject in CORE_SUBJECTS else len(CORE_SUBJECTS),
                                 s.subject))
    row = row or {}
    message = None if subjects else ("no subject of this class has 10 or more students with a growth percentile "
                                     "in the latest term (smaller groups are left out)")
    return GroupGrowth(available=True, message=message, model=ModelRef.from_fields(model_outputs.model_fields(row)),
                       term_id=row.get("term_id"), subjects=subjects)


def fitness_warning_findings(rows: StudentRows, history: list[FitnessYear] | None = None) -> list[Finding]:
    risk = rows.get(FITNESS_RISK.view) or {}
    years = [year.model_dump() for year in history or ()]
    for year in years:
        year["scores"] = year["scores"] or {}
    return fitness_findings(rows.get(FITNESS), risk.get("risk_probability"), years, risk_level(risk.get("level")))


# --- reading one student ----------------------------------------------------------------------------


def _read_one(user: User, reader: FeatureReader, audit: AuditLog, student_key: str, resource: Resource,
              views: Sequence[str]) -> StudentRows:
    require_role(user, resource)
    [enrollment] = reader.read(ENROLLMENT, [student_key])
    if not may_read_student(user, resource, enrollment):
        audit.denied(user, resource.value)
        raise out_of_scope("student")
    rows = read_students(reader, [student_key], [view for view in views if view != ENROLLMENT])[student_key]
    rows[ENROLLMENT] = enrollment
    audit.read(user, resource.value, [student_key])
    return rows


def _fitness_fields(student_key: str, rows: StudentRows, reader: FeatureReader) -> dict:
    enrollment = rows.get(ENROLLMENT) or {}
    fitness = rows.get(FITNESS) or {}
    history = [FitnessYear.from_record(year) for year in _history(rows.get(HISTORY))]
    latest = None
    if fitness.get("school_year") is not None:
        latest = FitnessYear.from_record({
            **fitness, "scores": {name.removeprefix("score_"): value for name, value in fitness.items()
                                  if name.startswith("score_") and name != "score_bmi"},
            "test_date": history[-1].test_date if history else None,
        })
    findings = fitness_warning_findings(rows, history)
    return {
        "student_key": student_key,
        "class_id": enrollment.get("class_id"),
        "grade": enrollment.get("grade"),
        "sex": fitness.get("sex"),
        "school_year": enrollment.get("school_year"),
        "latest": latest,
        "history": history,
        "risk": RiskScore.from_row(rows.get(FITNESS_RISK.view)),
        "risk_available": model_outputs.is_available(reader, FITNESS_RISK),
        "warning_level": Warnings(tuple(findings)).level,
        "warnings": warning_reasons(findings, rows),
    }


def _history(row: Row | None) -> list[dict]:
    try:
        years = json.loads((row or {}).get("history_json") or "[]")
    except ValueError:
        return []
    return [year for year in years if isinstance(year, dict)]


def warning_reasons(findings: list[Finding], rows: StudentRows) -> list[WarningReason]:
    """The findings, most serious first; a model's with its level and the features behind it."""
    models = {"fitness_model_risk": rows.get(FITNESS_RISK.view), "academic_model_risk": rows.get(ACADEMIC_RISK.view)}
    return [WarningReason(reason=f.reason.value, level=f.level.value, source=f.source, items=list(f.items),
                          value=f.value, model=ModelRef.from_fields(model_outputs.model_fields(models.get(f.reason))),
                          model_level=f.model_level,
                          model_reasons=RiskReason.from_items(model_outputs.json_list(models.get(f.reason),
                                                                                      "reasons_json"))
                          if f.source == "model" else [])
            for f in sorted(findings, key=lambda f: (f.level != "high", f.source != "model"))]


def _five_domain(row: Row | None, releases: DPReleases, grade: int | None, sex: str | None) -> FiveDomain:
    scores = FiveDomainScores.from_row(row)
    norms = releases.five_domain_norms(grade, sex)
    if norms is None:
        return FiveDomain(scores=scores, norms_message="no DP norms released for this grade and sex yet "
                                                       "(portrait statistics releases them)")
    public = _public_norms(norms, scores)
    return FiveDomain(scores=scores, norms=public,
                      strengths=[d.domain for d in public.domains if d.standing == "strength"],
                      weaknesses=[d.domain for d in public.domains if d.standing == "weakness"])


def _public_norms(norms: ReleasedNorms, scores: FiveDomainScores | None) -> FiveDomainNorms:
    domains = []
    for domain in DOMAINS:
        norm = norms.domains.get(domain)
        percentiles = norm.percentiles if norm else {}
        score = getattr(scores, domain) if scores else None
        domains.append(DomainNorm(domain=domain, **percentiles, band=_band(score, percentiles),
                                  standing=_standing(score, percentiles)))
    release = DPReleaseRef(release="five_domain_norms", epsilon=norms.epsilon, mechanism=norms.mechanism,
                           as_of=norms.term_end)
    return FiveDomainNorms(grade=norms.grade, sex=norms.sex, count=norms.count, suppressed=norms.suppressed,
                       release=release, domains=domains)


def _band(score: float | None, percentiles: dict[str, float | None]) -> str | None:
    if score is None or any(percentiles.get(name) is None for name, _ in NORM_BANDS):
        return None
    for name, band in NORM_BANDS:
        if score < percentiles[name]:
            return band
    return "above_p90"


def _standing(score: float | None, percentiles: dict[str, float | None]) -> str | None:
    """A strength at or above the cohort's p75, a weakness below its p25 (the top and bottom quarter
    of the same grade and sex by the DP norms). The cuts are the bands' (`_band`: a score equal to a
    percentile falls in the band above it), so the position a page shows and the standing agree."""
    p25, p75 = percentiles.get("p25"), percentiles.get("p75")
    if score is None:
        return None
    if p75 is not None and score >= p75:
        return "strength"
    if p25 is not None and score < p25:
        return "weakness"
    return None


def _trends(rows: StudentRows) -> Trends:
    return Trends(
        academics=trend_direction((rows.get(ACADEMICS) or {}).get("trend"), FLAT_ACADEMICS),
        fitness=trend_direction((rows.get(FITNESS) or {}).get("total_change"), FLAT_FITNESS),
        attendance=trend_direction((rows.get(ATTENDANCE) or {}).get("rate_change"), FLAT_ATTENDANCE),
    )


def _growth(reader: FeatureReader, row: Row | None) -> Growth:
    if not model_outputs.is_available(reader, GROWTH):
        return Growth(available=False, message=model_outputs.unavailable_message(GROWTH))
    points = []
    for item in model_outputs.json_list(row, "growth_json"):
        try:
            points.append(GrowthPoint(subject=str(item["subject"]), term_id=str(item["term_id"]),
                                      percentile=float(item["percentile"])))
        except (KeyError, TypeError, ValueError):
            continue
    message = None if points else "no growth percentile for this student yet (needs two graded terms)"
    return Growth(available=True, message=message, model=ModelRef.from_fields(model_outputs.model_fields(row)),
                  points=points)


def _academic_risk(reader: FeatureReader, row: Row | None) -> AcademicRisk:
    if not model_outputs.is_available(reader, ACADEMIC_RISK):
        return AcademicRisk(available=False, message=model_outputs.unavailable_message(ACADEMIC_RISK))
    reasons = RiskReason.from_items(model_outputs.json_list(row, "reasons_json"))
    row = row or {}
    return AcademicRisk(available=True, model=ModelRef.from_fields(model_outputs.model_fields(row)),
                        probability=row.get("risk_probability"), level=risk_level(row.get("level")), reasons=reasons,
                        message=None if row.get("risk_probability") is not None else "no score for this student")


def _summary(key: str, rows: StudentRows) -> StudentSummary:
    fitness = rows.get(FITNESS) or {}
    academic = rows.get(ACADEMIC_RISK.view) or {}
    findings = [*fitness_warning_findings(rows),
                *school_record_findings(rows.get(ACADEMICS), rows.get(ATTENDANCE), rows.get(MORAL),
                                        academic.get("risk_probability"), risk_level(academic.get("level")))]
    warnings = Warnings(tuple(findings))
    return StudentSummary(
        student_key=key, grade=(rows.get(ENROLLMENT) or {}).get("grade"), sex=fitness.get("sex"),
        five_domain=FiveDomainScores.from_row(rows.get(FIVE_DOMAIN)), fitness_level=fitness.get("level"),
        fitness_total=fitness.get("total_score"),
        # The level, not the reasons: the student's portrait holds those (and a class stays one quick read).
        risk=RiskScore.from_row(rows.get(FITNESS_RISK.view), reasons=False),
        warning_level=warnings.level, reasons=sorted(warnings.reasons()), trends=_trends(rows),
    )


class FeastPortraitReader:
    """One student's rows straight from Feast, as the service reads them (`bench/features.py`)."""

    def __init__(self, settings) -> None:
        from serving.online import FeastFeatureReader

        self._reader = FeastFeatureReader(settings)

    def portrait(self, student_key: str) -> StudentRows | None:
        rows = read_students(self._reader, [student_key], PORTRAIT_VIEWS)[student_key]
        return rows if rows.get(ENROLLMENT) is not None else None
