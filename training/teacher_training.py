"""Teacher training (因材施培): which course lifts which teacher, trained under DP on Ray, in MLflow.

Data. The recommender learns from whole histories (every assessment interval of a teacher with
the courses completed inside it), not from point-in-time feature rows, so it reads the four
contract tables it is defined on (teachers, teacher_assessments, training_courses,
teacher_trainings) from the lake, where every teacher id is already a pseudonym. The Feast views
`teacher_digital_literacy` and `teacher_training` are built from the same tables for serving.

Unit of privacy: one teacher (all their assessments and enrolments form one DP-SGD example). The
spend goes to the teachers' release of the school year ("2025/teachers", `training.budget`), never
to the students' budget: the two guarantees cover different people.

Evaluation needs no ground truth, so it runs on real data too: teachers are split 80/20; on the
held-out teachers' intervals in which exactly one course was completed, the Spearman correlation
between the gain a model predicts (on the course's targeted dimensions, for the teacher as they
were) and the change observed. The DP model is compared with two non-private references trained
on the same teachers: a LightGBM gain model and each course's mean observed gain. Against a
synthetic city's true effects (NDCG@10, recall@10) it is measured in `bench/models.py`.
Audit: the loss-threshold attack with each teacher's squared error on those intervals as the
score (training teachers against held-out ones), on the DP model and the LightGBM reference.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import ray

from core.config import Settings
from features.lake import read_lake
from training.audits import audit_metrics, audit_row
from training.budget import TEACHERS, current_budget
from training.model_card import ModelCard
from training.registry import Candidate, dp_params, register
from training.utility_curve import utility_figure, utility_sweep

MODEL_NAME = "teacher_training"
SOURCE = "lake: teachers, teacher_assessments, training_courses, teacher_trainings"
TABLES = ("teachers", "teacher_assessments", "training_courses", "teacher_trainings")
MIN_HELD_OUT_INTERVALS = 20  # fewer single-course intervals than this: no correlation worth reporting


@dataclass(frozen=True)
class TeacherTrainingConfig:
    epsilon: float = 1.0
    max_delta: float = 1e-5
    epochs: int = 20
    test_share: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class TeacherTrainingResult:
    run_id: str
    model_version: int
    n_train: int  # teachers with an observed change (the DP examples)
    n_test: int
    held_out_intervals: int
    spearman_dp: float
    spearman_lightgbm: float
    spearman_observed_gain: float
    epsilon: float
    delta: float

    def summary(self) -> str:
        return (f"held-out gain Spearman {self.spearman_dp:.3f} (DP, ε={self.epsilon:.2f} per teacher) vs "
                f"{self.spearman_lightgbm:.3f} (non-private LightGBM), {self.spearman_observed_gain:.3f} (mean "
                f"observed gain); {self.n_train} train / {self.n_test} test teachers")


def contract_tables(settings: Settings) -> dict[str, pd.DataFrame]:
    """The recommender's four contract tables, as the lake holds them (pseudonymous teacher ids)."""
    return {name: read_lake(settings.lake_dir, name) for name in TABLES}


@ray.remote(num_cpus=1)
def fit_recommender(recommender, tables: dict):
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    return recommender.fit(tables), time.perf_counter() - started


