"""Which data release a job spends from, and the ledger it spends in.

A release is named by its school year: `Settings.release` when set, else the latest school year
the lake holds. A job opening a release nobody opened yet gives it the configured total
(`release_epsilon_budget`, `release_delta_budget`); a release the data officer opened keeps theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from core.config import Settings
from privacy.ledger import PrivacyLedger, Receipt


@dataclass(frozen=True)
class Budget:
    """Where a job's spends go: the ledger, the release, and the lake snapshot the job reads."""

    ledger: PrivacyLedger
    release: str
    snapshot: str

    def spend(self, *, what: str, epsilon: float, delta: float, mechanism: str, accountant: str) -> Receipt:
        return self.ledger.spend(self.release, what=what, epsilon=epsilon, delta=delta, mechanism=mechanism,
                                 accountant=accountant, snapshot=self.snapshot)

    def spend_all(self, items: list[dict]) -> Receipt:
        """Several spends, all or none (see PrivacyLedger.spend_all)."""
        return self.ledger.spend_all(self.release, items, snapshot=self.snapshot)


def current_budget(settings: Settings) -> Budget:
    snapshot = lake_snapshot(settings)
    release = settings.release or latest_school_year(settings)
    ledger = PrivacyLedger(settings.ledger_url)
    ledger.open_release(release, epsilon=settings.release_epsilon_budget, delta=settings.release_delta_budget,
                        snapshot=snapshot)
    return Budget(ledger, release, snapshot)


def lake_snapshot(settings: Settings) -> str:
    """The lake version a job reads now (the folder `lake` links to); empty before any ingest."""
    return settings.lake_dir.resolve().name if settings.lake_dir.exists() else ""


def latest_school_year(settings: Settings) -> str:
    """The newest school year of the lake's terms (the release a job reads by default)."""
    terms = settings.lake_dir / "terms.parquet"
    if not terms.exists():
        raise FileNotFoundError(f"{terms}: no terms in the lake to name the release; ingest an export first, "
                                f"or set PORTRAIT_RELEASE")
    with duckdb.connect() as con:
        (year,) = con.execute("SELECT max(school_year) FROM read_parquet(?)", [str(terms)]).fetchone()
    if year is None:
        raise ValueError(f"{terms} holds no term: cannot name the release; set PORTRAIT_RELEASE")
    return str(year)
