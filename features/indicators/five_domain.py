"""Five-domain (德智体美劳) scores: one 0-100 score per domain and term, from weighted indicators.

Family `student_five_domain` (entity student; one row per student and term in which any source
below has a row, dated the term's end_date at 00:00 UTC):
    de                float  德 moral score, 0-100
    zhi               float  智 intellectual score, 0-100
    ti                float  体 physical score, 0-100
    mei               float  美 aesthetic score, 0-100
    lao               float  劳 labor score, 0-100
    domains_computed  int    how many of the five scores could be computed (0-5)
    overall           float  mean of the computed domain scores (empty if none)

How a domain score is made (horizontal evaluation, 全要素横向评价):
1. Each indicator (INDICATORS) is mapped to 0-100 by a FIXED range, never learned from the data
   (so a score of one student does not depend on the others, which DP releases of norms need):
   value `low` scores 0, value `high` scores 100, linear in between, clipped outside; `low > high`
   means lower is better (discipline events, failed subjects).
2. The domain score is the weighted mean of its indicators (DOMAIN_WEIGHTS: weights >= 0 summing
   to 1 per domain) over the indicators the student HAS that term: the weights of missing ones
   are renormalized away (a primary pupil without a politics grade is scored on the rest). With
   none available the domain is empty and does not count in `domains_computed`.
3. Configure by passing other weights (and ranges) to `five_domain_family(weights, indicators)`;
   both are validated (`validate_weights`) when the family is made, so a bad table fails loudly.

Default weights (each domain sums to 1):
    de   discipline_events .30, attendance_rate .20, moral_share .20, volunteer_hours .20, honors .10
    zhi  mean_share .60, failed_subjects .20, literacy_mean .20
    ti   fitness_total .80, pe_share .20
    mei  arts_hours .30, music_share .25, art_share .25, performances .20
    lao  labor_hours .40, labor_skill .30, labor_share .30

Where indicators come from, and point in time (a score dated term t uses nothing after t's end):
- The families' own Parquet outputs in the SAME output folder (`out_path.parent/<family>.parquet`):
  student_academics, student_moral, student_aesthetic_labor, student_attendance (the row of term
  t itself) and student_literacy (the latest row of term t or t-1: literacy is assessed yearly).
  This family therefore RUNS AFTER those (it is last in FAMILIES order across the modules). A
  sibling file that is missing, or older than the newest lake table, is rebuilt in a scratch
  folder instead of being trusted, so the result is right in any order, only slower.
- 体: the fitness total score (national standard, 0-120 with bonus; clipped to 100 here) of the
  latest test dated on or before the term's end from the term's school year or the one before
  (a school year's test applies to its terms only from its test_date on). Read from
  `student_fitness.parquet` in the output folder if fresh, else scored from lake `fitness_tests`
  with `features.indicators.fitness.score_fitness_tests`, in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.parquet as pq

from features.indicators import academics, aesthetic_labor, attendance, literacy, moral
from features.indicators.duck import (
    Term,
    fresh_output,
    load_terms,
    sibling,
    sql_str,
    typed,
    workspace,
    write_family,
    write_family_queries,
)
from features.indicators.family import TERM_TTL, IndicatorFamily

DOMAINS = ("de", "zhi", "ti", "mei", "lao")
FITNESS = "student_fitness"  # the fitness indicators' Parquet (features.indicators.fitness)
FITNESS_CHUNK_ROWS = 250_000  # fitness tests scored per pandas chunk
LITERACY_CARRY_TERMS = 2  # a literacy score counts for its term and the next one


@dataclass(frozen=True)
class Indicator:
    """One input of a domain score: `source` family's `column`, mapped `low` → 0 and `high` → 100."""

    source: str
    column: str
    low: float
    high: float
    meaning: str

    def scaled_sql(self, value: str) -> str:
        # (DuckDB's greatest/least skip NULLs, so a missing value must stay NULL explicitly.)
        linear = f"({value} - {self.low!r}) / ({self.high!r} - {self.low!r})"
        return f"CASE WHEN {value} IS NULL THEN NULL ELSE 100.0 * greatest(0.0, least(1.0, {linear})) END"


