"""The Feast feature repository, declared as code and applied programmatically.

Entities, sources, feature views and versioned feature services. A feature service is the
contract between `features/` and a model: `fitness_risk_v1` names exactly the features the
fitness-risk model reads, and `FITNESS_RISK_BOUNDS` fixes their ranges in advance (from the
standard and the contract, never from the data), which DP training needs for its guarantee.

Sources point at files under `Settings.indicators_dir` and `Settings.scores_dir`, so the
definitions are built by functions of those folders rather than at import time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Float64, Int64, String

from core.config import Settings
from features import online_write
from features.indicators import FAMILIES
from features.indicators.family import ENTITY_KEYS, TERM_TTL, IndicatorFamily
from features.indicators.fitness import FITNESS_TTL

PROJECT = "portrait"

ENTITIES = {
    name: Entity(name=name, join_keys=[key], value_type=ValueType.STRING, description=description)
    for name, key, description in (
        ("student", "student_key", "A student, keyed by the HMAC pseudonym of their id (never the id itself)."),
        ("teacher", "teacher_key", "A teacher, keyed by the HMAC pseudonym of their id."),
        ("class", "class_id", "A class in a school year, as the school system codes it."),
        ("school", "school_id", "A school, as the school system codes it."),
        ("course", "course_id", "A course in a training center's catalog."),
        ("subject", "subject", "A school subject code (math, chinese, ...)."),
    )
}
assert {name: entity.join_key for name, entity in ENTITIES.items()} == ENTITY_KEYS
student = ENTITIES["student"]

FEAST_TYPES = {"float": Float64, "int": Int64, "str": String, "json": String}

ITEM_SCORE_FIELDS = [
    "score_vital_capacity", "score_run_50m", "score_sit_and_reach", "score_rope_skip_1min", "score_sit_up_1min",
    "score_shuttle_50x8", "score_standing_long_jump", "score_pull_up", "score_run_800m", "score_run_1000m",
]

# Features of fitness_risk_v1 with their fixed [low, high] range; missing item scores (items the
# grade band does not test) enter as the low end, with the grade telling the model which band it is.
FITNESS_RISK_BOUNDS: dict[str, tuple[float, float]] = {
    "student_fitness:grade": (1, 12),
    "student_fitness:bmi": (10, 40),
    "student_fitness:score_bmi": (0, 100),
    **{f"student_fitness:{name}": (0, 100) for name in ITEM_SCORE_FIELDS},
    "student_fitness:standard_score": (0, 100),
    "student_fitness:bonus": (0, 20),
    "student_fitness:total_score": (0, 120),
    "student_fitness:total_change": (-60, 60),
    "student_fitness:years_failed_in_row": (0, 12),
    "student_fitness:tests_taken": (1, 12),
}

# Features of academic_risk_v1, the ABC indicators (Attendance, Behaviour, Course performance), each
# with its fixed [low, high] range and the neutral value an explanation compares a student against.
ACADEMIC_RISK_FEATURES: dict[str, tuple[tuple[float, float], float]] = {
    "student_attendance:attendance_rate": ((0, 1), 0.97),
    "student_attendance:rate_change": ((-0.5, 0.5), 0.0),
    "student_attendance:attendance_rate_4t": ((0, 1), 0.97),
    "student_moral:discipline_events": ((0, 10), 0.0),
    "student_moral:discipline_4t": ((0, 20), 0.0),
    "student_moral:moral_share": ((0, 1), 0.75),
    "student_academics:mean_share": ((0, 1), 0.75),
    "student_academics:mean_z": ((-3, 3), 0.0),
    "student_academics:failed_subjects": ((0, 10), 0.0),
    "student_academics:imbalance_sd": ((0, 3), 0.5),
    "student_academics:trend": ((-0.2, 0.2), 0.0),
}

# The student views a portrait shows, read together online (one feature service, one request).
PORTRAIT_VIEWS = ("student_enrollment", "student_fitness", "student_fitness_history", "student_academics",
                  "student_literacy", "student_moral", "student_aesthetic_labor", "student_attendance",
                  "student_five_domain")


def _source(path: Path, name: str) -> FileSource:
    return FileSource(name=name, path=str(path.resolve()), timestamp_field="event_timestamp")


def family_views(family: IndicatorFamily, indicators_dir: Path) -> list[FeatureView]:
    """A family's feature view (its entities, fields, file and TTL; nothing restated), and for a
    family with `offline_fields` a second, offline-only view `<name>_offline` of those fields over
    the same file, so they never cost a write to the online store."""
    source = _source(indicators_dir / f"{family.name}.parquet", f"{family.name}_source")

    def view(name: str, fields: list[str], online: bool, description: str) -> FeatureView:
        return FeatureView(
            name=name,
            entities=[ENTITIES[entity] for entity in family.entities],
            ttl=family.ttl,
            schema=[Field(name=field, dtype=FEAST_TYPES[family.fields[field]]) for field in fields],
            source=source,
            description=description,
            online=online,
        )

    served = [name for name in family.fields if name not in family.offline_fields]
    views = [view(family.name, served, family.online, family.description)]
    if family.offline_fields:
        views.append(view(f"{family.name}_offline", list(family.offline_fields), False,
                          f"{family.description} Fields only models read (offline store only)."))
    return views


def indicator_views(indicators_dir: Path, families: tuple[IndicatorFamily, ...] = FAMILIES) -> list:
    """Entities, the feature views of every indicator family, and the versioned feature services."""
    views = {view.name: view for family in families for view in family_views(family, indicators_dir)}
    fitness_risk_v1 = FeatureService(
        name="fitness_risk_v1",
        features=[views["student_fitness"][[name.split(":")[1] for name in FITNESS_RISK_BOUNDS]]],
        description="Inputs of the fitness-risk model: next annual total below 60?",
    )
    by_view: dict[str, list[str]] = {}
    for ref in ACADEMIC_RISK_FEATURES:
        view, field = ref.split(":")
        by_view.setdefault(view, []).append(field)
    academic_risk_v1 = FeatureService(
        name="academic_risk_v1",
        features=[views[view][fields] for view, fields in by_view.items() if view in views],
        description="Inputs of the academic early warning: the ABC indicators as of a term's end.",
    )
    student_portrait_v1 = FeatureService(
        name="student_portrait_v1",
        features=[views[name] for name in PORTRAIT_VIEWS if name in views],
        description="Everything a class teacher's growth portrait shows about one student.",
    )
    return [*ENTITIES.values(), *views.values(), fitness_risk_v1, academic_risk_v1, student_portrait_v1]


# Every score view carries the model that wrote it and its guarantee (serving shows them beside each number).
_MODEL_FIELDS = [Field(name="model_name", dtype=String), Field(name="model_version", dtype=Int64),
                 Field(name="model_epsilon", dtype=Float64), Field(name="model_delta", dtype=Float64)]
# Score view → (entity, TTL, payload fields, description). Batch scoring (`training.score`) writes
# `<view>.parquet` under the scores folder; a view whose file does not exist yet is not published.
SCORE_VIEWS: dict[str, tuple[str, timedelta, dict, str]] = {
    "fitness_risk_score": ("student", FITNESS_TTL, {"risk_probability": Float64, "level": String,
                                                   "reasons_json": String},
                           "Probability that the next annual fitness total is below 60, level (red, amber, "
                           "green) and the items and trends behind it (JSON: feature, value, effect)."),
    "growth_score": ("student", TERM_TTL, {"growth_json": String, "median_growth_percentile": Float64},
                     "Growth percentiles per subject and term (JSON), and the latest term's median."),
    "academic_risk_score": ("student", TERM_TTL, {"risk_probability": Float64, "level": String,
                                                  "reasons_json": String},
                            "Probability of failing a subject or dropping sharply next term, level, reasons."),
    **{f"{entity}_growth_score": (entity, TERM_TTL, {"term_id": String, "growth_json": String},
                                  f"Median growth percentile per subject of the {entity}'s students in the latest "
                                  f"term (JSON: subject, students, median); groups under 10 students left out.")
       for entity in ("class", "teacher", "school")},
    "teacher_training_score": ("teacher", TERM_TTL, {"recommendations_json": String},
                               "The courses expected to raise the teacher's weakest digital-literacy dimensions "
                               "most (JSON: course, expected gain, dimension, reason)."),
    "course_invite_score": ("course", TERM_TTL, {"invites_json": String},
                            "The teachers to invite to the course (JSON: teacher key, expected gain, dimension, "
                            "reason)."),
}


def score_views(scores_dir: Path) -> list:
    """The entities and the score views whose files batch scoring has written."""
    views = []
    for name, (entity, ttl, payload, description) in SCORE_VIEWS.items():
        path = scores_dir / f"{name}.parquet"
        if not path.exists():
            continue
        views.append(FeatureView(
            name=name, entities=[ENTITIES[entity]], ttl=ttl,
            schema=[Field(name=field, dtype=dtype) for field, dtype in payload.items()] + _MODEL_FIELDS,
            source=_source(path, f"{name}_source"), description=description,
        ))
    return [*ENTITIES.values(), *views]


def feature_store(settings: Settings) -> FeatureStore:
    """The store the settings describe; by default file registry, DuckDB offline, SQLite online."""
    feast_dir = settings.feast_dir
    feast_dir.mkdir(parents=True, exist_ok=True)
    offline: dict = {"type": settings.feast_offline_store}
    batch_engine: dict | str = "local"
    if settings.feast_offline_store == "ray":
        ray_address = os.environ.get("RAY_ADDRESS")
        # Bounded like every Ray use here: the cores we ask for, unless a cluster is named.
        ray_conf = None if ray_address else {"num_cpus": settings.ray_num_cpus, "include_dashboard": False,
                                             "object_store_memory": settings.ray_object_store_mb * 1024 * 1024}
        offline.update(storage_path=str((feast_dir / "ray-storage").resolve()), ray_address=ray_address,
                       ray_conf=ray_conf)
        batch_engine = {"type": "ray.engine", "ray_address": ray_address, "ray_conf": ray_conf,
                        "max_workers": settings.ray_num_cpus}
    online = (
        {"type": "redis", "connection_string": settings.feast_redis_url}
        if settings.feast_online_store == "redis"
        else {"type": "sqlite", "path": str((feast_dir / "online.db").resolve())}
    )
    registry = (
        {"registry_type": "sql", "path": settings.feast_registry_url, "cache_ttl_seconds": 60}
        if settings.feast_registry_url
        else str((feast_dir / "registry.db").resolve())
    )
    config = RepoConfig(
        project=PROJECT,
        provider="local",
        registry=registry,
        offline_store=offline,
        batch_engine=batch_engine,
        online_store=online,
        # Only each entity's latest row goes online: let the offline store pick it, and write in
        # batches so memory stays bounded on city-scale views.
        materialization_config={"pull_latest_features": True, "online_write_batch_size": 50_000},
        entity_key_serialization_version=3,
        repo_path=str(feast_dir.resolve()),
    )
    return FeatureStore(config=config)


# Materialization windows start here: before any school year the engine can hold.
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def publish(store: FeatureStore, definitions: list, *, views: list[str] | None = None, workers: int = 1) -> None:
    """Apply definitions to the registry, then load each entity's current values into the online store.

    "Current" is the entity's latest row within the view's TTL of the view's newest row (the end of
    the release, not the wall clock, so publishing a past release gives the same store): students
    who have left keep their history offline and drop out of the online store.

    Feast materializes one view at a time on one core, and most of that time is its per-value
    conversion to protobuf: Redis views are written by `online_write` instead (the same bytes,
    serialized column by column). An online store that takes concurrent writers (Redis) lets views
    go in parallel, one process each, widest first; SQLite has a single writer, so it stays serial.
    """
    store.apply(definitions)
    online = [d for d in definitions if isinstance(d, FeatureView) and d.online and (views is None or d.name in views)]
    windows = [window for window in map(_online_window, sorted(online, key=lambda d: -len(d.features))) if window]
    config = _writer_config(store.config)
    if config.online_store.type != "redis":
        workers = 1
    if workers <= 1 or len(windows) <= 1:
        recorded = [_materialize(config, *window) for window in windows]
    else:
        # spawn, not fork: the parent may hold DuckDB and gRPC threads a forked child must not inherit.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(windows)), mp_context=context) as pool:
            recorded = list(pool.map(_materialize, [config] * len(windows), *zip(*windows)))
    # The intervals `online_write` did not record, recorded here from this one process: workers
    # each rewriting a file registry at once lost one another's (a view then showed none).
    store.refresh_registry()
    for (view, start, end), done in zip(windows, recorded):
        if not done:
            store.registry.apply_materialization(store.get_feature_view(view), store.config.project, start, end)


def _writer_config(config: RepoConfig) -> RepoConfig:
    """The store's configuration as `publish` writes with it.

    Redis: without Feast's read-before-write (`skip_dedup`). Feast otherwise first reads every
    entity's stored timestamp for the view and skips a row that is not newer, a second round trip
    per entity that costs about as much as the write itself. A publish writes each view once, from
    one process, one row per entity (its latest), so that check has nothing to protect, and
    without it the store holds exactly the release published: a re-published release with
    corrected values at the same timestamps, or a past release, replaces what is there instead
    of being skipped.
    """
    if config.online_store.type != "redis":
        return config
    writer = config.model_copy(deep=True)
    writer.online_store.skip_dedup = True
    return writer


def _online_window(view: FeatureView) -> tuple[str, datetime, datetime] | None:
    """(view, start, end) of the rows that may be an entity's current value; None for an empty view."""
    with duckdb.connect() as con:
        (newest,) = con.execute("SELECT max(event_timestamp) FROM read_parquet(?)",
                                [view.batch_source.path]).fetchone()
    if newest is None:
        return None
    end = newest.astimezone(timezone.utc) + timedelta(seconds=1)
    return view.name, (end - view.ttl if view.ttl else EPOCH), end


def _materialize(config: RepoConfig, view: str, start: datetime, end: datetime) -> bool:
    """One view into the online store: Redis through `online_write` (the same values and layout
    as Feast writes, without its per-value conversion), anything else through Feast. True when
    the materialized interval is already in the registry (Feast's materialize records it)."""
    store = FeatureStore(config=config)
    feature_view = store.get_feature_view(view)
    if online_write.covers(config, feature_view):
        online_write.materialize_redis(store, feature_view, start, end)
        return False
    store.materialize(start, end, feature_views=[view])
    return True
