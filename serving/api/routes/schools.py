"""A school's fitness warnings and grade statistics, for its health staff."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from serving.access import school_in_scope
from serving.api.deps import AuditDep, DirectoryDep, FeatureStoreDep, ReleasesDep, SchoolFitnessReader
from serving.api.routes import REFUSALS
from serving.schemas import FitnessLevel, FitnessWarnings, SchoolFitnessStatistics
from serving.school_fitness import MAX_LIMIT, WarningFilter, fitness_statistics, fitness_warnings
from serving.warnings import FITNESS_REASONS

router = APIRouter(prefix="/schools", tags=["schools"], responses=REFUSALS)
FitnessReason = Literal[tuple(sorted(reason.value for reason in FITNESS_REASONS))]  # type: ignore[valid-type]


@router.get("/{school_id}/fitness-warnings", response_model=FitnessWarnings)
def get_fitness_warnings(
    school_id: str, user: SchoolFitnessReader, features: FeatureStoreDep, directory: DirectoryDep, audit: AuditDep,
    grade: Annotated[int | None, Query(ge=1, le=12)] = None,
    level: FitnessLevel | None = None,
    reason: FitnessReason | None = None,
    sort: Literal["risk", "total", "change"] = "risk",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> FitnessWarnings:
    """Students with a fitness warning, highest risk first (or lowest total, or largest drop)."""
    classes = school_in_scope(user, school_id, directory)
    where = WarningFilter(grade=grade, level=level, reason=reason, sort=sort, offset=offset, limit=limit)
    return fitness_warnings(user, features, audit, school_id, classes, where)


@router.get("/{school_id}/fitness-statistics", response_model=SchoolFitnessStatistics)
def get_fitness_statistics(school_id: str, user: SchoolFitnessReader, features: FeatureStoreDep,
                           directory: DirectoryDep, releases: ReleasesDep) -> SchoolFitnessStatistics:
    """Per grade: tested, levels, pass rate and mean total of the school, beside the city's DP pass rates."""
    classes = school_in_scope(user, school_id, directory)
    return fitness_statistics(user, features, releases, school_id, classes)
