"""The teacher-training recommender: one example per teacher, honest spend, sound metrics, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

import models.teacher_training as tt
from features.synth import CityPlan, synthesize_with_truth
from models.teacher_training import (
    DIMENSIONS,
    CourseCatalog,
    DPTeacherTrainingRecommender,
    GainNetwork,
    IntervalLoss,
    LightGBMRecommender,
    PopularityRecommender,
    candidate_courses,
    evaluate,
    ndcg_at_k,
    recall_at_k,
    split_teachers,
    teacher_histories,
    teacher_profiles,
)

torch.set_num_threads(1)
FAST = {"epochs": 5, "batch_size": 64}  # a few seconds on a 5,000-student city


@pytest.fixture(scope="module")
def city():
    tables, truth = synthesize_with_truth(CityPlan(students=5000, seed=13))
    train, test = split_teachers(tables, test_share=0.25, seed=1)
    return tables, truth, train, teacher_profiles(test)


@pytest.fixture(scope="module")
def dp_model(city):
    """The DP recommender fitted once, with a record of how many examples DP-SGD was handed."""
    _, _, train, _ = city
    handed = {}
    real = tt.train_dp_sgd

    def spy(module, features, labels, loss_fn, config, **kw):
        handed["examples"] = len(features)
        return real(module, features, labels, loss_fn, config, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tt, "train_dp_sgd", spy)
        model = DPTeacherTrainingRecommender(epsilon=4.0, **FAST).fit(train)
    model.handed_examples = handed["examples"]
    return model


# --------------------------------------------------------------------------------------------
# A hand-made history: what counts as one example and which courses share an interval
# --------------------------------------------------------------------------------------------


def _tiny_tables():
    def assessed(teacher, day, score):
        return [(teacher, day, d, score) for d in DIMENSIONS]

    assessments = pd.DataFrame(
        assessed("A", "2022-10-10", 50.0) + assessed("A", "2023-10-10", 60.0) + assessed("A", "2024-10-10", 62.0)
        + assessed("B", "2023-10-12", 70.0) + assessed("B", "2024-10-12", 71.0) + assessed("C", "2024-10-12", 40.0),
        columns=["teacher_id", "assessed_on", "dimension", "score"])
    courses = pd.DataFrame({
        "course_id": ["C1", "C2", "C3"], "center_id": ["X", "X", "Y"], "title": ["one", "two", "three"],
        "dimensions": ["awareness", "application;development", "Responsibility"], "subject": ["any", "math", "any"],
        "level": ["basic", "advanced", "intermediate"], "hours": [16.0, 24.0, 8.0],
    })
    trainings = pd.DataFrame([
        ("A", "C1", "2022-11-01", "2023-01-05", True),  # interval 1
        ("A", "C3", "2023-02-01", "2023-03-05", True),  # interval 1 too: shares its change with C1
        ("A", "C2", "2023-09-01", "2023-10-10", True),  # completed on the assessment day: shows next year
        ("A", "C3", "2024-01-01", None, False),  # not completed: no effect, no row
        ("B", "C1", "2023-11-01", "2024-01-01", True),
        ("C", "C1", "2024-11-01", "2024-12-01", True),  # C has one assessment: no interval
    ], columns=["teacher_id", "course_id", "enrolled_on", "completed_on", "completed"])
    teachers = pd.DataFrame({"teacher_id": ["A", "B", "C"], "subject": ["math", "chinese", "pe"],
                             "years_experience": [10, 3, 25]})
    return {"teachers": teachers, "teacher_assessments": assessments, "training_courses": courses,
            "teacher_trainings": trainings}


def test_one_teacher_is_one_example_with_all_their_courses():
    tables = _tiny_tables()
    catalog = CourseCatalog.from_table(tables["training_courses"])
    histories = teacher_histories(tables, catalog)
    assert list(histories.teacher_id) == ["A", "B"]  # C was assessed once: no observed change
    features, targets = tt._example_tensors(histories, catalog)
    assert features.shape[0] == targets.shape[0] == 2  # teachers, not the 4 completed enrolments in intervals
    enrolments = histories.enrolments.assign(teacher=lambda f: histories.teacher_id[f["example"]])
    a = enrolments[enrolments["teacher"] == "A"]
    assert sorted(catalog.course_id[a["course"]]) == ["C1", "C2", "C3"]
    # C1 and C3 were completed in the same interval, C2 (on the assessment day) in the next one.
    by_course = dict(zip(catalog.course_id[a["course"]], a["interval_slot"]))
    assert by_course["C1"] == by_course["C3"] != by_course["C2"]
    membership = targets[0, :, len(DIMENSIONS) + 1:]
    assert membership.sum().item() == 3 and membership.sum(dim=1).max().item() == 2


def test_the_dp_fit_trains_on_one_example_per_teacher(city, dp_model):
    _, _, train, _ = city
    assessed_twice = (train["teacher_assessments"].groupby("teacher_id")["assessed_on"].nunique() >= 2).sum()
    completed = int(train["teacher_trainings"]["completed"].sum())
    assert dp_model.handed_examples == dp_model.n_examples_ == assessed_twice
    assert dp_model.handed_examples != completed
    assert "teacher" in dp_model.privacy_.unit


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_per_example_gradient_is_the_whole_teachers_gradient():
    """Opacus's per-sample gradient of a (teacher, slots, dims, features) input is the gradient of
    that teacher's loss alone: the clip acts on everything one teacher contributed."""
    from opacus import GradSampleModule

    tables = _tiny_tables()
    catalog = CourseCatalog.from_table(tables["training_courses"])
    histories = teacher_histories(tables, catalog)
    features, targets = tt._example_tensors(histories, catalog)
    torch.manual_seed(0)

    def network():
        net = GainNetwork(tt._course_features(catalog, catalog).shape[2], len(tt.LEVEL_KNOTS) + 1, 6, 6)
        for layer in (net.course_effect, net.weakness, net.drift):
            torch.nn.init.normal_(layer.weight, std=0.3, generator=torch.Generator().manual_seed(5))
        return net

    wrapped = GradSampleModule(network(), loss_reduction="mean")
    IntervalLoss()(wrapped(features), targets).backward()
    for i in range(len(features)):
        alone = network()
        IntervalLoss()(alone(features[i:i + 1]), targets[i:i + 1]).backward()
        for (name, p_alone), p_wrapped in zip(alone.named_parameters(), wrapped._module.parameters()):
            assert torch.allclose(p_wrapped.grad_sample[i], p_alone.grad, atol=1e-6), name


