"""A course's invite list, for the training center that runs it."""

from __future__ import annotations

from fastapi import APIRouter

from serving.access import course_in_scope
from serving.api.deps import CourseReader, DirectoryDep, FeatureStoreDep
from serving.api.routes import REFUSALS
from serving.schemas import CourseInvites
from serving.training_centers import course_invites

router = APIRouter(prefix="/courses", tags=["training"], responses=REFUSALS)


@router.get("/{course_id}/invites", response_model=CourseInvites)
def get_course_invites(course_id: str, user: CourseReader, features: FeatureStoreDep,
                       directory: DirectoryDep) -> CourseInvites:
    """The teachers to invite with their expected gains (the teacher-training model's output)."""
    return course_invites(features, directory, course_in_scope(user, course_id, directory))
