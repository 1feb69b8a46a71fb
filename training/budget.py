"""Which data release a job spends from, and the ledger it spends in.

A release is named by its school year: `Settings.release` when set, else the latest school year
the lake holds. A job opening a release nobody opened yet gives it the configured total
(`release_epsilon_budget`, `release_delta_budget`); a release the data officer opened keeps theirs.

Each unit of privacy has its own budget. Students' models and statistics spend from the year's
release ("2025"); teachers' models (the teacher is the unit) from the year's teacher release
("2025/teachers"). The two guarantees protect different people, so adding a teacher model's ε
to the students' total would state nothing true about either: each ledger entry composes only
with the entries that read the same people.
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


STUDENTS, TEACHERS = "students", "teachers"  # the units of privacy a release is kept for


def release_name(school_year: str, unit: str = STUDENTS) -> str:
    """"2025" for the students of school year 2025, "2025/teachers" for its teachers."""
    if unit not in (STUDENTS, TEACHERS):
        raise ValueError(f"unknown unit of privacy {unit!r}: {STUDENTS!r} or {TEACHERS!r}")
    return school_year if unit == STUDENTS else f"{school_year}/{unit}"


def current_budget(settings: Settings, unit: str = STUDENTS) -> Budget:
    """The budget of the current release for `unit` (students or teachers), opened on first use."""
    snapshot = lake_snapshot(settings)
    release = release_name(settings.release or latest_school_year(settings), unit)
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
