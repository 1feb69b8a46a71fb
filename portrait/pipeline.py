"""The stages in order, each callable alone (the CLI's commands) or all together (`demo`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings

Echo = Callable[[str], None]


@dataclass
class StageClock:
    """Wall time per stage, printed as it goes so a long demo shows progress."""

    echo: Echo = print
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, doing: str):
        self.echo(f"[{len(self.seconds) + 1}] {name}: {doing} ...")
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
        self.echo(f"    {name} done in {self.seconds[name]:.1f} s")

    def render(self) -> str:
        total = sum(self.seconds.values())
        rows = [f"  {name:<12}{seconds:8.1f} s" for name, seconds in self.seconds.items()]
        return "\n".join(["Wall time by stage:", *rows, f"  {'total':<12}{total:8.1f} s"])


def run_synth(out_dir: Path, *, students: int, seed: int, school_years: int = 6, dirty: float = 0.0,
              file_format: str = "parquet", schools: int | None = None) -> dict[str, int]:
    """Write the synthetic city chunk by chunk; returns rows written per table."""
    from features.synth import CityPlan, write_synthetic_city

    plan = CityPlan(students=students, seed=seed, school_years=school_years, dirty=dirty, schools=schools)
    return write_synthetic_city(plan, out_dir, file_format=file_format)


def run_ingest(export_dir: Path, settings: Settings):
    from features.ingest import ingest
    from privacy.pseudonyms import Pseudonymizer

    return ingest(export_dir, lake_dir=settings.lake_dir, pseudonymizer=Pseudonymizer(settings.secret("pseudonym")),
                  threads=settings.ray_num_cpus)


def run_features(settings: Settings) -> dict[str, int]:
    """Indicators from the lake, then Feast apply + materialize."""
    from features.feature_repo import feature_store, indicator_views, publish
    from features.indicators import build_indicators

    counts = build_indicators(settings.lake_dir, settings.indicators_dir, workers=settings.ray_num_cpus)
    publish(feature_store(settings), indicator_views(settings.indicators_dir), workers=settings.ray_num_cpus)
    return counts


def run_train(settings: Settings, models=(), *, epsilon: float | None = None) -> dict:
    """Train the named models (all by default) on Ray; {model: result}."""
    from training.jobs import train_models

    return train_models(settings, models, epsilon=epsilon)


def run_statistics(settings: Settings) -> dict:
    """DP norms and rates (OpenDP), paid from the current release's budget."""
    from training.budget import current_budget
    from training.statistics import release_statistics

    return release_statistics(settings, current_budget(settings))


def run_audit(settings: Settings, model: str, alias: str = "champion") -> list[dict]:
    """Re-run a registered classifier's audits (both attacks, DP model and twin) on its own split.
    Growth and teacher training are audited at training (the loss-threshold attack on their loss)."""
    from features.feature_repo import feature_store
    from training import academic_risk, fitness_risk

    auditors = {"fitness_risk": fitness_risk.audit_registered, "academic_risk": academic_risk.audit_registered}
    if model not in auditors:
        raise ValueError(f"no re-run audit for model {model!r}; models: {', '.join(auditors)} (growth and "
                         f"teacher_training are audited when they train: see their model cards)")
    return auditors[model](feature_store(settings), settings, alias)


def run_score(settings: Settings) -> dict[str, int]:
    """Every champion model's scores into the online store; {score view: rows}."""
    from features.feature_repo import feature_store
    from training.score import score_all

    return score_all(feature_store(settings), settings)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    scope: list[str]
    pages: list[str]  # a few pages (paths) the login may open


def create_demo_logins(settings: Settings) -> list[DemoLogin]:
    """Two class teachers (the largest classes of the latest year), their school's health staff, the
    training center with the most courses and a data officer."""
    from features.lake import read_lake
    from serving.users import UserStore

    memberships = read_lake(settings.lake_dir, "class_memberships")
    classes = read_lake(settings.lake_dir, "classes")
    latest = memberships[memberships["school_year"] == memberships["school_year"].max()]
    sizes = latest.groupby("class_id").size().sort_values(ascending=False, kind="stable")
    users = UserStore(settings.users_path)
    logins = []
    for n, class_id in enumerate(sizes.index[:2], start=1):
        keys = latest.loc[latest["class_id"] == class_id, "student_id"].sort_values().head(3).tolist()
        logins.append(DemoLogin(f"teacher{n}", secrets.token_urlsafe(9), "class_teacher", [str(class_id)],
                                [f"/classes/{class_id}", *(f"/students/{key}" for key in keys)]))
    school = str(classes.set_index("class_id").at[sizes.index[0], "school_id"])
    logins.append(DemoLogin("health1", secrets.token_urlsafe(9), "health_staff", [school],
                            [f"/schools/{school}/fitness"]))
    courses = read_lake(settings.lake_dir, "training_courses")
    if len(courses):
        center = str(courses["center_id"].value_counts().sort_index().idxmax())
        first_course = str(courses.loc[courses["center_id"] == center, "course_id"].sort_values().iloc[0])
        logins.append(DemoLogin("center1", secrets.token_urlsafe(9), "training_center", [center],
                                [f"/centers/{center}", f"/courses/{first_course}"]))
    logins.append(DemoLogin("officer1", secrets.token_urlsafe(9), "data_officer", [], ["/officer"]))
    for login in logins:
        users.add(login.username, login.password, login.role, login.scope)
    return logins
