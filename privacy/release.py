"""Differentially private statistics by cohort: counts, means and quantiles, released through OpenDP.

Unit of privacy: one student. The caller names the column that identifies a student (`unit`, e.g.
`student_key`); OpenDP takes it as the privacy unit's identifier (`dp.unit_of(contributions=1,
identifier=...)`) and the query keeps at most ONE row per student in the whole release
(`truncate_per_group(1)`, a random one when a student has several), so a student influences at most
one cohort cell by at most one row, whatever the input holds. OpenDP's privacy map sees that bound.

Mechanisms (OpenDP's Polars `Context` API; nothing here draws noise itself):
- counts: the integer (discrete) Laplace mechanism on the cell sizes, signed (negative noisy counts
  are kept, not clamped at 0, so the noise is unbiased; suppression hides them anyway);
- means: a noisy sum over a noisy count, both integer Laplace. The values are clipped to the
  caller's bounds and summed as whole steps of 1/10000 of the range from the bounds' midpoint, so
  the sum's sensitivity is exactly half the range. ε is split EVENLY between the sum and the count:
  OpenDP calibrates one scale relative to each sensitivity, so the count's scale is 2/ε and the
  sum's (high - low)/ε in value units. mean = midpoint + noisy sum / noisy count, clipped to the
  bounds (post-processing, free);
- quantiles: the exponential mechanism over fixed candidates (a grid over the caller's bounds),
  one per requested quantile. ε is split evenly over the quantiles, plus a noisy count (a query of
  its own, so that its share is exact) when the call must decide suppression itself, i.e. when no
  earlier `dp_counts` release over the same cells is passed as `counts`.
Every statistic is pure ε-DP (δ = 0); the statistics of one call compose sequentially to its ε.

Cohort keys are PUBLIC: the caller passes the whole key domain (grades × sexes × districts from the
public registry, never read from the data). Every key is released, also those with no rows (their
noisy count sits around 0), so which keys appear says nothing about who is in the data.

Suppression: a cell whose NOISY count is below `min_count` (10) is suppressed after the noise, and so
is every other statistic of that cell (its mean, its quantiles). Suppressing on the noisy count is
post-processing and costs no ε; a suppressed cell still reports its ε, mechanism and scale.

Budget: when a `budget` is given (e.g. `training.budget.Budget`: a ledger and a release), the
call's ε is spent from the ledger BEFORE any data is touched; an over-budget call raises
`BudgetExceeded` and computes nothing. Argument mistakes are caught before the spend.
Bounds (value ranges, quantile candidates) always come from the caller, fixed in advance.
OpenDP draws its noise from the operating system's CSPRNG and cannot be seeded.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import polars as pl
import opendp.prelude as dp
from opendp.accuracy import summarize_polars_measurement

# "contrib" is OpenDP's opt-in for its not-yet-vetted components, the Polars API among them.
# "honest-but-curious" is NOT enabled: nothing here passes custom Python functions to OpenDP.
dp.enable_features("contrib")

MIN_COUNT = 10  # small-cell rule of the house: fewer than 10 students is never published
ACCOUNTANT = "pure ε-DP, sequential composition"
# A public upper bound on the rows (students) of one cohort cell, part of the data's domain for
# OpenDP (it bounds integer sums against overflow). OpenDP does not check it against the data, so
# it is loose on purpose: above the whole city the engine is sized for (the CLI's 1.2 M students).
MAX_CELL_ROWS = 2_000_000
# A mean sums its values as whole steps of (high - low) / MEAN_STEPS from the bounds' midpoint:
# exact integer sensitivity, at a rounding of at most 1/20000 of the range per value.
MEAN_STEPS = 10_000
DEFAULT_CANDIDATES = 201  # quantile candidates: a grid of this many points over the bounds

_CELL = "_cell"  # position of a key in the caller's key table (puts the answer back in that order)
COLUMNS = ["statistic", "value", "suppressed", "epsilon", "mechanism", "noise_scale"]
# What each function records on the ledger as its mechanism (a job that spends up front uses them too).
COUNT_MECHANISM = "OpenDP integer Laplace (count)"
MEAN_MECHANISM = "OpenDP integer Laplace (sum of steps) + integer Laplace (count)"
QUANTILE_MECHANISM = "OpenDP exponential mechanism (quantiles)"


class Budget(Protocol):
    """Where a call's ε is spent: anything with the ledger's spend (`training.budget.Budget` is one).

    `spend` records the spend or raises `privacy.ledger.BudgetExceeded` and records nothing.
    """

    def spend(self, *, what: str, epsilon: float, delta: float, mechanism: str, accountant: str) -> object: ...


@dataclass(frozen=True)
class Release:
    """One call's statistics: `table` has the key columns, then COLUMNS, one row per key and statistic.

    `value` is null where `suppressed`. `epsilon` per row is that statistic's share of the call's ε
    (a mean's row carries its sum's and its count's). `noise_scale` is the scale OpenDP reports:
    for counts and means the Laplace scale in the statistic's units (a mean: of its sum); for
    quantiles the exponential mechanism's scale in OpenDP's internal integer score units (they
    depend on the quantile and on MAX_CELL_ROWS), comparable only between releases of one quantile.
    `epsilon` here is the call's total (what was spent) and `epsilon_map` what OpenDP's privacy
    map gives for the measurement that ran (≤ epsilon; the scale search stops just under it).
    """

    what: str
    table: pd.DataFrame
    epsilon: float
    epsilon_map: float
    by: tuple[str, ...]
    unit: str
    min_count: int
    delta: float = 0.0

    def values(self, statistic: str) -> pd.DataFrame:
        """The key columns and `value` / `suppressed` of one statistic, one row per key."""
        rows = self.table[self.table["statistic"] == statistic]
        return rows[[*self.by, "value", "suppressed"]].reset_index(drop=True)


def key_grid(**levels: Iterable) -> pd.DataFrame:
    """The public key domain as the product of each column's public levels: key_grid(grade=range(1, 13), sex="mf")."""
    names = list(levels)
    rows = list(itertools.product(*(list(values) for values in levels.values())))
    return pd.DataFrame(rows, columns=names)


def dp_counts(frame: pd.DataFrame, *, by: Sequence[str], keys: pd.DataFrame, unit: str, epsilon: float,
              budget: Budget | None = None, what: str | None = None, min_count: int = MIN_COUNT) -> Release:
    """Noisy number of students per cohort key (integer Laplace, scale 1/ε), small cells suppressed."""
    what = what or f"count by {' × '.join(by)}"
    _check(frame, by=by, keys=keys, unit=unit, epsilon=epsilon, min_count=min_count)
    _spend(budget, what=what, epsilon=epsilon, mechanism=COUNT_MECHANISM)
    noisy = _noisy(frame, by=by, keys=keys, unit=unit, epsilon=epsilon, what=what,
                   statistics={"count": dp.len(signed=True)})
    return noisy.release(["count"], suppressed=_small(noisy.cells["count"], min_count), min_count=min_count)


def dp_means(frame: pd.DataFrame, *, value: str, bounds: tuple[float, float], by: Sequence[str], keys: pd.DataFrame,
             unit: str, epsilon: float, budget: Budget | None = None, what: str | None = None,
             min_count: int = MIN_COUNT) -> Release:
    """Noisy mean of `value` per cohort key: noisy clipped sum / noisy count, ε split evenly between them.

    Rows without a value are left out (the count is of students with a value). Releases the
    statistics "count" (ε/2) and "mean" (ε: its sum's ε/2 and the count's); the count decides suppression.
    """
    what = what or f"mean of {value} by {' × '.join(by)}"
    low, high = _check_bounds(bounds)
    _check(frame, by=by, keys=keys, unit=unit, epsilon=epsilon, min_count=min_count, value=value)
    _spend(budget, what=what, epsilon=epsilon, mechanism=MEAN_MECHANISM)
    # Sum whole steps from the midpoint: an integer sum has OpenDP's exact sensitivity (half the
    # range), where a float sum pays a rounding slack that grows with the cells and their size.
    middle, step, half = (low + high) / 2, (high - low) / MEAN_STEPS, MEAN_STEPS // 2
    columns = [unit, *by, value]
    steps = frame[columns].assign(**{value: np.rint((frame[value].astype(float).clip(low, high) - middle) / step)})
    noisy = _noisy(steps, by=by, keys=keys, unit=unit, epsilon=epsilon, what=what, value=value, value_type=pl.Int64,
                   statistics={"count": dp.len(signed=True), "sum": pl.col(value).dp.sum((-half, half))})
    count = noisy.cells["count"]
    suppressed = _small(count, min_count)
    # Post-processing; released cells have count ≥ min_count ≥ 1, so never a division by zero.
    mean = (middle + noisy.cells["sum"] * step / count.where(~suppressed)).clip(low, high)
    noisy.add("mean", mean, epsilon=epsilon, scale=noisy.scale_of["sum"] * step,  # its sum's, in value units
              mechanism=f"{noisy.mechanism_of['sum']} sum / {noisy.mechanism_of['count']} count")
    return noisy.release(["count", "mean"], suppressed=suppressed, min_count=min_count)


def dp_quantiles(frame: pd.DataFrame, *, value: str, bounds: tuple[float, float], quantiles: Sequence[float],
                 by: Sequence[str], keys: pd.DataFrame, unit: str, epsilon: float, counts: Release | None = None,
                 candidates: int = DEFAULT_CANDIDATES, budget: Budget | None = None, what: str | None = None,
                 min_count: int = MIN_COUNT) -> Release:
    """Noisy quantiles of `value` per cohort key (exponential mechanism over a fixed grid of candidates).

    Statistics are named "p10", "p50", ... (`quantiles` are fractions in (0, 1)); rows without a
    value are left out. Suppression follows `counts`, an earlier `dp_counts` release over the same
    keys and students, at no extra ε; without it the call also releases a noisy "count" and ε is
    split evenly over it and the quantiles.
    """
    what = what or f"quantiles of {value} by {' × '.join(by)}"
    low, high = _check_bounds(bounds)
    names = _quantile_names(quantiles)
    if candidates < 2:
        raise ValueError("candidates: need at least 2 grid points")
    _check(frame, by=by, keys=keys, unit=unit, epsilon=epsilon, min_count=min_count, value=value)
    if counts is not None:
        _check_counts(counts, by=by, keys=keys)
    grid = [float(c) for c in np.linspace(low, high, candidates)]
    statistics = {name: pl.col(value).dp.quantile(q, grid) for name, q in zip(names, quantiles)}
    mechanism = QUANTILE_MECHANISM if counts is not None else f"{QUANTILE_MECHANISM} + integer Laplace (count)"
    _spend(budget, what=what, epsilon=epsilon, mechanism=mechanism)
    common = dict(by=by, keys=keys, unit=unit, what=what, value=value)
    if counts is not None:
        noisy = _noisy(frame, epsilon=epsilon, statistics=statistics, **common)
        # The earlier release's cells are ours in the same order (checked above): its noisy counts decide.
        return noisy.release(names, suppressed=counts.values("count")["suppressed"], min_count=min_count)
    # The count is its own query so that it gets exactly its share: in one query OpenDP's common
    # scale would give each quantile (exponential mechanism) twice the ε of the count.
    count_epsilon = epsilon / (len(names) + 1)
    noisy = _noisy(frame, epsilon=count_epsilon, statistics={"count": dp.len(signed=True)}, **common)
    noisy.merge(_noisy(frame, epsilon=epsilon - count_epsilon, statistics=statistics, **common))
    return noisy.release(["count", *names], suppressed=_small(noisy.cells["count"], min_count), min_count=min_count)


# ---------------------------------------------------------------------------------------------
# The one place OpenDP runs
# ---------------------------------------------------------------------------------------------


@dataclass
class _Noisy:
    """One OpenDP query's answer: one row per public key (caller's order), one column per statistic."""

    what: str
    by: list[str]
    unit: str
    epsilon: float
    epsilon_map: float
    cells: pd.DataFrame  # key columns, then one noisy column per statistic
    epsilon_of: dict[str, float]
    mechanism_of: dict[str, str]
    scale_of: dict[str, float]

    def merge(self, other: _Noisy) -> None:
        """Take in another query's statistics over the same keys (sequential composition: ε's add)."""
        for name in other.epsilon_of:
            self.add(name, other.cells[name], epsilon=other.epsilon_of[name], mechanism=other.mechanism_of[name],
                     scale=other.scale_of[name])
        self.epsilon += other.epsilon
        self.epsilon_map += other.epsilon_map

    def add(self, name: str, values: pd.Series, *, epsilon: float, mechanism: str, scale: float) -> None:
        self.cells[name] = values
        self.epsilon_of[name], self.mechanism_of[name], self.scale_of[name] = epsilon, mechanism, scale

    def release(self, statistics: list[str], *, suppressed, min_count: int) -> Release:
        """The long table of these statistics, with every statistic of a suppressed cell nulled."""
        suppressed = np.asarray(suppressed, dtype=bool)
        parts = []
        for name in statistics:  # a handful of statistics, each a vectorised column over all cells
            part = self.cells[self.by].copy()
            part["statistic"] = name
            part["value"] = self.cells[name].astype("Float64").mask(suppressed)
            part["suppressed"] = suppressed
            part["epsilon"] = self.epsilon_of[name]
            part["mechanism"] = self.mechanism_of[name]
            part["noise_scale"] = float(self.scale_of[name])
            part["_order"] = np.arange(len(part))
            parts.append(part)
        table = (pd.concat(parts, ignore_index=True).sort_values("_order", kind="stable")
                 .drop(columns="_order").reset_index(drop=True))
        return Release(what=self.what, table=table, epsilon=self.epsilon, epsilon_map=self.epsilon_map,
                       by=tuple(self.by), unit=self.unit, min_count=min_count)


def _noisy(frame: pd.DataFrame, *, by: Sequence[str], keys: pd.DataFrame, unit: str, epsilon: float, what: str,
           statistics: dict[str, pl.Expr], value: str | None = None, value_type=pl.Float64) -> _Noisy:
    """Run one OpenDP query: all `statistics` per public key, ε split evenly over them."""
    by = list(by)
    data = _private_frame(frame, by=by, unit=unit, value=value, value_type=value_type)
    public_keys = _public_keys(keys, by=by, schema=data.schema)
    context = dp.Context.compositor(
        data=data.lazy(),
        privacy_unit=dp.unit_of(contributions=1, identifier=pl.col(unit)),
        privacy_loss=dp.loss_of(epsilon=epsilon),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=by, max_length=MAX_CELL_ROWS)],
    )
    query = (
        context.query()
        .truncate_per_group(1)  # one row per student in the whole release: the unit's contribution bound
        .group_by(*by)
        .agg(*(expr.alias(name) for name, expr in statistics.items()))
        .with_keys(public_keys, on=by)  # every public key, present in the data or not
    )
    measurement = query.resolve()
    epsilon_map = float(measurement.map(1))  # OpenDP's own privacy map at a distance of one student
    if epsilon_map > epsilon * (1 + 1e-9):
        raise RuntimeError(f"{what}: OpenDP's privacy map gives ε={epsilon_map}, more than the declared {epsilon}")
    summary = summarize_polars_measurement(measurement).to_pandas().drop_duplicates("column").set_index("column")
    answer = context(measurement).collect()
    # Back into the caller's key order (the answer has each public key exactly once).
    cells = (public_keys.with_row_index(_CELL).join(answer, on=by, how="left", nulls_equal=True)
             .sort(_CELL).drop(_CELL).to_pandas())
    return _Noisy(
        what=what, by=by, unit=unit, epsilon=epsilon, epsilon_map=epsilon_map, cells=cells,
        # OpenDP's global scale is relative to each statistic's sensitivity: an even split of ε among
        # statistics of one mechanism family (counts and sums; quantiles), which is all we ever mix.
        epsilon_of={name: epsilon / len(statistics) for name in statistics},
        mechanism_of={name: summary.at[name, "distribution"] for name in statistics},
        scale_of={name: float(summary.at[name, "scale"]) for name in statistics},
    )


