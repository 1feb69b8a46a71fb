"""The application factory: `uvicorn --factory serving.app:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from core.config import Settings, get_settings
from serving.api import API_PREFIX
from serving.api.main import api_router
from serving.api.routes import health, pages
from serving.reader import LazyPortraitReader, PortraitReader
from serving.users import UserStore


def create_app(settings: Settings | None = None, reader: PortraitReader | None = None) -> FastAPI:
    if settings is None:
        settings = get_settings()
    app = FastAPI(title="Student portrait service", version="1")
    app.state.settings = settings
    app.state.reader = reader if reader is not None else LazyPortraitReader(lambda: _feast_reader(settings))
    app.state.users = UserStore(settings.users_path)
    app.include_router(health.router)
    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(pages.router)
    return app


def _feast_reader(settings: Settings) -> PortraitReader:
    # Imported here: Feast is heavy and must not load when the app module is imported.
    from serving.portraits import FeastPortraitReader

    return FeastPortraitReader(settings)
