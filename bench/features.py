"""Indicators and Feast at city scale, each figure beside the raw call it wraps.

    .venv/bin/python bench/features.py --students 100000 --students 1200000

For each city size (6 school years = 12 terms), in a fresh PORTRAIT_HOME:
- indicators: `build_indicators` (every family) beside a raw DuckDB scan of the lake it reads;
- training set: `training_examples` (two point-in-time joins + anchors) beside one raw
  `get_historical_features` on the same entity rows;
- materialization: `publish` (apply + materialize every indicator view) beside raw `materialize`
  of the fitness view alone;
- online read: the service's `FeastPortraitReader.portrait` beside raw `get_online_features` of
  one view, p50 / p99 over random students.
Targets on 2 cores at 1.2M students: indicators < 5 min, materialization < 5 min, online p99 < 10 ms.
`--online redis` measures the scale configuration (Redis online store, views materialized in parallel).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `features` package: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.99 * (len(ordered) - 1))] * 1e3


def bench_city(students: int, school_years: int, reads: int, redis_url: str | None):
    """Yields one line per measurement, as soon as it is measured."""
    import duckdb
    import pandas as pd

    from core.config import Settings
    from features.feature_repo import EPOCH, feature_store, indicator_views, publish
    from features.indicators import build_indicators
    from portrait.pipeline import run_ingest, run_synth
    from serving.portraits import FeastPortraitReader
    from training.fitness_risk import FEATURE_SERVICE, example_anchors, training_examples

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        settings = Settings(home=Path(tmp) / "home", ray_num_cpus=2)
        if redis_url:
            settings = settings.model_copy(update={"feast_online_store": "redis", "feast_redis_url": redis_url})
        _, synth_s = timed(run_synth, Path(tmp) / "export", students=students, seed=3, school_years=school_years)
        _, ingest_s = timed(run_ingest, Path(tmp) / "export", settings)
        yield f"synth {synth_s:.1f} s, ingest {ingest_s:.1f} s (set-up, not measured against a target)"

        counts, build_s = timed(build_indicators, settings.lake_dir, settings.indicators_dir,
                                workers=settings.ray_num_cpus)  # as `portrait features` runs it
        with duckdb.connect() as db:
            _, scan_s = timed(lambda: [db.execute(f"SELECT count(*) FROM read_parquet('{p}')").fetchall()
                                       for p in settings.lake_dir.glob("*.parquet")])
        rows = sum(counts.values())
        peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1e6
        yield (f"indicators      {build_s:9.1f} s  {rows:>12,} rows  raw lake scan {scan_s:6.2f} s  "
                     f"peak RSS so far {peak:.1f} GB")

        store = feature_store(settings)
        definitions = indicator_views(settings.indicators_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            _, publish_s = timed(publish, store, definitions, workers=settings.ray_num_cpus)
            _, raw_mat_s = timed(store.materialize, EPOCH, time_now(), feature_views=["student_fitness"])
        yield (f"materialize     {publish_s:9.1f} s  (all views, {settings.feast_online_store}, "
                     f"{settings.ray_num_cpus} workers)  raw materialize student_fitness alone {raw_mat_s:6.1f} s")

        anchors = example_anchors(store)
        (features, _), train_s = timed(training_examples, store, anchors)
        entity = anchors[["student_key", "event_timestamp"]]
        _, raw_hist_s = timed(lambda: store.get_historical_features(
            entity_df=entity, features=store.get_feature_service(FEATURE_SERVICE)).to_df())
        yield (f"training set    {train_s:9.2f} s  {len(features):>12,} rows  raw get_historical_features "
                     f"{raw_hist_s:6.2f} s")

        reader = FeastPortraitReader(settings)
        # Students on the roll in the latest term: the ones the online store holds and teachers look up.
        roll = pd.read_parquet(settings.indicators_dir / "student_enrollment.parquet",
                               columns=["student_key", "event_timestamp"])
        current = roll.loc[roll["event_timestamp"] == roll["event_timestamp"].max(), "student_key"].astype(str)
        keys = random.Random(0).sample(sorted(current), min(reads, len(current)))
        for key in keys[:20]:  # warm up connections and caches
            assert reader.portrait(key) is not None, "a benchmarked read must return a portrait"
        portrait_ms = [timed(reader.portrait, key)[1] for key in keys]
        raw_ms = [timed(lambda k: store.get_online_features(
            features=["student_fitness:total_score"], entity_rows=[{"student_key": k}]).to_dict(), key)[1]
            for key in keys]
        p50, p99 = percentiles(portrait_ms)
        raw50, raw99 = percentiles(raw_ms)
        yield (f"online portrait  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms   raw get_online_features "
                     f"p50 {raw50:6.2f} ms  p99 {raw99:6.2f} ms  ({len(keys)} reads)")


def time_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, action="append")
    parser.add_argument("--school-years", type=int, default=6)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--online", choices=["sqlite", "redis"], default="sqlite",
                        help="online store; redis starts a throwaway redis-server on loopback")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.school_years} school years ({2 * args.school_years} terms)")
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server()) if args.online == "redis" else None
        for students in args.students or [100_000]:
            print(f"\n== {students:,} students ==")
            for line in bench_city(students, args.school_years, args.reads, redis_url):
                print(line, flush=True)


@contextlib.contextmanager
def redis_server(port: int = 6390):
    """A throwaway Redis on loopback, no persistence (Debian's redis-server must be installed)."""
    import subprocess

    import redis

    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(port=port).ping()
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
