"""Batch scoring's value-added view: medians of growth percentiles by class, teacher and school."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.config import Settings
from training.score import MIN_GROUP_SIZE, growth_by_group

PROVENANCE = {"model_name": "growth", "model_version": 3, "model_epsilon": 1.0, "model_delta": 1e-5}
YEAR = 2025
IDX = YEAR * 2 + 1  # the second term of 2025


@pytest.fixture
def settings(tmp_path):
    settings = Settings(home=tmp_path)
    settings.lake_dir.mkdir(parents=True)
    big = [f"b{i:02d}" for i in range(12)]  # class B: 12 students, above the minimum
    small = [f"s{i}" for i in range(4)]  # class S: 4 students, suppressed on its own
    pd.DataFrame({"student_id": big + small + ["b00"], "class_id": ["B"] * 12 + ["S"] * 4 + ["OLD"],
                  "school_year": [YEAR] * 16 + [YEAR - 1]}).to_parquet(settings.lake_dir / "class_memberships.parquet")
    pd.DataFrame({"class_id": ["B", "S", "OLD"], "school_id": ["X", "X", "X"]}).to_parquet(
        settings.lake_dir / "classes.parquet")
    # Teacher T teaches math to both classes (16 students), U only to the small one.
    pd.DataFrame({"teacher_id": ["T", "T", "U", "T"], "class_id": ["B", "S", "S", "OLD"],
                  "subject": ["math", "math", "chinese", "math"], "school_year": [YEAR, YEAR, YEAR, YEAR - 1]}
                 ).to_parquet(settings.lake_dir / "teaching_assignments.parquet")
    return settings


def _growth(students, subject, percentiles):
    return pd.DataFrame({"student_key": students, "subject": subject, "idx": IDX, "term_id": "2025-2",
                         "percentile": percentiles})


def test_medians_by_class_teacher_and_school_leave_small_groups_out(settings):
    big, small = [f"b{i:02d}" for i in range(12)], [f"s{i}" for i in range(4)]
    growth = pd.concat([_growth(big, "math", range(10, 130, 10)), _growth(small, "math", [90, 91, 92, 93]),
                        _growth(small, "chinese", [5, 6, 7, 8])])
    views = dict(growth_by_group(growth, settings, PROVENANCE))
    assert set(views) == {"class_growth_score", "teacher_growth_score", "school_growth_score"}

    classes = views["class_growth_score"].set_index("class_id")
    assert list(classes.index) == ["B"]  # S has 4 students: suppressed
    assert json.loads(classes.at["B", "growth_json"]) == [
        {"subject": "math", "students": 12, "median_growth_percentile": 65.0}]
    teachers = views["teacher_growth_score"].set_index("teacher_key")
    assert list(teachers.index) == ["T"]  # U's 4 students are too few; last year's class is not counted
    [math] = json.loads(teachers.at["T", "growth_json"])
    assert math["students"] == 16 and math["median_growth_percentile"] == pytest.approx(pd.Series(
        list(range(10, 130, 10)) + [90, 91, 92, 93]).median())
    schools = views["school_growth_score"].set_index("school_id")
    assert [s["subject"] for s in json.loads(schools.at["X", "growth_json"])] == ["math"]  # chinese: 4 students
    for frame in views.values():
        assert (frame["term_id"] == "2025-2").all() and (frame["model_version"] == 3).all()
    assert MIN_GROUP_SIZE == 10


def test_nothing_large_enough_gives_empty_views_not_an_error(settings):
    growth = _growth([f"s{i}" for i in range(4)], "math", [1, 2, 3, 4])
    for view, frame in growth_by_group(growth, settings, PROVENANCE):
        assert frame.empty and {"term_id", "growth_json", "model_name"} <= set(frame.columns), view


def test_reasons_leave_out_context_and_missing_values_and_keep_the_top_three():
    """A fitness item the student's grade does not test is missing, not weak: never a reason; nor
    are the context features (grade, tests taken)."""
    from types import SimpleNamespace

    import numpy as np

    from training.score import _reasons_json

    def reason(feature, value, effect):
        return SimpleNamespace(feature=feature, value=value, reference=60.0, effect=effect)

    model = SimpleNamespace(explain=lambda X, top: [[
        reason("grade", 7.0, 0.30), reason("score_run_800m", float("nan"), 0.20), reason("score_run_50m", 41.0, 0.10),
        reason("total_change", -12.0, 0.05), reason("bmi", 27.0, 0.04), reason("score_sit_up_1min", 55.0, 0.01),
    ][:top]])
    [line] = _reasons_json(model, np.zeros((1, 6)), leave_out=("grade", "tests_taken"))
    reasons = json.loads(line)
    assert [r["feature"] for r in reasons] == ["score_run_50m", "total_change", "bmi"]
    assert reasons[0] == {"feature": "score_run_50m", "value": 41.0, "reference": 60.0, "effect": 0.1}


def test_a_utility_curve_that_could_not_be_measured_still_draws():
    """Regression: a sweep whose metric was NaN at every ε (too few held-out teachers) made the
    log-scaled plot raise, failing the whole training run."""
    from training.utility_curve import utility_figure

    figure = utility_figure({0.5: float("nan"), 1.0: float("nan")}, {"LightGBM, no DP": float("nan")},
                            metric="held-out gain Spearman", title="nothing measurable")
    figure.savefig(__import__("io").BytesIO(), format="png")
    partly = utility_figure({0.5: float("nan"), 1.0: 0.4}, {"LightGBM, no DP": 0.5}, metric="m", title="t")
    partly.savefig(__import__("io").BytesIO(), format="png")
