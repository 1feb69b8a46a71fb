"""City-wide statistics, read only from the differentially private releases.

Anything the service shows beyond one class or one school comes from here: the five-domain norms
and the fitness pass rates `portrait statistics` released through OpenDP (`training.statistics`
describes the files). Suppressed cells stay empty; every figure carries the ε its release spent.

Combining released cells (both sexes of a grade) is post-processing of noisy counts: it costs no
further privacy budget. So is putting a cohort's percentiles back in order: each is released with
its own noise, and in a small cohort p75 can come out below p50. The service shows them sorted
(the rearrangement of crossing quantile estimates), never a p75 under a p50.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

NORMS_FILE = "five_domain_norms.parquet"
PASS_RATES_FILE = "fitness_pass_rates.parquet"
NORM_STATISTICS = ("p10", "p25", "p50", "p75", "p90")


@dataclass(frozen=True)
class DomainNorm:
    domain: str
    percentiles: dict[str, float | None]  # p10 ... p90; None where suppressed


@dataclass(frozen=True)
class FiveDomainNorms:
    grade: int
    sex: str
    term_end: str | None
    count: float | None  # the noisy number of students in the cell (None: suppressed)
    suppressed: bool
    epsilon: float  # what the whole norms release spent per student (parallel over cells)
    mechanism: str
    domains: dict[str, DomainNorm]


@dataclass(frozen=True)
class PassRateCell:
    school_year: int
    grade: int
    sex: str | None  # None: both sexes combined (post-processing)
    tested: float | None
    passing: float | None
    pass_rate: float | None
    suppressed: bool
    epsilon: float


class DPReleases:
    """The release files under `statistics_dir`, parsed once per version of each file."""

    def __init__(self, statistics_dir: Path) -> None:
        self.statistics_dir = Path(statistics_dir)
        self._parsed: dict[str, tuple[tuple | None, object]] = {}
        self._lock = threading.Lock()

    def five_domain_norms(self, grade: int | None, sex: str | None) -> FiveDomainNorms | None:
        """The norms of the student's cohort (grade × sex); None when not released."""
        if grade is None or sex is None:
            return None
        return self._load(NORMS_FILE, _parse_norms).get((int(grade), str(sex)))

    def fitness_pass_rates(self) -> list[PassRateCell]:
        """Per grade × sex, then per grade with both sexes combined (sex None)."""
        return list(self._load(PASS_RATES_FILE, _parse_pass_rates))

    def _load(self, name: str, parse):
        path = self.statistics_dir / name
        try:
            stat = path.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        # Parsed under the lock: when a new release lands, the requests arriving together must not
        # all parse it at once (each parse holds the GIL for tens of milliseconds).
        with self._lock:
            cached = self._parsed.get(name)
            if cached is not None and cached[0] == signature:
                return cached[1]
            parsed = parse(pd.read_parquet(path)) if signature is not None else parse(None)
            self._parsed[name] = (signature, parsed)
            return parsed


def _parse_norms(table: pd.DataFrame | None) -> dict[tuple[int, str], FiveDomainNorms]:
    if table is None or table.empty:
        return {}
    norms = {}
    for (grade, sex), cell in table.groupby(["grade", "sex"], sort=True):
        count = cell[cell["statistic"] == "count"]
        domains = {}
        for domain, rows in cell[cell["domain"].notna()].groupby("domain", sort=False):
            values = dict(zip(rows["statistic"], rows["value"]))
            domains[str(domain)] = DomainNorm(str(domain), _in_order({name: _number(values.get(name))
                                                                      for name in NORM_STATISTICS}))
        norms[(int(grade), str(sex))] = FiveDomainNorms(
            grade=int(grade), sex=str(sex),
            term_end=_date(cell["term_end"].iloc[0]) if "term_end" in cell else None,
            count=_number(count["value"].iloc[0]) if len(count) else None,
            suppressed=bool(cell["suppressed"].all()),
            epsilon=float(cell["epsilon"].sum()),
            mechanism="; ".join(sorted(set(cell["mechanism"].astype(str)))),
            domains=domains,
        )
    return norms


def _in_order(percentiles: dict[str, float | None]) -> dict[str, float | None]:
    """The released percentiles sorted into p10 <= p25 <= ... <= p90 (post-processing); a set with a
    suppressed (None) value stays as released."""
    values = [percentiles[name] for name in NORM_STATISTICS]
    if any(value is None for value in values):
        return percentiles
    return dict(zip(NORM_STATISTICS, sorted(values)))


def _parse_pass_rates(table: pd.DataFrame | None) -> tuple[PassRateCell, ...]:
    if table is None or table.empty:
        return ()
    cells = []
    for (year, grade, sex), rows in table.groupby(["school_year", "grade", "sex"], sort=True):
        values = dict(zip(rows["statistic"], rows["value"]))
        counts = rows[rows["statistic"].isin(["tested", "passing"])]
        cells.append(PassRateCell(
            school_year=int(year), grade=int(grade), sex=str(sex), tested=_number(values.get("tested")),
            passing=_number(values.get("passing")), pass_rate=_number(values.get("pass_rate")),
            suppressed=bool(rows["suppressed"].any()), epsilon=float(counts["epsilon"].sum())))
    combined = []
    for grade in sorted({cell.grade for cell in cells}):
        both = [cell for cell in cells if cell.grade == grade]
        usable = all(cell.tested is not None and cell.passing is not None for cell in both)
        tested = sum(cell.tested for cell in both) if usable else None
        passing = sum(cell.passing for cell in both) if usable else None
        rate = min(max(passing / tested, 0.0), 1.0) if usable and tested and tested > 0 else None
        combined.append(PassRateCell(
            school_year=both[0].school_year, grade=grade, sex=None, tested=tested, passing=passing,
            pass_rate=rate, suppressed=not usable, epsilon=max(cell.epsilon for cell in both)))
    return tuple(cells + combined)


def _number(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _date(value) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date().isoformat()
