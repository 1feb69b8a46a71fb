"""The versioned JSON API, mounted by the app under `serving.api.API_PREFIX`."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.routes import auth, centers, classes, courses, oversight, schools, students, teachers

api_router = APIRouter()
for module in (auth, students, classes, schools, teachers, courses, centers, oversight):
    api_router.include_router(module.router)