INDICATORS: Mapping[str, Indicator] = MappingProxyType({
    # 德
    "discipline_events": Indicator("student_moral", "discipline_events", 3.0, 0.0,
                                   "discipline records this term: none → 100, 3 or more → 0"),
    "attendance_rate": Indicator("student_attendance", "attendance_rate", 0.85, 1.0,
                                 "attendance rate: 85 % or less → 0, full attendance → 100"),
    "moral_share": Indicator("student_moral", "moral_share", 0.0, 1.0,
                             "politics / morality share of full mark: 0 → 0, full mark → 100"),
    "volunteer_hours": Indicator("student_moral", "volunteer_hours", 0.0, 20.0,
                                 "volunteer hours this term: 0 → 0, 20 h or more → 100"),
    "honors": Indicator("student_moral", "honors", 0.0, 2.0, "honors this term: 0 → 0, 2 or more → 100"),
    # 智
    "mean_share": Indicator("student_academics", "mean_share", 0.0, 1.0,
                            "mean share of full mark over academic subjects: 0 → 0, full marks → 100"),
    "failed_subjects": Indicator("student_academics", "failed_subjects", 3.0, 0.0,
                                 "failed academic subjects: none → 100, 3 or more → 0"),
    "literacy_mean": Indicator("student_literacy", "literacy_mean", 0.0, 100.0,
                               "mean literacy score (digital, reading, science), already 0-100"),
    # 体
    "fitness_total": Indicator(FITNESS, "total_score", 0.0, 100.0,
                               "fitness total under the national standard: 0 → 0, 100 or more (with bonus) → 100"),
    "pe_share": Indicator("student_aesthetic_labor", "pe_share", 0.0, 1.0, "PE share of full mark"),
    # 美
    "arts_hours": Indicator("student_aesthetic_labor", "arts_hours", 0.0, 30.0,
                            "arts practice hours this term: 0 → 0, 30 h or more → 100"),
    "music_share": Indicator("student_aesthetic_labor", "music_share", 0.0, 1.0, "music share of full mark"),
    "art_share": Indicator("student_aesthetic_labor", "art_share", 0.0, 1.0, "art share of full mark"),
    "performances": Indicator("student_aesthetic_labor", "performances", 0.0, 2.0,
                              "performances this term: 0 → 0, 2 or more → 100"),
    # 劳
    "labor_hours": Indicator("student_aesthetic_labor", "labor_hours", 0.0, 30.0,
                             "labor hours this term: 0 → 0, 30 h or more → 100"),
    "labor_skill": Indicator("student_aesthetic_labor", "labor_skill", 1.0, 5.0,
                             "labor-skill rating: 1 → 0, 5 → 100"),
    "labor_share": Indicator("student_aesthetic_labor", "labor_share", 0.0, 1.0, "labor share of full mark"),
})

DOMAIN_WEIGHTS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "de": {"discipline_events": 0.30, "attendance_rate": 0.20, "moral_share": 0.20, "volunteer_hours": 0.20,
           "honors": 0.10},
    "zhi": {"mean_share": 0.60, "failed_subjects": 0.20, "literacy_mean": 0.20},
    "ti": {"fitness_total": 0.80, "pe_share": 0.20},
    "mei": {"arts_hours": 0.30, "music_share": 0.25, "art_share": 0.25, "performances": 0.20},
    "lao": {"labor_hours": 0.40, "labor_skill": 0.30, "labor_share": 0.30},
})

# Families whose outputs are read (and rebuilt in scratch when missing or stale).
SOURCE_FAMILIES: dict[str, IndicatorFamily] = {
    f.name: f
    for module in (academics, literacy, moral, aesthetic_labor, attendance)
    for f in module.FAMILIES
}
CARRIED = {"student_literacy": LITERACY_CARRY_TERMS}  # sources read from the latest of the last n terms
_SUM_TOLERANCE = 1e-6


def validate_weights(weights: Mapping[str, Mapping[str, float]],
                     indicators: Mapping[str, Indicator] = INDICATORS) -> None:
    """Raise ValueError unless every domain has known indicators with weights >= 0 summing to 1."""
    missing = [d for d in DOMAINS if d not in weights]
    unknown = [d for d in weights if d not in DOMAINS]
    if missing or unknown:
        raise ValueError(f"five-domain weights: domains must be exactly {DOMAINS}; "
                         f"missing {missing}, unknown {unknown}")
    for domain in DOMAINS:
        table = weights[domain]
        if not table:
            raise ValueError(f"five-domain weights: {domain} has no indicators")
        for name, weight in table.items():
            if name not in indicators:
                raise ValueError(f"five-domain weights: {domain}: unknown indicator {name!r} "
                                 f"(known: {', '.join(sorted(indicators))})")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"five-domain weights: {domain}.{name} = {weight!r} is not a finite number")
            if weight < 0:
                raise ValueError(f"five-domain weights: {domain}.{name} = {weight} is negative")
        total = math.fsum(table.values())
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"five-domain weights: {domain} weights sum to {total:.6g}, not 1")
    for name in {n for table in weights.values() for n in table}:
        ind = indicators[name]
        if not (math.isfinite(ind.low) and math.isfinite(ind.high)) or ind.low == ind.high:
            raise ValueError(f"five-domain indicator {name}: range [{ind.low}, {ind.high}] is not a range")
        if ind.source != FITNESS and ind.source not in SOURCE_FAMILIES:
            raise ValueError(f"five-domain indicator {name}: unknown source {ind.source!r}")
        if ind.source == FITNESS and ind.column != "total_score":
            raise ValueError(f"five-domain indicator {name}: {FITNESS} offers total_score only, not {ind.column!r}")
        if ind.source in SOURCE_FAMILIES and ind.column not in SOURCE_FAMILIES[ind.source].fields:
            raise ValueError(f"five-domain indicator {name}: {ind.source} has no field {ind.column!r}")


