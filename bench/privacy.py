"""What privacy costs: DP-SGD time against its non-private twin, and utility against ε.

    .venv/bin/python bench/privacy.py                       # synthetic city at 100k students + OULAD
    .venv/bin/python bench/privacy.py --students 20000      # quicker

Two data sets, one example per person each (the unit of privacy):
- the synthetic city: fitness risk (next annual total < 60) from `fitness_risk_v1`, built through
  synth → ingest → indicators → Feast exactly as the engine does;
- OULAD (real): withdrawn-or-fail from demographics and the assessments due by day 60, one
  enrolment per student (the first), features clipped to ranges fixed in advance.

1. Overhead: the fitness-risk network (the one `DPRiskClassifier` trains) for the same epochs
   (those the engine trains), batch size and optimizer, with DP-SGD in each grad-sample mode
   ("fused": privacy/fused_clipping.py; the rest are Opacus's) against `train_sgd` (no DP), at three
   batch sizes and one or two torch threads. Ratio = DP time / non-private time, same run. The DP
   time includes the noise calibration and the accountant's read-back, printed apart as well.
2. Utility: test AUC of DPRiskClassifier at ε ∈ {0.5, 1, 2, 4, 8} (δ = min(1e-5, 1/n)) against the
   same network trained without DP and against LightGBM, on both data sets, at the engine's default
   expected batch (`default_batch_size`: n / 64 within [256, 4096]). Printed as a table and
   drawn to `bench/out/privacy_utility.png`.
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

EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
OUT = Path(__file__).resolve().parent / "out"
OULAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "oulad"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def city_examples(students: int):
    """Fitness-risk examples of a synthetic city, through the engine's own pipeline."""
    from core.config import Settings
    from features.feature_repo import FITNESS_RISK_BOUNDS, feature_store, indicator_views
    from features.indicators import build_indicators
    from portrait.pipeline import run_ingest, run_synth
    from training.fitness_risk import FEATURES, training_examples

    with tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        with contextlib.redirect_stdout(io.StringIO()):
            run_synth(Path(tmp) / "export", students=students, seed=5)
            run_ingest(Path(tmp) / "export", settings)
            build_indicators(settings.lake_dir, settings.indicators_dir)
            store = feature_store(settings)
            store.apply(indicator_views(settings.indicators_dir))
            frame, y = training_examples(store)
    bounds = [FITNESS_RISK_BOUNDS[f"student_fitness:{name}"] for name in FEATURES]
    return frame[FEATURES].to_numpy(dtype=np.float64), y, bounds


def oulad_examples(source: Path = OULAD):
    """Withdrawn-or-fail from what is known by day 60: demographics and early assessments."""
    import pandas as pd

    info = pd.read_csv(source / "studentInfo.csv")
    info = info.sort_values(["id_student", "code_presentation"]).drop_duplicates("id_student")  # one per student
    assessments = pd.read_csv(source / "assessments.csv", na_values=["?"])
    scores = pd.read_csv(source / "studentAssessment.csv", na_values=["?"])
    early = assessments[assessments["date"] <= 60]
    due = early.groupby(["code_module", "code_presentation"]).size().rename("due_by_60").reset_index()
    submitted = scores.merge(early, on="id_assessment")
    submitted = submitted[submitted["date_submitted"] <= 60]
    submitted = submitted.assign(late=(submitted["date_submitted"] > submitted["date"]).astype(float))
    enrolment = ["id_student", "code_module", "code_presentation"]
    per_student = submitted.groupby(enrolment).agg(
        submitted=("score", "size"), mean_score=("score", "mean"), min_score=("score", "min"),
        late_count=("late", "sum"), weighted=("weight", "sum")).reset_index()
    frame = (info.merge(due, on=["code_module", "code_presentation"], how="left")
             .merge(per_student, on=enrolment, how="left"))
    frame[["due_by_60", "submitted", "late_count", "weighted"]] = frame[
        ["due_by_60", "submitted", "late_count", "weighted"]].fillna(0)
    frame["missed"] = (frame["due_by_60"] - frame["submitted"]).clip(lower=0)
    imd = frame["imd_band"].str.extract(r"(\d+)")[0].astype(float)
    columns = {
        "female": (frame["gender"] == "F").astype(float),
        "age_35_plus": (frame["age_band"] != "0-35").astype(float),
        "imd_decile": imd / 10,  # 0-9; unknown → NaN → low end
        "education": frame["highest_education"].map({"No Formal quals": 0, "Lower Than A Level": 1,
                                                      "A Level or Equivalent": 2, "HE Qualification": 3,
                                                      "Post Graduate Qualification": 4}).astype(float),
        "previous_attempts": frame["num_of_prev_attempts"].astype(float),
        "studied_credits": frame["studied_credits"].astype(float),
        "due_by_60": frame["due_by_60"], "submitted": frame["submitted"], "missed": frame["missed"],
        "late_count": frame["late_count"], "weighted": frame["weighted"],
        "mean_score": frame["mean_score"], "min_score": frame["min_score"],
    }
    bounds = [(0, 1), (0, 1), (0, 9), (0, 4), (0, 6), (30, 360), (0, 8), (0, 8), (0, 8), (0, 8), (0, 100),
              (0, 100), (0, 100)]
    X = np.column_stack([np.asarray(v, dtype=np.float64) for v in columns.values()])
    y = frame["final_result"].isin(["Withdrawn", "Fail"]).to_numpy(dtype=int)
    return X, y, bounds


