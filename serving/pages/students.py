"""A student's growth portrait (and its print layout) and fitness record."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving import charts
from serving.api.deps import AuditDep, FeatureStoreDep, ReleasesDep
from serving.i18n import language_of
from serving.pages.deps import ClassTeacherPage, FitnessPage
from serving.pages.render import render
from serving.portraits import student_fitness, student_portrait
from serving.schemas import FitnessScores, FitnessYear

router = APIRouter()


@router.get("/students/{student_key}")
def student_page(request: Request, student_key: str, user: ClassTeacherPage, features: FeatureStoreDep,
                 releases: ReleasesDep, audit: AuditDep) -> Response:
    return _portrait_page(request, student_key, user, features, releases, audit, printable=False)


@router.get("/students/{student_key}/print")
def student_print_page(request: Request, student_key: str, user: ClassTeacherPage, features: FeatureStoreDep,
                       releases: ReleasesDep, audit: AuditDep) -> Response:
    """The same portrait laid out for A4, for a parent meeting."""
    return _portrait_page(request, student_key, user, features, releases, audit, printable=True)


@router.get("/students/{student_key}/fitness")
def student_fitness_page(request: Request, student_key: str, user: FitnessPage, features: FeatureStoreDep,
                         audit: AuditDep) -> Response:
    record = student_fitness(user, features, audit, student_key)
    lang = language_of(request)
    return render(request, "student_fitness.html", {
        "record": record, "item_rows": item_rows(record.history),
        "totals_chart": charts.fitness_totals_line(record.history, lang),
        "items_chart": charts.fitness_items_lines(record.history, lang)})


def _portrait_page(request, student_key, user, features, releases, audit, *, printable: bool) -> Response:
    portrait = student_portrait(user, features, releases, audit, student_key)
    lang = language_of(request)
    context = {
        "portrait": portrait, "record": portrait, "printable": printable, "item_rows": item_rows(portrait.history),
        "radar": charts.five_domain_radar(portrait.five_domain, lang),
        "norms": {n.domain: n for n in portrait.five_domain.norms.domains} if portrait.five_domain.norms else {},
        "growth_chart": charts.growth_lines(portrait.growth, lang) if portrait.growth.points else None,
        "totals_chart": charts.fitness_totals_line(portrait.history, lang),
        "items_chart": charts.fitness_items_lines(portrait.history, lang),
    }
    return render(request, "student.html", context)


def item_rows(history: list[FitnessYear]) -> list[tuple[str, list[float | None]]]:
    """(item, score per year) for each item tested in at least one year; items depend on
    grade and sex, so the others would be rows of dashes."""
    rows = []
    for item in FitnessScores.model_fields:
        scores = [getattr(year.scores, item) for year in history]
        if any(score is not None for score in scores):
            rows.append((item, scores))
    return rows