def train_teacher_training(store, settings: Settings, config: TeacherTrainingConfig | None = None
                           ) -> TeacherTrainingResult:
    """Train, evaluate, audit, log and register the recommender. Needs a running Ray session.
    `store` is unused (the model reads histories from the lake) and kept for the trainers' interface."""
    from models.teacher_training import (DPTeacherTrainingRecommender, LightGBMRecommender, PopularityRecommender,
                                         CourseCatalog, split_teachers, teacher_histories)

    del store
    config = config or TeacherTrainingConfig()
    budget = current_budget(settings, TEACHERS)
    tables = contract_tables(settings)
    train, test = split_teachers(tables, test_share=config.test_share, seed=config.seed)
    catalog = CourseCatalog.from_table(tables["training_courses"])
    n_train = len(teacher_histories(train, catalog))  # DP examples: teachers with two assessments
    if n_train < 50:
        raise ValueError(f"teacher training needs at least 50 teachers with two digital-literacy assessments; "
                         f"found {n_train}")
    delta = min(config.max_delta, 1.0 / n_train)
    params = {"epsilon": config.epsilon, "delta": delta, "epochs": config.epochs, "random_state": config.seed}

    receipt = budget.spend(what=f"{MODEL_NAME} training", epsilon=config.epsilon, delta=delta,
                           mechanism="DP-SGD (per-teacher clipping, Poisson sampling)", accountant="prv")
    shared = ray.put(train)
    (dp_model, seconds_dp), (lightgbm, seconds_lgbm) = ray.get([
        fit_recommender.remote(DPTeacherTrainingRecommender(**params), shared),
        fit_recommender.remote(LightGBMRecommender(random_state=config.seed), shared)])
    spent = dp_model.privacy_
    budget.ledger.settle(receipt.ids[0], epsilon=spent.epsilon, delta=spent.delta)
    observed_gain = PopularityRecommender(by="observed_gain").fit(train)

    held_out = {name: _agreement(model, test) for name, model in
                (("dp", dp_model), ("lightgbm", lightgbm), ("observed_gain", observed_gain))}
    intervals = held_out["dp"]["intervals"]
    audits = [audit_row(target, result) for target, result in (("dp", _audit(dp_model, train, test, delta)),
                                                               ("nonprivate", _audit(lightgbm, train, test, delta)))
              if result]
    curve = utility_sweep(partial(_held_out_spearman, data=ray.put((train, test)), params=params))

    metrics = {
        "dp.epsilon": spent.epsilon, "gain_spearman_test": held_out["dp"]["spearman"],
        "gain_spearman_test_nonprivate_lightgbm": held_out["lightgbm"]["spearman"],
        "gain_spearman_test_observed_gain": held_out["observed_gain"]["spearman"],
        "gain_spearman_gap": held_out["lightgbm"]["spearman"] - held_out["dp"]["spearman"],
        "held_out_intervals": intervals, "fit_seconds_dp": seconds_dp, "fit_seconds_lightgbm": seconds_lgbm,
        **{f"sweep.gain_spearman_at_eps_{e:g}": value for e, value in curve.items()},
        **audit_metrics(audits),
    }
    n_test = len(set(test["teacher_assessments"]["teacher_id"]))
    card = _card(budget, spent, held_out, n_train=n_train, n_test=n_test, audits=audits)
    candidate = Candidate(
        name=MODEL_NAME, model=dp_model, card=card, primary_metric="gain_spearman_test", data_release=budget.release,
        params={**{f"config.{k}": v for k, v in asdict(config).items()}, "source": SOURCE,
                "data_release": budget.release, "lake_snapshot": budget.snapshot,
                **dp_params(spent, config.epsilon), "n_train": n_train, "n_test": n_test,
                "catalog_courses": len(catalog)},
        metrics={key: float(value) for key, value in metrics.items() if np.isfinite(value)},
        tags={"epsilon": spent.epsilon, "delta": spent.delta, "accountant": spent.accountant,
              "unit_of_privacy": spent.unit, "gain_spearman_test": held_out["dp"]["spearman"],
              "gain_spearman_nonprivate": held_out["lightgbm"]["spearman"]},
        dicts={"audits.json": audits, "held_out.json": held_out,
               "utility_vs_epsilon.json": {str(e): v for e, v in curve.items()}},
        figures={"utility_vs_epsilon.png": utility_figure(
            curve, {"LightGBM, no DP": held_out["lightgbm"]["spearman"],
                    "mean observed gain, no DP": held_out["observed_gain"]["spearman"]},
            metric="held-out gain Spearman", title=f"{MODEL_NAME}: utility against ε (n train = {n_train:,} teachers)")},
    )
    registered = register(settings, candidate, run_name=f"{MODEL_NAME}-eps{config.epsilon:g}")
    return TeacherTrainingResult(
        run_id=registered.run_id, model_version=registered.version, n_train=n_train, n_test=n_test,
        held_out_intervals=intervals, spearman_dp=held_out["dp"]["spearman"],
        spearman_lightgbm=held_out["lightgbm"]["spearman"], spearman_observed_gain=held_out["observed_gain"]["spearman"],
        epsilon=spent.epsilon, delta=spent.delta)


