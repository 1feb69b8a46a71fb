"""Probes for the orchestrator: liveness touches nothing, readiness asks the portrait reader."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status

from serving.api.deps import ReaderDep
from serving.schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health)
def liveness() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health)
def readiness(reader: ReaderDep, response: Response) -> Health:
    try:
        ready = reader.ready()
    except Exception:
        # A probe answers "not ready" rather than 500, and the cause goes to the log.
        log.exception("portrait reader is not available")
        ready = False
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="not ready")
    return Health(status="ready")