def split(X, y, seed=0):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def bare_classifier(bounds, n_features: int):
    """DPRiskClassifier's network and its fixed-bounds scaling, to time and train them bare."""
    import torch

    from models.risk_classifier import DPRiskClassifier

    model = DPRiskClassifier(feature_bounds=bounds)
    model.bounds_ = model._check_bounds(n_features)
    return (lambda: model._network(n_features)), (lambda X: torch.as_tensor(model._scale(X), dtype=torch.float32))


# ---------------------------------------------------------------------------------------------
# 1. Overhead
# ---------------------------------------------------------------------------------------------

def overhead(X, y, bounds, *, epochs: int, modes, batch_sizes, threads) -> list[dict]:
    import torch
    from torch import nn

    from privacy.dp_sgd import DPSGDConfig, calibrate_noise, default_batch_size, train_dp_sgd, train_sgd

    network, scale = bare_classifier(bounds, X.shape[1])
    features = scale(X)
    labels = torch.as_tensor(y, dtype=torch.float32)
    rows = []
    # Warm up torch and Opacus once, so the first timed configuration pays no import or JIT cost.
    warm = DPSGDConfig(target_epsilon=2.0, target_delta=1e-5, epochs=1, expected_batch_size=64)
    train_sgd(network(), features[:512], labels[:512], nn.BCEWithLogitsLoss(), warm)
    for mode in modes:
        train_dp_sgd(network(), features[:512], labels[:512], nn.BCEWithLogitsLoss(),
                     DPSGDConfig(target_epsilon=2.0, target_delta=1e-5, epochs=1, expected_batch_size=64,
                                 grad_sample_mode=mode))
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch_size in batch_sizes:
            base = dict(target_epsilon=2.0, target_delta=min(1e-5, 1 / len(X)), epochs=epochs,
                        expected_batch_size=batch_size, learning_rate=0.1)
            torch.manual_seed(0)
            started = time.perf_counter()
            train_sgd(network(), features, labels, nn.BCEWithLogitsLoss(), DPSGDConfig(**base))
            plain = time.perf_counter() - started
            batches = -(-len(X) // batch_size)
            started = time.perf_counter()
            calibrate_noise(target_epsilon=2.0, target_delta=base["target_delta"], sample_rate=1 / batches,
                            steps=epochs * batches)
            print(f"  threads {n_threads}  batch {batch_size:>5}  noise calibration alone "
                  f"{time.perf_counter() - started:.2f} s{'  (the default batch here)' if batch_size == default_batch_size(len(X)) else ''}",
                  flush=True)
            for mode in modes:
                torch.manual_seed(0)
                started = time.perf_counter()
                train_dp_sgd(network(), features, labels, nn.BCEWithLogitsLoss(),
                             DPSGDConfig(**base, grad_sample_mode=mode))
                private = time.perf_counter() - started
                rows.append(dict(threads=n_threads, batch_size=batch_size, mode=mode, plain_s=plain,
                                 dp_s=private, ratio=private / plain))
                print(f"  threads {n_threads}  batch {batch_size:>5}  {mode:<10} non-private {plain:6.2f} s  "
                      f"DP-SGD {private:6.2f} s  ratio {private / plain:5.2f}x", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)
    return rows


# ---------------------------------------------------------------------------------------------
# 2. Utility against ε
# ---------------------------------------------------------------------------------------------

def utility(name: str, X, y, bounds, *, epochs: int) -> dict:
    import torch
    from lightgbm import LGBMClassifier
    from sklearn.metrics import roc_auc_score
    from torch import nn

    from models.risk_classifier import DPRiskClassifier
    from privacy.dp_sgd import DPSGDConfig, default_batch_size, train_sgd

    X_train, X_test, y_train, y_test = split(X, y)
    delta = min(1e-5, 1 / len(X_train))
    batch_size = default_batch_size(len(X_train))
    result = {"name": name, "n_train": len(X_train), "batch_size": batch_size, "positive_rate": float(y.mean()),
              "dp": {}}

    network, scale = bare_classifier(bounds, X.shape[1])
    torch.manual_seed(0)
    twin = train_sgd(network(), scale(X_train),
                     torch.as_tensor(y_train, dtype=torch.float32), nn.BCEWithLogitsLoss(),
                     DPSGDConfig(target_epsilon=1, target_delta=delta, epochs=epochs, expected_batch_size=batch_size,
                                 learning_rate=0.1))
    with torch.no_grad():
        scores = twin.eval()(scale(X_test)).numpy()
    result["nonprivate_mlp"] = float(roc_auc_score(y_test, scores))
    lgbm = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, n_jobs=2, verbose=-1, random_state=0)
    result["lightgbm"] = float(roc_auc_score(y_test, lgbm.fit(X_train, y_train).predict_proba(X_test)[:, 1]))
    for epsilon in EPSILONS:
        model = DPRiskClassifier(feature_bounds=bounds, epsilon=epsilon, delta=delta,
                                 epochs=epochs).fit(X_train, y_train)
        result["dp"][epsilon] = (float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])),
                                 model.privacy_.epsilon)
    return result


