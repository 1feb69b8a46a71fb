"""Growth (纵向): Student Growth Percentiles, DP model and exact reference, trained on Ray from Feast.

The score scale is `pct` of the `student_subject_term` view: each subject result as a percentile
rank (0-100) within its grade, term and subject city-wide. Pooling every grade and subject into one
model is sound on that scale (each cohort's `pct` is uniform), where raw shares of full mark are
not (exams differ in difficulty), and its bounds (0, 100) are fixed by construction, not learnt.

Examples. The release's latest term is the current one; its three terms before are the priors,
each read at exactly its term from the view's offline source. Unit of privacy: one student, so one example
per student: the subject is drawn per student by a keyed hash of their pseudonym, fixed and
independent of the scores. The exact SGP reference (`models.growth`, non-private, internal only)
fits the same training students; agreement is measured on held-out students.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import ray

from core.config import Settings
from training.audits import audit_metrics, audit_row
from training.budget import current_budget
from training.model_card import ModelCard
from training.registry import Candidate, dp_params, register
from training.utility_curve import utility_figure, utility_sweep

MODEL_NAME = "growth"
VIEW = "student_subject_term"
SCORE = "pct"
PRIORS = 3


@dataclass(frozen=True)
class GrowthConfig:
    epsilon: float = 1.0
    max_delta: float = 1e-5
    epochs: int = 20
    test_share: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class GrowthResult:
    run_id: str
    model_version: int
    n_train: int
    n_test: int
    epsilon: float
    delta: float
    median_abs_diff: float
    p90_abs_diff: float
    spearman: float
    seconds_dp: float
    seconds_exact: float

    def summary(self) -> str:
        return (f"median |DP − exact| growth percentile {self.median_abs_diff:g} (p90 {self.p90_abs_diff:g}, "
                f"Spearman {self.spearman:.3f}) at ε={self.epsilon:.2f}; {self.n_train} train / {self.n_test} test")


def term_ends(store) -> list[pd.Timestamp]:
    """The terms of the view's data, as their end timestamps, oldest first."""
    source = store.get_feature_view(VIEW).batch_source.path
    return sorted(pd.read_parquet(source, columns=["event_timestamp"])["event_timestamp"].unique())


def growth_examples(store, priors: int = PRIORS) -> pd.DataFrame:
    """One row per student graded in the latest term: one subject (fixed per student), the current
    `pct` and the `priors` terms before it (NaN where not graded).

    Values are read term by term from the view's offline source, each at exactly its term: Feast's
    point-in-time join would fill a term without a grade with the term before (the view's TTL spans
    a term and a bit), which would fake a prior.
    """
    ends = term_ends(store)
    if len(ends) < 2:
        raise ValueError(f"growth needs at least two terms in {VIEW}; found {len(ends)}")
    terms = ends[-priors - 1:]
    source = store.get_feature_view(VIEW).batch_source.path
    rows = pd.read_parquet(source, columns=["student_key", "subject", "event_timestamp", SCORE],
                           filters=[("event_timestamp", "in", terms)])
    current = rows[rows["event_timestamp"] == terms[-1]]
    chosen = current["student_key"].map(_subject_of(current))
    current = current[current["subject"] == chosen]
    wide = rows.merge(current[["student_key", "subject"]], on=["student_key", "subject"]).pivot_table(
        index=["student_key", "subject"], columns="event_timestamp", values=SCORE, aggfunc="first", dropna=False)
    wide = wide.reindex(columns=terms)
    wide.columns = [f"prior_{len(terms) - 1 - i}" for i in range(len(terms) - 1)] + ["current"]
    wide = wide.dropna(subset=["current", "prior_1"]).reset_index()
    return wide.sort_values("student_key").reset_index(drop=True)


def prior_columns(frame: pd.DataFrame) -> list[str]:
    """Oldest first, as the SGP models expect."""
    return sorted((c for c in frame.columns if c.startswith("prior_")), key=lambda c: -int(c.split("_")[1]))


def _subject_of(current: pd.DataFrame):
    """student → the one subject they contribute: a hash of the pseudonym picks among their subjects."""
    subjects = current.groupby("student_key")["subject"].agg(sorted)

    def pick(key: str) -> str:
        options = subjects[key]
        return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]

    return {key: pick(key) for key in subjects.index}


