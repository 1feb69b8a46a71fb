"""Adapters: public education datasets (`shared/data/real/`) → contract tables (CONTRACT.md).

Each adapter is `adapt(source_dir, out_dir) -> rows per table`: it reads the dataset's own files
from `source_dir` (never copied into the repository), writes one `<table>.parquet` per contract
table into `out_dir` — contract columns first, exactly as CONTRACT.md names them, then a few
documented extra columns that ingest ignores — and returns the number of rows of each. The
output then enters the engine through the same door as any export:
`portrait ingest --adapter uci|oulad|star|nnyfs DIR` runs `ADAPTERS[name](DIR, tmp)` and ingests
`tmp`. `out_dir` should be a new or empty folder: the adapter overwrites the tables it writes and
leaves anything else there alone.

Every row written is valid under `features.contract` (types, codes, ranges, keys, and foreign
keys to tables the same adapter writes), so an adapted dataset ingests with no quarantined row.
Each module's docstring is its mapping: source field → table.column, the placeholders
synthesized where the contract requires a value the dataset lacks, and what is dropped.

| adapter | dataset | tables written |
|---|---|---|
| `uci` | UCI Student Performance (Cortez & Silva 2008) | schools, students, terms, grades, attendance |
| `oulad` | Open University Learning Analytics Dataset | students, terms, grades, assessment_scores, course_outcomes |
| `star` | Tennessee Project STAR (`mlmRev::star`) | schools, classes, students, class_memberships, teachers, teaching_assignments, terms, standardized_scores |
| `nnyfs` | NHANES National Youth Fitness Survey 2012 | students, fitness_tests |

`assessment_scores`, `course_outcomes` and `standardized_scores` are tables these datasets
needed and the contract lacked; they are declared at the end of `features.contract.TABLES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from features.adapters import nnyfs, oulad, star, uci

Adapter = Callable[[Path, Path], dict[str, int]]

ADAPTERS: dict[str, Adapter] = {
    "uci": uci.adapt,
    "oulad": oulad.adapt,
    "star": star.adapt,
    "nnyfs": nnyfs.adapt,
}

# The folder of each dataset under shared/data/real/.
SOURCE_FOLDERS: dict[str, str] = {
    "uci": "uci_student_performance",
    "oulad": "oulad",
    "star": "star",
    "nnyfs": "nnyfs_2012",
}

__all__ = ["ADAPTERS", "SOURCE_FOLDERS", "Adapter"]
