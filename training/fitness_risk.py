"""Fitness risk: "will this student's next annual test total be below 60?"

One example per student (the unit of privacy): features as of a test, label from the next
year's test, both read point-in-time from Feast. The DP model (Opacus DP-SGD) and its
non-private LightGBM twin train side by side as Ray tasks on the same split; MLflow records
the privacy guarantee and both AUCs, and registers the DP model with the alias `champion`.

The DP model is the risk-warning estimator of `models.academic_risk` (a DP classifier with
red / amber / green levels at fixed thresholds, optional DP Platt calibration and per-student
reasons): its reasons name the items and trends that raise a student's risk, each against a
neutral value fixed in advance (`NEUTRAL`: the standard's pass mark for a score, no change for a
trend). With enough students (`CALIBRATE_FROM`) a fifth of them, drawn by an independent coin,
fit the calibrator instead of the network: disjoint students, so the two fits compose in parallel
and the guarantee stays (ε, δ).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import ray

from core.config import Settings
from features.feature_repo import FITNESS_RISK_BOUNDS
from training.audits import Split, audit_metrics, audit_pair, registered_run
from training.budget import current_budget
from training.model_card import ModelCard
from training.registry import Candidate, dp_params, register
from training.utility_curve import utility_figure, utility_sweep

MODEL_NAME = "fitness_risk"
FEATURE_SERVICE = "fitness_risk_v1"
FAIL_BELOW = 60.0
FEATURES = [name.split(":")[1] for name in FITNESS_RISK_BOUNDS]
# What a reason compares each feature with, fixed a priori: a pass for every score (60; 100 for the
# BMI item, whose normal band scores 100), a normal BMI, no bonus, no change, no failed year.
# grade and tests_taken set the context (the band of items) and are never given as reasons.
NEUTRAL = {"grade": 6.0, "bmi": 20.0, "score_bmi": 100.0, **{name: FAIL_BELOW for name in FEATURES
           if name.startswith("score_") and name != "score_bmi"}, "standard_score": FAIL_BELOW, "bonus": 0.0,
           "total_score": FAIL_BELOW, "total_change": 0.0, "years_failed_in_row": 0.0, "tests_taken": 1.0}
CONTEXT = ("grade", "tests_taken")
CALIBRATE_FROM = 5000  # training students; on fewer, a noisy calibrator does more harm than good
CALIBRATION_FRACTION = 0.2


@dataclass(frozen=True)
class FitnessRiskConfig:
    epsilon: float = 2.0
    max_delta: float = 1e-5  # δ = min(max_delta, 1/n): never more than one in n
    max_grad_norm: float = 1.0
    epochs: int = 30
    batch_size: int | None = None  # scales with the data: privacy.dp_sgd.default_batch_size
    learning_rate: float = 0.1
    hidden_units: int = 32
    test_share: float = 0.25
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.test_share < 1:
            raise ValueError("test_share must be in (0, 1)")


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_version: int
    n_train: int
    n_test: int
    positive_rate: float
    auc_dp: float
    auc_lightgbm: float
    epsilon: float
    delta: float
    noise_multiplier: float
    seconds_dp: float
    seconds_lightgbm: float

    def summary(self) -> str:
        return (f"AUC {self.auc_dp:.3f} (DP, ε={self.epsilon:.2f}, δ={self.delta:.1e}) vs {self.auc_lightgbm:.3f} "
                f"(non-private LightGBM); {self.n_train} train / {self.n_test} test students")


def example_anchors(store) -> pd.DataFrame:
    """One row per student: the date of their last-but-one annual test (features are read as of
    it) and of the test a year later (the label is read as of it)."""
    source = store.get_feature_view("student_fitness").batch_source.path
    tests = pd.read_parquet(source, columns=["student_key", "event_timestamp", "school_year"])
    tests = tests.sort_values(["student_key", "event_timestamp"])
    following = tests.groupby("student_key").shift(-1)
    pairs = tests.assign(label_timestamp=following["event_timestamp"], next_year=following["school_year"])
    pairs = pairs[pairs["next_year"] == pairs["school_year"] + 1]
    pairs = pairs.groupby("student_key").tail(1).reset_index(drop=True)  # one example per student
    return pairs[["student_key", "event_timestamp", "label_timestamp"]]


def training_examples(store, anchors: pd.DataFrame | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per student: features as of their last-but-one test, label from their last.

    Both come from Feast's point-in-time join, so nothing from after the feature date leaks in.
    """
    pairs = example_anchors(store) if anchors is None else anchors
    features = store.get_historical_features(
        entity_df=pairs[["student_key", "event_timestamp"]],
        features=store.get_feature_service(FEATURE_SERVICE),
    ).to_df()
    labels = store.get_historical_features(
        entity_df=pairs[["student_key", "label_timestamp"]].rename(columns={"label_timestamp": "event_timestamp"}),
        features=["student_fitness:total_score"],
    ).to_df()
    joined = features.merge(labels.rename(columns={"total_score": "next_total"}), on="student_key")
    joined = joined.dropna(subset=["next_total"]).sort_values("student_key").reset_index(drop=True)
    return joined[["student_key", *FEATURES]], (joined["next_total"] < FAIL_BELOW).to_numpy(dtype=int)


