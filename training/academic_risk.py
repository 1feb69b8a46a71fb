"""Academic risk (early warning): "will this student fail a subject, or drop sharply, next term?"

Inputs are the ABC indicators as of a term's end, point-in-time from Feast's feature service
`academic_risk_v1`: Attendance (student_attendance), Behaviour (student_moral) and Course
performance with its trend (student_academics). The label is read at exactly the next term from
student_academics' offline source: at least one failed subject, or a mean z-score at least
`DROP_Z` below this term's. A missing indicator enters at its neutral value. One example per student (the unit of privacy): their last pair of
consecutive terms in the release. The DP model (models.academic_risk) and a LightGBM twin train as
Ray tasks on the same split; MLflow records both, and the DP model is registered as `academic_risk`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import ray

from core.config import Settings
from features.feature_repo import ACADEMIC_RISK_FEATURES
from training.audits import Split, audit_metrics, audit_pair, registered_run
from training.budget import current_budget
from training.fitness_risk import fit_lightgbm, lightgbm_twin  # the same non-private twin
from training.model_card import ModelCard
from training.registry import Candidate, dp_params, register
from training.utility_curve import utility_figure, utility_sweep

MODEL_NAME = "academic_risk"
FEATURE_SERVICE = "academic_risk_v1"
DROP_Z = 0.5  # a drop of half a standard deviation in mean z from one term to the next is "sharp"
FEATURES = [ref.split(":")[1] for ref in ACADEMIC_RISK_FEATURES]
BOUNDS = [bounds for bounds, _ in ACADEMIC_RISK_FEATURES.values()]
NEUTRAL = [neutral for _, neutral in ACADEMIC_RISK_FEATURES.values()]


@dataclass(frozen=True)
class AcademicRiskConfig:
    epsilon: float = 1.0
    max_delta: float = 1e-5
    epochs: int = 30
    test_share: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class AcademicRiskResult:
    run_id: str
    model_version: int
    n_train: int
    n_test: int
    positive_rate: float
    auc_dp: float
    auc_lightgbm: float
    epsilon: float
    delta: float

    def summary(self) -> str:
        return (f"AUC {self.auc_dp:.3f} (DP, ε={self.epsilon:.2f}) vs {self.auc_lightgbm:.3f} (non-private "
                f"LightGBM); {self.n_train} train / {self.n_test} test students, {self.positive_rate:.1%} at risk")


def training_examples(store) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per student: ABC features at the end of the release's last-but-one term, label from
    the last term (read at exactly that term)."""
    source = store.get_feature_view("student_academics").batch_source.path
    rows = pd.read_parquet(source, columns=["student_key", "event_timestamp", "failed_subjects", "mean_z"])
    ends = sorted(rows["event_timestamp"].unique())
    if len(ends) < 2:
        raise ValueError(f"academic risk needs two terms of student_academics; found {len(ends)}")
    before, after = (rows[rows["event_timestamp"] == end].set_index("student_key") for end in ends[-2:])
    both = before.join(after, lsuffix="_now", rsuffix="_next", how="inner")
    anchors = pd.DataFrame({"student_key": both.index, "event_timestamp": ends[-2]})
    features = store.get_historical_features(
        entity_df=anchors, features=store.get_feature_service(FEATURE_SERVICE)).to_df()
    features = features.set_index("student_key").loc[both.index]
    label = (both["failed_subjects_next"] >= 1) | (both["mean_z_now"] - both["mean_z_next"] >= DROP_Z)
    # A missing indicator (no earlier term for a trend, no moral record) counts as neutral: the low end
    # of a trend's range would read as a steep decline.
    frame = features[FEATURES].fillna(dict(zip(FEATURES, NEUTRAL, strict=True))).reset_index()
    frame = frame.sort_values("student_key")
    return frame.reset_index(drop=True), label.loc[frame["student_key"]].to_numpy(dtype=int)


@ray.remote(num_cpus=1)
def fit_dp_model(X: np.ndarray, y: np.ndarray, params: dict):
    import torch

    from models.academic_risk import AcademicRiskModel

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = AcademicRiskModel(**params).fit(X, y)
    return model, time.perf_counter() - started


