"""Indicators over each student's whole school career, one module per family.

`build_indicators` turns the lake into the Parquet files the Feast sources read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators.enrollment import FAMILIES as ENROLLMENT_FAMILIES
from features.indicators.fitness import fitness_history, fitness_indicators, score_fitness_tests
from features.lake import read_lake, write_parquet


def build_indicators(lake_dir: Path, indicators_dir: Path) -> dict[str, int]:
    """Compute every indicator family from the lake; returns rows written per file."""
    indicators_dir.mkdir(parents=True, exist_ok=True)
    students = read_lake(lake_dir, "students")[["student_id", "sex"]]
    tests = read_lake(lake_dir, "fitness_tests")
    scored = score_fitness_tests(tests)
    fitness = fitness_indicators(scored[scored["student_id"].isin(students["student_id"])])
    outputs = {
        "student_fitness": fitness,
        "student_fitness_history": fitness_history(fitness),
    }
    for name, frame in outputs.items():
        write_parquet(frame, indicators_dir / f"{name}.parquet")
    counts = {name: len(frame) for name, frame in outputs.items()}
    for family in ENROLLMENT_FAMILIES:
        counts[family.name] = family.build(lake_dir, indicators_dir / f"{family.name}.parquet")
    return counts


__all__ = ["build_indicators", "score_fitness_tests"]
