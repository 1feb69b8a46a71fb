"""The Feast repository: point-in-time training sets, online reads, and the scale path.

One small city goes through synth → ingest → indicators → Feast once for the module.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import Settings
from features.feature_repo import feature_store, indicator_views
from portrait.pipeline import run_features, run_ingest, run_synth
from training.fitness_risk import example_anchors, training_examples


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast-city")
    settings = Settings(home=root / "home")
    run_synth(root / "export", students=300, seed=11)
    run_ingest(root / "export", settings)
    run_features(settings)
    return settings


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(student_key=frame["student_key"].astype(str))
    return frame.sort_values("student_key").reset_index(drop=True)


def test_a_value_planted_after_the_feature_date_never_reaches_a_training_row(city, tmp_path):
    store = feature_store(city)
    anchors = example_anchors(store)
    before, labels_before = training_examples(store, anchors)
    assert len(before) > 100

    # Plant, for every student, a catastrophic test one day after each real one: if any point-in-time
    # join looked past its entity timestamp, a training row (or label) would pick it up.
    source = city.indicators_dir / "student_fitness.parquet"
    real = pq.read_table(source).to_pandas()
    planted = real.assign(
        event_timestamp=real["event_timestamp"] + pd.Timedelta(days=1),
        total_score=-999.0, standard_score=-999.0, score_bmi=-999.0,
    )
    pd.concat([real, planted]).to_parquet(source, index=False)
    try:
        after, labels_after = training_examples(store, anchors)
    finally:
        real.to_parquet(source, index=False)

    pd.testing.assert_frame_equal(_sorted(after), _sorted(before))
    np.testing.assert_array_equal(labels_after[np.argsort(after["student_key"].astype(str))],
                                  labels_before[np.argsort(before["student_key"].astype(str))])
    assert (after["total_score"] > -999).all()


def test_labels_come_from_the_following_annual_test(city):
    store = feature_store(city)
    features, labels = training_examples(store)
    fitness = pd.read_parquet(city.indicators_dir / "student_fitness.parquet")
    last = fitness.sort_values("event_timestamp").groupby("student_key").tail(1).set_index("student_key")
    expected = (last.loc[features["student_key"].astype(str), "total_score"] < 60).astype(int).to_numpy()
    np.testing.assert_array_equal(labels, expected)


def test_online_store_serves_the_latest_values(city):
    store = feature_store(city)
    fitness = pd.read_parquet(city.indicators_dir / "student_fitness.parquet")
    latest = fitness.sort_values("event_timestamp").groupby("student_key").tail(1).iloc[0]
    online = store.get_online_features(
        features=["student_fitness:total_score", "student_fitness:school_year", "student_enrollment:class_id"],
        entity_rows=[{"student_key": latest["student_key"]}],
    ).to_dict()
    assert online["total_score"] == [pytest.approx(latest["total_score"])]
    assert online["school_year"] == [latest["school_year"]]
    assert online["class_id"][0]


def test_ray_offline_store_retrieves_the_same_training_set_as_the_embedded_one(city, monkeypatch):
    """The scale path (Feast's Ray offline store + Ray compute engine) is configuration only."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    embedded, embedded_labels = training_examples(feature_store(city))

    ray_settings = city.model_copy(update={"feast_offline_store": "ray"})
    store = feature_store(ray_settings)
    store.apply(indicator_views(city.indicators_dir))
    try:
        on_ray, ray_labels = training_examples(store)
    finally:
        import ray

        ray.shutdown()

    left, right = _sorted(embedded), _sorted(on_ray)
    assert left["student_key"].tolist() == right["student_key"].tolist()
    np.testing.assert_allclose(left.drop(columns="student_key").to_numpy(float),
                               right.drop(columns="student_key").to_numpy(float), equal_nan=True)
    order_left = np.argsort(embedded["student_key"].astype(str))
    order_right = np.argsort(on_ray["student_key"].astype(str))
    np.testing.assert_array_equal(embedded_labels[order_left], ray_labels[order_right])
    assert os.environ.get("RAY_ADDRESS") is None


def test_one_online_read_returns_a_students_whole_portrait(city):
    store = feature_store(city)
    five = pd.read_parquet(city.indicators_dir / "student_five_domain.parquet")
    key = five.sort_values("event_timestamp").iloc[-1]["student_key"]
    service = store.get_feature_service("student_portrait_v1")
    row = store.get_online_features(features=service, entity_rows=[{"student_key": key}],
                                    full_feature_names=True).to_dict()
    views = {name.split("__")[0] for name in row if "__" in name}
    assert {"student_enrollment", "student_fitness", "student_fitness_history", "student_academics",
            "student_five_domain"} <= views
    assert row["student_enrollment__class_id"][0]
    assert row["student_fitness_history__history_json"][0].startswith("[")
    five_domain = [row[name][0] for name in row if name.startswith("student_five_domain__") and
                   name.split("__")[1] in ("de", "zhi", "ti", "mei", "lao")]
    assert five_domain and all(v is None or 0 <= v <= 100 for v in five_domain)
