"""The data officer's view: the privacy ledger, model cards with their audits, ingest and access logs.

No portrait is read here. Everything is about the engine: what was spent from each release's
privacy budget, which models are registered under which guarantee, what the last ingest loaded
and refused, and who read which (pseudonymous) key.
"""

from __future__ import annotations

from pathlib import Path

from privacy.ledger import PrivacyLedger
from serving.access import not_found
from serving.audit import AuditLog
from serving.ingest_report import ingest_summary
from serving.model_cards import ModelCards, ModelVersionCard
from serving.model_outputs import MODEL_OUTPUTS
from serving.online import FeatureReader
from serving.schemas import (
    AuditLogEntry,
    AuditLogPage,
    AuditResult,
    IngestReport,
    LakeTableRow,
    Ledger,
    LedgerRelease,
    LedgerSpend,
    ModelCard,
    ModelOutputStatus,
    ModelsOverview,
    ModelVersionSummary,
    QuarantineRow,
)


def ledger(ledger_url: str) -> Ledger:
    book = PrivacyLedger(ledger_url)
    releases = []
    for balance in book.releases():
        releases.append(LedgerRelease(
            release=balance.release, epsilon_total=balance.epsilon_total, delta_total=balance.delta_total,
            epsilon_spent=balance.epsilon_spent, delta_spent=balance.delta_spent,
            epsilon_left=balance.epsilon_left, delta_left=balance.delta_left,
            spends=[LedgerSpend(**{name: spend[name] for name in LedgerSpend.model_fields})
                    for spend in book.spends(balance.release)]))
    return Ledger(releases=releases)


def models_overview(cards: ModelCards, reader: FeatureReader | None) -> ModelsOverview:
    try:
        views = reader.views() if reader is not None else frozenset()
    except Exception:  # noqa: BLE001 - the store may be down; the registry still answers
        views = frozenset()
    return ModelsOverview(
        versions=[_summary(card) for card in cards.versions()],
        outputs=[ModelOutputStatus(model=output.model, view=output.view, available=output.view in views,
                                   shown_to=list(output.shown_to))
                 for output in MODEL_OUTPUTS])


def model_card(cards: ModelCards, name: str, version: int | None = None, alias: str = "champion") -> ModelCard:
    """A version's card: `version` if given, else the one holding `alias`, else the newest."""
    versions = [card for card in cards.versions() if card.name == name]
    if not versions:
        raise not_found("model")
    if version is not None:
        chosen = next((card for card in versions if card.version == version), None)
    else:
        chosen = next((card for card in versions if alias in card.aliases), versions[0])
    if chosen is None:
        raise not_found("model")
    return ModelCard(**_summary(chosen).model_dump(), card_markdown=chosen.card_markdown, metrics=chosen.metrics)


def ingest_report(lake_dir: Path) -> IngestReport:
    summary = ingest_summary(lake_dir)
    return IngestReport(
        lake_version=summary.lake_version,
        tables=[LakeTableRow(table=t.table, rows=t.rows, rows_quarantined=t.rows_quarantined, written_at=t.written_at)
                for t in summary.tables],
        quarantine=[QuarantineRow(table=q.table, column=q.column, rule=q.rule, rows=q.rows) for q in summary.quarantine])


def audit_entries(audit: AuditLog, limit: int) -> AuditLogPage:
    entries = []
    for line in audit.recent(limit):
        try:
            entries.append(AuditLogEntry(**{name: line.get(name) for name in AuditLogEntry.model_fields}))
        except ValueError:
            continue
    return AuditLogPage(entries=entries)


def _summary(card: ModelVersionCard) -> ModelVersionSummary:
    return ModelVersionSummary(
        name=card.name, version=card.version, aliases=list(card.aliases), created_at=card.created_at,
        epsilon=card.epsilon, delta=card.delta, data_release=card.tags.get("data_release"),
        audits=[AuditResult(target=a.target, attack=a.attack, **a.metrics) for a in card.audits])
