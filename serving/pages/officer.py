"""The data officer's pages: ingest and quarantine, the ledger, model cards and audits, access log."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from serving import charts, oversight
from serving.api.deps import AuditDep, FeatureStoreDep, ModelDep, SettingsDep
from serving.i18n import language_of
from serving.pages.deps import OfficerPage
from serving.pages.render import render
from serving.schemas import ModelsOverview

router = APIRouter()
log = logging.getLogger(__name__)
ACCESS_LOG_LINES = 50


@router.get("/officer")
def officer_page(request: Request, user: OfficerPage, settings: SettingsDep, cards: ModelDep,
                 features: FeatureStoreDep, audit: AuditDep) -> Response:
    ledger = oversight.ledger(settings.ledger_url)
    registry_error = None
    try:
        models = oversight.models_overview(cards, features)
    except Exception as error:  # the registry being down must not hide the ledger and the ingest report
        log.exception("model registry unavailable")
        models, registry_error = ModelsOverview(), type(error).__name__
    return render(request, "officer.html", {
        "ingest": oversight.ingest_report(settings.lake_dir), "ledger": ledger, "models": models,
        "registry_error": registry_error, "access_log": oversight.audit_entries(audit, ACCESS_LOG_LINES),
        "budget_chart": charts.budget_bar(ledger.releases, language_of(request)) if ledger.releases else None})


@router.get("/officer/models/{name}")
def model_card_page(request: Request, name: str, user: OfficerPage, cards: ModelDep,
                    version: int | None = None) -> Response:
    return render(request, "model_card.html", {"card": oversight.model_card(cards, name, version)})
