"""The application factory: `uvicorn --factory serving.app:create_app`.

The app reads from five sources, each on `app.state`, each replaceable in tests: the online
feature store (`features`), the directory of classes, schools and courses, the DP statistics
releases, the model registry's cards, and the audit log it writes. By default they are the
Feast store, the pipeline's files and the MLflow registry that the settings point at.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from core.config import Settings, get_settings
from serving.access import AccessError
from serving.api import API_PREFIX
from serving.api.main import api_router
from serving.api.routes import health
from serving.audit import AuditLog, audit_path
from serving.directory import Directory, directory_source
from serving.dp_releases import DPReleases
from serving.model_cards import MlflowModelCards, ModelCards
from serving.online import CachedFeatureReader, FeatureReader, LazyFeatureReader
from serving.pages import page_router
from serving.pages.cache import DEFAULT_MAX_PAGES, RenderedPages
from serving.pages.deps import SignInRequired
from serving.pages.render import error_page, to_login
from serving.throttle import LoginThrottle
from serving.users import UserStore

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(
    settings: Settings | None = None,
    features: FeatureReader | None = None,
    *,
    directory: Directory | None = None,
    model_cards: ModelCards | None = None,
    throttle: LoginThrottle | None = None,
) -> FastAPI:
    if settings is None:
        settings = get_settings()
    app = FastAPI(title="Student portrait service", version="1", lifespan=_warm_up,
                  description="Role-scoped student and teacher portraits. Sign in at /api/v1/token.")
    app.state.settings = settings
    reader = features if features is not None else LazyFeatureReader(lambda: _feast_reader(settings))
    app.state.features = CachedFeatureReader(reader, max_rows=settings.serving_cache_rows)
    # serving_cache_rows=0 turns both caches off: every request reads the store and renders (the
    # benchmark's cold arm).
    app.state.rendered_pages = RenderedPages(DEFAULT_MAX_PAGES if settings.serving_cache_rows > 0 else 0)
    if directory is not None:
        app.state.directory = lambda: directory
    else:
        app.state.directory = directory_source(settings.indicators_dir, settings.lake_dir).get
    app.state.releases = DPReleases(settings.home / "statistics")
    app.state.model_cards = model_cards if model_cards is not None else MlflowModelCards(settings)
    app.state.audit = AuditLog(audit_path(settings.home))
    app.state.users = UserStore(settings.users_path)
    app.state.throttle = throttle if throttle is not None else LoginThrottle(settings.sign_in_failures_path,
                                                                            key=settings.secret("sign-in"))

    app.include_router(health.router)
    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(page_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(AccessError, _access_error)
    app.add_exception_handler(SignInRequired, lambda request, error: to_login())
    return app


@contextlib.asynccontextmanager
async def _warm_up(app: FastAPI) -> AsyncIterator[None]:
    """Load the feature store client and the directory in the background as the worker starts.

    Not awaited: the worker answers /healthz at once, and /readyz says when the store is there.
    Without it, the first request each worker gets would import Feast (seconds) while holding the
    GIL, and every request behind it on that worker would wait; with a worker per core, the one
    that did not answer the readiness probe would still be cold when traffic arrives.
    """

    def load() -> None:
        with contextlib.suppress(Exception):  # unreachable now: /readyz reports it, requests retry it
            app.state.features.views()
            app.state.directory()
        # What start-up loaded (Feast, pandas, the directory) lives as long as the worker: moved out
        # of the collector's reach, a full collection no longer walks it, a pause of tens of ms
        # in the middle of a request.
        gc.freeze()

    threading.Thread(target=load, name="warm-up", daemon=True).start()
    yield


def _access_error(request: Request, error: AccessError) -> Response:
    """403 or 404, as JSON for the API and as a page for a browser."""
    if request.url.path.startswith(API_PREFIX):
        return JSONResponse({"detail": error.message, "code": error.code}, status_code=error.status_code)
    return error_page(request, error)


def _feast_reader(settings: Settings) -> FeatureReader:
    # Imported here: Feast is heavy and must not load when the app module is imported.
    from serving.online import FeastFeatureReader

    return FeastFeatureReader(settings)
