"""Indicators over each student's (and teacher's) whole school career, one module per family.

`FAMILIES` lists every family in build order (a family may read the outputs of those before it:
five-domain reads the other student families). `build_indicators` writes one Parquet file per
family into the indicators folder, where the Feast sources read them.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators import (
    academics,
    aesthetic_labor,
    attendance,
    classes,
    enrollment,
    fitness,
    five_domain,
    literacy,
    moral,
    teachers,
)
from features.indicators.family import IndicatorFamily

FAMILY_MODULES = (enrollment, fitness, academics, literacy, moral, aesthetic_labor, attendance, five_domain,
                  teachers, classes)
FAMILIES: tuple[IndicatorFamily, ...] = tuple(family for module in FAMILY_MODULES for family in module.FAMILIES)


def build_indicators(lake_dir: Path, indicators_dir: Path, *, echo=None) -> dict[str, int]:
    """Compute every indicator family from the lake; returns rows written per family."""
    indicators_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for family in FAMILIES:
        if echo:
            echo(f"    {family.name} ...")
        counts[family.name] = family.build(Path(lake_dir), indicators_dir / f"{family.name}.parquet")
    return counts


__all__ = ["FAMILIES", "IndicatorFamily", "build_indicators"]