def test_padding_contributes_nothing_to_the_loss():
    tables = _tiny_tables()
    catalog = CourseCatalog.from_table(tables["training_courses"])
    losses, slot_values = [], []
    for slots in (3, 9):  # the same histories padded to 3 or to 9 intervals and courses
        histories = teacher_histories(tables, catalog, max_intervals=slots, max_courses=slots)
        features, targets = tt._example_tensors(histories, catalog)
        net = GainNetwork(tt._course_features(catalog, catalog).shape[2], len(tt.LEVEL_KNOTS) + 1, slots, slots)
        for layer in (net.course_effect, net.weakness, net.drift):
            torch.nn.init.normal_(layer.weight, generator=torch.Generator().manual_seed(2))
        slot_values.append(net(features))
        losses.append(IntervalLoss()(slot_values[-1], targets))
    assert torch.allclose(losses[0], losses[1]) and losses[0] > 0
    assert (slot_values[1][1, 1:9] == 0).all()  # teacher B has one course: the other slots are padding
    assert IntervalLoss.reduction == "mean"


# --------------------------------------------------------------------------------------------
# The fitted recommender
# --------------------------------------------------------------------------------------------


def test_recommendations_are_k_distinct_allowed_courses_with_reasons(city, dp_model):
    _, _, _, profiles = city
    teachers = profiles.head(25)
    recommended = dp_model.recommend(teachers, k=10)
    candidates = candidate_courses(teachers, dp_model.catalog_)
    for i, (teacher_id, rows) in enumerate(recommended.groupby("teacher_id", sort=False)):
        row = teachers.index[teachers["teacher_id"] == teacher_id][0]
        assert len(rows) == 10 and rows["course_id"].is_unique
        assert list(rows["rank"]) == list(range(1, 11))
        assert (np.diff(rows["expected_gain"].to_numpy()) <= 1e-9).all()
        assert candidates[row, dp_model.catalog_.positions(rows["course_id"])].all()
        assert not set(rows["course_id"]) & set(teachers.loc[row, "completed_courses"])
        assert rows["reasons"].str.len().gt(0).all()
        assert rows["reasons"].str.contains("|".join(DIMENSIONS)).all()
    assert recommended["teacher_id"].nunique() == len(teachers)