def _private_frame(frame: pd.DataFrame, *, by: list[str], unit: str, value: str | None,
                   value_type=pl.Float64) -> pl.DataFrame:
    """The columns the query needs, as Polars; rows without a unit (or without a value) are left out."""
    columns = [unit, *by] + ([value] if value else [])
    rows = frame[columns]
    keep = rows[unit].notna()
    if value:
        keep &= rows[value].notna() & np.isfinite(rows[value].astype(float))
    data = pl.from_pandas(rows[keep].reset_index(drop=True))
    data = data.with_columns(pl.col(unit).cast(pl.String))
    if value:
        data = data.with_columns(pl.col(value).cast(value_type))
    return data.with_columns(pl.col(c).cast(pl.String) for c in by if data.schema[c] in (pl.Categorical, pl.Enum))


def _public_keys(keys: pd.DataFrame, *, by: list[str], schema: pl.Schema) -> pl.DataFrame:
    """The caller's key table, de-duplicated and typed like the data."""
    table = keys[by].drop_duplicates().reset_index(drop=True)
    return pl.from_pandas(table).cast({c: schema[c] for c in by})


def _small(count: pd.Series, min_count: int) -> pd.Series:
    """The small-cell rule on NOISY counts (a missing count, which should not happen, is small too)."""
    return ~(count.astype(float) >= min_count)


