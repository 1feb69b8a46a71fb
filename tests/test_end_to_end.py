"""The whole path on a tiny city: the real `portrait` command, Feast, Ray, MLflow, and HTTP.

`portrait demo --no-serve` runs every stage in a child process, `portrait serve` answers on a
free loopback port, and the test reads portraits as a class teacher would.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import Settings
from serving.users import UserStore

STUDENTS = 400
SEED = 5
PORTRAIT = [sys.executable, "-m", "portrait.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    home = tmp_path_factory.mktemp("portrait-home")
    env = {**os.environ, "PORTRAIT_HOME": str(home), "RAY_AUTH_MODE": "disabled"}
    started = time.perf_counter()
    demo = subprocess.run(
        [*PORTRAIT, "demo", "--students", str(STUDENTS), "--seed", str(SEED), "--no-serve"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    seconds = time.perf_counter() - started

    port = _free_port()
    server = subprocess.Popen([*PORTRAIT, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                # Ready, not just alive: the first request must not pay for loading Feast.
                if httpx.get(f"{base}/readyz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        else:
            pytest.fail("server did not come up: " + (server.stdout.read() if server.poll() is not None else ""))
        yield {"home": home, "base": base, "demo": demo.stdout, "seconds": seconds, "settings": Settings(home=home)}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def classes(city):
    """Two classes of the latest school year and their students (pseudonymous keys)."""
    memberships = pd.read_parquet(city["settings"].lake_dir / "class_memberships.parquet")
    latest = memberships[memberships["school_year"] == memberships["school_year"].max()]
    scored = set(pd.read_parquet(city["settings"].scores_dir / "fitness_risk_score.parquet")["student_key"])
    latest = latest[latest["student_id"].isin(scored)]
    first, second = latest["class_id"].value_counts().index[:2]
    mine = latest.loc[latest["class_id"] == first, "student_id"].tolist()
    other = latest.loc[latest["class_id"] == second, "student_id"].tolist()
    users = UserStore(city["settings"].users_path)
    users.add("e2e-teacher", "correct horse battery", "class_teacher", [first])
    return {"mine": mine, "other": other, "class_id": first}


def _token(base: str, username="e2e-teacher", password="correct horse battery") -> dict:
    response = httpx.post(f"{base}/api/v1/token", data={"username": username, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_demo_runs_every_stage_and_reports_the_models(city):
    out = city["demo"]
    for stage in ("synth", "ingest", "features", "train", "score"):
        assert re.search(rf"{stage} done in [\d.]+ s", out), out
    assert re.search(r"AUC 0\.\d+ \(DP, ε=[\d.]+, δ=[\d.e-]+\) vs 0\.\d+ \(non-private LightGBM\)", out)


def test_class_teacher_reads_own_student_portrait_with_history_and_risk(city, classes):
    response = httpx.get(f"{city['base']}/api/v1/students/{classes['mine'][0]}/portrait",
                         headers=_token(city["base"]), timeout=30)
    assert response.status_code == 200, response.text
    portrait = response.json()
    assert portrait["class_id"] == classes["class_id"]
    assert "school_id" not in portrait
    assert portrait["history"], "fitness history is empty"
    years = [year["school_year"] for year in portrait["history"]]
    assert years == sorted(years)
    assert portrait["latest"]["level"] in {"excellent", "good", "pass", "fail"}
    risk = portrait["risk"]
    assert 0 <= risk["probability"] <= 1
    assert risk["model_name"] == "fitness_risk" and risk["model_version"] >= 1
    assert 0 < risk["epsilon"] <= Settings().fitness_risk_epsilon + 1e-6
    assert 0 < risk["delta"] <= 1 / 100


def test_class_teacher_cannot_read_another_class_and_unknown_looks_the_same(city, classes):
    headers = _token(city["base"])
    other = httpx.get(f"{city['base']}/api/v1/students/{classes['other'][0]}/portrait", headers=headers, timeout=30)
    unknown = httpx.get(f"{city['base']}/api/v1/students/{'0' * 24}/portrait", headers=headers, timeout=30)
    assert other.status_code == unknown.status_code == 403
    assert other.json() == unknown.json()
    assert httpx.get(f"{city['base']}/api/v1/students/{classes['mine'][0]}/portrait", timeout=30).status_code == 401


def test_student_page_draws_the_fitness_history(city, classes):
    with httpx.Client(base_url=city["base"]) as browser:
        login = browser.post("/login", data={"username": "e2e-teacher", "password": "correct horse battery"})
        assert login.status_code in (200, 303)
        page = browser.get(f"/students/{classes['mine'][0]}")
        assert page.status_code == 200
        # Charts are ECharts options the page draws with the engine's own copy of the library.
        assert page.text.count('data-chart="') >= 3 and '<script src="/static/echarts.min.js"' in page.text
        assert "fitness_risk" in page.text  # the model behind the number
        assert browser.get("/static/echarts.min.js").status_code == 200


def test_model_is_registered_as_champion_with_its_privacy_guarantee(city):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=city["settings"].mlflow_uri, registry_uri=city["settings"].mlflow_uri)
    version = client.get_model_version_by_alias("fitness_risk", "champion")
    run = client.get_run(version.run_id)
    for param in ("dp.delta", "dp.noise_multiplier", "dp.max_grad_norm", "dp.accountant", "dp.unit_of_privacy"):
        assert param in run.data.params
    for metric in ("dp.epsilon", "auc_test", "auc_test_nonprivate_lightgbm"):
        assert metric in run.data.metrics
    assert float(run.data.params["dp.delta"]) <= 1 / float(run.data.params["n_train"])
    assert run.data.metrics["dp.epsilon"] <= float(run.data.params["dp.target_epsilon"]) + 1e-6
    assert version.tags["accountant"] == "prv"
    assert run.data.params["data_release"] == "2025" and run.data.params["lake_snapshot"].startswith("v-")
    assert set(version.aliases) == {"champion", "challenger"}  # the first version is both
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"model_card.md", "audits.json", "utility_vs_epsilon.png", "utility_vs_epsilon.json"} <= artifacts
    assert {f"sweep.auc_at_eps_{e}" for e in ("0.5", "1", "2", "4", "8")} <= set(run.data.metrics)


def test_every_model_is_registered_with_its_guarantee_and_reference(city):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=city["settings"].mlflow_uri, registry_uri=city["settings"].mlflow_uri)
    growth = client.get_model_version_by_alias("growth", "champion")
    metrics = client.get_run(growth.run_id).data.metrics
    assert metrics["dp.epsilon"] <= city["settings"].growth_epsilon + 1e-6
    assert {"median_abs_diff", "p90_abs_diff", "spearman", "fit_seconds_exact"} <= set(metrics)
    assert "## Privacy guarantee" in growth.description and "one subject per student" in growth.description
    # Audited like every model: the attack on the DP model does not refute its ε.
    assert metrics["audit.dp.loss_threshold.epsilon_lower_bound"] <= metrics["dp.epsilon"]
    assert "audit.nonprivate.loss_threshold.auc" in metrics and "## Membership-inference audits" in growth.description
    scores = city["settings"].scores_dir
    growth_scores = pd.read_parquet(scores / "growth_score.parquet")
    lines = json.loads(growth_scores["growth_json"].iloc[0])
    assert lines and {"subject", "term_id", "percentile"} <= set(lines[0]) and 1 <= lines[0]["percentile"] <= 99
    for entity in ("class", "teacher", "school"):  # the value-added view (groups under 10 left out)
        medians = pd.read_parquet(scores / f"{entity}_growth_score.parquet")
        for line in medians["growth_json"]:
            assert all(item["students"] >= 10 and 1 <= item["median_growth_percentile"] <= 99
                       for item in json.loads(line))
    warnings = pd.read_parquet(scores / "academic_risk_score.parquet")
    assert set(warnings["level"]) <= {"red", "amber", "green"} and warnings["reasons_json"].str.len().gt(2).any()
    academic = client.get_model_version_by_alias("academic_risk", "champion")
    metrics = client.get_run(academic.run_id).data.metrics
    assert metrics["dp.epsilon"] <= city["settings"].academic_risk_epsilon + 1e-6
    assert {"auc_test", "auc_test_nonprivate_lightgbm", "brier", "ece", "audit.dp.loss_threshold.auc"} <= set(metrics)


def test_teacher_training_is_registered_per_teacher_and_scored_for_teachers_and_courses(city):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=city["settings"].mlflow_uri, registry_uri=city["settings"].mlflow_uri)
    version = client.get_model_version_by_alias("teacher_training", "champion")
    run = client.get_run(version.run_id)
    assert run.data.metrics["dp.epsilon"] <= city["settings"].teacher_training_epsilon + 1e-6
    assert "teacher" in run.data.params["dp.unit_of_privacy"] and run.data.params["data_release"] == "2025/teachers"
    # The held-out Spearmans are NaN (not logged) when a tiny city leaves under 20 single-course intervals.
    assert {"held_out_intervals", "fit_seconds_dp", "audit.dp.loss_threshold.auc",
            "audit.nonprivate.loss_threshold.auc"} <= set(run.data.metrics)
    assert "one teacher" in version.description
    assert run.data.metrics["audit.dp.loss_threshold.epsilon_lower_bound"] <= run.data.metrics["dp.epsilon"]
    scores = city["settings"].scores_dir
    recommended = pd.read_parquet(scores / "teacher_training_score.parquet")
    first = json.loads(recommended["recommendations_json"].iloc[0])
    assert first and {"course_id", "expected_gain", "dimension", "reason"} <= set(first[0])
    assert (recommended["model_name"] == "teacher_training").all()
    invites = pd.read_parquet(scores / "course_invite_score.parquet")
    invited = json.loads(invites["invites_json"].iloc[0])
    assert invited and set(item["teacher_key"] for item in invited) <= set(recommended["teacher_key"])


def test_training_spent_its_budget_in_the_ledger_before_registering(city):
    from privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(city["settings"].ledger_url)
    spends = ledger.spends("2025")
    [training] = [s for s in spends if s["what"] == "fitness_risk training"]
    assert training["accountant"] == "prv" and training["epsilon"] > 0
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=city["settings"].mlflow_uri)
    run = client.get_run(client.get_model_version_by_alias("fitness_risk", "champion").run_id)
    # Reserved at the target before training, settled to the ε the accountant read back.
    assert training["epsilon"] == pytest.approx(run.data.metrics["dp.epsilon"])
    assert training["epsilon"] <= float(run.data.params["dp.target_epsilon"])
    statistics = [s for s in spends if s["what"].startswith("statistics: ")]
    assert len(statistics) == 8 and all(s["delta"] == 0 for s in statistics)
    assert ledger.balance("2025").epsilon_spent <= ledger.balance("2025").epsilon_total
    # The teacher model spends from the teachers' release of the year, never from the students'.
    assert not [s for s in spends if s["what"].startswith("teacher_training")]
    [teachers] = ledger.spends("2025/teachers")
    assert teachers["what"] == "teacher_training training" and 0 < teachers["epsilon"] <= 1.0
    assert (city["home"] / "statistics" / "five_domain_norms.parquet").exists()
    shown = subprocess.run([*PORTRAIT, "privacy", "ledger"], env={**os.environ, "PORTRAIT_HOME": str(city["home"])},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "release 2025: spent ε=" in shown.stdout


def test_the_model_card_shows_the_guarantee_and_audits_that_do_not_refute_it(city):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=city["settings"].mlflow_uri, registry_uri=city["settings"].mlflow_uri)
    version = client.get_model_version_by_alias("fitness_risk", "champion")
    card = version.description
    assert "## Privacy guarantee" in card and "one student" in card and "## Membership-inference audits" in card
    metrics = client.get_run(version.run_id).data.metrics
    claimed = metrics["dp.epsilon"]
    for attack in ("loss_threshold", "one_run_canaries"):
        assert metrics[f"audit.dp.{attack}.epsilon_lower_bound"] <= claimed
        assert f"audit.nonprivate.{attack}.auc" in metrics

    # `portrait privacy audit` re-runs them on the registered version and logs to the same run.
    audited = subprocess.run([*PORTRAIT, "privacy", "audit", "fitness_risk"],
                             env={**os.environ, "PORTRAIT_HOME": str(city["home"]), "RAY_AUTH_MODE": "disabled"},
                             capture_output=True, text=True, timeout=300)
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]
    assert audited.stdout.count("one_run_canaries") == 2 and "dp " in audited.stdout
    academic = subprocess.run([*PORTRAIT, "privacy", "audit", "academic_risk"],
                              env={**os.environ, "PORTRAIT_HOME": str(city["home"]), "RAY_AUTH_MODE": "disabled"},
                              capture_output=True, text=True, timeout=300)
    assert academic.returncode == 0, academic.stdout[-2000:] + academic.stderr[-2000:]
    assert academic.stdout.count("loss_threshold") == 2
    refused = subprocess.run([*PORTRAIT, "privacy", "audit", "growth"],
                             env={**os.environ, "PORTRAIT_HOME": str(city["home"])}, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "audited when they train" in refused.stdout + refused.stderr


def test_mlflow_run_trains_a_model_in_its_own_run_under_the_project_run(city):
    """`mlflow run mlflow -e train` works: each model gets its own run (a child of the project's
    run), registered as a new version, then scoring runs."""
    import mlflow

    uri = city["settings"].mlflow_uri
    repository = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PORTRAIT_HOME": str(city["home"]), "RAY_AUTH_MODE": "disabled", "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = subprocess.run([sys.executable, "-m", "mlflow", "run", str(repository / "mlflow"), "-e", "train",
                          "-P", "models=academic_risk", "-P", "epsilon=1", "--env-manager", "local",
                          "--experiment-name", "portrait-project"],
                         env=env, cwd=repository, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    [project] = client.search_runs([client.get_experiment_by_name("portrait-project").experiment_id])
    version = client.get_model_version_by_alias("academic_risk", "challenger")
    assert int(version.version) >= 2  # a new version beside the demo's
    run = client.get_run(version.run_id)
    assert run.data.tags["mlflow.parentRunId"] == project.info.run_id
    assert "auc_test" in run.data.metrics and "auc_test" not in project.data.metrics


def test_nothing_under_portrait_home_holds_a_raw_id_name_or_national_id(city):
    from features.synth import CityPlan, synthesize

    students = synthesize(CityPlan(students=STUDENTS, seed=SEED))["students"]
    secrets_ = set(students["student_id"]) | set(students["name"]) | set(students["national_id"])
    for path in Path(city["home"]).rglob("*"):
        if not path.is_file() or path.suffix == ".key":
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            text = " ".join(
                " ".join(map(str, table.column(name).to_pylist()))
                for name in table.column_names
                if pa_is_text(table.schema.field(name).type)
            )
        else:
            text = path.read_bytes().decode("utf-8", errors="ignore")
        leaked = [s for s in list(secrets_)[:2000] if s in text]
        assert not leaked, f"{path} holds raw personal data, e.g. {leaked[:3]}"


def pa_is_text(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
