"""A class teacher's class overview."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from serving import charts
from serving.access import class_in_scope
from serving.api.deps import AuditDep, DirectoryDep, FeatureStoreDep
from serving.i18n import language_of, translator
from serving.labels import label
from serving.pages.cache import CachedPage
from serving.pages.deps import ClassPage
from serving.pages.render import PAGE_HEADERS, render
from serving.portraits import class_portraits
from serving.schemas import StudentSummary

router = APIRouter()


@router.get("/classes/{class_id}")
def class_page(request: Request, class_id: str, user: ClassPage, features: FeatureStoreDep, directory: DirectoryDep,
               audit: AuditDep) -> Response:
    info = class_in_scope(user, class_id, directory)
    lang = language_of(request)
    pages, version = request.app.state.rendered_pages, features.version()
    key = ("class", class_id, lang, user.username, user.role, user.scope)
    cached = pages.get(key, version, directory)
    if cached is not None:
        audit.read(user, "class_portraits", cached.audited_keys)
        return HTMLResponse(cached.body, headers=PAGE_HEADERS)
    portraits = class_portraits(user, features, audit, info)
    response = render(request, "class.html", {
        "portraits": portraits, "cards": [student_card(s, lang) for s in portraits.students],
        "mini_radar": charts.mini_radar(lang), "warning_pie": charts.class_warning_pie(portraits, lang),
        "growth_chart": charts.class_growth_bars(portraits.growth, lang) if portraits.growth.subjects else None})
    pages.put(key, CachedPage(response.body, tuple(s.student_key for s in portraits.students), version, directory))
    return response


def student_card(student: StudentSummary, lang: str) -> dict:
    """What a student's card shows, in the reader's language: a class has up to fifty cards, and
    preparing them here keeps the template a plain loop (a page renders in a few milliseconds)."""
    t = translator(lang)
    trends = [(t(name), direction, label("trend", direction, lang) if direction else "·")
              for name, direction in (("trend_academics", student.trends.academics),
                                      ("trend_fitness", student.trends.fitness),
                                      ("trend_attendance", student.trends.attendance))]
    return {
        "key": student.student_key, "sex": label("sex", student.sex, lang),
        "warning": student.warning_level, "warning_label": label("warning", student.warning_level, lang),
        "radar_values": charts.mini_radar_values(student.five_domain), "trends": trends,
        "level": student.fitness_level, "level_label": label("level", student.fitness_level, lang),
        "total": student.fitness_total, "risk": student.risk.probability if student.risk else None,
        "risk_level": student.risk.level if student.risk else None,
        "reasons": [label("reason", reason, lang) for reason in student.reasons],
    }
