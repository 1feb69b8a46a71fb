"""Literacy: digital, reading and science literacy scores and how each changed.

Family `student_literacy` (entity student; one row per student and term with an assessment,
dated the term's end_date at 00:00 UTC), from lake `literacy_assessments`:
    digital         float  digital-literacy score this term (0-100); empty if not assessed
    reading         float  reading-literacy score (0-100)
    science         float  science-literacy score (0-100)
    digital_change  float  digital minus the student's previous digital score, taken from the most
                           recent earlier term within LOOKBACK_TERMS terms (assessments are
                           usually yearly); empty without one
    reading_change  float  the same for reading
    science_change  float  the same for science
    literacy_mean   float  mean of the domains assessed this term (0-100)

Built one term at a time from terms <= t only (the previous score comes from terms t-4..t-1),
so nothing dated t depends on a later assessment. A lake without `literacy_assessments`
yields an empty file with the schema.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators.duck import (
    lake_table,
    load_terms,
    sql_list,
    sql_str,
    typed,
    window_terms,
    workspace,
    write_family,
    write_family_queries,
)
from features.indicators.family import TERM_TTL, IndicatorFamily

DOMAINS = ("digital", "reading", "science")
LOOKBACK_TERMS = 4  # a "previous" score older than two school years is no longer a baseline


def build_literacy(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_LITERACY
    with workspace(out_path, family.name) as (con, scratch):
        source = lake_table(lake_dir, "literacy_assessments")
        terms = load_terms(con, lake_dir)
        if source is None or not terms:
            return write_family(family, [], out_path)
        parts = []
        for term in terms:
            earlier = [t.term_id for t in window_terms(terms, term, LOOKBACK_TERMS + 1) if t.idx < term.idx]
            pivot = ",\n".join(
                f"max(c.score) FILTER (WHERE c.domain = '{d}') AS {d}, "
                f"max(c.score - p.score) FILTER (WHERE c.domain = '{d}') AS {d}_change"
                for d in DOMAINS
            )
            parts.append(typed(family, f"""
                WITH c AS (
                    SELECT student_id, domain, avg(score) AS score
                    FROM read_parquet({source})
                    WHERE term_id = {sql_str(term.term_id)} AND score IS NOT NULL
                      AND domain IN {sql_list(DOMAINS)}
                    GROUP BY student_id, domain
                ), p AS (
                    SELECT l.student_id, l.domain, arg_max(l.score, t.idx) AS score
                    FROM read_parquet({source}) l JOIN terms t USING (term_id)
                    WHERE l.term_id IN {sql_list(earlier)} AND l.score IS NOT NULL
                    GROUP BY l.student_id, l.domain
                )
                SELECT c.student_id AS student_key, {term.end_sql} AS event_timestamp,
                       {pivot},
                       avg(c.score) AS literacy_mean
                FROM c LEFT JOIN p ON p.student_id = c.student_id AND p.domain = c.domain
                GROUP BY c.student_id
            """))
        return write_family_queries(con, family, parts, out_path)


STUDENT_LITERACY = IndicatorFamily(
    name="student_literacy",
    entities=("student",),
    fields={
        **{d: "float" for d in DOMAINS},
        **{f"{d}_change": "float" for d in DOMAINS},
        "literacy_mean": "float",
    },
    ttl=TERM_TTL * 2,  # assessed once a school year: valid until the next one
    description="Digital, reading and science literacy (0-100) and the change since the previous assessment.",
    build=build_literacy,
)

FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_LITERACY,)
