"""Health staff: a school's ranked fitness warnings, with filters, and grade pass rates."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving import charts
from serving.access import school_in_scope
from serving.api.deps import AuditDep, DirectoryDep, FeatureStoreDep, ReleasesDep
from serving.i18n import language_of
from serving.pages.deps import SchoolFitnessPage
from serving.pages.render import render
from serving.school_fitness import LEVELS, SORTS, WarningFilter, fitness_statistics, fitness_warnings
from serving.warnings import FITNESS_REASONS

router = APIRouter()
PAGE_SIZE = 200


@router.get("/schools/{school_id}/fitness")
def school_fitness_page(request: Request, school_id: str, user: SchoolFitnessPage, features: FeatureStoreDep,
                        directory: DirectoryDep, releases: ReleasesDep, audit: AuditDep,
                        grade: str = "", level: str = "", reason: str = "", sort: str = "risk") -> Response:
    classes = school_in_scope(user, school_id, directory)
    # A form sends strings; anything unknown is treated as "all" rather than answered with an error.
    reasons = sorted(r.value for r in FITNESS_REASONS)
    where = WarningFilter(
        grade=int(grade) if grade.isdigit() and 1 <= int(grade) <= 12 else None,
        level=level if level in LEVELS else None, reason=reason if reason in reasons else None,
        sort=sort if sort in SORTS else "risk", limit=PAGE_SIZE)
    warnings = fitness_warnings(user, features, audit, school_id, classes, where)
    statistics = fitness_statistics(user, features, releases, school_id, classes)
    lang = language_of(request)
    return render(request, "school_fitness.html", {
        "school_id": school_id, "warnings": warnings, "statistics": statistics, "where": where,
        "grades": sorted({info.grade for info in classes if info.grade}), "levels": LEVELS, "reasons": reasons,
        "sorts": SORTS, "pass_chart": charts.pass_rates_bars(statistics.grades, statistics.city, lang)})