@ray.remote(num_cpus=1)
def fit_dp_model(X: np.ndarray, y: np.ndarray, params: dict):
    import torch

    from models.academic_risk import AcademicRiskModel

    torch.set_num_threads(1)  # one Ray CPU, one thread: the twin trains on the other core
    started = time.perf_counter()
    model = AcademicRiskModel(**params).fit(X, y)
    return model, time.perf_counter() - started


@ray.remote(num_cpus=1)
def fit_lightgbm(X: np.ndarray, y: np.ndarray, seed: int):
    started = time.perf_counter()
    model = lightgbm_twin(seed).fit(X, y)
    return model, time.perf_counter() - started


def lightgbm_twin(seed: int):
    """The non-private reference, unfitted: the same split, no DP, a strong tabular learner."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, n_jobs=1, random_state=seed,
                          verbose=-1)


def train_fitness_risk(store, settings: Settings, config: FitnessRiskConfig | None = None) -> TrainingResult:
    """Train, evaluate, log and register the fitness-risk model. Needs a running Ray session."""
    from sklearn.metrics import roc_auc_score

    from models.academic_risk import calibration_report

    config = config or FitnessRiskConfig(epsilon=settings.fitness_risk_epsilon, max_delta=settings.fitness_risk_max_delta)
    budget = current_budget(settings)
    frame, y = training_examples(store)
    if len(frame) < 50 or y.sum() < 5 or (1 - y).sum() < 5:
        raise ValueError(
            f"fitness risk needs at least 50 students with two consecutive annual tests and 5 of each outcome; "
            f"found {len(frame)} students, {int(y.sum())} who failed the next test"
        )
    split = split_examples(frame, y, config)
    X_train, X_test, y_train, y_test = split.X_train, split.X_test, split.y_train, split.y_test
    delta = min(config.max_delta, 1.0 / len(X_train))
    params = {
        "feature_bounds": [FITNESS_RISK_BOUNDS[f"student_fitness:{name}"] for name in FEATURES],
        "epsilon": config.epsilon, "delta": delta, "max_grad_norm": config.max_grad_norm,
        "epochs": config.epochs, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "hidden_units": config.hidden_units, "random_state": config.seed,
    }

    params.update(feature_names=FEATURES, reference_values=[NEUTRAL[name] for name in FEATURES],
                  calibration_fraction=CALIBRATION_FRACTION if len(X_train) >= CALIBRATE_FROM else 0.0)

    # Spend the budget before the model sees the data: refused spends train nothing.
    receipt = budget.spend(what=f"{MODEL_NAME} training", epsilon=config.epsilon, delta=delta,
                           mechanism="DP-SGD (Opacus, Poisson sampling)", accountant="prv")

    (dp_model, seconds_dp), (twin, seconds_lgbm) = ray.get([
        fit_dp_model.remote(X_train, y_train, params),
        fit_lightgbm.remote(X_train, y_train, config.seed),
    ])
    probability = dp_model.predict_proba(X_test)[:, 1]
    auc_dp = float(roc_auc_score(y_test, probability))
    auc_lgbm = float(roc_auc_score(y_test, twin.predict_proba(X_test)[:, 1]))
    calibration = calibration_report(y_test, probability)
    levels = pd.Series(dp_model.predict_level(X_test)).value_counts(normalize=True).to_dict()
    spent = dp_model.privacy_
    budget.ledger.settle(receipt.ids[0], epsilon=spent.epsilon, delta=spent.delta)  # what the accountant read back
    audits = audit_pair(dp_model, twin, split, delta=delta, seed=config.seed)

    curve = utility_sweep(partial(_held_out_auc, data=ray.put((X_train, y_train, X_test, y_test)), params=params))
    candidate = Candidate(
        name=MODEL_NAME, model=dp_model, card=model_card(None, budget.release, budget.snapshot, spent, split,
                                                         auc_dp=auc_dp, auc_lightgbm=auc_lgbm,
                                                         positive_rate=float(y.mean()), audits=audits,
                                                         brier=calibration["brier"], ece=calibration["ece"],
                                                         calibrated=dp_model.calibrator_ is not None),
        params={
            **{f"config.{k}": v for k, v in asdict(config).items()},
            "feature_service": FEATURE_SERVICE, "features": ",".join(FEATURES),
            "data_release": budget.release, "lake_snapshot": budget.snapshot,
            **dp_params(spent, config.epsilon),
            "n_train": len(X_train), "n_test": len(X_test),
        },
        metrics={
            "dp.epsilon": spent.epsilon, "auc_test": auc_dp, "auc_test_nonprivate_lightgbm": auc_lgbm,
            "auc_gap": auc_lgbm - auc_dp, "positive_rate": float(y.mean()),
            "brier": calibration["brier"], "ece": calibration["ece"],
            **{f"level_share.{level}": share for level, share in levels.items()},
            "fit_seconds_dp": seconds_dp, "fit_seconds_lightgbm": seconds_lgbm,
            **{f"sweep.auc_at_eps_{e:g}": value for e, value in curve.items()},
            **audit_metrics(audits),
        },
        primary_metric="auc_test", data_release=budget.release,
        tags={"epsilon": spent.epsilon, "delta": spent.delta, "accountant": spent.accountant,
              "noise_multiplier": spent.noise_multiplier, "max_grad_norm": spent.max_grad_norm,
              "unit_of_privacy": spent.unit, "auc_test": auc_dp, "auc_nonprivate": auc_lgbm},
        dicts={"audits.json": audits, "utility_vs_epsilon.json": {str(e): v for e, v in curve.items()}},
        figures={"utility_vs_epsilon.png": utility_figure(
            curve, {"LightGBM, no DP": auc_lgbm}, metric="held-out AUC",
            title=f"{MODEL_NAME}: utility against ε (n train = {len(X_train):,})")},
        input_example=pd.DataFrame(X_test[:5], columns=FEATURES),
    )
    registered = register(settings, candidate, run_name=f"{MODEL_NAME}-eps{config.epsilon:g}")
    return TrainingResult(
        run_id=registered.run_id, model_version=registered.version, n_train=len(X_train), n_test=len(X_test),
        positive_rate=float(y.mean()), auc_dp=auc_dp, auc_lightgbm=auc_lgbm, epsilon=spent.epsilon,
        delta=spent.delta, noise_multiplier=spent.noise_multiplier, seconds_dp=seconds_dp, seconds_lightgbm=seconds_lgbm,
    )


def _held_out_auc(epsilon: float, *, data, params: dict) -> float:
    """One point of the utility sweep: the same DP model at `epsilon`, scored on the held-out split."""
    import torch
    from sklearn.metrics import roc_auc_score

    from models.academic_risk import AcademicRiskModel

    torch.set_num_threads(1)
    X_train, y_train, X_test, y_test = ray.get(data) if isinstance(data, ray.ObjectRef) else data
    model = AcademicRiskModel(**{**params, "epsilon": epsilon}).fit(X_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))


def audit_registered(store, settings: Settings, alias: str = "champion") -> list[dict]:
    """Re-run the audits of `fitness_risk@alias` on its own split; log them to its run and card."""
    registered = registered_run(settings, MODEL_NAME, alias)
    config = registered.config(FitnessRiskConfig)
    split = split_examples(*training_examples(store), config)
    dp_model, audits = registered.audit_again(split, lightgbm_twin(config.seed), seed=config.seed)
    params, metrics = registered.params, registered.metrics
    registered.record(audits, model_card(
        registered.version, params.get("data_release", "?"), params.get("lake_snapshot", ""), dp_model.privacy_,
        split, auc_dp=metrics["auc_test"], auc_lightgbm=metrics["auc_test_nonprivate_lightgbm"],
        positive_rate=metrics["positive_rate"], audits=audits, brier=metrics.get("brier"), ece=metrics.get("ece"),
        calibrated=getattr(dp_model, "calibrator_", None) is not None))
    return audits


def split_examples(frame: pd.DataFrame, y: np.ndarray, config: FitnessRiskConfig) -> Split:
    """The train / held-out split (stratified, seeded): the same students every time for one lake."""
    from sklearn.model_selection import train_test_split

    X = frame[FEATURES].to_numpy(dtype=np.float64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=config.test_share,
                                                        random_state=config.seed, stratify=y)
    return Split(X_train, X_test, y_train, y_test)


def model_card(version: int | None, release: str, snapshot: str, spent, split: Split, *, auc_dp: float,
               auc_lightgbm: float, positive_rate: float, audits: list[dict], brier: float | None = None,
               ece: float | None = None, calibrated: bool = False) -> ModelCard:
    metrics = {"test AUC (DP model)": auc_dp, "test AUC (non-private LightGBM)": auc_lightgbm,
               "AUC gap": auc_lightgbm - auc_dp, "positive rate": positive_rate,
               **({} if brier is None else {"Brier score": brier, "expected calibration error": ece}),
               "training students": len(split.X_train), "held-out students": len(split.X_test)}
    calibration = ("Probabilities are calibrated by a DP Platt scaling fitted on a fifth of the students; levels "
                   "(red ≥ 0.5, amber ≥ 0.25) read as chances." if calibrated else
                   "Probabilities are not calibrated (too few students to spare a fifth for it): rank by them and "
                   "read the levels (red ≥ 0.5, amber ≥ 0.25) with the calibration error above in mind.")
    return ModelCard(
        name=MODEL_NAME, version=version,
        purpose="Flag students likely to fail next year's national fitness test (total below 60), so school "
                "health staff can act a year early. A warning to look closer, never a grade or a label.",
        users="School health staff (their schools' students); class teachers see their own students' warnings.",
        label="Next annual CSPHS 2014 total score < 60 (fail).",
        features=f"Feast feature service `{FEATURE_SERVICE}`: {', '.join(FEATURES)}; each clipped to a range fixed "
                 f"in advance by the standard.",
        data_release=release, lake_snapshot=snapshot, unit_of_privacy="one student (one example per student)",
        epsilon=spent.epsilon, delta=spent.delta, accountant=f"{spent.accountant.upper()} (Opacus)",
        mechanism=f"DP-SGD with Poisson sampling (rate {spent.sample_rate:.4f}, {spent.steps} steps), per-example "
                  f"clipping at {spent.max_grad_norm:g}, Gaussian noise multiplier {spent.noise_multiplier:.3f}",
        metrics=metrics, audits=audits,
        limits=["Trained on students with two consecutive annual tests; a first-year student gets no score.",
                calibration,
                "Reasons compare one feature at a time with a neutral value fixed in advance (a pass for a score, "
                "no change for a trend).",
                "Synthetic or real, the data's own biases (which schools test well) pass into the model.",
                "The privacy guarantee covers the model; the held-out metrics and audits are internal."],
    )
