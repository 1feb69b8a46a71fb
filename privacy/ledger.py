"""The privacy budget ledger: every model and statistic spends (ε, δ) from a release's total.

A release is a snapshot of the lake (for example school year 2025). Spends compose by basic
(sequential) composition: the ε's add up and so do the δ's, which holds for any mix of
mechanisms. A spend that would pass the total is refused before the caller computes anything.
`BEGIN IMMEDIATE` takes SQLite's write lock before reading the balance, so parallel jobs racing
for the last of the budget are serialized: exactly the ones that fit get through.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    name TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spends (
    id INTEGER PRIMARY KEY AUTOINCREMENT, release TEXT NOT NULL REFERENCES releases(name),
    what TEXT NOT NULL, mechanism TEXT NOT NULL, accountant TEXT NOT NULL,
    epsilon REAL NOT NULL, delta REAL NOT NULL, spent_at TEXT NOT NULL);
"""


class BudgetExceeded(RuntimeError):
    """The spend would pass the release's total budget; nothing was recorded."""


@dataclass(frozen=True)
class Balance:
    release: str
    epsilon_total: float
    delta_total: float
    epsilon_spent: float
    delta_spent: float

    @property
    def epsilon_left(self) -> float:
        return self.epsilon_total - self.epsilon_spent

    @property
    def delta_left(self) -> float:
        return self.delta_total - self.delta_spent


class PrivacyLedger:
    def __init__(self, path: Path):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=60, isolation_level=None)

    def open_release(self, name: str, *, epsilon: float, delta: float) -> Balance:
        """Create the release with its total budget; an existing release keeps its total."""
        if epsilon <= 0 or not 0 < delta < 1:
            raise ValueError("a release needs epsilon > 0 and 0 < delta < 1")
        with closing(self._connect()) as db:
            db.execute(
                "INSERT OR IGNORE INTO releases VALUES (?, ?, ?, ?)",
                (name, epsilon, delta, _now()),
            )
        return self.balance(name)

    def balance(self, release: str) -> Balance:
        with closing(self._connect()) as db:
            return _balance(db, release)

    def spend(self, release: str, *, what: str, epsilon: float, delta: float, mechanism: str, accountant: str) -> Balance:
        """Record a spend, or raise BudgetExceeded (saying what is left) and record nothing."""
        if epsilon < 0 or delta < 0:
            raise ValueError("a spend cannot be negative")
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                balance = _balance(db, release)
                if epsilon > balance.epsilon_left + 1e-12 or delta > balance.delta_left + 1e-15:
                    raise BudgetExceeded(
                        f"release {release!r}: spending ε={epsilon:g}, δ={delta:g} for {what!r} would pass the "
                        f"budget; left: ε={balance.epsilon_left:g}, δ={balance.delta_left:g}"
                    )
                db.execute(
                    "INSERT INTO spends (release, what, mechanism, accountant, epsilon, delta, spent_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (release, what, mechanism, accountant, epsilon, delta, _now()),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return _balance(db, release)

    def spends(self, release: str) -> list[dict]:
        with closing(self._connect()) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM spends WHERE release = ? ORDER BY id", (release,)).fetchall()
        return [dict(row) for row in rows]


def _balance(db: sqlite3.Connection, release: str) -> Balance:
    total = db.execute("SELECT epsilon, delta FROM releases WHERE name = ?", (release,)).fetchone()
    if total is None:
        raise KeyError(f"no privacy release named {release!r}; open it with a total budget first")
    spent = db.execute(
        "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM spends WHERE release = ?", (release,)
    ).fetchone()
    return Balance(release, total[0], total[1], spent[0], spent[1])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
