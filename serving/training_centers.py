"""Training centers: their courses, the teachers to invite, and the teachers they train.

A center sees its own courses (the catalog is public; enrolments and completions come from the
`course_stats` view), and of a teacher only what training is about: digital literacy
(`teacher_digital_literacy`) and training so far (`teacher_training`), never their school,
classes or students (`teacher_teaching` is not read here). Invite lists and recommendations are
the teacher-training model's output; until it is scored they say so.

The model explains each recommendation and invite in an English sentence (`reason`). The pages
speak Chinese, so the sentence is also read into its clauses (`reason_parts`: dimension, the
teacher's score, the expected gain, how weak the dimension is for the teacher), from a structured
`reasons` list when the model writes one, else by parsing the sentences `models.teacher_training`
writes. A sentence that does not parse keeps only `reason`, shown as it is.
"""

from __future__ import annotations

import re

from features.contract import TEACHER_DIMENSIONS
from serving import model_outputs
from serving.access import invited_here
from serving.audit import AuditLog
from serving.directory import Course, Directory
from serving.model_outputs import COURSE_INVITES, TEACHER_RECOMMENDATIONS
from serving.online import FeatureReader, Row
from serving.schemas import (
    CenterOverview,
    CourseInvite,
    CourseInvites,
    CourseRecommendation,
    CourseStats,
    CourseSummary,
    DigitalLiteracy,
    DimensionScore,
    ModelRef,
    ReasonPart,
    TeacherPortrait,
    TeacherRecommendations,
    TrainingRecord,
    from_row,
)
from serving.users import User

DIGITAL_LITERACY = "teacher_digital_literacy"
TRAINING = "teacher_training"
COURSE_STATS = "course_stats"


def center_overview(reader: FeatureReader, directory: Directory, center_id: str,
                    courses: list[Course]) -> CenterOverview:
    available = model_outputs.is_available(reader, COURSE_INVITES)
    summaries = _course_summaries(reader, courses)
    if available and courses:
        rows = reader.read(COURSE_INVITES.view, [course.course_id for course in courses])
        for summary, row in zip(summaries, rows):
            summary.invited = len(model_outputs.json_list(row, "invites_json"))
    return CenterOverview(center_id=center_id, courses=summaries,
                          teachers_trained=len(directory.teachers_of_center(center_id)), invites_available=available)


def course_invites(reader: FeatureReader, directory: Directory, course: Course) -> CourseInvites:
    [summary] = _course_summaries(reader, [course])
    enrolled = list(directory.course_teachers.get(course.course_id, ()))
    if not model_outputs.is_available(reader, COURSE_INVITES):
        return CourseInvites(course=summary, available=False, enrolled_teachers=enrolled,
                             message=model_outputs.unavailable_message(COURSE_INVITES))
    [row] = reader.read(COURSE_INVITES.view, [course.course_id])
    invites = []
    for item in model_outputs.json_list(row, "invites_json"):
        if item.get("teacher_key"):
            key = str(item["teacher_key"])
            invites.append(CourseInvite(teacher_key=key, expected_gain=_float(item.get("expected_gain")),
                                        dimension=item.get("dimension"), reason=item.get("reason"),
                                        reason_parts=reason_parts(item), enrolled=key in enrolled))
    summary.invited = len(invites)
    return CourseInvites(course=summary, available=True, model=ModelRef.from_fields(model_outputs.model_fields(row)),
                         invites=invites, enrolled_teachers=enrolled,
                         message=None if invites else "the model invites no teacher to this course")


def teacher_portrait(user: User, reader: FeatureReader, directory: Directory, audit: AuditLog,
                     teacher_key: str) -> TeacherPortrait:
    """The caller's scope over the teacher has been checked (`access.teacher_in_scope`)."""
    [literacy] = reader.read(DIGITAL_LITERACY, [teacher_key])
    [training] = reader.read(TRAINING, [teacher_key])
    audit.read(user, "teacher_portrait", [teacher_key])
    here = sorted(course for course, teachers in directory.course_teachers.items()
                  if teacher_key in teachers and directory.courses.get(course)
                  and directory.courses[course].center_id in user.scope)
    return TeacherPortrait(teacher_key=teacher_key, digital_literacy=_literacy(literacy),
                           training=_training(training), courses_here=here,
                           invited_to=invited_here(user, teacher_key, directory, reader))


