"""Academics (智): each subject's result term by term, and the student's whole set of subjects.

Computed in DuckDB over the lake (`<lake>/<table>.parquet`, identifiers already pseudonyms), with
memory bounded by a term or a bucket of students, never by the city:
1. one pass over `grades` splits each exam's share of full mark into one folder per term (the
   lake is sorted by student, so a per-term filter could not skip anything);
2. term by term, city-wide: the subject share, then z and percentile within (grade, subject);
3. bucket of students by bucket: each career's slope and volatility with a window over the
   terms t-3..t (RANGE frame on the term index), so a value dated term t reads terms <= t only
   and a point-in-time join never sees the future.
`event_timestamp` is the term's `end_date` at 00:00 UTC: a term's results are known when it ends.
The output is written term by term (row groups clustered by term).

Family `student_subject_term` (entities student, subject; one row per student, subject, term):
    grade          int    the student's grade (1-12) in the term's school year (class_memberships
                          joined with classes); empty if the student has no class that year
    share          float  score as a share of full mark, 0-1: the mean of the midterm and final
                          shares (the one exam sat if only one was); a score above its full mark
                          counts as 1. Mean rather than final only: the midterm is half the
                          term's evidence and the mean halves exam-day noise
    z              float  standard score of `share` among all students of the same grade, term and
                          subject city-wide (population SD: the city is a census, not a sample;
                          0 when everyone in the group has the same share; empty without a grade)
    pct            float  percentile rank 0-100 in the same group: 100 * (rank - 1) / (n - 1),
                          tied shares get the lowest rank, a group of one gets 0
    slope_4t       float  least-squares slope of `share` per term over the last 4 terms up to and
                          including this one (terms t-3..t in which the subject was graded; needs
                          2); -0.05 = losing 5 % of full mark a term
    volatility_4t  float  sample SD of `share` over the same window (needs 2 terms)
    failed         int    1 if share < 0.6 (below 60 % of full mark, the pass line), else 0

Family `student_academics` (entity student; one row per student and term), over the student's
ACADEMIC subjects that term: every subject except NON_ACADEMIC_SUBJECTS (music, art, pe, labor),
which are scored under 美, 体 and 劳 instead:
    grade            int    as above
    subjects         int    academic subjects graded this term
    mean_share       float  mean `share` over them (0-1)
    mean_z           float  mean `z` over them
    imbalance_sd     float  偏科: sample SD of `z` across the subjects (needs 2 with a z)
    imbalance_range  float  偏科: best z minus worst z (needs 2 with a z)
    failed_subjects  int    subjects with `failed` = 1
    trend            float  mean `slope_4t` over the subjects that have one

`student_academics` is aggregated from `student_subject_term`: it reads the sibling Parquet in the
same output folder when it is newer than every lake table, and otherwise builds it in a scratch
folder first (see `sibling`), so it is correct in any order and fastest after its sibling.

The helpers below (workspace, terms, typed COPY, writing a family's exact Arrow schema) are shared
by every student family module in this package.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from features.indicators.family import IndicatorFamily

# DuckDB resources: bounded whatever the city size; spills go under the output folder.
MEMORY_LIMIT = "3GB"
THREADS = 2
# A term's value stays the student's current one for a term and a bit (terms are ~5 months apart).
TERM_TTL = timedelta(days=200)
WINDOW_TERMS = 4  # slope_4t and volatility_4t: terms t-3..t
# Student-subject-term rows per chunk of students whose careers are windowed together (memory bound).
ROWS_PER_BUCKET = 12_000_000
FAIL_SHARE = 0.6  # below 60 % of full mark is a fail
_EPS = 1e-9  # a mean of two shares can land a hair off 0.6
NON_ACADEMIC_SUBJECTS = ("music", "art", "pe", "labor")

_KIND_SQL = {"float": "DOUBLE", "int": "BIGINT", "str": "VARCHAR", "json": "VARCHAR"}


# ============================================================================================
# Shared helpers (every student family module uses these)
# ============================================================================================


@dataclass(frozen=True)
class Term:
    term_id: str
    school_year: int
    idx: int  # school_year * 2 + term - 1: consecutive terms differ by 1, gaps stay gaps
    end: datetime  # end_date at 00:00 (UTC): when the term's values become true

    @property
    def end_sql(self) -> str:
        return f"TIMESTAMP '{self.end:%Y-%m-%d %H:%M:%S}'"


def lake_table(lake_dir: Path, table: str) -> str | None:
    """The lake file of `table` as a DuckDB string literal, or None if the lake lacks it."""
    path = Path(lake_dir) / f"{table}.parquet"
    return sql_str(str(path)) if path.exists() else None


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    return "(" + ", ".join(sql_str(v) for v in values) + ")" if values else "(NULL)"


def files_sql(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_str(str(p)) for p in paths) + "]"


@contextmanager
def workspace(out_path: Path, name: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """A DuckDB connection with bounded memory and a scratch folder beside the output, removed after."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = out_path.parent / f".{name}.build"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    con = duckdb.connect(config={
        "memory_limit": MEMORY_LIMIT, "threads": THREADS, "temp_directory": str(scratch / "spill"),
        "preserve_insertion_order": False,
    })
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        yield con, scratch
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)


