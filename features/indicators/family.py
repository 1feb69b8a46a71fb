"""An indicator family: what it computes, for which entity, and when each value became true.

Each family module declares one (or a few) `IndicatorFamily` at module level; `build_indicators`
runs them and `features.feature_repo` turns every family into a Feast feature view, so a family's
schema is written once, here, and Feast, the models and the tests all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

# Feature kinds → Arrow types of the Parquet a family writes (Feast types are derived from them).
KINDS = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "json": pa.string()}

# A term's value stays the entity's current one for a term and a bit (term ends are ≤ 194 days apart).
TERM_TTL = timedelta(days=200)

# Entities and their join keys (Feast `Entity` objects are built from these in feature_repo).
ENTITY_KEYS = {
    "student": "student_key",
    "teacher": "teacher_key",
    "class": "class_id",
    "school": "school_id",
    "course": "course_id",
    "subject": "subject",
}


@dataclass(frozen=True)
class IndicatorFamily:
    """One Feast feature view's worth of indicators.

    name: the feature view (and Parquet file) name, e.g. "student_academics".
    entities: entity names from ENTITY_KEYS; their join keys are the frame's key columns.
    fields: feature name → kind ("float", "int", "str", "json"), in a stable order.
    ttl: how long a value stays the entity's current one (a term's value: one term and a bit).
    build: (lake_dir, out_path) → rows written. Writes Parquet with the key columns,
           `event_timestamp` (UTC, microseconds: when the value became true, e.g. term end or
           test date) and every field, and nothing computed from anything later than that time.
    online: whether the latest values are materialized to the online store. Families only models
           train on stay offline: every online value costs a write per entity at materialization.
    offline_fields: fields of an online family that only models train on and no page reads; they
           get their own offline view (`<name>_offline`, same file) and stay out of the online store.
    reads: the families whose outputs (in the same folder) this one reads, so a parallel build
           starts it only after them.
    """

    name: str
    entities: tuple[str, ...]
    fields: dict[str, str]
    ttl: timedelta
    description: str
    build: Callable[[Path, Path], int]
    online: bool = True
    offline_fields: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = [e for e in self.entities if e not in ENTITY_KEYS]
        if unknown:
            raise ValueError(f"{self.name}: unknown entities {unknown}")
        bad = {name: kind for name, kind in self.fields.items() if kind not in KINDS}
        if bad:
            raise ValueError(f"{self.name}: unknown field kinds {bad}")
        strays = [name for name in self.offline_fields if name not in self.fields]
        if strays:
            raise ValueError(f"{self.name}: offline_fields {strays} are not fields of the family")

    @property
    def keys(self) -> list[str]:
        return [ENTITY_KEYS[e] for e in self.entities]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [(key, pa.string()) for key in self.keys]
            + [("event_timestamp", pa.timestamp("us", tz="UTC"))]
            + [(name, KINDS[kind]) for name, kind in self.fields.items()]
        )