@ray.remote(num_cpus=1)
def fit_dp_growth(X: np.ndarray, y: np.ndarray, params: dict):
    import torch

    from models.growth_dp import DPGrowthQuantiles

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = DPGrowthQuantiles(**params).fit(X, y)
    return model, time.perf_counter() - started


@ray.remote(num_cpus=1)
def fit_exact_growth(X: np.ndarray, y: np.ndarray):
    from models.growth import StudentGrowthPercentiles

    started = time.perf_counter()
    model = StudentGrowthPercentiles().fit(X, y)
    return model, time.perf_counter() - started


def train_growth(store, settings: Settings, config: GrowthConfig | None = None) -> GrowthResult:
    """Train, compare, log and register the DP growth model. Needs a running Ray session."""
    from sklearn.model_selection import train_test_split

    from models.growth_dp import growth_agreement

    config = config or GrowthConfig()
    budget = current_budget(settings)
    frame = growth_examples(store)
    if len(frame) < 200:
        raise ValueError(f"growth needs at least 200 students graded in the latest term and the one before; "
                         f"found {len(frame)}")
    columns = prior_columns(frame)
    train, test = train_test_split(frame, test_size=config.test_share, random_state=config.seed)
    X_train, y_train = train[columns].to_numpy(float), train["current"].to_numpy(float)
    X_test, y_test = test[columns].to_numpy(float), test["current"].to_numpy(float)
    delta = min(config.max_delta, 1.0 / len(X_train))
    params = {"score_bounds": (0.0, 100.0), "max_priors": len(columns), "epsilon": config.epsilon,
              "delta": delta, "epochs": config.epochs, "random_state": config.seed}

    receipt = budget.spend(what=f"{MODEL_NAME} training", epsilon=config.epsilon, delta=delta,
                           mechanism="DP-SGD (fused clipping, Poisson sampling)", accountant="prv")
    (dp_model, seconds_dp), (exact, seconds_exact) = ray.get([
        fit_dp_growth.remote(X_train, y_train, params), fit_exact_growth.remote(X_train, y_train)])
    spent = dp_model.privacy_
    budget.ledger.settle(receipt.ids[0], epsilon=spent.epsilon, delta=spent.delta)
    agreement = growth_agreement(dp_model.growth_percentile(X_test, y_test), exact.growth_percentile(X_test, y_test))

    audits = [audit_row(target, _audit(model, X_train, y_train, X_test, y_test, delta))
              for target, model in (("dp", dp_model), ("nonprivate", exact))]
    data = ray.put((X_train, y_train, X_test, y_test, exact.growth_percentile(X_test, y_test)))
    curve = utility_sweep(partial(_held_out_spearman, data=data, params=params))
    card = _card(budget, spent, agreement, len(X_train), len(X_test), seconds_dp, seconds_exact, audits)
    candidate = Candidate(
        name=MODEL_NAME, model=dp_model, card=card, primary_metric="spearman", data_release=budget.release,
        params={**{f"config.{k}": v for k, v in asdict(config).items()},
                "feature_view": VIEW, "score": SCORE, "priors": ",".join(columns),
                "data_release": budget.release, "lake_snapshot": budget.snapshot,
                **dp_params(spent, config.epsilon, unit="one student (one subject per student)"),
                "n_train": len(X_train), "n_test": len(X_test)},
        metrics={"dp.epsilon": spent.epsilon, **agreement, "fit_seconds_dp": seconds_dp,
                 "fit_seconds_exact": seconds_exact,
                 **{f"sweep.spearman_at_eps_{e:g}": value for e, value in curve.items()},
                 **audit_metrics(audits)},
        tags={"epsilon": spent.epsilon, "delta": spent.delta, "accountant": spent.accountant,
              "unit_of_privacy": "one student", "median_abs_diff": agreement["median_abs_diff"]},
        dicts={"utility_vs_epsilon.json": {str(e): v for e, v in curve.items()}, "audits.json": audits},
        figures={"utility_vs_epsilon.png": utility_figure(
            curve, {"exact SGP (itself)": 1.0}, metric="Spearman with the exact SGP",
            title=f"{MODEL_NAME}: agreement against ε (n train = {len(X_train):,})")},
    )
    registered = register(settings, candidate, run_name=f"{MODEL_NAME}-eps{config.epsilon:g}")
    return GrowthResult(run_id=registered.run_id, model_version=registered.version, n_train=len(X_train),
                        n_test=len(X_test), epsilon=spent.epsilon, delta=spent.delta,
                        median_abs_diff=agreement["median_abs_diff"], p90_abs_diff=agreement["p90_abs_diff"],
                        spearman=agreement["spearman"], seconds_dp=seconds_dp, seconds_exact=seconds_exact)