def load_terms(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> list[Term]:
    """Temp table `terms` (term_id, school_year, idx, end_ts) and the terms in order; [] without a terms table."""
    source = lake_table(lake_dir, "terms")
    if source is None:
        con.execute("CREATE OR REPLACE TEMP TABLE terms (term_id VARCHAR, school_year BIGINT, idx BIGINT, "
                    "end_ts TIMESTAMP)")
        return []
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE terms AS
        SELECT term_id, school_year, school_year * 2 + term - 1 AS idx,
               date_trunc('day', end_date)::TIMESTAMP AS end_ts
        FROM read_parquet({source}) WHERE end_date IS NOT NULL ORDER BY idx
    """)
    rows = con.execute("SELECT term_id, school_year, idx, end_ts FROM terms ORDER BY idx").fetchall()
    idx = [r[2] for r in rows]
    if len(set(idx)) != len(idx):
        raise ValueError("terms: two term_ids share a (school_year, term); fix the terms export")
    return [Term(*r) for r in rows]


def load_grade_of(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> None:
    """Temp table `grade_of` (student_id, school_year, grade); empty if the lake lacks the tables."""
    memberships, classes = lake_table(lake_dir, "class_memberships"), lake_table(lake_dir, "classes")
    if memberships is None or classes is None:
        con.execute("CREATE OR REPLACE TEMP TABLE grade_of (student_id VARCHAR, school_year BIGINT, grade BIGINT)")
        return
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE grade_of AS
        SELECT m.student_id, m.school_year, any_value(c.grade) AS grade
        FROM read_parquet({memberships}) m JOIN read_parquet({classes}) c USING (class_id)
        GROUP BY m.student_id, m.school_year
    """)


def window_terms(terms: list[Term], term: Term, size: int) -> list[Term]:
    """The terms t-size+1..t that exist (by index, so a missing term is not replaced by an older one)."""
    return [t for t in terms if term.idx - size < t.idx <= term.idx]


def typed(family: IndicatorFamily, inner_sql: str, extra: tuple[str, ...] = ()) -> str:
    """SELECT the family's columns, in order, cast to their declared kinds (then `extra` as is), from `inner_sql`."""
    columns = [f"CAST({k} AS VARCHAR) AS {k}" for k in family.keys]
    columns.append("CAST(event_timestamp AS TIMESTAMP) AS event_timestamp")
    columns += [f"CAST({name} AS {_KIND_SQL[kind]}) AS {name}" for name, kind in family.fields.items()]
    columns += list(extra)
    return f"SELECT {', '.join(columns)} FROM ({inner_sql})"


def copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> Path:
    con.execute(f"COPY ({sql}) TO {sql_str(str(path))} (FORMAT parquet)")
    return path


def exams_by_term(con: duckdb.DuckDBPyConnection, grades: str, folder: Path,
                  subjects: tuple[str, ...] | None = None) -> dict[str, Path]:
    """One pass over lake `grades`: each exam's share of full mark, split into one folder per term.

    The lake is sorted by student, so a filter on term cannot skip any of it; reading it once
    and splitting beats scanning it again for every term. A score above its full mark counts as 1.
    Returns term_id → folder; read a term back with `term_exams`.
    """
    chosen = f"AND subject IN {sql_list(subjects)}" if subjects else ""
    con.execute(f"""
        COPY (
            SELECT student_id, subject, least(score / full_mark, 1.0) AS share, term_id
            FROM read_parquet({grades})
            WHERE score IS NOT NULL AND full_mark > 0 {chosen}
        ) TO {sql_str(str(folder))} (FORMAT parquet, PARTITION_BY (term_id))
    """)
    folders = [p for p in Path(folder).glob("term_id=*") if p.is_dir()] if Path(folder).is_dir() else []
    return {unquote(p.name.split("=", 1)[1]): p for p in folders}


