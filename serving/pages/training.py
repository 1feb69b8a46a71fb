"""Training centers: the center's courses, a course's invite list, a teacher's literacy and courses."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving import charts
from serving.access import center_in_scope, course_in_scope, teacher_in_scope
from serving.api.deps import AuditDep, DirectoryDep, FeatureStoreDep
from serving.i18n import language_of
from serving.pages.deps import CenterPage, CoursePage, TeacherPage
from serving.pages.render import render
from serving.training_centers import center_overview, course_invites, teacher_portrait, teacher_recommendations

router = APIRouter()


@router.get("/centers/{center_id}")
def center_page(request: Request, center_id: str, user: CenterPage, features: FeatureStoreDep,
                directory: DirectoryDep) -> Response:
    overview = center_overview(features, directory, center_id, center_in_scope(user, center_id, directory))
    return render(request, "center.html", {"overview": overview})


@router.get("/courses/{course_id}")
def course_page(request: Request, course_id: str, user: CoursePage, features: FeatureStoreDep,
                directory: DirectoryDep) -> Response:
    invites = course_invites(features, directory, course_in_scope(user, course_id, directory))
    return render(request, "course.html", {"invites": invites})


@router.get("/teachers/{teacher_key}")
def teacher_page(request: Request, teacher_key: str, user: TeacherPage, features: FeatureStoreDep,
                 directory: DirectoryDep, audit: AuditDep) -> Response:
    teacher_in_scope(user, teacher_key, directory, features)
    portrait = teacher_portrait(user, features, directory, audit, teacher_key)
    recommendations = teacher_recommendations(features, directory, teacher_key)
    radar = charts.literacy_radar(portrait.digital_literacy, language_of(request)) if portrait.digital_literacy else None
    return render(request, "teacher.html", {"portrait": portrait, "recommendations": recommendations,
                                            "radar": radar})