def domain_sql(weights: Mapping[str, float], indicators: Mapping[str, Indicator]) -> str:
    """Weighted mean of the available scaled indicators (renormalized), NULL if none is available."""
    numerator, denominator = [], []
    for name, weight in weights.items():
        ind = indicators[name]
        scaled = ind.scaled_sql(f'"{_alias(ind.source)}"."{ind.column}"')
        numerator.append(f"{weight!r} * coalesce({scaled}, 0.0)")
        denominator.append(f"CASE WHEN {scaled} IS NULL THEN 0.0 ELSE {weight!r} END")
    return f"({' + '.join(numerator)}) / nullif({' + '.join(denominator)}, 0.0)"


def _alias(source: str) -> str:
    return source.removeprefix("student_")


# ============================================================================================
# Build
# ============================================================================================


def build_five_domain(lake_dir: Path, out_path: Path, *, weights: Mapping[str, Mapping[str, float]] = DOMAIN_WEIGHTS,
                      indicators: Mapping[str, Indicator] = INDICATORS) -> int:
    validate_weights(weights, indicators)
    family = five_domain_family(weights, indicators)
    lake_dir, out_path = Path(lake_dir), Path(out_path)
    with workspace(out_path, family.name) as (con, scratch):
        terms = load_terms(con, lake_dir)
        if not terms:
            return write_family(family, [], out_path)
        needed = sorted({indicators[n].source for table in weights.values() for n in table})
        paths: dict[str, Path] = {}
        for source in needed:
            if source != FITNESS:
                paths[source] = sibling(lake_dir, out_path.parent, SOURCE_FAMILIES[source], scratch)
            elif (fitness := _fitness_scores(lake_dir, out_path.parent, scratch)) is not None:
                paths[source] = fitness
        parts = []
        for term in terms:
            sql = _term_sql(term, terms, paths, weights, indicators)
            parts.append(typed(family, sql))
        return write_family_queries(con, family, parts, out_path)


def _term_sql(term: Term, terms: list[Term], paths: dict[str, Path], weights, indicators) -> str:
    ctes, keys = [], []
    used = [indicators[n] for table in weights.values() for n in table]
    columns = {s: sorted({ind.column for ind in used if ind.source == s}) for s in paths}
    for source, path in paths.items():
        alias, file = _alias(source), sql_str(str(path))
        wanted = ", ".join(f'"{c}"' for c in columns[source])
        if source == FITNESS:
            ctes.append(f"""{alias} AS (
                SELECT student_key, arg_max(total_score, test_date) AS total_score
                FROM read_parquet({file})
                WHERE test_date <= {term.end_sql} AND school_year IN ({term.school_year - 1}, {term.school_year})
                  AND total_score IS NOT NULL AND NOT isnan(total_score)
                GROUP BY student_key)""")
            keys.append(f"""SELECT student_key FROM read_parquet({file})
                WHERE test_date <= {term.end_sql} AND school_year = {term.school_year}""")
        elif source in CARRIED:
            carried = [t for t in terms if term.idx - CARRIED[source] < t.idx <= term.idx]
            stamps = ", ".join(f"{t.end_sql}::TIMESTAMPTZ" for t in carried)
            latest = ", ".join(f'arg_max("{c}", event_timestamp) AS "{c}"' for c in columns[source])
            ctes.append(f"""{alias} AS (
                SELECT student_key, {latest} FROM read_parquet({file})
                WHERE event_timestamp IN ({stamps}) GROUP BY student_key)""")
            keys.append(f"SELECT student_key FROM read_parquet({file}) "
                        f"WHERE event_timestamp = {term.end_sql}::TIMESTAMPTZ")
        else:
            ctes.append(f"""{alias} AS (
                SELECT student_key, {wanted} FROM read_parquet({file})
                WHERE event_timestamp = {term.end_sql}::TIMESTAMPTZ)""")
            keys.append(f"SELECT student_key FROM {alias}")
    if not keys:  # no source at all: no rows
        keys.append("SELECT NULL::VARCHAR AS student_key WHERE false")
    ctes.append(f"k AS ({' UNION '.join(keys)})")
    joins = " ".join(f"LEFT JOIN {_alias(s)} ON {_alias(s)}.student_key = k.student_key" for s in paths)
    # A domain whose every source is missing from the folder and the lake is simply empty.
    scores = {d: (domain_sql({n: w for n, w in weights[d].items() if indicators[n].source in paths}, indicators)
                  if any(indicators[n].source in paths for n in weights[d]) else "NULL::DOUBLE")
              for d in DOMAINS}
    domain_columns = ", ".join(f"{expr} AS {d}" for d, expr in scores.items())
    computed = " + ".join(f"CASE WHEN {d} IS NULL THEN 0 ELSE 1 END" for d in DOMAINS)
    mean = f"({' + '.join(f'coalesce({d}, 0.0)' for d in DOMAINS)}) / nullif({computed}, 0)"
    return f"""
        WITH {', '.join(ctes)},
        s AS (SELECT k.student_key, {domain_columns} FROM k {joins})
        SELECT student_key, {term.end_sql} AS event_timestamp, {', '.join(DOMAINS)},
               {computed} AS domains_computed, {mean} AS overall
        FROM s"""


