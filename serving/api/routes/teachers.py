"""A teacher's digital literacy and training, and the courses recommended, for training centers."""

from __future__ import annotations

from fastapi import APIRouter

from serving.access import teacher_in_scope
from serving.api.deps import AuditDep, DirectoryDep, FeatureStoreDep, TeacherReader
from serving.api.routes import REFUSALS
from serving.schemas import TeacherPortrait, TeacherRecommendations
from serving.training_centers import teacher_portrait, teacher_recommendations

router = APIRouter(prefix="/teachers", tags=["training"], responses=REFUSALS)


@router.get("/{teacher_key}/portrait", response_model=TeacherPortrait)
def get_teacher_portrait(teacher_key: str, user: TeacherReader, features: FeatureStoreDep, directory: DirectoryDep,
                         audit: AuditDep) -> TeacherPortrait:
    teacher_in_scope(user, teacher_key, directory, features)
    return teacher_portrait(user, features, directory, audit, teacher_key)


@router.get("/{teacher_key}/recommendations", response_model=TeacherRecommendations)
def get_teacher_recommendations(teacher_key: str, user: TeacherReader, features: FeatureStoreDep,
                                directory: DirectoryDep, audit: AuditDep) -> TeacherRecommendations:
    teacher_in_scope(user, teacher_key, directory, features)
    audit.read(user, "teacher_recommendations", [teacher_key])  # (the page audits it with the portrait)
    return teacher_recommendations(features, directory, teacher_key)
