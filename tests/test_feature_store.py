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
from features.feature_repo import feature_store, indicator_views, publish
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


def test_online_store_serves_current_students_latest_values_and_drops_those_who_left(city):
    store = feature_store(city)
    fitness = pd.read_parquet(city.indicators_dir / "student_fitness.parquet")
    latest = fitness.sort_values("event_timestamp").groupby("student_key").tail(1)
    current = latest.iloc[-1]
    online = store.get_online_features(
        features=["student_fitness:total_score", "student_fitness:school_year", "student_enrollment:class_id"],
        entity_rows=[{"student_key": current["student_key"]}],
    ).to_dict()
    assert online["total_score"] == [pytest.approx(current["total_score"])]
    assert online["school_year"] == [current["school_year"]]
    assert online["class_id"][0]

    # A student whose last test is older than the view's TTL before the release's newest test has
    # left: their history stays offline, and the online store no longer holds them.
    ttl = store.get_feature_view("student_fitness").ttl
    left = latest[latest["event_timestamp"] < latest["event_timestamp"].max() - ttl]
    assert len(left) > 0, "the test city must have students who left"
    gone = store.get_online_features(features=["student_fitness:total_score"],
                                     entity_rows=[{"student_key": left.iloc[0]["student_key"]}]).to_dict()
    assert gone["total_score"] == [None]


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


def test_redis_online_store_and_sql_registry_serve_the_same_portrait(city, redis_url, tmp_path):
    """The other half of the scale path: Redis online (written by parallel workers), a SQL registry."""
    scaled = city.model_copy(update={
        "home": tmp_path / "home", "feast_online_store": "redis", "feast_redis_url": redis_url,
        "feast_registry_url": f"sqlite:///{tmp_path / 'registry.db'}",
    })
    definitions = indicator_views(city.indicators_dir)
    publish(feature_store(scaled), definitions, workers=2)

    store = feature_store(scaled)  # a fresh client reads the definitions back from the SQL registry
    assert {view.name for view in store.list_feature_views()} >= {"student_fitness", "student_five_domain"}
    embedded = feature_store(city)
    keys = sorted(pd.read_parquet(city.indicators_dir / "student_enrollment.parquet")["student_key"].unique())
    rows = [{"student_key": key} for key in keys[:25]]
    service = "student_portrait_v1"
    from_redis = store.get_online_features(features=store.get_feature_service(service), entity_rows=rows,
                                           full_feature_names=True).to_df()
    from_sqlite = embedded.get_online_features(features=embedded.get_feature_service(service), entity_rows=rows,
                                               full_feature_names=True).to_df()
    assert from_redis["student_fitness__total_score"].notna().any()
    pd.testing.assert_frame_equal(from_redis[sorted(from_redis.columns)], from_sqlite[sorted(from_sqlite.columns)])


def test_a_republished_release_replaces_the_redis_values_it_covers(city, redis_url, tmp_path):
    """Publishing writes the release as it is: values corrected at the same timestamps replace the
    stored ones (Feast's own read-before-write would skip a row that is not strictly newer)."""
    indicators = tmp_path / "indicators"
    indicators.mkdir()
    for path in city.indicators_dir.glob("*.parquet"):
        (indicators / path.name).write_bytes(path.read_bytes())
    scaled = city.model_copy(update={
        "home": tmp_path / "home", "feast_online_store": "redis", "feast_redis_url": redis_url,
    })
    store = feature_store(scaled)
    publish(store, indicator_views(indicators), views=["student_academics"], workers=2)
    academics = pd.read_parquet(indicators / "student_academics.parquet")
    latest = academics.sort_values("event_timestamp").groupby("student_key").tail(1)
    latest = latest[latest["event_timestamp"] == latest["event_timestamp"].max()].head(20)
    rows = [{"student_key": key} for key in latest["student_key"]]

    def online() -> list:
        return store.get_online_features(features=["student_academics:mean_share"],
                                         entity_rows=rows).to_dict()["mean_share"]

    assert online() == pytest.approx(latest["mean_share"].tolist())
    corrected = academics.assign(mean_share=academics["mean_share"] / 2)
    corrected.to_parquet(indicators / "student_academics.parquet", index=False, coerce_timestamps="us")
    publish(store, indicator_views(indicators), views=["student_academics"], workers=2)
    assert online() == pytest.approx((latest["mean_share"] / 2).tolist())