def train_academic_risk(store, settings: Settings, config: AcademicRiskConfig | None = None) -> AcademicRiskResult:
    """Train, evaluate, audit, log and register the academic-risk model. Needs a running Ray session."""
    from sklearn.metrics import roc_auc_score

    from models.academic_risk import calibration_report

    config = config or AcademicRiskConfig()
    budget = current_budget(settings)
    frame, y = training_examples(store)
    if len(frame) < 200 or y.sum() < 10 or (1 - y).sum() < 10:
        raise ValueError(f"academic risk needs at least 200 students with two consecutive terms and 10 of each "
                         f"outcome; found {len(frame)} students, {int(y.sum())} at risk")
    split = split_examples(frame, y, config)
    X_train, X_test, y_train, y_test = split.X_train, split.X_test, split.y_train, split.y_test
    delta = min(config.max_delta, 1.0 / len(X_train))
    params = {"feature_names": FEATURES, "feature_bounds": BOUNDS, "reference_values": NEUTRAL,
              "epsilon": config.epsilon, "delta": delta, "epochs": config.epochs, "random_state": config.seed}

    receipt = budget.spend(what=f"{MODEL_NAME} training", epsilon=config.epsilon, delta=delta,
                           mechanism="DP-SGD (fused clipping, Poisson sampling)", accountant="prv")
    (dp_model, seconds_dp), (twin, seconds_lgbm) = ray.get([
        fit_dp_model.remote(X_train, y_train, params), fit_lightgbm.remote(X_train, y_train, config.seed)])
    spent = dp_model.privacy_
    budget.ledger.settle(receipt.ids[0], epsilon=spent.epsilon, delta=spent.delta)
    probability = dp_model.predict_proba(X_test)[:, 1]
    auc_dp = float(roc_auc_score(y_test, probability))
    auc_lgbm = float(roc_auc_score(y_test, twin.predict_proba(X_test)[:, 1]))
    calibration = calibration_report(y_test, probability)
    levels = pd.Series(dp_model.predict_level(X_test)).value_counts(normalize=True).to_dict()
    audits = audit_pair(dp_model, twin, split, delta=delta, seed=config.seed)
    curve = utility_sweep(partial(_held_out_auc, data=ray.put((X_train, y_train, X_test, y_test)), params=params))

    card = _card(budget.release, budget.snapshot, spent, split, auc_dp=auc_dp, auc_lgbm=auc_lgbm, calibration=calibration,
                 positive_rate=float(y.mean()), audits=audits)
    candidate = Candidate(
        name=MODEL_NAME, model=dp_model, card=card, primary_metric="auc_test", data_release=budget.release,
        params={**{f"config.{k}": v for k, v in asdict(config).items()},
                "feature_service": FEATURE_SERVICE, "features": ",".join(FEATURES), "drop_z": DROP_Z,
                "data_release": budget.release, "lake_snapshot": budget.snapshot,
                **dp_params(spent, config.epsilon),
                "n_train": len(X_train), "n_test": len(X_test)},
        metrics={"dp.epsilon": spent.epsilon, "auc_test": auc_dp, "auc_test_nonprivate_lightgbm": auc_lgbm,
                 "auc_gap": auc_lgbm - auc_dp, "positive_rate": float(y.mean()),
                 "brier": calibration["brier"], "ece": calibration["ece"],
                 **{f"level_share.{level}": share for level, share in levels.items()},
                 "fit_seconds_dp": seconds_dp, "fit_seconds_lightgbm": seconds_lgbm,
                 **{f"sweep.auc_at_eps_{e:g}": value for e, value in curve.items()}, **audit_metrics(audits)},
        tags={"epsilon": spent.epsilon, "delta": spent.delta, "accountant": spent.accountant,
              "unit_of_privacy": spent.unit, "auc_test": auc_dp, "auc_nonprivate": auc_lgbm},
        dicts={"audits.json": audits, "calibration.json": _jsonable(calibration),
               "utility_vs_epsilon.json": {str(e): v for e, v in curve.items()}},
        figures={"utility_vs_epsilon.png": utility_figure(
            curve, {"LightGBM, no DP": auc_lgbm}, metric="held-out AUC",
            title=f"{MODEL_NAME}: utility against ε (n train = {len(X_train):,})")},
        input_example=X_test[:5],
    )
    registered = register(settings, candidate, run_name=f"{MODEL_NAME}-eps{config.epsilon:g}")
    return AcademicRiskResult(run_id=registered.run_id, model_version=registered.version, n_train=len(X_train),
                              n_test=len(X_test), positive_rate=float(y.mean()), auc_dp=auc_dp,
                              auc_lightgbm=auc_lgbm, epsilon=spent.epsilon, delta=spent.delta)


