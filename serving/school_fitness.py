"""A school's fitness, for its health staff: ranked warnings and grade-level statistics.

Only fitness is read (enrollment for grade and class, the scored test, the fitness-risk score):
health staff see nothing else about students. Grade statistics of the school are exact (staff
see each of these students anyway); the city beside them comes from the DP release only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from serving import model_outputs
from serving.access import Resource, may_read_student
from serving.audit import AuditLog
from serving.directory import ClassInfo
from serving.dp_releases import DPReleases
from serving.model_outputs import FITNESS_RISK
from serving.online import FeatureReader
from serving.portraits import (
    ENROLLMENT,
    FITNESS,
    StudentRows,
    fitness_warning_findings,
    read_students,
    warning_reasons,
)
from serving.schemas import (
    CityPassRate,
    DPReleaseRef,
    FitnessWarningRow,
    FitnessWarnings,
    GradeFitness,
    RiskScore,
    SchoolFitnessStatistics,
)
from serving.users import User
from serving.warnings import FITNESS_REASONS, Warnings

SCHOOL_VIEWS = (ENROLLMENT, FITNESS, FITNESS_RISK.view)
LEVELS = ("excellent", "good", "pass", "fail")
SORTS = ("risk", "total", "change")
MAX_LIMIT = 500


@dataclass(frozen=True)
class WarningFilter:
    grade: int | None = None
    level: str | None = None
    reason: str | None = None
    sort: str = "risk"
    offset: int = 0
    limit: int = 100


def school_students(user: User, reader: FeatureReader, school_id: str,
                    classes: list[ClassInfo]) -> dict[str, StudentRows]:
    """Fitness rows of the school's students whose own enrollment puts them in `school_id`."""
    keys = [key for info in classes for key in info.students]
    rows = read_students(reader, keys, SCHOOL_VIEWS)
    return {key: rows[key] for key in keys
            if may_read_student(user, Resource.STUDENT_FITNESS, rows[key][ENROLLMENT])
            and rows[key][ENROLLMENT]["school_id"] == school_id}


def fitness_warnings(user: User, reader: FeatureReader, audit: AuditLog, school_id: str, classes: list[ClassInfo],
                     where: WarningFilter) -> FitnessWarnings:
    students = school_students(user, reader, school_id, classes)
    rows = []
    for key, student in students.items():
        findings = [f for f in fitness_warning_findings(student) if f.reason in FITNESS_REASONS]
        level = Warnings(tuple(findings)).level
        if level is None:
            continue
        enrollment, fitness = student[ENROLLMENT], student.get(FITNESS) or {}
        row = FitnessWarningRow(
            student_key=key, class_id=enrollment.get("class_id"), grade=enrollment.get("grade"), sex=fitness.get("sex"),
            level=fitness.get("level"), total_score=fitness.get("total_score"),
            total_change=fitness.get("total_change"),
            # The level here; the reasons once, with the model's warning (`reasons`), for a model warning.
            risk=RiskScore.from_row(student.get(FITNESS_RISK.view), reasons=False),
            warning_level=level.value, reasons=warning_reasons(findings, student))
        if _matches(row, where):
            rows.append(row)
    rows.sort(key=_sort_key(where.sort))
    page = rows[where.offset:where.offset + where.limit]
    audit.read(user, "school_fitness_warnings", [row.student_key for row in page])
    return FitnessWarnings(school_id=school_id, grade=where.grade, level=where.level, reason=where.reason,
                           sort=where.sort, total=len(rows), offset=where.offset, limit=where.limit,
                           risk_available=model_outputs.is_available(reader, FITNESS_RISK), warnings=page)


def fitness_statistics(user: User, reader: FeatureReader, releases: DPReleases, school_id: str,
                       classes: list[ClassInfo]) -> SchoolFitnessStatistics:
    students = school_students(user, reader, school_id, classes)
    by_grade: dict[int, list[StudentRows]] = {}
    for student in students.values():
        grade = student[ENROLLMENT].get("grade")
        if grade is not None:
            by_grade.setdefault(int(grade), []).append(student)
    grades = []
    for grade, group in sorted(by_grade.items()):
        tests = [s.get(FITNESS) or {} for s in group]
        levels = Counter(test.get("level") for test in tests if test.get("level") in LEVELS)
        tested = sum(levels.values())
        totals = [test["total_score"] for test in tests if test.get("total_score") is not None]
        grades.append(GradeFitness(
            grade=grade, students=len(group), tested=tested, levels={level: levels.get(level, 0) for level in LEVELS},
            pass_rate=(tested - levels.get("fail", 0)) / tested if tested else None,
            mean_total=sum(totals) / len(totals) if totals else None,
            warnings_high=sum(Warnings(tuple(fitness_warning_findings(s))).level == "high" for s in group)))
    cells = releases.fitness_pass_rates()
    if not cells:
        return SchoolFitnessStatistics(school_id=school_id, grades=grades,
                                       city_message="no DP pass rates released yet (portrait statistics releases them)")
    city = [CityPassRate(school_year=c.school_year, grade=c.grade, sex=c.sex, tested=c.tested, pass_rate=c.pass_rate,
                         suppressed=c.suppressed) for c in cells]
    release = DPReleaseRef(release="fitness_pass_rates", epsilon=max(c.epsilon for c in cells),
                           mechanism="OpenDP noisy counts; rate = passing / tested",
                           as_of=str(cells[0].school_year))  # the school year the rates are of
    return SchoolFitnessStatistics(school_id=school_id, grades=grades, city=city, city_release=release)


def _matches(row: FitnessWarningRow, where: WarningFilter) -> bool:
    return ((where.grade is None or row.grade == where.grade)
            and (where.level is None or row.level == where.level)
            and (where.reason is None or any(reason.reason == where.reason for reason in row.reasons)))


def _sort_key(sort: str):
    high_first = {"high": 0, "watch": 1}
    if sort == "total":
        return lambda row: (row.total_score if row.total_score is not None else float("inf"), row.student_key)
    if sort == "change":
        return lambda row: (row.total_change if row.total_change is not None else float("inf"), row.student_key)
    # risk: the model's probability, highest first; without a score, the rules' level decides.
    return lambda row: (-(row.risk.probability if row.risk else -1.0), high_first[row.warning_level], row.student_key)