def test_publish_writes_to_redis_exactly_what_feasts_materialize_writes(city, redis_url, tmp_path):
    """publish serializes Redis values column by column (features/online_write.py), not through
    Feast's per-value conversion: every online view's hashes, keys and timestamps must be the bytes
    Feast's own materialize (with skip_dedup, as publish configures it) writes, and the registry
    must record the same materialized intervals."""
    import redis
    from feast import FeatureStore, FeatureView

    from features.feature_repo import _online_window, _writer_config

    ours, feasts = (city.model_copy(update={"home": tmp_path / name, "feast_online_store": "redis",
                                            "feast_redis_url": f"{redis_url},db={db}"})
                    for name, db in (("ours", 1), ("feast", 2)))
    definitions = indicator_views(city.indicators_dir)
    publish(feature_store(ours), definitions, workers=2)
    reference = feature_store(feasts)
    reference.apply(definitions)
    windows = [_online_window(d) for d in definitions if isinstance(d, FeatureView) and d.online]
    writer = FeatureStore(config=_writer_config(reference.config))
    for view, start, end in filter(None, windows):
        writer.materialize(start, end, feature_views=[view])

    host, port = redis_url.split(":")
    dumps = []
    for db in (1, 2):
        client = redis.Redis(host=host, port=int(port), db=db)
        dumps.append({key: client.hgetall(key) for key in client.scan_iter(count=1000)})
    assert len(dumps[1]) > 300 and dumps[0] == dumps[1]
    intervals = [{view.name: view.materialization_intervals for view in store.list_feature_views()}
                 for store in (feature_store(ours), reference)]
    assert intervals[0] == intervals[1]


def test_column_serialization_matches_feasts_value_conversion():
    """Nulls, NaN, zero, negative and large numbers, empty and non-ASCII text: the same bytes as
    Feast's python_values_to_proto_values gives for the column."""
    import pyarrow as pa
    from feast import ValueType
    from feast.type_map import python_values_to_proto_values

    from features.online_write import _serialized

    columns = [
        (pa.array([0.0, -1.5, None, float("nan"), 1e300, 5e-324, 0.1]), ValueType.DOUBLE),
        (pa.array([0, -1, None, 2**62, -(2**63), 7], pa.int64()), ValueType.INT64),
        (pa.array([3, 3, 4], pa.int64()), ValueType.INT64),
        (pa.array(["", None, "体质 健康", '[{"a": 1}]', "x" * 300]), ValueType.STRING),
        (pa.array([None, None], pa.float64()), ValueType.DOUBLE),
    ]
    for column, value_type in columns:
        feasts = [value.SerializeToString()
                  for value in python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)]
        assert _serialized(column, value_type) == feasts, column


def test_training_past_the_release_budget_is_refused_before_any_model_trains(city, tmp_path):
    from privacy.ledger import BudgetExceeded, PrivacyLedger
    from training.fitness_risk import train_fitness_risk

    poor = city.model_copy(update={"privacy_ledger_url": f"sqlite:///{tmp_path / 'ledger.db'}",
                                   "release_epsilon_budget": 1.0, "fitness_risk_epsilon": 2.0})
    # No Ray session is running: reaching the training would fail differently.
    with pytest.raises(BudgetExceeded, match=r"release '2025'.*fitness_risk training.*left: ε=1"):
        train_fitness_risk(feature_store(city), poor)
    assert PrivacyLedger(poor.ledger_url).spends("2025") == []
    assert not (city.home / "mlflow.db").exists()


def test_fields_only_models_read_stay_offline_but_train(city):
    """student_fitness's change and stage fields cost no online write, yet a training set reads them."""
    store = feature_store(city)
    online_names = {f.name for f in store.get_feature_view("student_fitness").features}
    offline = store.get_feature_view("student_fitness_offline")
    assert not offline.online
    assert {"change_run_50m", "stage", "height_cm"} <= {f.name for f in offline.features}
    assert not online_names & {f.name for f in offline.features}
    assert {"total_score", "total_change", "years_failed_in_row", "graduation_score"} <= online_names

    fitness = pd.read_parquet(city.indicators_dir / "student_fitness.parquet")
    latest = fitness.sort_values("event_timestamp").groupby("student_key").tail(1)
    row = latest[latest["change_run_50m"].notna()].iloc[-1]
    entity = pd.DataFrame({"student_key": [row["student_key"]], "event_timestamp": [row["event_timestamp"]]})
    history = store.get_historical_features(
        entity_df=entity, features=["student_fitness_offline:change_run_50m", "student_fitness_offline:stage"],
    ).to_df()
    assert history["change_run_50m"].tolist() == [pytest.approx(row["change_run_50m"])]
    assert history["stage"].tolist() == [row["stage"]]
