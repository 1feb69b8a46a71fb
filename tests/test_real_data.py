"""bench/real_data.py: the real-data loaders, a quick CV run and the growth-percentile hook.

The data are read in place from shared/data/real/ (never copied); each test skips with a clear
message where its dataset is absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench import real_data
from bench.real_data import (
    UCI_ABC_SCHEDULE,
    UNIFORM_DECILES,
    compare_models,
    decile_shares,
    dp_models,
    first_enrolments,
    growth_data,
    level_table,
    oulad_day60_examples,
    reference_models,
    star_wide,
    teacher_medians,
    uci_abc,
    uci_examples,
    uci_growth,
)


def need(folder) -> None:
    if not folder.is_dir():
        pytest.skip(f"real dataset not found at {folder} (shared/data/real/ is read in place, never copied)")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared with timing benchmarks
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def oulad():
    need(real_data.OULAD)
    return oulad_day60_examples()


# --- UCI -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("subject, rows, fails", [("math", 395, 130), ("portuguese", 649, 100)])
def test_uci_examples_have_the_papers_students_and_fail_rate(subject, rows, fails):
    need(real_data.UCI)
    setups = {setup: uci_examples(subject, setup) for setup in "ABC"}
    for examples in setups.values():
        assert examples.X.shape[0] == rows and int(examples.y.sum()) == fails  # fail = G3 < 10
        assert len(examples.feature_names) == examples.X.shape[1] == len(examples.bounds) == len(examples.reference)
        assert len(set(examples.feature_names)) == len(examples.feature_names)
        low, high = np.array(examples.bounds).T
        assert np.all((examples.X >= low) & (examples.X <= high))  # codebook ranges hold every row
    # A adds G2 to B, B adds G1 to C; C has no earlier grade.
    assert setups["A"].feature_names[-2:] == ["first-period grade G1", "second-period grade G2"]
    assert setups["B"].X.shape[1] == setups["C"].X.shape[1] + 1 == setups["A"].X.shape[1] - 1
    assert not any("grade G" in name for name in setups["C"].feature_names)


def test_uci_abc_keeps_attendance_failures_and_allowed_grades():
    need(real_data.UCI)
    a = uci_abc(uci_examples("math", "A"), "A")
    assert a.feature_names == ["absences", "past class failures", "first-period grade G1", "second-period grade G2"]
    assert a.reference == [0, 0, 10, 10] and a.X.shape == (395, 4)
    assert uci_abc(uci_examples("math", "C"), "C").feature_names == ["absences", "past class failures"]


def test_uci_rejects_unknown_setup_or_subject():
    need(real_data.UCI)
    with pytest.raises(ValueError, match="setup must be one of"):
        uci_examples("math", "D")
    with pytest.raises(ValueError, match="subject must be one of"):
        uci_examples("physics", "A")


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")  # Opacus's PRV domain sizing
def test_two_fold_run_of_one_setup_gives_sane_accuracy():
    """Portuguese with G1 and G2: the paper's best is 93.0 %; always 'pass' scores 84.6 %."""
    need(real_data.UCI)
    examples = uci_examples("portuguese", "A")
    abc = uci_abc(examples, "A")
    models = {"random forest": reference_models(examples, UCI_ABC_SCHEDULE)["random forest"],
              **dp_models(abc, UCI_ABC_SCHEDULE, (1.0,), label="DP ABC")}
    result = compare_models(models, folds=2, metric="accuracy")
    assert result["n"] == 649 and result["folds"] == 2
    assert result["models"]["random forest"]["mean"] > 0.88
    dp = result["models"]["DP ABC ε=1"]
    assert dp["mean"] > 0.75  # DP noise at ε = 1 on 324 students: sane, not necessarily good
    assert dp["probability"].shape == (649,) and 0 <= dp["calibration"]["ece"] <= 1
    table = level_table(examples.y, dp["probability"])
    assert table["students"].sum() == 649 and set(table.index) <= {"red", "amber", "green"}


def test_a_comparison_refuses_models_that_see_different_students():
    need(real_data.UCI)
    math, portuguese = uci_examples("math", "C"), uci_examples("portuguese", "C")
    models = {"a": reference_models(math, UCI_ABC_SCHEDULE)["LightGBM"],
              "b": reference_models(portuguese, UCI_ABC_SCHEDULE)["LightGBM"]}
    with pytest.raises(ValueError, match="same students"):
        compare_models(models, folds=2, metric="accuracy")


# --- OULAD ---------------------------------------------------------------------------------------

