"""Feast offline store: dask against DuckDB on the same data; the engine keeps the faster.

Builds a synthetic city in a temporary PORTRAIT_HOME (synth -> ingest -> indicators, once),
then gives each offline store its own registry and online SQLite over the SAME indicator
Parquet files and times, per repeat (median reported, arms interleaved):

  apply         registering the indicator views and `fitness_risk_v1` in a fresh registry
  historical    `get_historical_features(fitness_risk_v1)` for one entity row per student
                (timestamp = the student's latest test + 1 day), `.to_df()` included
  materialize   the indicator views into an empty online store

It also checks that both stores return the same historical values (a benchmark whose two
arms disagree is worthless) and prints the ratio dask/duckdb (> 1: DuckDB is faster).

    .venv/bin/python bench/offline_store.py --students 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

STORES = ("dask", "duckdb")
OPERATIONS = ("apply", "historical", "materialize")


def build_city(home: Path, students: int, seed: int):
    from core.config import Settings
    from features.indicators import build_indicators
    from portrait.pipeline import run_ingest, run_synth

    settings = Settings(home=home / "portrait")
    export_dir = home / "export"
    run_synth(export_dir, students=students, seed=seed)
    run_ingest(export_dir, settings)
    build_indicators(settings.lake_dir, settings.indicators_dir)
    return settings.indicators_dir


def entity_frame(indicators_dir: Path) -> pd.DataFrame:
    """One row per student: their latest test date + 1 day, microsecond UTC, no duplicates."""
    tests = pd.read_parquet(indicators_dir / "student_fitness.parquet", columns=["student_key", "event_timestamp"])
    latest = tests.groupby("student_key", as_index=False)["event_timestamp"].max()
    latest["event_timestamp"] = (latest["event_timestamp"] + pd.Timedelta(days=1)).astype("datetime64[us, UTC]")
    return latest.drop_duplicates().reset_index(drop=True)


def run_once(kind: str, home: Path, indicators_dir: Path, entities: pd.DataFrame):
    """Seconds per operation and the historical frame, for one store in a fresh home."""
    from feast import FeatureView

    from features.feature_repo import EPOCH, feature_store, indicator_views

    from core.config import Settings

    store = feature_store(Settings(home=home, feast_offline_store=kind))
    definitions = indicator_views(indicators_dir)
    views = [d.name for d in definitions if isinstance(d, FeatureView)]
    seconds = {}
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints materialize progress
        started = time.perf_counter()
        store.apply(definitions)
        seconds["apply"] = time.perf_counter() - started

        started = time.perf_counter()
        frame = store.get_historical_features(
            entity_df=entities, features=store.get_feature_service("fitness_risk_v1")
        ).to_df()
        seconds["historical"] = time.perf_counter() - started

        started = time.perf_counter()
        store.materialize(EPOCH, datetime.now(timezone.utc) + timedelta(seconds=1), feature_views=views)
        seconds["materialize"] = time.perf_counter() - started
    return seconds, frame


def same_values(a: pd.DataFrame, b: pd.DataFrame, columns: list[str]) -> tuple[bool, str]:
    a, b = (f.sort_values("student_key").reset_index(drop=True) for f in (a, b))
    if len(a) != len(b) or a["student_key"].astype(str).tolist() != b["student_key"].astype(str).tolist():
        return False, f"different rows ({len(a)} vs {len(b)}, or other student keys)"
    bad = [c for c in columns if not np.allclose(
        a[c].to_numpy(dtype=float, na_value=np.nan), b[c].to_numpy(dtype=float, na_value=np.nan), equal_nan=True)]
    return not bad, (f"differ in {bad}" if bad else f"{len(a)} rows x {len(columns)} features identical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import feast

    from features.feature_repo import FITNESS_RISK_BOUNDS

    # After importing feast (it resets the filter): ibis warns on every DuckDB 2.0 query.
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    features = [name.split(":")[1] for name in FITNESS_RISK_BOUNDS]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-offline-store-") as tmp:
        tmp = Path(tmp)
        print(f"Building a city of {args.students} students ...", flush=True)
        indicators_dir = build_city(tmp, args.students, args.seed)
        setup = time.perf_counter() - began
        entities = entity_frame(indicators_dir)
        view_rows = len(pd.read_parquet(indicators_dir / "student_fitness.parquet", columns=["student_key"]))

        timings = {kind: {op: [] for op in OPERATIONS} for kind in STORES}
        frames = {}
        for repeat in range(args.repeats):
            for kind in STORES if repeat % 2 == 0 else STORES[::-1]:  # interleave: no arm always goes first
                print(f"  repeat {repeat + 1}/{args.repeats}: {kind} ...", flush=True)
                seconds, frames[kind] = run_once(kind, tmp / f"feast-{kind}-{repeat}", indicators_dir, entities)
                for op, value in seconds.items():
                    timings[kind][op].append(value)
        agree, detail = same_values(frames["dask"], frames["duckdb"], features)

    median = {kind: {op: statistics.median(v) for op, v in ops.items()} for kind, ops in timings.items()}
    total = {kind: sum(ops.values()) for kind, ops in median.items()}
    print(f"\nFeast {feast.__version__} offline store: dask vs DuckDB "
          f"(median of {args.repeats}; ratio > 1 means DuckDB is faster)")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"data: student_fitness {view_rows} rows, entity frame {len(entities)} rows, {args.students} students")
    print(f"\n{'operation':<14}{'dask s':>10}{'duckdb s':>10}{'dask/duckdb':>13}")
    for op in (*OPERATIONS, "total"):
        d, k = (total[s] if op == "total" else median[s][op] for s in STORES)
        print(f"{op:<14}{d:>10.3f}{k:>10.3f}{d / k:>12.2f}x")
    print(f"\nhistorical retrieval agrees: {'YES' if agree else 'NO'} ({detail})")
    faster = min(STORES, key=total.get)
    verdict = ("the engine keeps DuckDB (the default in feature_store)" if faster == "duckdb"
               else "dask is faster here: revisit feature_store's DuckDB default")
    print(f"faster overall: {faster} by {abs(total['dask'] - total['duckdb']):.3f} s; {verdict}")
    # Run-to-run noise: the spread of each arm's per-repeat totals.
    spread = max(max(s) - min(s) for s in (np.sum(list(timings[k].values()), axis=0) for k in STORES))
    if abs(total["dask"] - total["duckdb"]) < spread:
        print(f"  (smaller than the run-to-run spread of {spread:.3f} s: a tie in practice)")
    if not agree:
        print("WARNING: the two stores disagree, so the timings compare different work")
    print(f"setup (synth+ingest+indicators) {setup:.1f} s; whole benchmark {time.perf_counter() - began:.1f} s")
    raise SystemExit(0 if agree else 1)


if __name__ == "__main__":
    main()
