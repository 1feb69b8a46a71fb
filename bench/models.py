"""The models against their non-private references, on the synthetic city and on real data.

    .venv/bin/python bench/models.py                      # synthetic city at 100k students + real data
    .venv/bin/python bench/models.py --students 20000 --skip-real

Each line prints the DP model's metric, the non-private reference's, their gap and both training
times, measured in the same run:
- growth: the DP quantile network (ε = 1 per student) against the exact SGP reference (median and
  p90 |DP − exact| growth percentile, Spearman); and the exact SGP's solver (HiGHS with
  Portnoy-Koenker preprocessing) against statsmodels `QuantReg` fitting the same 99 quantiles on the
  same students (the method the R SGP package uses), with the largest difference in the fitted
  quantiles ("equal results");
- fitness risk: DP classifier (ε = 1) against LightGBM, held-out AUC;
- academic risk: the DP early-warning model (`models.academic_risk`, ε = 1, trained from Feast's
  `academic_risk_v1` through training/academic_risk.py's `training_examples`) against LightGBM,
  held-out AUC;
- teacher training: the DP recommender (ε = 1 per teacher) against popularity and LightGBM, NDCG@10
  and recall@10 on held-out teachers against the synthetic city's true training effects;
- real data (bench/real_data.py): UCI Student Performance, OULAD, Tennessee STAR, with the DP growth
  model at ε = 1 beside the exact SGP.

Every section prints the machine's load averages (1, 5, 15 min) beside its times: the cores are shared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow packages.
sys.path[0] = str(Path(__file__).resolve().parents[1])

EPSILON = 1.0


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def line(model: str, metric: str, dp: float, reference: float, reference_name: str, dp_s: float, ref_s: float,
         higher_is_better: bool = True) -> None:
    gap = (reference - dp) if higher_is_better else (dp - reference)
    print(f"  {model:<17}{metric:<24} DP {dp:8.3f}   {reference_name} {reference:8.3f}   gap {gap:+.3f}   "
          f"time DP {dp_s:6.1f} s / {ref_s:6.1f} s ({dp_s / max(ref_s, 1e-9):.2f}x)", flush=True)


def build_city(students: int, root: Path):
    """synth → ingest → indicators → Feast (offline), as the engine does; the raw export is kept
    (in a temporary folder) only for the teacher-training ground truth."""
    from core.config import Settings
    from features.feature_repo import feature_store, indicator_views
    from features.indicators import build_indicators
    from portrait.pipeline import run_ingest, run_synth

    settings = Settings(home=root / "home")
    built = root / f"built-{students}"
    with contextlib.redirect_stdout(io.StringIO()):
        if not built.exists():  # a --workdir kept from an earlier run with as many students is reused
            run_synth(root / "export", students=students, seed=5)
            run_ingest(root / "export", settings)
            build_indicators(settings.lake_dir, settings.indicators_dir, workers=2)
        store = feature_store(settings)
        store.apply(indicator_views(settings.indicators_dir))
    built.touch()
    return settings, store


def bench_growth(store, *, statsmodels_students: int) -> None:
    import torch
    from sklearn.model_selection import train_test_split

    from models.growth import StudentGrowthPercentiles, fit_quantiles_highs, fit_quantiles_statsmodels
    from models.growth_dp import DPGrowthQuantiles, growth_agreement
    from training.growth import growth_examples, prior_columns

    torch.set_num_threads(2)
    frame = growth_examples(store)
    columns = prior_columns(frame)
    train, test = train_test_split(frame, test_size=0.25, random_state=0)
    X, y = train[columns].to_numpy(float), train["current"].to_numpy(float)
    X_test, y_test = test[columns].to_numpy(float), test["current"].to_numpy(float)
    dp, dp_s = timed(DPGrowthQuantiles(epsilon=EPSILON, delta=min(1e-5, 1 / len(X)), max_priors=len(columns)).fit,
                     X, y)
    exact, exact_s = timed(StudentGrowthPercentiles().fit, X, y)
    agreement = growth_agreement(dp.growth_percentile(X_test, y_test), exact.growth_percentile(X_test, y_test))
    print(f"  growth: {len(X):,} training students (one subject each), {len(X_test):,} held out; "
          f"ε = {dp.privacy_.epsilon:.3f}")
    line("growth", "median |DP − exact|", agreement["median_abs_diff"], 0.0, "exact", dp_s, exact_s, False)
    line("growth", "p90 |DP − exact|", agreement["p90_abs_diff"], 0.0, "exact", dp_s, exact_s, False)
    line("growth", "Spearman with exact", agreement["spearman"], 1.0, "exact", dp_s, exact_s)
    print(f"  {'':<17}target: median |DP − exact| ≤ 5: {'met' if agreement['median_abs_diff'] <= 5 else 'MISSED'}")

    # The SGP reference's solver against statsmodels on the same design (highest order, 99 τ).
    sample = np.random.default_rng(0).choice(len(X), min(statsmodels_students, len(X)), replace=False)
    full = ~np.isnan(X[sample]).any(axis=1)
    Xs, ys = X[sample][full], y[sample][full]
    model = StudentGrowthPercentiles().fit(Xs, ys)
    design = model._design(Xs, len(columns))
    taus = np.arange(1, 100) / 100
    highs, highs_s = timed(fit_quantiles_highs, design, ys, taus, preprocess_above=model.preprocess_above)
    statsmodels, statsmodels_s = timed(fit_quantiles_statsmodels, design, ys, taus)
    fitted_gap = np.abs(design @ highs - design @ statsmodels).max()
    loss = [_pinball(design @ coef, ys, taus) for coef in (highs, statsmodels)]
    print(f"  SGP solver, {len(ys):,} students × 99 quantiles × {design.shape[1]} basis columns: HiGHS "
          f"{highs_s:.1f} s, statsmodels QuantReg {statsmodels_s:.1f} s → {statsmodels_s / highs_s:.1f}x faster "
          f"(target ≥ 10x); pinball loss {loss[0]:.4f} vs {loss[1]:.4f} (HiGHS is the exact optimum), largest "
          f"fitted-quantile difference {fitted_gap:.3f} points", flush=True)


def _pinball(predicted: np.ndarray, y: np.ndarray, taus: np.ndarray) -> float:
    residual = y[:, None] - predicted
    return float(np.mean(np.maximum(taus * residual, (taus - 1) * residual)))


def bench_fitness_risk(store) -> None:
    from sklearn.metrics import roc_auc_score

    from features.feature_repo import FITNESS_RISK_BOUNDS
    from models.risk_classifier import DPRiskClassifier
    from training.fitness_risk import FEATURES, FitnessRiskConfig, lightgbm_twin, split_examples, training_examples

    frame, y = training_examples(store)
    split = split_examples(frame, y, FitnessRiskConfig())
    bounds = [FITNESS_RISK_BOUNDS[f"student_fitness:{name}"] for name in FEATURES]
    dp, dp_s = timed(DPRiskClassifier(feature_bounds=bounds, epsilon=EPSILON, delta=min(1e-5, 1 / len(split.X_train)),
                                      epochs=30).fit, split.X_train, split.y_train)
    twin, twin_s = timed(lightgbm_twin(0).set_params(n_jobs=2).fit, split.X_train, split.y_train)
    auc_dp = roc_auc_score(split.y_test, dp.predict_proba(split.X_test)[:, 1])
    auc_twin = roc_auc_score(split.y_test, twin.predict_proba(split.X_test)[:, 1])
    print(f"  fitness risk: {len(split.X_train):,} training students; ε = {dp.privacy_.epsilon:.3f}")
    line("fitness_risk", "held-out AUC", auc_dp, auc_twin, "LightGBM", dp_s, twin_s)
    print(f"  {'':<17}target: within 0.02 of non-private: {'met' if auc_twin - auc_dp <= 0.02 else 'MISSED'}")


def bench_academic_risk(store) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from models.academic_risk import AcademicRiskModel
    from training.academic_risk import BOUNDS, FEATURES, NEUTRAL, AcademicRiskConfig, training_examples
    from training.fitness_risk import lightgbm_twin

    config = AcademicRiskConfig(epsilon=EPSILON)
    frame, y = training_examples(store)
    X = frame[FEATURES].to_numpy(dtype=np.float64)
    # The split training/academic_risk.py makes.
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=config.test_share, random_state=config.seed,
                                                        stratify=y)
    delta = min(config.max_delta, 1 / len(X_train))
    dp, dp_s = timed(AcademicRiskModel(feature_names=FEATURES, feature_bounds=BOUNDS, reference_values=NEUTRAL,
                                       epsilon=config.epsilon, delta=delta, epochs=config.epochs,
                                       random_state=config.seed).fit, X_train, y_train)
    twin, twin_s = timed(lightgbm_twin(config.seed).set_params(n_jobs=2).fit, X_train, y_train)
    auc_dp = roc_auc_score(y_test, dp.predict_proba(X_test)[:, 1])
    auc_twin = roc_auc_score(y_test, twin.predict_proba(X_test)[:, 1])
    print(f"  academic risk: {len(X_train):,} training students, {len(X_test):,} held out, {y.mean():.1%} at risk; "
          f"ε = {dp.privacy_.epsilon:.3f}, δ = {delta:.1e}")
    line("academic_risk", "held-out AUC", auc_dp, auc_twin, "LightGBM", dp_s, twin_s)
    print(f"  {'':<17}target: within 0.02 of non-private: {'met' if auc_twin - auc_dp <= 0.02 else 'MISSED'}")


def bench_teacher_training(export: Path) -> None:
    from features.synth import read_city, read_ground_truth
    from models.teacher_training import (DPTeacherTrainingRecommender, LightGBMRecommender, PopularityRecommender,
                                         evaluate, split_teachers, teacher_profiles)

    tables, truth = read_city(export), read_ground_truth(export)
    train, test = split_teachers(tables, test_share=0.2, seed=0)
    held_out = teacher_profiles(test)
    results = {}
    for name, recommender in (("DP (ε = 1)", DPTeacherTrainingRecommender(epsilon=EPSILON)),
                              ("popularity", PopularityRecommender()), ("LightGBM", LightGBMRecommender())):
        fitted, seconds = timed(recommender.fit, train)
        results[name] = (evaluate(fitted, held_out, truth), seconds)
    dp, dp_s = results["DP (ε = 1)"]
    print(f"  teacher training: {dp['teachers']:,} held-out teachers")
    for reference in ("LightGBM", "popularity"):
        ref, ref_s = results[reference]
        line("teacher_training", "NDCG@10", dp["ndcg@10"], ref["ndcg@10"], reference, dp_s, ref_s)
        line("teacher_training", "recall@10", dp["recall@10"], ref["recall@10"], reference, dp_s, ref_s)


def bench_real() -> None:
    try:
        import bench.real_data as real
    except ImportError as error:  # pragma: no cover - the module ships with this file
        print(f"  real data skipped: {error}")
        return
    real.main(["--dp-growth", str(EPSILON)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--statsmodels-students", type=int, default=10_000)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--only", action="append", choices=("growth", "fitness_risk", "academic_risk",
                                                            "teacher_training"),
                        help="run only this synthetic-city section (repeatable); default: all")
    parser.add_argument("--workdir", type=Path, help="build the city here and keep it (reused by the next run with "
                                                      "as many students) instead of a temporary folder")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import warnings

    # Not actionable here: ibis's own deprecated DuckDB call, and Opacus's PRV accountant sizing its
    # domain with RDP (the ε read back is still an upper bound).
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
    print(f"machine: {os.cpu_count()} cores")
    with contextlib.ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            tmp = str(args.workdir)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-models-"))
        (settings, store), build_s = timed(build_city, args.students, Path(tmp))
        print(f"synthetic city: {args.students:,} students ({build_s:.0f} s to build; {load()})\n")
        sections = {"growth": ("Growth percentiles", lambda: bench_growth(
                        store, statsmodels_students=args.statsmodels_students)),
                    "fitness_risk": ("Fitness risk", lambda: bench_fitness_risk(store)),
                    "academic_risk": ("Academic risk", lambda: bench_academic_risk(store)),
                    "teacher_training": ("Teacher training", lambda: bench_teacher_training(Path(tmp) / "export"))}
        for number, name in enumerate(args.only or sections, start=1):
            title, run = sections[name]
            print(f"{number}. {title} ({load()})", flush=True)
            run()
            print()
    if not args.skip_real:
        print(f"Real data ({load()})", flush=True)
        bench_real()
        print(f"({load()})")


if __name__ == "__main__":
    main()
