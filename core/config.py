"""The one configuration object: where everything lives and how big things may get.

Every stage reads its paths from here, so the embedded default (a folder under the working
directory) and a deployment (PostgreSQL, Redis, a Ray cluster) differ by environment only.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTRAIT_", extra="ignore")

    home: Path = Field(Path(".portrait"), description="Lake, Feast state, MLflow, keys.")
    environment: str = Field("development", description="'development' or 'production'.")

    # Ray: bounded to the cores we ask for; RAY_ADDRESS (Ray's own variable) attaches to a cluster.
    ray_num_cpus: int = 2
    ray_object_store_mb: int = 512

    # Feast. The embedded default is DuckDB offline, SQLite online, a file registry; the scale path
    # (Ray offline store + Ray compute engine, Redis, a SQL registry) is configuration only.
    feast_offline_store: Literal["duckdb", "dask", "ray"] = "duckdb"
    feast_online_store: Literal["sqlite", "redis"] = "sqlite"
    feast_redis_url: str = "localhost:6379"
    feast_registry_url: str | None = Field(None, description="SQLAlchemy URL of a SQL registry, e.g. PostgreSQL.")

    # Fitness-risk model: the privacy target for one training run (unit: one student).
    fitness_risk_epsilon: float = 2.0
    fitness_risk_max_delta: float = 1e-5
    # Growth percentiles (unit: one student, one subject each).
    growth_epsilon: float = 1.0
    # Academic early warning (unit: one student).
    academic_risk_epsilon: float = 1.0
    # Teacher-training recommender (unit: one teacher; spends from the year's teacher release).
    teacher_training_epsilon: float = 1.0
    # The data release jobs spend from (a school year; default: the latest one in the lake) and the
    # total (ε, δ) a release opens with unless the data officer opened it first. Each unit of privacy
    # has its own release of the year: "2025" (students) and "2025/teachers" (teachers), each opening
    # with this total.
    release: str | None = None
    release_epsilon_budget: float = 10.0
    release_delta_budget: float = 1e-4
    privacy_ledger_url: str | None = Field(None, description="SQLAlchemy URL of the ledger, e.g. PostgreSQL.")

    token_minutes: int = 60
    # The portrait service: one worker process per core (a single Python process saturates one
    # core at about 250 portraits/s), and the rows each worker keeps in memory between publishes
    # (roughly a city's current students × the views a page reads).
    serving_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    serving_cache_rows: int = 200_000

    # --- derived locations (one obvious place each) ---
    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def quarantine_dir(self) -> Path:
        # Inside the lake: each lake version holds the rows its own ingest refused.
        return self.lake_dir / "quarantine"

    @property
    def indicators_dir(self) -> Path:
        return self.home / "indicators"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlflow-artifacts"

    @property
    def scores_dir(self) -> Path:
        return self.home / "scores"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def ledger_url(self) -> str:
        return self.privacy_ledger_url or f"sqlite:///{(self.home / 'privacy-ledger.db').resolve()}"

    @property
    def users_path(self) -> Path:
        return self.home / "users.db"

    @property
    def sign_in_failures_path(self) -> Path:
        return self.home / "sign-in-failures.db"

    def secret(self, name: str) -> bytes:
        """A secret key kept under `home/keys` (created on first use, mode 0600).

        Keys live beside the data they protect but never inside an export or the lake.
        """
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.keys_dir / f"{name}.key"
        if not path.exists():
            # O_EXCL: two processes racing to create the key cannot both write one.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_bytes(32))
        return path.read_bytes()


@lru_cache
def get_settings() -> Settings:
    return Settings()