def _agreement(recommender, tables: dict) -> dict:
    """Held-out Spearman between predicted and observed single-course gains (nan when too few)."""
    from scipy.stats import spearmanr

    from models.teacher_training import single_course_outcomes

    outcomes = single_course_outcomes(recommender, tables)
    enough = len(outcomes) >= MIN_HELD_OUT_INTERVALS and outcomes["predicted"].nunique() > 1
    rho = float(spearmanr(outcomes["predicted"], outcomes["observed"]).statistic) if enough else float("nan")
    return {"spearman": rho, "intervals": len(outcomes)}


def _audit(recommender, train: dict, test: dict, delta: float):
    """Loss-threshold attack: minus each teacher's mean squared gain error, members against held-out."""
    from models.teacher_training import single_course_outcomes
    from privacy.audit import score_threshold_audit

    def scores(tables):
        outcomes = single_course_outcomes(recommender, tables)
        error = (outcomes["predicted"] - outcomes["observed"]) ** 2
        return -error.groupby(outcomes["teacher_id"]).mean().to_numpy()

    members, nonmembers = scores(train), scores(test)
    if not len(members) or not len(nonmembers):
        return None  # nobody to attack on one side (a tiny city): no audit, and the card shows none
    return score_threshold_audit(members, nonmembers, delta=delta)


def _held_out_spearman(epsilon: float, *, data, params: dict) -> float:
    import torch

    from models.teacher_training import DPTeacherTrainingRecommender

    torch.set_num_threads(1)
    train, test = ray.get(data) if isinstance(data, ray.ObjectRef) else data
    return _agreement(DPTeacherTrainingRecommender(**{**params, "epsilon": epsilon}).fit(train), test)["spearman"]


def _card(budget, spent, held_out: dict, *, n_train: int, n_test: int, audits: list[dict]) -> ModelCard:
    return ModelCard(
        name=MODEL_NAME, version=None,
        purpose="因材施培: for each teacher, the training courses expected to raise their weakest digital-literacy "
                "dimensions most; for each course, the teachers to invite. A suggestion for a training center to "
                "discuss with the teacher, never an evaluation of the teacher.",
        users="Teacher-training centers (their courses' invite lists; the teachers they train).",
        label="The points a course adds to each of the five digital-literacy dimensions (JY/T 0646-2022) of a "
              "teacher at their current level, learned from the change between consecutive assessments.",
        features=f"{SOURCE}. Course catalog features (public), the teacher's level per dimension and experience, "
                 f"with scales fixed in advance.",
        data_release=budget.release, lake_snapshot=budget.snapshot,
        unit_of_privacy="one teacher (all their assessments and enrolments, one example)",
        epsilon=spent.epsilon, delta=spent.delta, accountant=f"{spent.accountant.upper()} (Opacus)",
        mechanism=f"DP-SGD (per-teacher clipping, Opacus hooks) with Poisson sampling (rate {spent.sample_rate:.4f}, "
                  f"{spent.steps} steps), clipping at {spent.max_grad_norm:g}, noise multiplier "
                  f"{spent.noise_multiplier:.3f}",
        metrics={"held-out gain Spearman (DP model)": held_out["dp"]["spearman"],
                 "held-out gain Spearman (non-private LightGBM)": held_out["lightgbm"]["spearman"],
                 "held-out gain Spearman (mean observed gain, non-private)": held_out["observed_gain"]["spearman"],
                 "held-out single-course intervals": held_out["dp"]["intervals"],
                 "training teachers": n_train, "held-out teachers": n_test},
        audits=audits,
        limits=["Gains are learned from intervals between assessments; two courses completed in one interval share "
                "its change, and a course few teachers took is estimated mostly from its catalog entry.",
                "The held-out correlation is measured on single-course intervals only, against noisy assessments "
                "(it cannot reach 1 even for a perfect model).",
                "The canary audit is not run for this model (its canaries are rows of a classification table); the "
                "loss-threshold attack is.",
                "The held-out metrics, the references and the audits are internal (data officer only)."],
    )
