"""A student's growth portrait (class teachers) and fitness record (class teachers and health staff).

These two are the service's busiest routes (a few hundred a second at a school's open evening), so
unlike the others they are `async` and hand their one blocking call (Feast reads) to the thread
pool themselves: a sync route costs two hops to the pool, one for the endpoint and one for
validating its response, and on two cores each hop measured about 0.7 ms of CPU, a third of the
whole request.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from serving.api.deps import AuditDep, ClassTeacherPortraits, FeatureStoreDep, FitnessReader, ReleasesDep
from serving.api.routes import REFUSALS
from serving.portraits import student_fitness, student_portrait
from serving.schemas import StudentFitness, StudentPortrait

router = APIRouter(prefix="/students", tags=["students"], responses=REFUSALS)


@router.get("/{student_key}/portrait", response_model=StudentPortrait)
async def get_student_portrait(student_key: str, user: ClassTeacherPortraits, features: FeatureStoreDep,
                               releases: ReleasesDep, audit: AuditDep) -> StudentPortrait:
    """Five domains against the DP norms, academics, conduct, attendance, fitness, warnings, and the
    model outputs (with each model's version and ε), for a student of one of the teacher's classes."""
    return await run_in_threadpool(student_portrait, user, features, releases, audit, student_key)


@router.get("/{student_key}/fitness", response_model=StudentFitness)
async def get_student_fitness(student_key: str, user: FitnessReader, features: FeatureStoreDep,
                              audit: AuditDep) -> StudentFitness:
    """Fitness only: the latest test, every year's test, the fitness-risk score and the warnings."""
    return await run_in_threadpool(student_fitness, user, features, audit, student_key)
