"""The benchmark scripts, run as scripts, import this project's packages and not their namesakes.

`python bench/x.py` puts `bench/` first on sys.path, where `features.py`, `models.py`,
`privacy.py` and `serving.py` would shadow the packages of those names; each script puts the
repository root there instead before it imports anything of the project.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")
PROBE = """
import runpy, sys
sys.path.insert(0, {bench!r})  # what running the script does
runpy.run_path({script!r}, run_name="bench_probe")  # its module-level code, not its main()
import features.feature_repo, models, privacy, serving, training
print("project packages imported")
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_imports_the_project_packages(script):
    code = PROBE.format(bench=str(ROOT / "bench"), script=str(ROOT / "bench" / script))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "project packages imported" in done.stdout
