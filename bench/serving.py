"""The portrait service under a sustained load, beside the raw Feast online read it wraps.

    .venv/bin/python bench/serving.py --students 5000 --seconds 30 --rate 200

Builds a synthetic city in a temporary PORTRAIT_HOME (synth -> ingest -> indicators -> Feast
publish; DP statistics; fitness-risk scores with their level and three reasons, and each class's
median growth per subject, written as batch scoring would, from a seeded random draw instead of a
trained model, so no training is needed), starts the service as a deployment does (`portrait serve`,
one worker process per core) on a free loopback port, and for each arm sends requests at a fixed rate (open loop:
request i leaves at t0 + i / rate whatever the earlier ones are doing; latency is measured from
that scheduled time, so queueing in the server is counted, not hidden):

  portrait    GET /api/v1/students/{key}/portrait, a random student of the city each time
  class page  GET /classes/{class}, the rendered page of the class closest to 45 students

each once with the service's row cache (the default: a class page reads Feast once per publish)
and once with it off (every request reads Feast). Beside them, in this process with the server
idle, the raw `FeatureStore.get_online_features` of the same views for one student and for the
class, and the service's own read (`FeastFeatureReader`), whose values are checked against it.

Prints p50 / p99 / max latency, the rate achieved and errors per arm, against the targets on
2 cores: portrait p99 <= 20 ms, class page p99 <= 100 ms, zero errors. Leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `serving` package: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

TARGETS_MS = {"portrait": 20.0, "class page": 100.0}
PASSWORD = "bench password, loopback only"


@dataclass
class Arm:
    name: str
    cache: str
    latencies_ms: list[float]
    errors: int
    seconds: float
    server_cpu_ms: float  # the server's CPU time per request

    def line(self) -> str:
        ordered = sorted(self.latencies_ms) or [float("nan")]
        p50, p99 = statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]
        target = TARGETS_MS.get(self.name)
        verdict = "" if target is None else ("  ok" if p99 <= target and self.errors == 0 else "  MISSED")
        return (f"{self.name:<11}{self.cache:<7}{len(ordered) / self.seconds:8.1f}/s {p50:8.2f} {p99:8.2f} "
                f"{ordered[-1]:8.1f} {self.errors:7d} {self.server_cpu_ms:9.2f}   p99 target {target or '-':>5} ms{verdict}")


def build_city(home: Path, students: int, seed: int) -> dict:
    import numpy as np
    import pandas as pd

    from core.config import Settings
    from features.feature_repo import feature_store, publish, score_views
    from portrait.pipeline import run_features, run_ingest, run_statistics, run_synth
    from serving.directory import current_enrollment
    from serving.users import UserStore

    settings = Settings(home=home / "home")
    with contextlib.redirect_stdout(io.StringIO()):
        run_synth(home / "export", students=students, seed=seed)
        run_ingest(home / "export", settings)
        run_features(settings)
        run_statistics(settings)
    roll = current_enrollment(settings.indicators_dir / "student_enrollment.parquet")
    rng = np.random.default_rng(seed)
    now = pd.Timestamp.now(tz="UTC").as_unit("us")
    model = {"model_version": 1, "model_epsilon": 2.0, "model_delta": 1e-5}
    probability = rng.beta(1.5, 8.0, len(roll))
    # Three reasons a student, shaped like `training.score` writes them (feature, value, effect).
    features = ("score_run_50m", "total_change", "total_score", "score_vital_capacity", "bmi")
    reasons = [json.dumps([{"feature": features[j], "value": round(float(rng.uniform(30, 90)), 1),
                            "effect": round(float(rng.normal(0, 0.1)), 4)} for j in rng.choice(5, 3, replace=False)])
               for _ in range(len(roll))]
    scores = pd.DataFrame({
        "student_key": roll["student_key"].astype("string"), "event_timestamp": now,
        "risk_probability": probability, "level": np.where(probability >= 0.5, "red",
                                                           np.where(probability >= 0.25, "amber", "green")),
        "reasons_json": reasons, "model_name": "fitness_risk", **model,
    })
    settings.scores_dir.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(settings.scores_dir / "fitness_risk_score.parquet", index=False)
    # The value-added view the class page shows: each class's median growth percentile per subject.
    sizes = roll.groupby("class_id").size()
    classes = sizes[sizes >= 10].index.astype(str)
    growth = [json.dumps([{"subject": subject, "students": int(sizes[class_id]),
                           "median_growth_percentile": round(float(rng.uniform(30, 70)), 1)}
                          for subject in ("chinese", "math", "english")]) for class_id in classes]
    pd.DataFrame({"class_id": pd.Series(classes, dtype="string"), "event_timestamp": now, "term_id": "bench",
                  "growth_json": growth, "model_name": "growth", **model}).to_parquet(
        settings.scores_dir / "class_growth_score.parquet", index=False)
    with contextlib.redirect_stdout(io.StringIO()):
        publish(feature_store(settings), score_views(settings.scores_dir))
    class_id = str((sizes - 45).abs().idxmin())
    users = UserStore(settings.users_path)
    # One class teacher over every class, so any student of the city is theirs to read.
    users.add("bench-teacher", PASSWORD, "class_teacher", sorted(roll["class_id"].astype(str).unique()))
    return {"settings": settings, "students": roll["student_key"].astype(str).tolist(), "class_id": class_id,
            "class_keys": roll.loc[roll["class_id"] == class_id, "student_key"].astype(str).tolist()}


def start_server(settings, cache_rows: int, workers: int) -> tuple[subprocess.Popen, str]:
    """`portrait serve` on a free loopback port, as a deployment runs it (one worker per core)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PORTRAIT_HOME": str(settings.home), "PORTRAIT_SERVING_CACHE_ROWS": str(cache_rows)}
    server = subprocess.Popen([sys.executable, "-m", "portrait.cli", "serve", "--port", str(port), "--workers",
                               str(workers)], cwd=Path(__file__).resolve().parents[1], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline, ready_in_a_row = time.monotonic() + 120, 0
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited: " + server.stderr.read()[-2000:])
        try:
            # Each probe on a new connection, which any worker may take: ready 20 times in a row
            # is every worker ready, as a load balancer's probe would see it.
            ready_in_a_row = ready_in_a_row + 1 if httpx.get(f"{base}/readyz", timeout=60).status_code == 200 else 0
            if ready_in_a_row >= 20:
                return server, base
        except httpx.TransportError:
            ready_in_a_row = 0
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the server did not become ready in 120 s")


async def sustained(base: str, paths: list[str], *, rate: float, seconds: float, warmup: float,
                    headers: dict, connections: int = 64) -> tuple[list[float], int, float]:
    """Open loop at `rate` requests/s; latencies (ms) after the warm-up, errors, measured seconds.

    A minimal HTTP/1.1 client on raw keep-alive connections, like wrk: a Python HTTP library would
    spend more CPU per request than the service, on the same two cores. Each connection carries
    one request at a time; a request waits for a free connection, and that wait is in its latency.
    """
    host, port = base.removeprefix("http://").split(":")
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []
    errors = 0
    total = int((seconds + warmup) * rate)
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        reader, writer = await pool.get()
        ok = False
        try:
            writer.write(f"GET {paths[i % len(paths)]} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            await reader.readexactly(length)
            ok = head.startswith(b"HTTP/1.1 200")
            pool.put_nowait((reader, writer))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration):
            writer.close()
            pool.put_nowait(await asyncio.open_connection(host, int(port)))
        if scheduled - start >= warmup:
            if ok:
                latencies.append((time.perf_counter() - scheduled) * 1e3)
            else:
                errors += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return latencies, errors, seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (uvicorn's workers; Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                total += cpu_seconds(int(child))
    return total


def raw_feast_reads(settings, student_keys: list[str], class_keys: list[str], repeats: int) -> list[str]:
    """The raw Feast read of the portrait's views beside the service's own read, values checked equal."""
    from features.feature_repo import feature_store
    from serving.online import FeastFeatureReader
    from serving.portraits import PORTRAIT_VIEWS

    store = feature_store(settings)
    views = [v for v in store.list_feature_views() if v.name in PORTRAIT_VIEWS and v.online]
    features = [f"{v.name}:{f.name}" for v in views for f in v.features]
    reader = FeastFeatureReader(settings)

    def raw(keys):
        return store.get_online_features(features=features, entity_rows=[{"student_key": k} for k in keys],
                                         full_feature_names=True).to_dict()

    def ours(keys):
        return {v.name: reader.read(v.name, keys) for v in views}

    sample = random.Random(7).sample(student_keys, min(20, len(student_keys)))
    for key in sample:  # the two reads must agree, or the comparison is worthless
        expected, got = raw([key]), ours([key])
        for v in views:
            for f in v.features:
                row = got[v.name][0]
                assert (row or {}).get(f.name) == expected[f"{v.name}__{f.name}"][0], (v.name, f.name)
    lines = []
    rng = random.Random(11)
    for name, read in (("raw Feast", raw), ("service", ours)):
        for what, keys_of in (("1 student", lambda: [rng.choice(student_keys)]), (f"{len(class_keys)} students",
                                                                                    lambda: class_keys)):
            samples = []
            for _ in range(repeats):
                keys = keys_of()
                started = time.perf_counter()
                read(keys)
                samples.append((time.perf_counter() - started) * 1e3)
            ordered = sorted(samples)
            lines.append(f"{name:<11}{what:<14}{statistics.median(ordered):8.2f} {ordered[int(0.99 * (len(ordered) - 1))]:8.2f}"
                         f"   ({len(views)} views, {len(features)} features, sequential, server idle)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per arm before measuring")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--raw-repeats", type=int, default=200)
    parser.add_argument("--no-uncached", action="store_true", help="skip the arms with the row cache off")
    parser.add_argument("--workers", type=int, default=None,
                        help="server worker processes (default: PORTRAIT_SERVING_WORKERS, one per core)")
    args = parser.parse_args()
    import httpx

    from core.config import Settings

    print(f"bench/serving.py: {args.students} students, {args.rate:g} requests/s, {args.seconds:g} s per arm "
          f"(+{args.warmup:g} s warm-up), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        started = time.perf_counter()
        city = build_city(Path(tmp), args.students, args.seed)
        print(f"set-up (synth, ingest, features, statistics, scores) {time.perf_counter() - started:.0f} s; "
              f"class {city['class_id']} has {len(city['class_keys'])} students")
        defaults = Settings()
        workers = args.workers or defaults.serving_workers
        print(f"server: portrait serve --workers {workers}")
        print(f"\n{'arm':<11}{'cache':<7}{'rate':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} "
              f"{'cpu ms/req':>9}  (server CPU per request, all workers)")
        modes = [("on", defaults.serving_cache_rows)] + ([] if args.no_uncached else [("off", 0)])
        rng = random.Random(args.seed)
        for cache, rows in modes:
            server, base = start_server(city["settings"], rows, workers)
            try:
                token = httpx.post(f"{base}/api/v1/token", data={"username": "bench-teacher",
                                                                 "password": PASSWORD}).json()["access_token"]
                portraits = [f"/api/v1/students/{rng.choice(city['students'])}/portrait" for _ in range(10_000)]
                for name, paths, headers in (
                        ("portrait", portraits, {"Authorization": f"Bearer {token}"}),
                        ("class page", [f"/classes/{city['class_id']}"], {"Cookie": f"portrait_token={token}"})):
                    cpu_before = cpu_seconds(server.pid)
                    latencies, errors, seconds = asyncio.run(sustained(
                        base, paths, rate=args.rate, seconds=args.seconds, warmup=args.warmup, headers=headers))
                    cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1e3 / max(1, int((args.seconds + args.warmup) * args.rate))
                    print(Arm(name, cache, latencies, errors, seconds, cpu_ms).line(), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
        print(f"\n{'read':<11}{'of':<14}{'p50 ms':>8} {'p99 ms':>8}")
        for line in raw_feast_reads(city["settings"], city["students"], city["class_keys"], args.raw_repeats):
            print(line)


if __name__ == "__main__":
    main()