def print_utility(results: list[dict]) -> None:
    print(f"\n{'data':<22}{'n train':>9}{'batch':>7}  " + "".join(f"ε={e:<6g}" for e in EPSILONS)
          + "  non-private MLP  LightGBM")
    for r in results:
        dp = "".join(f"{r['dp'][e][0]:<8.3f}" for e in EPSILONS)
        print(f"{r['name']:<22}{r['n_train']:>9,}{r['batch_size']:>7}  {dp}  {r['nonprivate_mlp']:<15.3f}  "
              f"{r['lightgbm']:.3f}")
        gaps = "  ".join(f"ε={e:g}: {r['lightgbm'] - r['dp'][e][0]:+.3f}" for e in EPSILONS)
        print(f"{'':<38}gap to LightGBM  {gaps}")


def plot_utility(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results):
        ax.plot(EPSILONS, [r["dp"][e][0] for e in EPSILONS], "o-", label="DP-SGD MLP")
        ax.axhline(r["nonprivate_mlp"], color="grey", ls="--", label="same MLP, no DP")
        ax.axhline(r["lightgbm"], color="black", ls=":", label="LightGBM, no DP")
        ax.set_xscale("log", base=2)
        ax.set_xticks(EPSILONS, [f"{e:g}" for e in EPSILONS])
        ax.set_xlabel("ε (per student; δ ≤ 1e-5)")
        ax.set_ylabel("test AUC")
        ax.set_title(f"{r['name']} (n train = {r['n_train']:,})")
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--overhead-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--modes", nargs="+", default=["fused", "ew", "ghost", "hooks", "functorch"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                        help="default: 256, the engine's default for these examples, 4096")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--parts", nargs="+", choices=["overhead", "utility"], default=["overhead", "utility"])
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")

    started = time.perf_counter()
    city = city_examples(args.students)
    print(f"synthetic city: {args.students:,} students → {len(city[0]):,} fitness-risk examples, "
          f"positive rate {city[1].mean():.3f} ({time.perf_counter() - started:.0f} s to build)")
    oulad = oulad_examples() if OULAD.exists() else None
    if oulad is None:
        print(f"OULAD not found at {OULAD}: its rows are skipped")

    overhead_epochs = args.overhead_epochs or args.epochs
    if "overhead" in args.parts:
        overhead_table(city, args, overhead_epochs)
    if "utility" in args.parts:
        utility_table(city, oulad, args)


def overhead_table(city, args, overhead_epochs: int) -> None:
    from privacy.dp_sgd import default_batch_size

    if args.batch_sizes is None:
        args.batch_sizes = sorted({256, default_batch_size(len(city[0])), 4096})
    print(f"\n1. DP-SGD against its non-private twin ({overhead_epochs} epochs, "
          f"{len(city[0]):,} examples of the synthetic city)")
    rows = overhead(*city, epochs=overhead_epochs, modes=args.modes, batch_sizes=args.batch_sizes,
                    threads=args.threads)
    for batch_size in args.batch_sizes:
        best = min((r for r in rows if r["batch_size"] == batch_size), key=lambda r: r["ratio"])
        print(f"  batch {batch_size:>5}: fastest {best['mode']}, {best['threads']} thread(s): "
              f"{best['ratio']:.2f}x the non-private time (target ≤ 2x)")


def utility_table(city, oulad, args) -> None:
    print(f"\n2. Utility against ε ({args.epochs} epochs)")
    results = [utility(f"synthetic city {args.students // 1000}k", *city, epochs=args.epochs)]
    if oulad is not None:
        results.append(utility("OULAD", *oulad, epochs=args.epochs))
    print_utility(results)
    plot = OUT / "privacy_utility.png"
    plot_utility(results, plot)
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