def teacher_recommendations(reader: FeatureReader, directory: Directory, teacher_key: str) -> TeacherRecommendations:
    if not model_outputs.is_available(reader, TEACHER_RECOMMENDATIONS):
        return TeacherRecommendations(teacher_key=teacher_key, available=False,
                                      message=model_outputs.unavailable_message(TEACHER_RECOMMENDATIONS))
    [row] = reader.read(TEACHER_RECOMMENDATIONS.view, [teacher_key])
    recommendations = []
    for item in model_outputs.json_list(row, "recommendations_json"):
        course_id = str(item.get("course_id") or "")
        if course_id:
            course = directory.courses.get(course_id)
            recommendations.append(CourseRecommendation(
                course_id=course_id, title=course.title if course else None,
                center_id=course.center_id if course else None,
                expected_gain=_float(item.get("expected_gain")), dimension=item.get("dimension"),
                reason=item.get("reason"), reason_parts=reason_parts(item)))
    return TeacherRecommendations(
        teacher_key=teacher_key, available=True, model=ModelRef.from_fields(model_outputs.model_fields(row)),
        recommendations=recommendations,
        message=None if recommendations else "no recommendation for this teacher yet")


# The sentences of `models.teacher_training` (recommend: `_reasons`; invite_lists: "reasons").
_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_TARGETS_WEAKEST = re.compile(rf"targets (\w+), your (?:(\d+)(?:st|nd|rd|th) )?weakest \({_NUMBER}\): expected {_NUMBER}")
_OFF_TARGET = re.compile(rf"targets ([\w, ]+?), none of your weakest \(([\w, ]+)\): expected {_NUMBER} on them")
_DIMENSION_GAIN = re.compile(rf"(\w+) at {_NUMBER}: expected {_NUMBER}")


def reason_parts(item: dict) -> list[ReasonPart]:
    """The clauses of an invite's or a recommendation's reason; [] when they cannot be read."""
    structured = item.get("reasons")
    if isinstance(structured, list):
        try:
            return [ReasonPart(**part) for part in structured if isinstance(part, dict)]
        except ValueError:
            return []
    text = item.get("reason")
    if not isinstance(text, str) or not text:
        return []
    parts = []
    for clause in text.split("; "):
        clause = clause.strip()
        if match := _TARGETS_WEAKEST.fullmatch(clause):
            dimension, rank, score, gain = match.groups()
            parts.append(ReasonPart(kind="targets_weakest", dimension=dimension, weakest_rank=int(rank or 1),
                                    score=float(score), gain=float(gain)))
        elif match := _OFF_TARGET.fullmatch(clause):
            targets, weakest, gain = match.groups()
            parts.append(ReasonPart(kind="off_target", targets=_names(targets), weakest=_names(weakest),
                                    gain=float(gain)))
        elif match := _DIMENSION_GAIN.fullmatch(clause):
            dimension, score, gain = match.groups()
            parts.append(ReasonPart(kind="dimension_gain", dimension=dimension, score=float(score), gain=float(gain)))
        else:
            return []  # one clause not understood: show the model's sentence as it is
    return parts


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _course_summaries(reader: FeatureReader, courses: list[Course]) -> list[CourseSummary]:
    stats = reader.read(COURSE_STATS, [course.course_id for course in courses]) if courses else []
    return [CourseSummary(course_id=c.course_id, title=c.title, subject=c.subject, level=c.level, hours=c.hours,
                          dimensions=list(c.dimensions), stats=from_row(CourseStats, row))
            for c, row in zip(courses, stats)]


def _literacy(row: Row | None) -> DigitalLiteracy | None:
    if not row:
        return None
    return DigitalLiteracy(
        dimensions=[DimensionScore(dimension=d, score=row.get(d), change=row.get(f"change_{d}"))
                    for d in TEACHER_DIMENSIONS],
        mean_score=row.get("mean_score"), change_mean_score=row.get("change_mean_score"),
        assessments_taken=row.get("assessments_taken"))


def _training(row: Row | None) -> TrainingRecord | None:
    if not row:
        return None
    return TrainingRecord(
        term_id=row.get("term_id"), hours_completed=row.get("hours_completed"),
        hours_completed_in_term=row.get("hours_completed_in_term"), courses_completed=row.get("courses_completed"),
        courses_enrolled=row.get("courses_enrolled"), completion_rate=row.get("completion_rate"),
        hours_by_dimension={d: row.get(f"hours_{d}") for d in TEACHER_DIMENSIONS})


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
