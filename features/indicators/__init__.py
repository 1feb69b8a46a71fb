"""Indicators over each student's (and teacher's) whole school career, one module per family.

`FAMILIES` lists every family in build order (a family may read the outputs of those before it:
five-domain reads the other student families). `build_indicators` writes one Parquet file per
family into the indicators folder, where the Feast sources read them.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
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

# The heaviest families first (a parallel build then finishes sooner), five-domain after its sources.
# class_outcomes (one pass over the grades, 75 s alone at 1.2M students) is among the heaviest: last
# in the order, it ran alone at the end of the build.
FAMILY_MODULES = (academics, fitness, classes, enrollment, literacy, moral, aesthetic_labor, attendance, five_domain,
                  teachers)
FAMILIES: tuple[IndicatorFamily, ...] = tuple(family for module in FAMILY_MODULES for family in module.FAMILIES)


def build_indicators(lake_dir: Path, indicators_dir: Path, *, echo=None, workers: int = 1) -> dict[str, int]:
    """Compute every indicator family from the lake; returns rows written per family.

    With `workers` > 1, families build in that many processes at once, each started once the
    families it `reads` are written. One family alone leaves a core idle much of the time
    (Parquet encoding, single-threaded phases), so two at once use the machine better.
    """
    indicators_dir.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        counts = {}
        for family in FAMILIES:
            if echo:
                echo(f"    {family.name} ...")
            counts[family.name] = family.build(Path(lake_dir), indicators_dir / f"{family.name}.parquet")
        return counts
    counts, pending, running = {}, list(FAMILIES), {}
    # spawn, not fork: DuckDB and Arrow hold threads a forked child must not inherit.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        while pending or running:
            ready = [family for family in pending if all(name in counts for name in family.reads)]
            for family in ready[: workers - len(running)]:
                pending.remove(family)
                if echo:
                    echo(f"    {family.name} ...")
                running[pool.submit(_build_family, family.name, Path(lake_dir), indicators_dir)] = family.name
            if not running:
                raise RuntimeError(f"indicator families wait on families that are not built: "
                                   f"{ {f.name: f.reads for f in pending} }")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                counts[running.pop(future)] = future.result()
    return {family.name: counts[family.name] for family in FAMILIES}


def _build_family(name: str, lake_dir: Path, indicators_dir: Path) -> int:
    """One family, by name (a family's build may not pickle; the worker imports its own)."""
    family = next(f for f in FAMILIES if f.name == name)
    return family.build(lake_dir, indicators_dir / f"{name}.parquet")


__all__ = ["FAMILIES", "IndicatorFamily", "build_indicators"]
