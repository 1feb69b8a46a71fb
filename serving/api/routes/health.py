"""Probes for the orchestrator: liveness touches nothing; readiness checks what a page needs."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status

from serving.api.deps import FeatureStoreDep
from serving.model_outputs import MODEL_OUTPUTS, REQUIRED_OUTPUTS
from serving.schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health)
def liveness() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readiness(request: Request, features: FeatureStoreDep, response: Response) -> Health:
    """Ready when the online store answers with materialized views, the scores of the models trained
    today are in it, and the directory (who belongs to which class, school, center) has loaded.
    Models still to come are listed as absent without making the service unready."""
    checks: dict[str, str] = {}
    try:
        checks["online_store"] = "ok" if features.ready() else "no materialized views: run portrait features"
        views = features.views()
        for output in MODEL_OUTPUTS:
            checks[f"model:{output.model}:{output.view}"] = "ok" if output.view in views else "absent"
    except Exception:
        # A probe answers "not ready" rather than 500, and the cause goes to the log.
        log.exception("online store is not available")
        checks["online_store"] = "unavailable"
    try:
        request.app.state.directory()
        checks["directory"] = "ok"
    except Exception:
        log.exception("directory did not load")
        checks["directory"] = "unavailable"
    required = ["online_store", "directory", *(f"model:{o.model}:{o.view}" for o in REQUIRED_OUTPUTS)]
    if any(checks.get(name) != "ok" for name in required):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="not ready", checks=checks)
    return Health(status="ready", checks=checks)
