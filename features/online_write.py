"""Materializing a feature view into Redis without Feast's per-value Python conversion.

Feast's materialize turns every value into a `ValueProto` through a generic per-value path
(`feast.utils._convert_arrow_to_proto`: null checks, type dispatch, a dict per row) and then, in
`RedisOnlineStore.online_write_batch`, serializes each entity key and hashes each field name again
for every row. At city scale that is most of the publish: about 30 µs per value.

`materialize_redis` writes the same Redis content column by column instead:
- rows: the offline store's `pull_latest_from_table_or_query`, the call Feast's local engine makes
  with `pull_latest_features` (each entity's latest row in the window);
- each column's values serialized once per column: doubles packed with numpy behind the
  `double_val` tag, ints and strings through `ValueProto` with one serialization per distinct
  value, other types through Feast's own `python_values_to_proto_values`; a null or NaN is an
  empty `ValueProto`, as Feast writes it;
- the Redis layout of Feast's `online_write_batch` with `skip_dedup` (see
  `feature_repo._writer_config`): one hash per entity key (Feast's entity key serialization + the
  project), `_ts:<view>` holding the event time as a protobuf `Timestamp`, one field per feature
  named by Feast's `_mmh3` of `<view>:<feature>`; the field names and key prefix are computed
  once per view with Feast's own functions;
- the materialized interval is not recorded here: `feature_repo.publish` records it from one
  process, since parallel workers each rewriting a file registry lose each other's intervals.

`tests/test_feature_store.py` checks that every online view's Redis hashes are byte-identical to
those Feast's own materialize writes. Views this path does not cover (several join keys, a
non-string join key, Redis cluster or sentinel) go through Feast's materialize.
"""

from __future__ import annotations

import struct
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureStore, FeatureView, ValueType
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.offline_stores.offline_utils import get_offline_store_from_config
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType, _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.type_map import python_values_to_proto_values
from google.protobuf.timestamp_pb2 import Timestamp

# The wire tag that starts a serialized `double_val` (taken from protobuf, not written by hand).
_DOUBLE_TAG = ValueProto(double_val=1.0).SerializeToString()[0]
_DOUBLE_RECORD = np.dtype([("tag", "u1"), ("value", "<f8")])
_LENGTH = struct.Struct("<I").pack


def covers(config: RepoConfig, view: FeatureView) -> bool:
    """Whether `materialize_redis` writes this view (else Feast's materialize does)."""
    online = config.online_store
    return (online.type == "redis" and online.redis_type == RedisType.redis and len(view.entity_columns) == 1
            and view.entity_columns[0].dtype.to_value_type() == ValueType.STRING)


def materialize_redis(store: FeatureStore, view: FeatureView, start: datetime, end: datetime) -> int:
    """Each entity's latest row of `view` in [start, end] into Redis, as Feast's materialize with
    `skip_dedup` writes it; returns the entities written."""
    config = store.config
    if not covers(config, view):
        raise ValueError(f"{view.name}: not a single string join key on plain Redis; use FeatureStore.materialize")
    source = view.batch_source
    [join_key] = [column.name for column in view.entity_columns]
    features = [(field.name, field.dtype.to_value_type()) for field in view.features]
    table = get_offline_store_from_config(config.offline_store).pull_latest_from_table_or_query(
        config=config, data_source=source, join_key_columns=[join_key],
        feature_name_columns=[name for name, _ in features], timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None, start_date=start, end_date=end,
    ).to_arrow()

    layout = _RedisLayout(config, view, join_key, [name for name, _ in features])
    client = RedisOnlineStore()._get_client(config.online_store)
    key_ttl = config.online_store.key_ttl_seconds
    batch_rows = config.materialization_config.online_write_batch_size or max(table.num_rows, 1)
    for batch in table.to_batches(max_chunksize=batch_rows):
        if batch.num_rows == 0:
            continue
        keys = layout.keys(batch.column(join_key))
        stamps = _timestamps(batch.column(source.timestamp_field))
        columns = [_serialized(batch.column(name), value_type) for name, value_type in features]
        with client.pipeline(transaction=False) as pipe:
            for key, stamp, values in zip(keys, stamps, zip(*columns) if columns else [()] * batch.num_rows):
                fields = [layout.ts_field, stamp]
                for field, value in zip(layout.feature_fields, values):
                    fields += (field, value)
                pipe.execute_command("HSET", key, *fields)
                if key_ttl:
                    pipe.expire(name=key, time=key_ttl)
            pipe.execute()
    return table.num_rows


class _RedisLayout:
    """Feast's Redis names for one view: entity keys, the timestamp field and the feature fields."""

    def __init__(self, config: RepoConfig, view: FeatureView, join_key: str, feature_names: list[str]):
        name = _versioned_fv_name(view, config)
        self.ts_field = f"_ts:{name}"
        self.feature_fields = [_mmh3(f"{name}:{feature}") for feature in feature_names]
        self.version = config.entity_key_serialization_version
        self.project = config.project.encode("utf-8")
        self.join_key = join_key
        # Feast's serialization of a one-key entity ends with the value's length and bytes: what
        # comes before is the same for every entity of the view.
        empty = self._feast_key("")
        self.prefix = empty[: -len(self.project) - 4]

    def _feast_key(self, value: str) -> bytes:
        key = EntityKeyProto(join_keys=[self.join_key], entity_values=[ValueProto(string_val=value)])
        return serialize_entity_key(key, entity_key_serialization_version=self.version) + self.project

    def keys(self, column: pa.Array) -> list[bytes]:
        if column.null_count:
            raise ValueError(f"{self.join_key}: null entity keys cannot be written to the online store")
        prefix, project = self.prefix, self.project
        keys = [prefix + _LENGTH(len(raw)) + raw + project for raw in (value.encode("utf-8") for value in column.to_pylist())]
        if keys and keys[0] != self._feast_key(column[0].as_py()):  # the layout is Feast's, checked on each batch
            raise RuntimeError("entity key serialization differs from Feast's; update features/online_write.py")
        return keys


def _timestamps(column: pa.Array) -> list[bytes]:
    """Each event time as Feast stores it: a protobuf Timestamp of the UTC instant, serialized."""
    micros = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    memo: dict[int, bytes] = {}
    out = []
    for us in micros:
        stamp = memo.get(us)
        if stamp is None:
            seconds, rest = divmod(us, 1_000_000)
            stamp = memo[us] = Timestamp(seconds=seconds, nanos=rest * 1000).SerializeToString()
        out.append(stamp)
    return out


def _serialized(column: pa.Array, value_type: ValueType) -> list[bytes]:
    """Every value of a column as a serialized ValueProto; null (and NaN) as the empty ValueProto."""
    if value_type == ValueType.DOUBLE and pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False).astype("<f8", copy=False)
        records = np.empty(len(values), dtype=_DOUBLE_RECORD)
        records["tag"], records["value"] = _DOUBLE_TAG, values
        packed = records.tobytes()
        out = [packed[i: i + 9] for i in range(0, len(packed), 9)]
        for i in np.flatnonzero(np.isnan(values)):
            out[i] = b""
        return out
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if (value_type == ValueType.INT64 and pa.types.is_integer(column.type)) or (value_type == ValueType.STRING and text):
        field = "int64_val" if value_type == ValueType.INT64 else "string_val"
        memo: dict = {None: b""}
        out = []
        for value in column.to_pylist():
            serialized = memo.get(value)
            if serialized is None:
                serialized = memo[value] = ValueProto(**{field: value}).SerializeToString()
            out.append(serialized)
        return out
    return [value.SerializeToString()
            for value in python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)]
