"""Registered models and their cards, as the data officer reads them (never the models themselves).

A model card is the registered version's description (`training.registry.publish_card`); the
version's tags carry its (ε, δ) and the run's metrics its membership-inference audits
(`audit.<target>.<attack>.<metric>`, `training.audits.audit_metrics`). Serving only reads: MLflow
is imported on the first request that needs it, not when the app starts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

AUDIT_PREFIX = "audit."
AUDIT_METRICS = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "epsilon_lower_bound")


@dataclass(frozen=True)
class AuditRow:
    target: str  # "dp" (the registered model) or "nonprivate" (its twin)
    attack: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class ModelVersionCard:
    name: str
    version: int
    aliases: tuple[str, ...]
    created_at: str | None
    tags: dict[str, str]
    card_markdown: str
    audits: tuple[AuditRow, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def epsilon(self) -> float | None:
        return _float(self.tags.get("epsilon"))

    @property
    def delta(self) -> float | None:
        return _float(self.tags.get("delta"))


class ModelCards(Protocol):
    def versions(self) -> list[ModelVersionCard]:
        """Every registered version of every model, newest first within a model."""
        ...


class InMemoryModelCards:
    def __init__(self, cards: list[ModelVersionCard] = ()) -> None:
        self._cards = list(cards)

    def versions(self) -> list[ModelVersionCard]:
        return sorted(self._cards, key=lambda card: (card.name, -card.version))


class MlflowModelCards:
    """The MLflow registry of the settings (SQLite under PORTRAIT_HOME by default)."""

    def __init__(self, settings) -> None:
        self._settings = settings
        self._client = None
        self._lock = threading.Lock()

    def versions(self) -> list[ModelVersionCard]:
        uri = self._settings.mlflow_uri
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            return []  # nothing trained yet; reading would create an empty registry
        client = self._get_client()
        cards = []
        for model in client.search_registered_models():
            # search_model_versions leaves each version's aliases empty; the registered model holds them.
            aliases = _aliases_by_version(getattr(model, "aliases", None))
            for version in client.search_model_versions(f"name = '{model.name}'"):
                metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
                cards.append(ModelVersionCard(
                    name=model.name, version=int(version.version),
                    aliases=tuple(version.aliases or aliases.get(int(version.version), ())),
                    created_at=_timestamp(version.creation_timestamp), tags=dict(version.tags or {}),
                    card_markdown=version.description or "", audits=audits_from_metrics(metrics),
                    metrics={name: value for name, value in metrics.items() if not name.startswith(AUDIT_PREFIX)}))
        return sorted(cards, key=lambda card: (card.name, -card.version))

    def _get_client(self):
        with self._lock:
            if self._client is None:
                from training.registry import mlflow_client

                self._client = mlflow_client(self._settings)
            return self._client


def _aliases_by_version(aliases) -> dict[int, tuple[str, ...]]:
    """{version: its aliases, sorted} from a registered model's aliases ({alias: version} in MLflow 2+,
    a list of objects with .alias and .version in older clients)."""
    pairs = (aliases.items() if isinstance(aliases, dict)
             else [(a.alias, a.version) for a in aliases or ()])
    by_version: dict[int, list[str]] = {}
    for alias, version in pairs:
        try:
            by_version.setdefault(int(version), []).append(str(alias))
        except (TypeError, ValueError):
            continue
    return {version: tuple(sorted(names)) for version, names in by_version.items()}


def audits_from_metrics(metrics: dict[str, float]) -> tuple[AuditRow, ...]:
    """`audit.<target>.<attack>.<metric>` run metrics regrouped as one row per target and attack."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in metrics.items():
        parts = name.split(".")
        if len(parts) == 4 and parts[0] + "." == AUDIT_PREFIX and parts[3] in AUDIT_METRICS:
            rows.setdefault((parts[1], parts[2]), {})[parts[3]] = float(value)
    return tuple(AuditRow(target, attack, values) for (target, attack), values in sorted(rows.items()))


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _timestamp(millis) -> str | None:
    from datetime import UTC, datetime

    return None if millis is None else datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")