def test_spent_epsilon_is_within_the_target(dp_model):
    spent = dp_model.privacy_
    assert 0 < spent.epsilon <= 4.0 + 1e-9 and spent.delta == 1e-5
    assert spent.noise_multiplier > 0.3 and spent.steps > 0


def test_dp_learns_more_than_popularity_on_held_out_teachers(city, dp_model):
    """DP noise is fresh each fit: a tolerant comparison, not a figure."""
    _, truth, train, profiles = city
    dp = evaluate(dp_model, profiles, truth)
    popular = evaluate(PopularityRecommender("enrolments").fit(train), profiles, truth)
    assert dp["teachers"] == len(profiles)
    assert dp["ndcg@10"] > popular["ndcg@10"] + 0.1
    assert 0 <= dp["recall@10"] <= 1


def test_predicted_gains_have_the_documented_shape_and_new_courses_get_a_prediction(city, dp_model):
    tables, _, _, profiles = city
    gains = dp_model.predict_gain(profiles.head(4))
    assert gains.shape == (4, len(dp_model.catalog_), len(DIMENSIONS)) and (gains >= 0).all()
    new = tables["training_courses"].head(2).assign(course_id=["NEW1", "NEW2"])
    assert dp_model.predict_gain(profiles.head(4), new).shape == (4, 2, len(DIMENSIONS))


def test_invite_list_ranks_eligible_teachers(city, dp_model):
    _, _, _, profiles = city
    course = "C001"
    invited = dp_model.invite_list(course, 15, teachers=profiles)
    assert len(invited) == 15 and invited["teacher_id"].is_unique
    assert (np.diff(invited["expected_gain"].to_numpy()) <= 1e-9).all()
    eligible = candidate_courses(profiles, dp_model.catalog_)[:, dp_model.catalog_.positions([course])[0]]
    assert set(invited["teacher_id"]) <= set(profiles["teacher_id"][eligible])


def test_invite_lists_for_every_course_agree_with_one_course_at_a_time(city, dp_model):
    _, _, _, profiles = city
    every = dp_model.invite_lists(profiles, k=8)
    assert set(every["course_id"]) <= set(dp_model.catalog_.course_id)
    for course in ("C001", dp_model.catalog_.course_id[-1]):
        one = dp_model.invite_list(course, 8, teachers=profiles)
        mine = every[every["course_id"] == course].reset_index(drop=True)
        assert mine["rank"].tolist() == list(range(1, len(one) + 1))
        pd.testing.assert_frame_equal(mine.drop(columns=["course_id", "rank"]), one)
        # The dimension named is one the course targets.
        targets = dp_model.catalog_.targets[dp_model.catalog_.positions([course])[0]]
        assert set(one["dimension"]) <= {d for d, t in zip(DIMENSIONS, targets) if t}


def test_recommendations_name_the_weakest_dimension_the_course_targets(city, dp_model):
    _, _, _, profiles = city
    recommended = dp_model.recommend(profiles.head(20), k=5)
    levels = profiles.set_index("teacher_id")[list(DIMENSIONS)]
    for row in recommended.itertuples():
        course = dp_model.catalog_.positions([row.course_id])[0]
        targets = {d for d, t in zip(DIMENSIONS, dp_model.catalog_.targets[course]) if t}
        weakest = list(levels.loc[row.teacher_id].sort_values(kind="stable").index[:dp_model.n_weakest])
        aimed = [d for d in weakest if d in targets]
        assert row.dimension == (aimed[0] if aimed else row.dimension) and row.dimension in weakest


