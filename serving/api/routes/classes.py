"""A class at a glance, for its class teacher."""

from __future__ import annotations

from fastapi import APIRouter

from serving.access import class_in_scope
from serving.api.deps import AuditDep, ClassReader, DirectoryDep, FeatureStoreDep
from serving.api.routes import REFUSALS
from serving.portraits import class_portraits
from serving.schemas import ClassPortraits

router = APIRouter(prefix="/classes", tags=["classes"], responses=REFUSALS)


@router.get("/{class_id}/portraits", response_model=ClassPortraits)
def get_class_portraits(class_id: str, user: ClassReader, features: FeatureStoreDep, directory: DirectoryDep,
                        audit: AuditDep) -> ClassPortraits:
    """Every student of the class: five domains, fitness level, risk, warnings and trends."""
    return class_portraits(user, features, audit, class_in_scope(user, class_id, directory))
