"""Feast offline stores: DuckDB (the engine's default), dask, and Ray (the scale path) on the same data.

Builds a synthetic city in a temporary PORTRAIT_HOME (synth -> ingest -> indicators, once),
then gives each offline store its own registry and online SQLite over the SAME indicator
Parquet files and times, per repeat (median reported, arms interleaved):

  apply         registering the indicator views and `fitness_risk_v1` in a fresh registry
  historical    `get_historical_features(fitness_risk_v1)` for one entity row per student
                (timestamp = the student's latest test + 1 day), `.to_df()` included
  materialize   the indicator views into an empty online store

Ray is Feast's Ray offline store with the Ray compute engine (materialize), on a local Ray
limited to `PORTRAIT_RAY_NUM_CPUS` cores, as `PORTRAIT_FEAST_OFFLINE_STORE=ray` configures it;
with `RAY_ADDRESS` set it is a cluster instead. It also checks that every store returns the same
historical values as DuckDB (a benchmark whose arms disagree is worthless) and prints each
store's ratio to DuckDB (> 1: DuckDB is faster).

    .venv/bin/python bench/offline_store.py --students 20000 --repeats 3          # DuckDB, dask
    .venv/bin/python bench/offline_store.py --repeats 1 --stores duckdb,dask,ray  # and Ray (~16 min)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

# Run as a script, this file's folder comes first on sys.path and its neighbours would shadow
# packages (bench/features.py shadows `features`): put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

STORES = ("duckdb", "dask", "ray")  # the first is the reference
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
    views = [d.name for d in definitions if isinstance(d, FeatureView) and d.online]  # offline-only views stay out
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
    # Ray is opt-in: on one machine its arm takes about 15 minutes a repeat at 20k students.
    parser.add_argument("--stores", default="duckdb,dask",
                        help=f"comma-separated, from {', '.join(STORES)}; the first is the reference")
    args = parser.parse_args()
    stores = tuple(args.stores.split(","))
    if not stores or any(kind not in STORES for kind in stores):
        parser.error(f"--stores: choose from {', '.join(STORES)}")
    reference = stores[0]

    import feast

    from features.feature_repo import FITNESS_RISK_BOUNDS

    # After importing feast (it resets the filter): ibis warns on every DuckDB 2.0 query.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray on loopback, as the tests start it

    features = [name.split(":")[1] for name in FITNESS_RISK_BOUNDS]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-offline-store-") as tmp:
        tmp = Path(tmp)
        print(f"Building a city of {args.students} students ...", flush=True)
        indicators_dir = build_city(tmp, args.students, args.seed)
        setup = time.perf_counter() - began
        entities = entity_frame(indicators_dir)
        view_rows = len(pd.read_parquet(indicators_dir / "student_fitness.parquet", columns=["student_key"]))

        timings = {kind: {op: [] for op in OPERATIONS} for kind in stores}
        frames = {}
        for repeat in range(args.repeats):
            order = stores if repeat % 2 == 0 else stores[::-1]  # interleave: no arm always goes first
            for kind in order:
                seconds, frames[kind] = run_once(kind, tmp / f"feast-{kind}-{repeat}", indicators_dir, entities)
                print(f"  repeat {repeat + 1}/{args.repeats} {kind:<7}"
                      + "".join(f"  {op} {value:8.3f} s" for op, value in seconds.items()), flush=True)
                for op, value in seconds.items():
                    timings[kind][op].append(value)
        if "ray" in stores:
            import ray

            ray.shutdown()
        agreement = {kind: same_values(frames[reference], frames[kind], features) for kind in stores[1:]}

    median = {kind: {op: statistics.median(v) for op, v in ops.items()} for kind, ops in timings.items()}
    total = {kind: sum(ops.values()) for kind, ops in median.items()}
    print(f"\nFeast {feast.__version__} offline stores against {reference} "
          f"(median of {args.repeats}; a ratio > 1 means {reference} is faster)")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"data: student_fitness {view_rows} rows, entity frame {len(entities)} rows, {args.students} students")
    header = "".join(f"{kind + ' s':>10}" for kind in stores)
    header += "".join(f"{kind + '/' + reference:>16}" for kind in stores[1:])
    print(f"\n{'operation':<14}{header}")
    for op in (*OPERATIONS, "total"):
        seconds = {kind: total[kind] if op == "total" else median[kind][op] for kind in stores}
        line = "".join(f"{seconds[kind]:>10.3f}" for kind in stores)
        line += "".join(f"{seconds[kind] / seconds[reference]:>15.2f}x" for kind in stores[1:])
        print(f"{op:<14}{line}")
    print()
    for kind, (agree, detail) in agreement.items():
        print(f"historical retrieval, {kind} vs {reference}: {'SAME' if agree else 'DIFFERENT'} ({detail})")
    fastest = min(stores, key=total.get)
    verdict = (f"the engine keeps {reference} (the default in feature_store)" if fastest == reference
               else f"{fastest} is faster here: revisit feature_store's default")
    print(f"fastest overall: {fastest}; {verdict}")
    # Run-to-run noise: the spread of each arm's per-repeat totals.
    spread = max(max(s) - min(s) for s in (np.sum(list(timings[k].values()), axis=0) for k in stores))
    runner_up = sorted(total.values())[1] if len(stores) > 1 else total[fastest]
    if runner_up - total[fastest] < spread:
        print(f"  (the lead is smaller than the run-to-run spread of {spread:.3f} s: a tie in practice)")
    all_agree = all(agree for agree, _ in agreement.values())
    if not all_agree:
        print("WARNING: the stores disagree, so the timings compare different work")
    print(f"setup (synth+ingest+indicators) {setup:.1f} s; whole benchmark {time.perf_counter() - began:.1f} s")
    raise SystemExit(0 if all_agree else 1)


if __name__ == "__main__":
    main()