def _fitness_scores(lake_dir: Path, out_dir: Path, scratch: Path) -> Path | None:
    """(student_key, school_year, test_date, total_score) per test: the fresh sibling, else scored from the lake."""
    columns = ["student_key", "event_timestamp", "school_year", "total_score"]
    sibling_path = Path(out_dir) / f"{FITNESS}.parquet"
    target = Path(scratch) / "fitness_scores.parquet"
    schema = pa.schema([("student_key", pa.string()), ("school_year", pa.int64()),
                        ("test_date", pa.timestamp("us")), ("total_score", pa.float64())])
    if fresh_output(lake_dir, sibling_path, columns):
        with pq.ParquetWriter(target, schema) as writer:
            for batch in pq.ParquetFile(sibling_path).iter_batches(batch_size=1 << 20, columns=columns):
                writer.write_table(_fitness_frame(pa.Table.from_batches([batch]), schema, "event_timestamp"))
        return target
    source = Path(lake_dir) / "fitness_tests.parquet"
    if not source.exists():
        return None
    from features.indicators.fitness import score_fitness_tests

    with pq.ParquetWriter(target, schema) as writer:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=FITNESS_CHUNK_ROWS):
            scored = score_fitness_tests(batch.to_pandas())
            table = pa.Table.from_pandas(
                scored[["student_id", "school_year", "test_date", "total_score"]].rename(
                    columns={"student_id": "student_key"}), preserve_index=False)
            writer.write_table(_fitness_frame(table, schema, "test_date"))
    return target


def _fitness_frame(table: pa.Table, schema: pa.Schema, date_column: str) -> pa.Table:
    date = table.column(date_column)
    if pa.types.is_timestamp(date.type) and date.type.tz is not None:
        date = date.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))  # UTC wall time
    return pa.table({
        "student_key": table.column("student_key").cast(pa.string()),
        "school_year": table.column("school_year").cast(pa.int64()),
        "test_date": date.cast(pa.timestamp("us")),
        "total_score": table.column("total_score").cast(pa.float64()),
    }, schema=schema)


def five_domain_family(weights: Mapping[str, Mapping[str, float]] = DOMAIN_WEIGHTS,
                       indicators: Mapping[str, Indicator] = INDICATORS) -> IndicatorFamily:
    """The student_five_domain family under these weights and ranges (validated here)."""
    validate_weights(weights, indicators)
    weights = MappingProxyType({d: MappingProxyType(dict(weights[d])) for d in DOMAINS})
    indicators = MappingProxyType(dict(indicators))
    return IndicatorFamily(
        name="student_five_domain",
        entities=("student",),
        fields={**{d: "float" for d in DOMAINS}, "domains_computed": "int", "overall": "float"},
        ttl=TERM_TTL,
        description="德智体美劳 scores 0-100 per term from fixed-range indicators and configurable weights. "
                    "Runs after student_academics, student_literacy, student_moral, student_aesthetic_labor, "
                    "student_attendance and student_fitness (reads their outputs in the same folder).",
        build=partial(build_five_domain, weights=weights, indicators=indicators),
        reads=(*SOURCE_FAMILIES, FITNESS),
    )


STUDENT_FIVE_DOMAIN = five_domain_family()

# Last: it reads the other families' outputs from the same folder.
FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_FIVE_DOMAIN,)
