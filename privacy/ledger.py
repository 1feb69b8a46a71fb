"""The privacy budget ledger: every model and statistic spends (ε, δ) from a release's total.

A release is the data of one school year as the lake holds it (named by the year, e.g. "2025"),
with a total (ε, δ) the data officer sets once. Its budget belongs to the year, not to a lake
version: re-ingesting a corrected export does not hand out a fresh budget for the same students.
Each spend records what was computed, from which lake snapshot, by which mechanism and accountant.

Composition. Spends compose by basic (sequential) composition: the ε's add up and so do the δ's.
That holds for any mix of mechanisms (DP-SGD runs, Laplace counts, exponential-mechanism
quantiles) and is what the ledger enforces. It is loose: inside one spend the tighter accountant
already did its work (PRV over the thousands of DP-SGD steps of one training; OpenDP's own
composition inside one statistics release), so only the few spends between jobs compose loosely.

Refusal comes first. `spend` is called before the caller touches the data, and refuses (saying
what is left) when the total would be passed. A job that fails after its spend keeps it spent:
it may already have read the data, so giving the budget back would be a claim we cannot check.

Storage is SQL through SQLAlchemy: a SQLite file under PORTRAIT_HOME by default, PostgreSQL at
scale (`PORTRAIT_PRIVACY_LEDGER_URL`). Concurrent spends from parallel jobs are serialized: on
SQLite the spend transaction starts with `BEGIN IMMEDIATE` (the write lock before the balance is
read), on PostgreSQL it locks the release row (`SELECT ... FOR UPDATE`). Exactly the spends that
fit get through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

_metadata = sa.MetaData()
releases = sa.Table(
    "releases", _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("delta", sa.Float, nullable=False),
    sa.Column("snapshot", sa.String(128), nullable=False, default=""),  # lake version when opened
    sa.Column("created_at", sa.String(32), nullable=False),
)
spends = sa.Table(
    "spends", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("release", sa.String(64), sa.ForeignKey("releases.name"), nullable=False),
    sa.Column("what", sa.String(256), nullable=False),
    sa.Column("mechanism", sa.String(128), nullable=False),
    sa.Column("accountant", sa.String(128), nullable=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("delta", sa.Float, nullable=False),
    sa.Column("snapshot", sa.String(128), nullable=False, default=""),  # lake version the spend read
    sa.Column("spent_at", sa.String(32), nullable=False),
)

# Float sums of many small spends can land a hair above the total: forgive that, nothing more.
_EPSILON_SLACK, _DELTA_SLACK = 1e-9, 1e-15


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
        return max(self.epsilon_total - self.epsilon_spent, 0.0)

    @property
    def delta_left(self) -> float:
        return max(self.delta_total - self.delta_spent, 0.0)


@dataclass(frozen=True)
class Receipt:
    """What a spend recorded: its ledger row(s), and the release's balance right after."""

    ids: tuple[int, ...]
    balance: Balance


