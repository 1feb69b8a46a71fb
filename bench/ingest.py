"""Synth + ingest at city scale: rows per second and peak memory for each stage.

    .venv/bin/python bench/ingest.py --students 100000 --students 1200000

Each stage runs in its own child process, so its peak resident memory is its own. The reference
measured in the same run is a raw scan of the same export with pyarrow (every column read, nothing
checked): the ratio says what validation, pseudonymization, keys and the atomic merge cost on top
of reading. Targets on 2 cores: ingest ≥ 1M rows/s, peak memory < 8 GB at 1.2M students.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its neighbours would shadow
# packages (bench/features.py shadows `features`): put the repository root there instead.
sys.path[0] = str(ROOT)

STAGES = {
    "synth": """
from features.synth import CityPlan, write_synthetic_city
rows = write_synthetic_city(CityPlan(students={students}, seed=1, school_years={years}), Path(r"{export}"))
result = {{"rows": sum(rows.values()), "tables": rows}}
""",
    "raw read": """
import pyarrow.parquet as pq
rows = 0
for path in Path(r"{export}").glob("*.parquet"):
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 20):
        rows += batch.num_rows
result = {{"rows": rows}}
""",
    "ingest": """
from features.ingest import ingest
from privacy.pseudonyms import Pseudonymizer
report = ingest(Path(r"{export}"), lake_dir=Path(r"{home}") / "lake", pseudonymizer=Pseudonymizer(b"k" * 32))
result = {{"rows": sum(t.rows_read for t in report.tables.values()),
          "quarantined": sum(t.rows_quarantined for t in report.tables.values())}}
""",
}

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, r"{root}")
started = time.perf_counter()
{body}
result["seconds"] = time.perf_counter() - started
result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print("RESULT " + json.dumps(result))
"""


def run_stage(name: str, **values) -> dict:
    code = CHILD.format(root=ROOT, body=STAGES[name].format(**values))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, action="append", help="city size (repeatable)")
    parser.add_argument("--school-years", type=int, default=6, help="6 school years = 12 terms")
    args = parser.parse_args()
    sizes = args.students or [100_000]

    print(f"machine: {os.cpu_count()} cores; school years {args.school_years} ({2 * args.school_years} terms)")
    header = f"{'students':>10}  {'stage':<9}{'rows':>13}{'seconds':>9}{'rows/s':>12}{'peak GB':>9}  vs reference"
    rows_out = [header, "-" * len(header)]
    for students in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            export, home = Path(tmp) / "export", Path(tmp) / "home"
            results = {name: run_stage(name, students=students, years=args.school_years, export=export, home=home)
                       for name in ("synth", "raw read", "ingest")}
        raw_rate = results["raw read"]["rows"] / results["raw read"]["seconds"]
        for name, result in results.items():
            rate = result["rows"] / result["seconds"]
            if name == "ingest":
                note = f"{rate / raw_rate:.2f}x raw read; target 1M rows/s: {rate / 1e6:.2f}x"
            elif name == "synth":
                note = ", ".join(f"{t} {n:,}" for t, n in sorted(result["tables"].items(), key=lambda kv: -kv[1])[:3])
            else:
                note = "reference"
            rows_out.append(f"{students:>10,}  {name:<9}{result['rows']:>13,}{result['seconds']:>9.1f}{rate:>12,.0f}"
                            f"{result['peak_rss_gb']:>9.2f}  {note}")
        if results["ingest"].get("quarantined"):
            rows_out.append(f"{'':>10}  ingest quarantined {results['ingest']['quarantined']:,} rows (expected 0)")
    print("\n".join(rows_out))


if __name__ == "__main__":
    main()