def term_exams(exams: dict[str, Path], term: Term) -> str:
    """A FROM item with (student_id, subject, share) of one term's exams, from `exams_by_term`."""
    part = exams.get(term.term_id)
    if part is not None and any(part.glob("*.parquet")):
        return f"read_parquet({sql_str(str(part / '*.parquet'))})"
    return "(SELECT NULL::VARCHAR AS student_id, NULL::VARCHAR AS subject, NULL::DOUBLE AS share WHERE false)"


def write_family(family: IndicatorFamily, parts: list[Path], out_path: Path) -> int:
    """Concatenate part files into `out_path` with exactly `family.arrow_schema()`; rows written.

    Streams batch by batch (bounded memory), writes beside the target and renames, so a reader
    sees the old file or the new one. No parts: an empty file with the schema.
    """
    schema = family.arrow_schema()
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".tmp")
    rows = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=1 << 20, columns=schema.names):
                table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                writer.write_table(table)
                rows += table.num_rows
    os.replace(tmp, out_path)
    return rows


def lake_mtime(lake_dir: Path) -> float:
    return max((p.stat().st_mtime for p in Path(lake_dir).glob("*.parquet")), default=0.0)


def fresh_output(lake_dir: Path, path: Path, columns: list[str] | None = None) -> bool:
    """A sibling output that is newer than every lake table (and has the needed columns)."""
    if not path.exists() or path.stat().st_mtime < lake_mtime(lake_dir):
        return False
    if columns is None:
        return True
    names = set(pq.read_schema(path).names)
    return all(c in names for c in columns)


def sibling(lake_dir: Path, out_dir: Path, family: IndicatorFamily, scratch: Path) -> Path:
    """The family's Parquet in the output folder if fresh with its exact schema, else built into `scratch`."""
    path = Path(out_dir) / f"{family.name}.parquet"
    if fresh_output(lake_dir, path) and pq.read_schema(path).equals(family.arrow_schema(), check_metadata=False):
        return path
    built = Path(scratch) / f"{family.name}.parquet"
    family.build(Path(lake_dir), built)
    return built


# ============================================================================================
# student_subject_term
# ============================================================================================


