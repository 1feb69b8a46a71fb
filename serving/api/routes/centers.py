"""A training center's courses at a glance."""

from __future__ import annotations

from fastapi import APIRouter

from serving.access import center_in_scope
from serving.api.deps import CenterReader, DirectoryDep, FeatureStoreDep
from serving.api.routes import REFUSALS
from serving.schemas import CenterOverview
from serving.training_centers import center_overview

router = APIRouter(prefix="/centers", tags=["training"], responses=REFUSALS)


@router.get("/{center_id}", response_model=CenterOverview)
def get_center_overview(center_id: str, user: CenterReader, features: FeatureStoreDep,
                        directory: DirectoryDep) -> CenterOverview:
    return center_overview(features, directory, center_id, center_in_scope(user, center_id, directory))