def test_oulad_has_one_row_per_student_with_the_readme_label(oulad):
    info = pd.read_csv(real_data.OULAD / "studentInfo.csv")
    assert oulad.X.shape == (info["id_student"].nunique(), len(oulad.feature_names)) == (28_785, 22)
    assert 0.50 < oulad.y.mean() < 0.53  # withdrawn or fail
    first = first_enrolments()
    assert first["id_student"].is_unique
    # The first enrolment is the earliest presentation of the student.
    earliest = info.groupby("id_student")["code_presentation"].min()
    assert (first.set_index("id_student")["code_presentation"] == earliest.loc[first["id_student"]]).all()


def test_oulad_day60_features_are_known_by_day_60(oulad):
    column = {name: oulad.X[:, j] for j, name in enumerate(oulad.feature_names)}
    assert set(np.unique(column["assessments due"])) <= {0, 1, 2, 3, 4}
    assert np.all(column["assessments missed"] <= column["assessments due"])
    assert np.all(column["late submissions"] <= column["assessments due"] - column["assessments missed"])
    score = column["score over work due (missed = 0)"]
    assert np.nanmin(score) >= 0 and np.nanmax(score) <= 100
    # Nothing submitted → no mean score, but a score over the work due of 0.
    nothing = (column["assessments missed"] == column["assessments due"]) & (column["assessments due"] > 0)
    assert np.isnan(column["mean score"][nothing]).all() and np.all(score[nothing] == 0)
    modules = oulad.X[:, [oulad.feature_names.index(f"module {m}") for m in real_data.MODULES]]
    assert np.all(modules.sum(axis=1) == 1)
    demographics = oulad_day60_examples(with_assessments=False)
    assert demographics.feature_names == oulad.feature_names[:demographics.X.shape[1]]
    assert not any("score" in name or "assessment" in name for name in demographics.feature_names)


# --- growth --------------------------------------------------------------------------------------

def test_star_growth_data_have_the_most_recent_prior_and_oldest_first():
    need(real_data.STAR)
    wide = star_wide()
    assert wide.index.is_unique and len(wide) == 11_598
    for grade, priors in (("1", 1), ("2", 2), ("3", 3)):
        X, y, ids = growth_data(wide, "read", grade)
        assert X.shape == (len(y), priors) and len(ids) == len(y)
        assert not np.isnan(X[:, -1]).any() and not np.isnan(y).any()
    X, y, ids = growth_data(wide, "math", "3")
    assert np.array_equal(X[:, 0], wide.loc[ids, "math_K"].to_numpy(), equal_nan=True)
    assert wide.loc[ids, "tch"].notna().all()  # every grade-3 score has its teacher


def test_uci_growth_runs_any_model_given_the_score_scale():
    """The hook: a factory score_bounds → model with fit / growth_percentile (e.g. a DP growth model)."""
    need(real_data.UCI)
    seen = []

    class RankOfCurrent:  # a stand-in: percentile of the current score alone
        def fit(self, X, y):
            self.y_ = np.sort(y)
            return self

        def growth_percentile(self, X, y):
            return np.clip(np.searchsorted(self.y_, y) * 100 // len(self.y_), 1, 99)

    def factory(score_bounds):
        seen.append(score_bounds)
        return RankOfCurrent()

    rows = uci_growth(make_model=factory, subjects=("math",))
    assert seen == [(0.0, 20.0), (0.0, 20.0)]
    assert [(r["grade"], r["priors"], r["n"]) for r in rows] == [("G2", 1, 395), ("G3", 2, 395)]
    assert all(r["percentiles"].shape == (395,) and r["deciles"].sum() == pytest.approx(1) for r in rows)


def test_exact_sgp_on_uci_math_is_sane():
    need(real_data.UCI)
    rows = uci_growth(subjects=("math",))
    for row in rows:
        assert row["percentiles"].min() >= 1 and row["percentiles"].max() <= 99
        assert 40 < row["mean"] < 60  # grades 0-20 tie a lot: uniform only roughly


def test_deciles_and_teacher_medians():
    assert UNIFORM_DECILES.sum() == pytest.approx(1) and UNIFORM_DECILES[0] == pytest.approx(0.11)
    assert np.allclose(decile_shares(np.array([1, 10, 11, 95, 99])), [0.4, 0.2, 0, 0, 0, 0, 0, 0, 0, 0.4])
    rng = np.random.default_rng(0)
    teachers = np.repeat(np.arange(30), 20)
    percentiles = rng.integers(1, 100, 600)
    percentiles[teachers < 3] = 90  # three teachers whose students all grow a lot
    summary = teacher_medians(percentiles, np.concatenate([teachers[:-5], [99] * 5]), permutations=10)
    assert summary["teachers"] == 30  # teacher 99 has 5 students: left out
    assert summary["max"] == 90 and summary["sd"] > summary["null_sd"] > 0