def build_subject_terms(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_SUBJECT_TERM
    with workspace(out_path, family.name) as (con, scratch):
        grades = lake_table(lake_dir, "grades")
        terms = load_terms(con, lake_dir)
        if grades is None or not terms:
            return write_family(family, [], out_path)
        load_grade_of(con, lake_dir)
        exams = exams_by_term(con, grades, scratch / "exams")
        (exam_rows,) = con.execute(f"SELECT count(*) FROM read_parquet({grades})").fetchall()[0]
        buckets = max(1, math.ceil(exam_rows / 2 / ROWS_PER_BUCKET))  # ~2 exams per subject and term
        (scratch / "shares").mkdir()
        (scratch / "parts").mkdir()
        # 1. Term by term across the city: share, then z and percentile within (grade, subject).
        shares = []
        for term in terms:
            shares.append(copy(con, f"""
                WITH s AS (
                    SELECT e.student_id, e.subject, avg(e.share) AS share, any_value(g.grade) AS grade
                    FROM {term_exams(exams, term)} e LEFT JOIN grade_of g
                      ON g.student_id = e.student_id AND g.school_year = {term.school_year}
                    GROUP BY e.student_id, e.subject
                )
                SELECT student_id, subject, {term.idx} AS term_idx, grade, share,
                       CASE WHEN grade IS NOT NULL THEN coalesce(
                           (share - avg(share) OVER w) / nullif(stddev_pop(share) OVER w, 0), 0.0) END AS z,
                       CASE WHEN grade IS NOT NULL THEN 100.0 * percent_rank() OVER (w ORDER BY share) END AS pct
                FROM s WINDOW w AS (PARTITION BY grade, subject)
            """, scratch / "shares" / f"t{term.idx}.parquet"))
        # 2. Students bucket by bucket: each career's slope and volatility over the terms t-3..t
        #    (a RANGE frame on the term index: earlier terms only, a gap is not filled by an older term).
        for bucket in range(buckets):
            careers = typed(family, f"""
                SELECT s.student_id AS student_key, s.subject, t.end_ts AS event_timestamp, s.term_idx,
                       s.grade, s.share, s.z, s.pct,
                       regr_slope(s.share, s.term_idx) OVER w AS slope_4t,
                       stddev_samp(s.share) OVER w AS volatility_4t,
                       CASE WHEN s.share < {FAIL_SHARE} - {_EPS} THEN 1 ELSE 0 END AS failed
                FROM read_parquet({files_sql(shares)}) s JOIN terms t ON t.idx = s.term_idx
                WHERE hash(s.student_id) % {buckets} = {bucket}
                WINDOW w AS (PARTITION BY s.student_id, s.subject ORDER BY s.term_idx
                             RANGE BETWEEN {WINDOW_TERMS - 1} PRECEDING AND CURRENT ROW)
            """, extra=("term_idx",))
            target = sql_str(str(scratch / "parts" / f"b{bucket}"))
            con.execute(f"COPY ({careers}) TO {target} (FORMAT parquet, PARTITION_BY (term_idx))")
        # Written term by term, so a reader filtering on one term skips the other row groups.
        parts = sorted((scratch / "parts").glob("b*/term_idx=*/*.parquet"),
                       key=lambda p: (int(p.parent.name.split("=")[1]), int(p.parent.parent.name[1:]), p.name))
        return write_family(family, parts, out_path)


# ============================================================================================
# student_academics
# ============================================================================================


def build_academics(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_ACADEMICS
    with workspace(out_path, family.name) as (con, scratch):
        terms = load_terms(con, lake_dir)
        if not terms or lake_table(lake_dir, "grades") is None:
            return write_family(family, [], out_path)
        source = sql_str(str(sibling(lake_dir, Path(out_path).parent, STUDENT_SUBJECT_TERM, scratch)))
        parts = []
        for term in terms:
            parts.append(copy(con, typed(family, f"""
                SELECT student_key, {term.end_sql} AS event_timestamp,
                       any_value(grade) AS grade, count(*) AS subjects,
                       avg(share) AS mean_share, avg(z) AS mean_z,
                       CASE WHEN count(z) >= 2 THEN stddev_samp(z) END AS imbalance_sd,
                       CASE WHEN count(z) >= 2 THEN max(z) - min(z) END AS imbalance_range,
                       sum(failed) AS failed_subjects, avg(slope_4t) AS trend
                FROM read_parquet({source})
                WHERE event_timestamp = {term.end_sql}::TIMESTAMPTZ
                  AND subject NOT IN {sql_list(NON_ACADEMIC_SUBJECTS)}
                GROUP BY student_key
            """), scratch / f"part-{term.idx}.parquet"))
        return write_family(family, parts, out_path)


STUDENT_SUBJECT_TERM = IndicatorFamily(
    name="student_subject_term",
    entities=("student", "subject"),
    fields={
        "grade": "int", "share": "float", "z": "float", "pct": "float",
        "slope_4t": "float", "volatility_4t": "float", "failed": "int",
    },
    ttl=TERM_TTL,
    description="Each subject's term result: share of full mark, city z and percentile within grade, "
                "4-term slope and volatility, failed.",
    build=build_subject_terms,
    online=False,  # read by the growth model offline; the portrait shows it through student_academics
)

STUDENT_ACADEMICS = IndicatorFamily(
    name="student_academics",
    entities=("student",),
    fields={
        "grade": "int", "subjects": "int", "mean_share": "float", "mean_z": "float",
        "imbalance_sd": "float", "imbalance_range": "float", "failed_subjects": "int", "trend": "float",
    },
    ttl=TERM_TTL,
    description="智 per term over the academic subjects: mean share and z, subject imbalance (偏科), "
                "failed subjects, trend. Runs after student_subject_term (reads its output).",
    build=build_academics,
)

# student_subject_term first: student_academics reads its output.
FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_SUBJECT_TERM, STUDENT_ACADEMICS)
