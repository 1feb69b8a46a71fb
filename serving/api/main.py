"""The versioned JSON API, mounted by the app under `serving.api.API_PREFIX`."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.routes import auth, students

api_router = APIRouter()
api_router.include_router(auth.router)
api_router.include_router(students.router)