def test_a_teacher_at_the_top_of_a_dimension_is_expected_to_gain_nothing_there(city, dp_model):
    _, _, _, profiles = city
    course = "C001"
    c = dp_model.catalog_.positions([course])[0]
    targeted = [d for d, t in zip(DIMENSIONS, dp_model.catalog_.targets[c]) if t]
    eligible = profiles[candidate_courses(profiles, dp_model.catalog_)[:, c]].head(30).copy()
    eligible.loc[eligible.index[:10], targeted] = 100.0  # ten teachers already at the ceiling
    gains = dp_model.expected_gains(eligible)
    assert (gains[:10][:, :, [DIMENSIONS.index(d) for d in targeted]] == 0).all()
    assert (gains <= 100.0 - eligible[list(DIMENSIONS)].to_numpy()[:, None, :] + 1e-9).all()
    invited = dp_model.invite_list(course, 30, teachers=eligible)
    at_top = set(eligible["teacher_id"].iloc[:10])
    # Nobody at the ceiling is invited ahead of a teacher with something to gain.
    gains_in_order = invited["expected_gain"].to_numpy()
    first_top = next(i for i, t in enumerate(invited["teacher_id"]) if t in at_top)
    assert (gains_in_order[:first_top] > 0).all() and (gains_in_order[first_top:] == 0).all()


def test_single_course_outcomes_pair_prediction_and_observed_change():
    tables = _tiny_tables()
    model = PopularityRecommender("observed_gain").fit(tables)
    outcomes = tt.single_course_outcomes(model, tables)
    # A's second interval holds C2 alone (application and development, 60 → 62 on each) and B's
    # one interval C1 alone (awareness, 70 → 71); A's first interval holds two courses: left out.
    outcomes = outcomes.sort_values("teacher_id").reset_index(drop=True)
    assert outcomes[["teacher_id", "course_id"]].values.tolist() == [["A", "C2"], ["B", "C1"]]
    assert outcomes["observed"].tolist() == [pytest.approx(4.0), pytest.approx(1.0)]
    assert outcomes["predicted"].tolist() == [pytest.approx(model.mean_gain_[1, [2, 4]].sum()),
                                              pytest.approx(model.mean_gain_[0, 0])]


def test_single_course_outcomes_of_nobody_is_an_empty_frame():
    tables = _tiny_tables()
    model = PopularityRecommender("observed_gain").fit(tables)
    only_c = {**tables, "teacher_assessments": tables["teacher_assessments"].query("teacher_id == 'C'")}
    outcomes = tt.single_course_outcomes(model, only_c)
    assert outcomes.empty and list(outcomes.columns) == ["teacher_id", "course_id", "predicted", "observed"]


def test_held_out_outcomes_rank_the_dp_model_with_the_references(city, dp_model):
    """On held-out teachers the DP model's predicted gains go with the observed changes."""
    from scipy.stats import spearmanr

    tables, _, train, profiles = city
    test = {name: frame[frame["teacher_id"].isin(profiles["teacher_id"])] if "teacher_id" in frame else frame
            for name, frame in tables.items() if name in tt.REQUIRED}
    outcomes = tt.single_course_outcomes(dp_model, test)
    assert len(outcomes) >= 50
    assert spearmanr(outcomes["predicted"], outcomes["observed"]).statistic > 0.2


@pytest.mark.parametrize("baseline", [PopularityRecommender("enrolments"), PopularityRecommender("observed_gain"),
                                      LightGBMRecommender(n_estimators=30)])
def test_baselines_share_the_interface(city, baseline):
    _, truth, train, profiles = city
    baseline.fit(train)
    recommended = baseline.recommend(profiles.head(5), k=10)
    assert recommended.groupby("teacher_id")["course_id"].nunique().eq(10).all()
    assert set(evaluate(baseline, profiles, truth)) == {"ndcg@10", "recall@10", "teachers"}
    assert len(baseline.invite_list("C001", 5, teachers=profiles)) == 5


# --------------------------------------------------------------------------------------------
# Metrics on hand-made cases
# --------------------------------------------------------------------------------------------


def test_ndcg_perfect_reversed_and_known_value():
    relevance = np.array([[3.0, 2.0, 1.0, 0.0]])
    assert ndcg_at_k(relevance, relevance, 3) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([[0.0, 1.0, 2.0, 3.0]]), relevance, 4) < 0.7
    # Ranked 2, 3, 1 of relevances (3, 2, 1): DCG = 2 + 1/log2(3) + 3/2 against 3 + 2/log2(3) + 1/2.
    expected = (2 + 1 / np.log2(3) + 3 / 2) / (3 + 2 / np.log2(3) + 1 / 2)
    assert ndcg_at_k(np.array([[1.0, 3.0, 2.0, 0.0]]), relevance, 3) == pytest.approx(expected)
    # A row without any relevant item is left out; ties with the ideal order still score 1.
    two_rows = np.vstack([relevance, np.zeros((1, 4))])
    assert ndcg_at_k(two_rows, two_rows, 2) == pytest.approx(1.0)