class PrivacyLedger:
    """Releases and their spends, in a SQL database given as a SQLAlchemy URL or a SQLite path."""

    def __init__(self, url: str | Path):
        url = str(url) if "://" in str(url) else f"sqlite:///{Path(url).resolve()}"
        database = sa.engine.make_url(url).database
        if url.startswith("sqlite") and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                                        connect_args={"timeout": 60} if url.startswith("sqlite") else {})
        if self._engine.dialect.name == "sqlite":
            _begin_immediate(self._engine)
        _metadata.create_all(self._engine)

    def open_release(self, name: str, *, epsilon: float, delta: float, snapshot: str = "") -> Balance:
        """Create the release with its total budget; an existing release keeps its total."""
        if not epsilon > 0 or not 0 < delta < 1:
            raise ValueError(f"release {name!r} needs epsilon > 0 and 0 < delta < 1 (got ε={epsilon}, δ={delta})")
        with self._engine.begin() as db:
            exists = db.execute(sa.select(releases.c.name).where(releases.c.name == name)).first()
            if exists is None:
                db.execute(releases.insert().values(name=name, epsilon=epsilon, delta=delta, snapshot=snapshot,
                                                    created_at=_now()))
        return self.balance(name)

    def releases(self) -> list[Balance]:
        with self._engine.connect() as db:
            names = db.execute(sa.select(releases.c.name).order_by(releases.c.created_at, releases.c.name)).scalars()
            return [_balance(db, name) for name in list(names)]

    def balance(self, release: str) -> Balance:
        with self._engine.connect() as db:
            return _balance(db, release)

    def spend(self, release: str, *, what: str, epsilon: float, delta: float, mechanism: str, accountant: str,
              snapshot: str = "") -> Receipt:
        """Record a spend, or raise BudgetExceeded (saying what is left) and record nothing."""
        return self.spend_all(release, [dict(what=what, epsilon=epsilon, delta=delta, mechanism=mechanism,
                                             accountant=accountant)], snapshot=snapshot)

    def spend_all(self, release: str, items: list[dict], *, snapshot: str = "") -> Receipt:
        """Record several spends (dicts of what, epsilon, delta, mechanism, accountant) all or none.

        A job releasing many statistics pays for all of them in one transaction: it never ends up
        half paid because a parallel job took the rest of the budget in between.
        """
        for item in items:
            if not (item["epsilon"] >= 0 and item["delta"] >= 0):
                raise ValueError(f"a spend cannot be negative (got ε={item['epsilon']}, δ={item['delta']} "
                                 f"for {item['what']!r})")
        epsilon, delta = sum(i["epsilon"] for i in items), sum(i["delta"] for i in items)
        what = items[0]["what"] if len(items) == 1 else f"{len(items)} spends ({items[0]['what']}, ...)"
        with self._engine.begin() as db:
            balance = _balance(db, release, lock=True)
            if epsilon > balance.epsilon_left + _EPSILON_SLACK or delta > balance.delta_left + _DELTA_SLACK:
                raise BudgetExceeded(
                    f"release {release!r}: spending ε={epsilon:g}, δ={delta:g} for {what!r} would pass the "
                    f"budget; left: ε={balance.epsilon_left:g}, δ={balance.delta_left:g}")
            now = _now()
            ids = tuple(db.execute(spends.insert().values(**item, release=release, snapshot=snapshot, spent_at=now)
                                   ).inserted_primary_key[0] for item in items)
            return Receipt(ids, _balance(db, release))

    def settle(self, spend_id: int, *, epsilon: float, delta: float) -> Balance:
        """Lower a recorded spend to what the mechanism really used (e.g. the ε its accountant read back).

        Training spends its target before it starts (the reservation), and the accountant reports
        the exact ε afterwards, a little below. Settling can only lower a spend, never raise it:
        raising would be spending without the check.
        """
        with self._engine.begin() as db:
            row = db.execute(sa.select(spends.c.release, spends.c.epsilon, spends.c.delta)
                             .where(spends.c.id == spend_id).with_for_update()).first()
            if row is None:
                raise KeyError(f"no spend with id {spend_id}")
            if epsilon > row.epsilon or delta > row.delta or epsilon < 0 or delta < 0:
                raise ValueError(f"spend {spend_id} reserved ε={row.epsilon:g}, δ={row.delta:g}; it can only be "
                                 f"settled lower, not at ε={epsilon:g}, δ={delta:g}")
            db.execute(spends.update().where(spends.c.id == spend_id).values(epsilon=epsilon, delta=delta))
            return _balance(db, row.release)

    def spends(self, release: str) -> list[dict]:
        with self._engine.connect() as db:
            rows = db.execute(sa.select(spends).where(spends.c.release == release).order_by(spends.c.id))
            return [dict(row._mapping) for row in rows]


def _balance(db: sa.Connection, release: str, *, lock: bool = False) -> Balance:
    query = sa.select(releases.c.epsilon, releases.c.delta).where(releases.c.name == release)
    total = db.execute(query.with_for_update() if lock else query).first()
    if total is None:
        raise KeyError(f"no privacy release named {release!r}; the data officer opens it with a total budget "
                       f"(portrait privacy open {release} --epsilon E --delta D)")
    spent = db.execute(
        sa.select(sa.func.coalesce(sa.func.sum(spends.c.epsilon), 0.0),
                  sa.func.coalesce(sa.func.sum(spends.c.delta), 0.0))
        .where(spends.c.release == release)
    ).one()
    return Balance(release, float(total.epsilon), float(total.delta), float(spent[0]), float(spent[1]))


def _begin_immediate(engine: sa.Engine) -> None:
    """SQLite: take the write lock when a transaction begins, before it reads the balance.

    pysqlite's own deferred BEGIN would let two spends read the same balance and both commit;
    the SQLAlchemy documentation's recipe hands transaction control to these events instead.
    """
    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