def split_examples(frame: pd.DataFrame, y: np.ndarray, config: AcademicRiskConfig) -> Split:
    """The train / held-out split (stratified, seeded): the same students every time for one lake."""
    from sklearn.model_selection import train_test_split

    X = frame[FEATURES].to_numpy(dtype=np.float64)
    return Split(*train_test_split(X, y, test_size=config.test_share, random_state=config.seed, stratify=y))


def audit_registered(store, settings: Settings, alias: str = "champion") -> list[dict]:
    """Re-run the audits of `academic_risk@alias` on its own split; log them to its run and card."""
    registered = registered_run(settings, MODEL_NAME, alias)
    config = registered.config(AcademicRiskConfig)
    split = split_examples(*training_examples(store), config)
    dp_model, audits = registered.audit_again(split, lightgbm_twin(config.seed), seed=config.seed)
    params, metrics = registered.params, registered.metrics
    registered.record(audits, _card(
        params.get("data_release", "?"), params.get("lake_snapshot", ""), dp_model.privacy_, split,
        auc_dp=metrics["auc_test"], auc_lgbm=metrics["auc_test_nonprivate_lightgbm"],
        calibration={"brier": metrics["brier"], "ece": metrics["ece"]}, positive_rate=metrics["positive_rate"],
        audits=audits))
    return audits


def _held_out_auc(epsilon: float, *, data, params: dict) -> float:
    import torch
    from sklearn.metrics import roc_auc_score

    from models.academic_risk import AcademicRiskModel

    torch.set_num_threads(1)
    X_train, y_train, X_test, y_test = ray.get(data) if isinstance(data, ray.ObjectRef) else data
    model = AcademicRiskModel(**{**params, "epsilon": epsilon}).fit(X_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))


def _jsonable(value):
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _card(release: str, snapshot: str, spent, split: Split, *, auc_dp: float, auc_lgbm: float, calibration: dict, positive_rate: float,
          audits: list[dict]) -> ModelCard:
    return ModelCard(
        name=MODEL_NAME, version=None,
        purpose="Early warning: flag students likely to fail a subject or drop sharply next term, with the "
                "attendance, behaviour and course-performance indicators behind each flag, so a class teacher "
                "can act this term. A prompt to look closer, never a grade or a label.",
        users="Class teachers (their own students).",
        label=f"Next term: at least one failed subject (below 60 % of full mark), or mean z-score down by "
              f"{DROP_Z} or more.",
        features=f"Feast feature service `{FEATURE_SERVICE}` (ABC indicators): {', '.join(FEATURES)}; each "
                 f"clipped to a range fixed in advance.",
        data_release=release, lake_snapshot=snapshot, unit_of_privacy="one student (one example each)",
        epsilon=spent.epsilon, delta=spent.delta, accountant=f"{spent.accountant.upper()} (Opacus)",
        mechanism=f"DP-SGD (fused per-example clipping) with Poisson sampling (rate {spent.sample_rate:.4f}, "
                  f"{spent.steps} steps), clipping at {spent.max_grad_norm:g}, noise multiplier "
                  f"{spent.noise_multiplier:.3f}",
        metrics={"test AUC (DP model)": auc_dp, "test AUC (non-private LightGBM)": auc_lgbm,
                 "AUC gap": auc_lgbm - auc_dp, "Brier score": calibration["brier"],
                 "expected calibration error": calibration["ece"], "positive rate": positive_rate,
                 "training students": len(split.X_train), "held-out students": len(split.X_test)},
        audits=audits,
        limits=["Levels come from fixed probability thresholds; the DP probabilities are not calibrated by "
                "default (see the expected calibration error above).",
                "Reasons are one indicator at a time against a neutral value fixed in advance.",
                "The held-out metrics, the twin and the audits are internal (data officer only)."],
    )