def test_ndcg_and_recall_never_rank_non_candidates():
    relevance = np.array([[5.0, 1.0, 0.0]])
    scores = np.array([[9.0, 1.0, 2.0]])
    candidates = np.array([[False, True, True]])  # the best item is not on offer
    assert ndcg_at_k(scores, relevance, 1, candidates) == pytest.approx(0.0)
    assert ndcg_at_k(scores, relevance, 2, candidates) == pytest.approx(1 / np.log2(3))
    assert recall_at_k(scores, relevance > 0, 2, candidates) == pytest.approx(1.0)


def test_recall_perfect_partial_and_capped_at_k():
    relevant = np.array([[True, True, False, False], [True, False, False, True]])
    assert recall_at_k(relevant.astype(float), relevant, 2) == pytest.approx(1.0)
    scores = np.array([[4.0, 1.0, 3.0, 2.0], [4.0, 3.0, 2.0, 1.0]])
    assert recall_at_k(scores, relevant, 2) == pytest.approx(0.5)  # one of two hits in each row
    assert recall_at_k(np.array([[1.0, 0, 0, 0]]), np.array([[True, True, True, False]]), 1) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Bad input: clear errors naming the problem
# --------------------------------------------------------------------------------------------


def _without(tables, name, column=None):
    changed = dict(tables)
    changed[name] = tables[name].drop(columns=[column]) if column else None
    if column is None:
        del changed[name]
    return changed


@pytest.mark.parametrize("change, message", [
    (lambda t: _without(t, "teacher_trainings"), "missing table 'teacher_trainings'"),
    (lambda t: _without(t, "teacher_assessments", "score"), r"'teacher_assessments' is missing .*'score'"),
    (lambda t: {**t, "teacher_assessments": t["teacher_assessments"].replace({"dimension": {"awareness": "charm"}})},
     "unknown dimension.*charm"),
    (lambda t: {**t, "teacher_trainings": t["teacher_trainings"].replace({"course_id": {"C2": "C999"}})},
     "unknown course_id.*C999"),
    (lambda t: {**t, "training_courses": t["training_courses"].replace({"dimensions": {"awareness": "wisdom"}})},
     "course 'C1' names unknown dimension 'wisdom'"),
    (lambda t: {**t, "teacher_assessments": t["teacher_assessments"].assign(score=120.0)},
     r"'score' .* in \[0, 100\]"),
    (lambda t: {**t, "teacher_trainings": t["teacher_trainings"].assign(completed="maybe")},
     "'completed' has a value that is not true/false"),
    (lambda t: {**t, "teacher_assessments": t["teacher_assessments"].assign(assessed_on="2024-13-45")},
     "'assessed_on' has a value that is not an ISO date"),
])
def test_bad_tables_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        DPTeacherTrainingRecommender(epochs=1).fit(change(_tiny_tables()))


def test_bad_arguments_are_clear_errors(city, dp_model):
    _, _, _, profiles = city
    with pytest.raises(NotFittedError):
        DPTeacherTrainingRecommender().recommend(profiles)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        dp_model.recommend(profiles, k=0)
    with pytest.raises(ValueError, match="unknown course_id"):
        dp_model.invite_list("NOPE", 5, teachers=profiles)
    with pytest.raises(ValueError, match=r"teachers is missing column\(s\) \['application'\]"):
        dp_model.recommend(profiles.drop(columns=["application"]))
    with pytest.raises(TypeError, match="mapping of contract tables"):
        DPTeacherTrainingRecommender().fit([1, 2])
    with pytest.raises(ValueError, match="grad_sample_mode must be 'hooks' or 'ew'"):
        DPTeacherTrainingRecommender(grad_sample_mode="fused").fit(_tiny_tables())
    with pytest.raises(ValueError, match="by must be"):
        PopularityRecommender(by="vibes").fit(_tiny_tables())
    with pytest.raises(ValueError, match="same shape|one shape"):
        ndcg_at_k(np.zeros((2, 3)), np.zeros((2, 4)), 2)