def _held_out_spearman(epsilon: float, *, data, params: dict) -> float:
    """One point of the sweep: the DP model at `epsilon`, its Spearman with the exact percentiles."""
    import torch

    from models.growth_dp import DPGrowthQuantiles, growth_agreement

    torch.set_num_threads(1)
    X_train, y_train, X_test, y_test, exact = ray.get(data) if isinstance(data, ray.ObjectRef) else data
    model = DPGrowthQuantiles(**{**params, "epsilon": epsilon}).fit(X_train, y_train)
    return growth_agreement(model.growth_percentile(X_test, y_test), exact)["spearman"]


def mean_pinball_loss(model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each student's pinball loss averaged over the model's 99 quantiles (score points)."""
    from models.growth import quantile_levels

    quantiles = model.predict_quantiles(X)
    taus = quantile_levels(quantiles.shape[1])[None, :]
    residual = np.clip(y, 0.0, 100.0)[:, None] - quantiles
    return np.maximum(taus * residual, (taus - 1.0) * residual).mean(axis=1)


def _audit(model, X_train, y_train, X_test, y_test, delta: float):
    """Loss-threshold attack on a quantile model: minus each student's pinball loss, training
    students against held-out ones."""
    from privacy.audit import score_threshold_audit

    return score_threshold_audit(-mean_pinball_loss(model, X_train, y_train),
                                 -mean_pinball_loss(model, X_test, y_test), delta=delta)


def _card(budget, spent, agreement: dict, n_train: int, n_test: int, seconds_dp: float, seconds_exact: float,
          audits: list[dict]) -> ModelCard:
    return ModelCard(
        name=MODEL_NAME, version=None,
        purpose="Each student's growth percentile (1-99) per subject and term: where this term's result falls "
                "among students city-wide with the same results in the terms before. Growth, not attainment: "
                "a low scorer can grow at the 90th percentile.",
        users="Class teachers (their students' growth lines); aggregated by class only with at least 10 students.",
        label="This term's percentile rank (pct) in grade × subject, given up to three prior terms' pct.",
        features=f"Feast view `{VIEW}` field `{SCORE}`, read point-in-time at each term's end; bounds 0-100 by "
                 "construction.",
        data_release=budget.release, lake_snapshot=budget.snapshot,
        unit_of_privacy="one student (one subject per student, drawn by a hash of the pseudonym)",
        epsilon=spent.epsilon, delta=spent.delta, accountant=f"{spent.accountant.upper()} (Opacus)",
        mechanism=f"DP-SGD (fused per-example clipping) with Poisson sampling (rate {spent.sample_rate:.4f}, "
                  f"{spent.steps} steps), clipping at {spent.max_grad_norm:g}, noise multiplier "
                  f"{spent.noise_multiplier:.3f}; a monotone 99-quantile network, pinball loss",
        metrics={"median |DP − exact| growth percentile": agreement["median_abs_diff"],
                 "90th percentile |DP − exact|": agreement["p90_abs_diff"],
                 "Spearman (DP, exact)": agreement["spearman"], "training students": n_train,
                 "held-out students": n_test, "fit seconds (DP)": seconds_dp, "fit seconds (exact SGP)": seconds_exact},
        audits=audits,
        limits=["The exact SGP is the non-private reference: internal, never served; so are the audits (a "
                "loss-threshold attack on each student's pinball loss; the one-run canary audit, built for "
                "classifiers, is not run for this model).",
                "Pooled over grades and subjects on the percentile-rank scale; a subject whose cohort is small "
                "gets the city-wide curve.",
                "A student needs the previous term's result; a first-term student has no growth percentile."],
    )