def _spend(budget: Budget | None, *, what: str, epsilon: float, mechanism: str) -> None:
    # Before any data is touched: an over-budget call raises BudgetExceeded here and computes nothing.
    if budget is not None:
        budget.spend(what=what, epsilon=epsilon, delta=0.0, mechanism=mechanism, accountant=ACCOUNTANT)


# ---------------------------------------------------------------------------------------------
# Checks (before the budget is spent, so a typo costs no ε)
# ---------------------------------------------------------------------------------------------


def _check(frame: pd.DataFrame, *, by: Sequence[str], keys: pd.DataFrame, unit: str, epsilon: float,
           min_count: int, value: str | None = None) -> None:
    if isinstance(by, str):
        raise TypeError("by: pass a list of column names, e.g. ['grade', 'sex']")
    if not by:
        raise ValueError("by: at least one cohort column")
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, not {epsilon!r}")
    needed = [unit, *by] + ([value] if value else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise KeyError(f"frame has no column(s) {missing}")
    missing_keys = [c for c in by if c not in keys.columns]
    if missing_keys:
        raise KeyError(f"keys has no column(s) {missing_keys}: pass the public key domain of every `by` column")
    for column in by:  # the key table must join the data: same kind of values (a schema check only)
        if pd.api.types.is_numeric_dtype(frame[column]) != pd.api.types.is_numeric_dtype(keys[column]):
            raise TypeError(f"keys[{column!r}] ({keys[column].dtype}) and frame[{column!r}] ({frame[column].dtype}) "
                            f"are not the same kind of value")
    if len(keys) == 0:
        raise ValueError("keys is empty: pass the public key domain (e.g. key_grid(grade=range(1, 13), sex='mf'))")
    if min_count < MIN_COUNT:
        warnings.warn(f"min_count={min_count} is below the house small-cell rule ({MIN_COUNT}): cells of fewer "
                      f"than {MIN_COUNT} students may be published", stacklevel=3)


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(b) for b in bounds)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"bounds must be finite with low < high, not {bounds!r} "
                         f"(fix them in advance, never from the data)")
    return low, high


def _quantile_names(quantiles: Sequence[float]) -> list[str]:
    if not quantiles or any(not 0 < q < 1 for q in quantiles):
        raise ValueError(f"quantiles must be fractions in (0, 1), not {quantiles!r}")
    names = [f"p{100 * q:g}" for q in quantiles]
    if len(set(names)) != len(names):
        raise ValueError(f"quantiles repeat: {quantiles!r}")
    return names


def _check_counts(counts: Release, *, by: Sequence[str], keys: pd.DataFrame) -> None:
    """`counts` must be a count release over exactly these keys, in this order (its cells index ours)."""
    own = keys[list(by)].drop_duplicates().reset_index(drop=True)
    theirs = counts.values("count")[list(counts.by)] if "count" in set(counts.table["statistic"]) else None
    if theirs is None or list(counts.by) != list(by) or not own.astype(str).equals(theirs.astype(str)):
        raise ValueError("counts: pass a dp_counts release over the same `by` columns and keys")
