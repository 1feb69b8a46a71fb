"""Fitness risk: "will this student's next annual test total be below 60?"

One example per student (the unit of privacy): features as of a test, label from the next
year's test, both read point-in-time from Feast. The DP model (Opacus DP-SGD) and its
non-private LightGBM twin train side by side as Ray tasks on the same split; MLflow records
the privacy guarantee and both AUCs, and registers the DP model with the alias `champion`.
"""

from __future__ import annotations

import ast
import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import ray

from core.config import Settings
from features.feature_repo import FITNESS_RISK_BOUNDS
from training.audits import Split, audit_metrics, audit_pair
from training.budget import current_budget
from training.model_card import ModelCard
from training.registry import Candidate, dp_params, mlflow_client, publish_card, register
from training.utility_curve import utility_figure, utility_sweep

MODEL_NAME = "fitness_risk"
FEATURE_SERVICE = "fitness_risk_v1"
FAIL_BELOW = 60.0
FEATURES = [name.split(":")[1] for name in FITNESS_RISK_BOUNDS]


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

    from models.risk_classifier import DPRiskClassifier

    torch.set_num_threads(1)  # one Ray CPU, one thread: the twin trains on the other core
    started = time.perf_counter()
    model = DPRiskClassifier(**params).fit(X, y)
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

    # Spend the budget before the model sees the data: refused spends train nothing.
    receipt = budget.spend(what=f"{MODEL_NAME} training", epsilon=config.epsilon, delta=delta,
                           mechanism="DP-SGD (Opacus, Poisson sampling)", accountant="prv")

    (dp_model, seconds_dp), (twin, seconds_lgbm) = ray.get([
        fit_dp_model.remote(X_train, y_train, params),
        fit_lightgbm.remote(X_train, y_train, config.seed),
    ])
    auc_dp = float(roc_auc_score(y_test, dp_model.predict_proba(X_test)[:, 1]))
    auc_lgbm = float(roc_auc_score(y_test, twin.predict_proba(X_test)[:, 1]))
    spent = dp_model.privacy_
    budget.ledger.settle(receipt.ids[0], epsilon=spent.epsilon, delta=spent.delta)  # what the accountant read back
    audits = audit_pair(dp_model, twin, split, delta=delta, seed=config.seed)

    curve = utility_sweep(partial(_held_out_auc, data=ray.put((X_train, y_train, X_test, y_test)), params=params))
    candidate = Candidate(
        name=MODEL_NAME, model=dp_model, card=model_card(None, budget.release, budget.snapshot, spent, split,
                                                         auc_dp=auc_dp, auc_lightgbm=auc_lgbm,
                                                         positive_rate=float(y.mean()), audits=audits),
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

    from models.risk_classifier import DPRiskClassifier

    torch.set_num_threads(1)
    X_train, y_train, X_test, y_test = ray.get(data) if isinstance(data, ray.ObjectRef) else data
    model = DPRiskClassifier(**{**params, "epsilon": epsilon}).fit(X_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))



def audit_registered(store, settings: Settings, alias: str = "champion") -> list[dict]:
    """Re-run the audits of `fitness_risk@alias` on its own split; log them to its run and card."""
    import mlflow

    client = mlflow_client(settings)
    version = client.get_model_version_by_alias(MODEL_NAME, alias)
    run = client.get_run(version.run_id)
    params = run.data.params
    # Params are logged as text ("30", "0.1", "None"): read them back as the Python values they were.
    config = FitnessRiskConfig(**{name: ast.literal_eval(params[f"config.{name}"])
                                  for name in asdict(FitnessRiskConfig()) if f"config.{name}" in params})
    frame, y = training_examples(store)
    split = split_examples(frame, y, config)
    if len(split.X_train) != int(params["n_train"]):
        raise ValueError(f"{MODEL_NAME} v{version.version} trained on {params['n_train']} students; the lake now "
                         f"gives {len(split.X_train)}: audit it on the lake it was trained on "
                         f"(snapshot {params.get('lake_snapshot', '?')})")
    dp_model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version.version}")
    twin = lightgbm_twin(config.seed).fit(split.X_train, split.y_train)
    audits = audit_pair(dp_model, twin, split, delta=dp_model.privacy_.delta, seed=config.seed)
    client.log_dict(run.info.run_id, audits, "audits.json")
    for key, value in audit_metrics(audits).items():
        client.log_metric(run.info.run_id, key, value)
    metrics = run.data.metrics
    card = model_card(int(version.version), params.get("data_release", "?"), params.get("lake_snapshot", ""),
                      dp_model.privacy_, split, auc_dp=metrics["auc_test"],
                      auc_lightgbm=metrics["auc_test_nonprivate_lightgbm"], positive_rate=metrics["positive_rate"],
                      audits=audits)
    publish_card(client, MODEL_NAME, run.info.run_id, int(version.version), card)
    return audits


def split_examples(frame: pd.DataFrame, y: np.ndarray, config: FitnessRiskConfig) -> Split:
    """The train / held-out split (stratified, seeded): the same students every time for one lake."""
    from sklearn.model_selection import train_test_split

    X = frame[FEATURES].to_numpy(dtype=np.float64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=config.test_share,
                                                        random_state=config.seed, stratify=y)
    return Split(X_train, X_test, y_train, y_test)


def model_card(version: int | None, release: str, snapshot: str, spent, split: Split, *, auc_dp: float,
               auc_lightgbm: float, positive_rate: float, audits: list[dict]) -> ModelCard:
    metrics = {"test AUC (DP model)": auc_dp, "test AUC (non-private LightGBM)": auc_lightgbm,
               "AUC gap": auc_lightgbm - auc_dp, "positive rate": positive_rate,
               "training students": len(split.X_train), "held-out students": len(split.X_test)}
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
                "Probabilities are not yet calibrated; rank by them, do not read them as frequencies.",
                "Synthetic or real, the data's own biases (which schools test well) pass into the model.",
                "The privacy guarantee covers the model; the held-out metrics and audits are internal."],
    )
