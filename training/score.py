"""Batch scoring: each champion model scores every current student; scores go back to the online store.

Serving never runs a model: it reads these scores, with the model's name, version and (ε, δ) beside
them (the score-view contract in `features.feature_repo.SCORE_VIEWS`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from core.config import Settings
from features.feature_repo import publish, score_views
from features.lake import write_parquet
from training.registry import mlflow_client


def score_all(store, settings: Settings, *, alias: str = "champion") -> dict[str, int]:
    """Every registered model's champion scores its students or teachers; {score view: rows}. Each
    scorer returns its (view, frame) pairs; models not registered yet are skipped (serving shows
    them as not yet available)."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    written = {}
    for model, scorer in (("fitness_risk", score_fitness_risk), ("growth", score_growth),
                          ("academic_risk", score_academic_risk), ("teacher_training", score_teacher_training)):
        try:
            client.get_model_version_by_alias(model, alias)
        except MlflowException:
            continue
        for view, frame in scorer(store, settings, alias=alias):
            settings.scores_dir.mkdir(parents=True, exist_ok=True)
            write_parquet(frame, settings.scores_dir / f"{view}.parquet")
            written[view] = len(frame)
    publish(store, score_views(settings.scores_dir))
    return written


def _champion(settings: Settings, name: str, alias: str):
    import mlflow

    version = mlflow_client(settings).get_model_version_by_alias(name, alias)
    model = mlflow.sklearn.load_model(f"models:/{name}/{version.version}")
    return model, {"model_name": name, "model_version": int(version.version),
                   "model_epsilon": float(version.tags["epsilon"]), "model_delta": float(version.tags["delta"])}


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(timezone.utc)).as_unit("us")


def score_fitness_risk(store, settings: Settings, *, alias: str = "champion") -> list[tuple[str, pd.DataFrame]]:
    """Each student's latest fitness features, scored by `models:/fitness_risk@<alias>`: probability,
    level and the three items or trends that raise (or lower) it most."""
    from training.fitness_risk import CONTEXT, FEATURE_SERVICE, FEATURES, MODEL_NAME

    model, provenance = _champion(settings, MODEL_NAME, alias)
    source = store.get_feature_view("student_fitness").batch_source.path
    keys = pd.read_parquet(source, columns=["student_key"]).drop_duplicates()
    features = store.get_historical_features(
        entity_df=keys.assign(event_timestamp=_now()), features=store.get_feature_service(FEATURE_SERVICE)).to_df()
    features = features.dropna(subset=["total_score"])  # no test within the view's TTL: nothing to score
    X = features[FEATURES].to_numpy(dtype=float)
    return [("fitness_risk_score", pd.DataFrame({
        "student_key": features["student_key"].astype("string"), "event_timestamp": _now(),
        "risk_probability": model.predict_proba(X)[:, 1], "level": model.predict_level(X),
        # Items the student's grade does not test are missing, not weak: never a reason.
        "reasons_json": _reasons_json(model, X, leave_out=CONTEXT), **provenance,
    }))]


def _reasons_json(model, X: np.ndarray, *, leave_out=(), top: int = 3) -> list[str]:
    """Per student, the `top` features that move the risk most (a risk-warning model's `explain`),
    as JSON (feature, the student's value, the neutral reference it was compared with, effect);
    features in `leave_out` and features the student has no value for are skipped."""
    lines = []
    for student in model.explain(X, top=X.shape[1]):  # all, then skip; effects come largest first
        kept = [r for r in student if r.feature not in leave_out and np.isfinite(r.value)][:top]
        lines.append(json.dumps([{"feature": r.feature, "value": r.value, "reference": r.reference,
                                  "effect": round(r.effect, 4)} for r in kept]))
    return lines


