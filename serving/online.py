"""Reading the online feature store: one view, many keys, plain Python values.

`FeatureReader` is the seam between the service and Feast. Everything above it (portraits, class
pages, warnings) is written against it, so the tests run that code over `InMemoryFeatureReader`
while production reads Feast through `FeastFeatureReader`.

Between two publishes the online store does not change (indicators and scores are written in
batches), so `CachedFeatureReader` keeps rows it has read until the store's `version()` changes:
a class page of 45 students reads its rows from Feast once, then from memory until the next
publish. Authorization never depends on the cache: it is applied to every request, after the read.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

Row = dict[str, Any]

# How often the Feast registry is asked which views exist (a score view appears when a model is
# first scored; the service picks it up without a restart).
REGISTRY_REFRESH_SECONDS = 30.0
# Stores that cannot say when they last changed (Redis) are trusted for this long per row.
UNVERSIONED_MAX_AGE_SECONDS = 60.0


class FeatureReader(Protocol):
    def views(self) -> frozenset[str]:
        """Names of the online feature views that exist now."""
        ...

    def read(self, view: str, keys: Sequence[str]) -> list[Row | None]:
        """The view's fields for each key, in the order of `keys`; None where the store has no row."""
        ...

    def version(self) -> Hashable:
        """A value that changes whenever the store's content may have changed."""
        ...

    def ready(self) -> bool:
        """True when the store answers and holds materialized views."""
        ...


class InMemoryFeatureReader:
    """Rows held in dicts: `{view: {entity key: {field: value}}}`. For tests and demos."""

    def __init__(self, views: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> None:
        self._views = {name: {key: dict(row) for key, row in rows.items()} for name, rows in (views or {}).items()}
        self._version = 0
        self.reads = 0  # how many rows were asked for (tests check the cache with it)

    def put(self, view: str, key: str, row: Mapping[str, Any]) -> None:
        """Write a row, as a publish would; the store's version changes."""
        self._views.setdefault(view, {})[key] = dict(row)
        self._version += 1

    def views(self) -> frozenset[str]:
        return frozenset(self._views)

    def read(self, view: str, keys: Sequence[str]) -> list[Row | None]:
        self.reads += len(keys)
        rows = self._views.get(view, {})
        return [dict(rows[key]) if key in rows else None for key in keys]

    def version(self) -> Hashable:
        return self._version

    def ready(self) -> bool:
        return bool(self._views)


class FeastFeatureReader:
    """The online store of the settings' Feast repository (SQLite by default, Redis at scale).

    Reads go through the provider's `online_read`, one view at a time: the same call Feast's
    `get_online_features` makes underneath, without assembling a response across views (which
    costs more than the read itself for a class of students). `bench/serving.py` checks the values
    are the ones `get_online_features` returns.
    """

    def __init__(self, settings) -> None:
        # Imported here: Feast is heavy and must not load when the app module is imported.
        from features.feature_repo import feature_store

        self._store = feature_store(settings)
        self._provider = self._store._get_provider()
        self._views: dict[str, Any] = {}
        self._listed_at = float("-inf")
        self._lock = threading.Lock()
        online = self._store.config.online_store
        self._sqlite_path = getattr(online, "path", None) if online.type == "sqlite" else None

    def views(self) -> frozenset[str]:
        return frozenset(self._feature_views())

    def read(self, view: str, keys: Sequence[str]) -> list[Row | None]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        feature_view = self._feature_views().get(view)
        if feature_view is None or not keys:
            return [None] * len(keys)
        [join_key] = [column.name for column in feature_view.entity_columns]
        entity_keys = [EntityKey(join_keys=[join_key], entity_values=[Value(string_val=key)]) for key in keys]
        rows = self._provider.online_read(config=self._store.config, table=feature_view, entity_keys=entity_keys)
        return [
            None if values is None else {name: feast_value_type_to_python_type(value) for name, value in values.items()}
            for _, values in rows
        ]

    def version(self) -> Hashable:
        if self._sqlite_path:
            try:
                stat = os.stat(self._sqlite_path)
            except FileNotFoundError:
                return None
            return stat.st_mtime_ns, stat.st_size
        return int(time.monotonic() // UNVERSIONED_MAX_AGE_SECONDS)

    def ready(self) -> bool:
        return bool(self._feature_views(refresh=True))

    def _feature_views(self, refresh: bool = False) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if refresh or now - self._listed_at > REGISTRY_REFRESH_SECONDS:
                self._views = {view.name: view for view in self._store.list_feature_views() if view.online}
                self._listed_at = now
            return self._views


class CachedFeatureReader:
    """Remembers rows (and their absence) per (view, key) until the store's version changes.

    Bounded: the least recently used rows go first past `max_rows` (`Settings.serving_cache_rows`).
    `max_rows=0` turns caching off (the benchmark measures both).
    """

    def __init__(self, reader: FeatureReader, max_rows: int) -> None:
        self._reader = reader
        self._max_rows = max_rows
        self._rows: OrderedDict[tuple[str, str], Row | None] = OrderedDict()
        self._version: Hashable = object()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def views(self) -> frozenset[str]:
        return self._reader.views()

    def version(self) -> Hashable:
        return self._reader.version()

    def ready(self) -> bool:
        return self._reader.ready()

    def read(self, view: str, keys: Sequence[str]) -> list[Row | None]:
        if self._max_rows <= 0:
            return self._reader.read(view, keys)
        version = self._reader.version()
        found: dict[str, Row | None] = {}
        with self._lock:
            if version != self._version:
                self._rows.clear()
                self._version = version
            for key in keys:
                slot = (view, key)
                if slot in self._rows:
                    self._rows.move_to_end(slot)
                    found[key] = self._rows[slot]
        missing = list(dict.fromkeys(key for key in keys if key not in found))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fetched = dict(zip(missing, self._reader.read(view, missing)))
            found.update(fetched)
            with self._lock:
                if version == self._version:
                    for key, row in fetched.items():
                        self._rows[(view, key)] = row
                    while len(self._rows) > self._max_rows:
                        self._rows.popitem(last=False)
        # Copies: callers may change what they get without changing the cache.
        return [None if found[key] is None else dict(found[key]) for key in keys]


class LazyFeatureReader:
    """Builds the real reader on first use, so the app starts (and /healthz answers) before the
    feature store is reachable, and importing the app never imports Feast."""

    def __init__(self, build: Callable[[], FeatureReader]) -> None:
        self._build = build
        self._reader: FeatureReader | None = None
        self._lock = threading.Lock()

    def views(self) -> frozenset[str]:
        return self._get().views()

    def read(self, view: str, keys: Sequence[str]) -> list[Row | None]:
        return self._get().read(view, keys)

    def version(self) -> Hashable:
        return self._get().version()

    def ready(self) -> bool:
        return self._get().ready()

    def _get(self) -> FeatureReader:
        # Requests run on a thread pool: without the lock two could each build a store client.
        with self._lock:
            if self._reader is None:
                self._reader = self._build()
            return self._reader
