"""The registry's alias rule: champion moves to newer data, or to a better model on the same data."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from core.config import Settings
from training.model_card import ModelCard
from training.registry import Candidate, mlflow_client, register


def _candidate(release: str, auc: float) -> Candidate:
    X, y = np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 2
    card = ModelCard(name="toy_risk", version=None, purpose="test", users="test", label="y", features="x",
                     data_release=release, lake_snapshot="v-test", unit_of_privacy="one student", epsilon=1.0,
                     delta=1e-5, accountant="PRV", mechanism="DP-SGD", metrics={"auc": auc}, limits=[])
    return Candidate(name="toy_risk", model=LogisticRegression().fit(X, y), params={"config.epochs": 3},
                     metrics={"auc_test": auc}, card=card, primary_metric="auc_test", data_release=release,
                     tags={"epsilon": 1.0}, dicts={"audits.json": []}, input_example=X[:3])


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(home=tmp_path_factory.mktemp("registry") / "home")


def test_champion_and_challenger(settings):
    first = register(settings, _candidate("2024", 0.80), run_name="first")
    assert first.aliases == ("challenger", "champion")
    worse = register(settings, _candidate("2024", 0.75), run_name="worse")
    assert worse.aliases == ("challenger",)
    client = mlflow_client(settings)
    assert int(client.get_model_version_by_alias("toy_risk", "champion").version) == first.version
    assert int(client.get_model_version_by_alias("toy_risk", "challenger").version) == worse.version
    better = register(settings, _candidate("2024", 0.81), run_name="better")
    assert better.aliases == ("challenger", "champion")
    newer_data = register(settings, _candidate("2025", 0.70), run_name="newer data")
    assert newer_data.aliases == ("challenger", "champion")  # fresh data beats stale, even if it scores lower

    version = client.get_model_version_by_alias("toy_risk", "champion")
    assert version.description.startswith(f"# toy_risk v{newer_data.version}")
    assert version.tags["data_release"] == "2025" and version.tags["epsilon"] == "1.0"