def score_academic_risk(store, settings: Settings, *, alias: str = "champion") -> list[tuple[str, pd.DataFrame]]:
    """Students graded in the latest term: probability, level and the three strongest reasons."""
    from training.academic_risk import FEATURE_SERVICE, FEATURES, MODEL_NAME, NEUTRAL

    model, provenance = _champion(settings, MODEL_NAME, alias)
    source = store.get_feature_view("student_academics").batch_source.path
    rows = pd.read_parquet(source, columns=["student_key", "event_timestamp"])
    latest = rows.loc[rows["event_timestamp"] == rows["event_timestamp"].max(), ["student_key"]]
    features = store.get_historical_features(
        entity_df=latest.assign(event_timestamp=_now()), features=store.get_feature_service(FEATURE_SERVICE)).to_df()
    X = features[FEATURES].fillna(dict(zip(FEATURES, NEUTRAL, strict=True))).to_numpy(dtype=float)
    return [("academic_risk_score", pd.DataFrame({
        "student_key": features["student_key"].astype("string"), "event_timestamp": _now(),
        "risk_probability": model.predict_proba(X)[:, 1], "level": model.predict_level(X),
        "reasons_json": _reasons_json(model, X), **provenance,
    }))]


def score_growth(store, settings: Settings, *, alias: str = "champion") -> list[tuple[str, pd.DataFrame]]:
    """Every subject and term of each student on the latest roll: their growth percentile given up
    to three terms before (consecutive terms by index; a gap cuts the priors, as in fitting); and
    the latest term's medians by class, teacher and school (`growth_by_group`)."""
    from training.growth import MODEL_NAME, PRIORS, SCORE, VIEW

    model, provenance = _champion(settings, MODEL_NAME, alias)
    source = store.get_feature_view(VIEW).batch_source.path
    rows = pd.read_parquet(source, columns=["student_key", "subject", "event_timestamp", SCORE])
    current = set(rows.loc[rows["event_timestamp"] == rows["event_timestamp"].max(), "student_key"])
    rows = rows[rows["student_key"].isin(current)]
    terms = _terms(settings)
    rows = rows.merge(terms, on="event_timestamp")
    wide = rows.pivot_table(index=["student_key", "subject"], columns="idx", values=SCORE, aggfunc="first")
    scored = []
    for idx in sorted(rows["idx"].unique()):
        priors = [wide.get(idx - k) for k in range(PRIORS, 0, -1)]
        if priors[-1] is None or idx not in wide:
            continue
        X = np.column_stack([p.to_numpy(float) if p is not None else np.full(len(wide), np.nan) for p in priors])
        y = wide[idx].to_numpy(float)
        ok = ~np.isnan(y) & ~np.isnan(X[:, -1])
        if ok.any():
            part = wide.index[ok].to_frame(index=False).assign(idx=idx)
            part["percentile"] = model.growth_percentile(X[ok], y[ok])
            scored.append(part)
    if not scored:
        columns = ["student_key", "event_timestamp", "growth_json", "median_growth_percentile", *provenance]
        return [("growth_score", pd.DataFrame(columns=columns))]
    growth = pd.concat(scored).merge(terms[["idx", "term_id"]], on="idx").sort_values(["student_key", "idx", "subject"])
    latest = growth[growth["idx"] == growth["idx"].max()].groupby("student_key")["percentile"].median()
    lines = growth.groupby("student_key")[["subject", "term_id", "percentile"]].apply(
        lambda g: json.dumps([{"subject": s, "term_id": t, "percentile": int(p)} for s, t, p in g.itertuples(False)]))
    frame = pd.DataFrame({"student_key": lines.index.astype("string"), "event_timestamp": _now(),
                          "growth_json": lines.to_numpy(), "median_growth_percentile": latest.reindex(lines.index)
                          .to_numpy(float), **provenance})
    latest_term = growth[growth["idx"] == growth["idx"].max()]
    return [("growth_score", frame), *growth_by_group(latest_term, settings, provenance)]


MIN_GROUP_SIZE = 10  # a median over fewer students is too close to one student's own result


