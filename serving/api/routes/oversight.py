"""The data officer's routes: privacy ledger, model cards and audits, ingest report, access log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from serving import oversight
from serving.api.deps import (
    AuditDep,
    AuditLogReader,
    FeatureStoreDep,
    IngestReader,
    LedgerReader,
    ModelCardReader,
    ModelDep,
    SettingsDep,
)
from serving.api.routes import REFUSALS
from serving.schemas import AuditLogPage, IngestReport, Ledger, ModelCard, ModelsOverview

router = APIRouter(tags=["data officer"], responses=REFUSALS)


@router.get("/privacy/ledger", response_model=Ledger)
def get_ledger(user: LedgerReader, settings: SettingsDep) -> Ledger:
    """Each release's total (ε, δ), every spend from it, and what is left."""
    return oversight.ledger(settings.ledger_url)


@router.get("/models", response_model=ModelsOverview)
def get_models(user: ModelCardReader, cards: ModelDep, features: FeatureStoreDep) -> ModelsOverview:
    """Registered versions with their (ε, δ) and audits, and which models' outputs the online store holds."""
    return oversight.models_overview(cards, features)


@router.get("/models/{name}", response_model=ModelCard)
def get_model_card(user: ModelCardReader, cards: ModelDep, name: str,
                   version: Annotated[int | None, Query(ge=1)] = None, alias: str = "champion") -> ModelCard:
    """A version's model card (its markdown) and membership-inference audits; the champion by default."""
    return oversight.model_card(cards, name, version, alias)


@router.get("/ingest/report", response_model=IngestReport)
def get_ingest_report(user: IngestReader, settings: SettingsDep) -> IngestReport:
    """The lake version, rows per table, and the quarantine counted by table, column and rule."""
    return oversight.ingest_report(settings.lake_dir)


@router.get("/audit/reads", response_model=AuditLogPage)
def get_audit_log(user: AuditLogReader, audit: AuditDep,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> AuditLogPage:
    """The latest portrait reads and refusals: who, in which role, which pseudonymous key, when."""
    return oversight.audit_entries(audit, limit)