def growth_by_group(growth: pd.DataFrame, settings: Settings, provenance: dict) -> list[tuple[str, pd.DataFrame]]:
    """The value-added view of one term: median growth percentile per subject of each class, each
    teacher (the classes they teach that subject) and each school, groups of fewer than
    MIN_GROUP_SIZE students left out. `growth`: student_key, subject, idx, term_id, percentile."""
    from features.lake import read_lake
    from models.growth_dp import median_growth_by_group

    [term_id] = growth["term_id"].unique()
    school_year = int(growth["idx"].iloc[0]) // 2  # idx = school_year * 2 + term - 1
    members = read_lake(settings.lake_dir, "class_memberships", ["student_id", "class_id", "school_year"])
    members = members.loc[members["school_year"] == school_year, ["student_id", "class_id"]]
    classes = read_lake(settings.lake_dir, "classes", ["class_id", "school_id"])
    assignments = read_lake(settings.lake_dir, "teaching_assignments", ["teacher_id", "class_id", "subject", "school_year"])
    assignments = assignments.loc[assignments["school_year"] == school_year, ["teacher_id", "class_id", "subject"]]
    placed = growth.merge(members, left_on="student_key", right_on="student_id").merge(classes, on="class_id")
    taught = placed.merge(assignments, on=["class_id", "subject"])
    now = _now()
    views = []
    for view, key, frame, group in (("class_growth_score", "class_id", placed, "class_id"),
                                    ("teacher_growth_score", "teacher_key", taught, "teacher_id"),
                                    ("school_growth_score", "school_id", placed, "school_id")):
        # A teacher with two classes of one subject counts each student once.
        frame = frame.drop_duplicates([group, "subject", "student_key"])
        groups = pd.Series(list(zip(frame[group], frame["subject"])), dtype=object).to_numpy()
        summary = median_growth_by_group(frame["percentile"].to_numpy(float), groups, min_group_size=MIN_GROUP_SIZE)
        summary[key], summary["subject"] = summary["group"].str[0], summary["group"].str[1]
        lines = summary.groupby(key, sort=True)[["subject", "students", "median_growth_percentile"]].apply(
            lambda g: json.dumps([{"subject": s, "students": int(n), "median_growth_percentile": float(m)}
                                  for s, n, m in g.itertuples(False)]))
        lines = lines if len(summary) else pd.Series([], dtype=object)
        views.append((view, pd.DataFrame({key: lines.index.astype("string"), "event_timestamp": now,
                                          "term_id": term_id, "growth_json": lines.to_numpy(), **provenance})))
    return views


def score_teacher_training(store, settings: Settings, *, alias: str = "champion", recommendations: int = 10,
                           invites: int = 50) -> list[tuple[str, pd.DataFrame]]:
    """Every assessed teacher's top courses (`teacher_training_score`) and every catalog course's
    teachers to invite (`course_invite_score`), from each teacher's latest assessment."""
    from models.teacher_training import teacher_profiles
    from training.teacher_training import MODEL_NAME, contract_tables

    del store  # the recommender reads histories from the lake (training.teacher_training)
    model, provenance = _champion(settings, MODEL_NAME, alias)
    profiles = teacher_profiles(contract_tables(settings))
    now = _now()
    recommended = model.recommend(profiles, k=recommendations)
    by_teacher = recommended.groupby("teacher_id", sort=True)[["course_id", "expected_gain", "dimension", "reasons"]]
    teacher_lines = by_teacher.apply(lambda g: json.dumps(
        [{"course_id": c, "expected_gain": round(float(e), 2), "dimension": d, "reason": r}
         for c, e, d, r in g.itertuples(False)], ensure_ascii=False))
    invited = model.invite_lists(profiles, k=invites)
    by_course = invited.groupby("course_id", sort=True)[["teacher_id", "expected_gain", "dimension", "reasons"]]
    course_lines = by_course.apply(lambda g: json.dumps(
        [{"teacher_key": t, "expected_gain": round(float(e), 2), "dimension": d, "reason": r}
         for t, e, d, r in g.itertuples(False)], ensure_ascii=False))
    return [
        ("teacher_training_score", pd.DataFrame({"teacher_key": teacher_lines.index.astype("string"),
                                                 "event_timestamp": now,
                                                 "recommendations_json": teacher_lines.to_numpy(), **provenance})),
        ("course_invite_score", pd.DataFrame({"course_id": course_lines.index.astype("string"), "event_timestamp": now,
                                              "invites_json": course_lines.to_numpy(), **provenance})),
    ]


def _terms(settings: Settings) -> pd.DataFrame:
    """term_id, idx (school_year * 2 + term - 1: consecutive terms differ by 1) and the term's end as
    the indicators date it (end_date at 00:00 UTC)."""
    terms = pd.read_parquet(settings.lake_dir / "terms.parquet", columns=["term_id", "school_year", "term", "end_date"])
    return pd.DataFrame({"term_id": terms["term_id"], "idx": terms["school_year"] * 2 + terms["term"] - 1,
                         "event_timestamp": pd.to_datetime(terms["end_date"]).dt.normalize().dt.tz_localize("UTC")
                         .dt.as_unit("us")})
