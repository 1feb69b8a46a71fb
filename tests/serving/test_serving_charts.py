"""The ECharts options: plain JSON, the right series, gaps kept as gaps, labels in the reader's language."""

from __future__ import annotations

import json

from serving import charts
from serving.schemas import (
    CityPassRate,
    DigitalLiteracy,
    DimensionScore,
    DomainNorm,
    DPReleaseRef,
    FitnessScores,
    FitnessYear,
    FiveDomain,
    FiveDomainNorms,
    FiveDomainScores,
    GradeFitness,
    GroupGrowth,
    Growth,
    GrowthPoint,
    LedgerRelease,
    SubjectGrowth,
)


def _year(school_year, grade, total, run_50m=None):
    return FitnessYear(school_year=school_year, grade=grade, total_score=total,
                       scores=FitnessScores(run_50m=run_50m, vital_capacity=80.0))


def test_five_domain_radar_against_the_norms():
    norms = FiveDomainNorms(grade=9, sex="f", release=DPReleaseRef(release="five_domain_norms", epsilon=2.6),
                            domains=[DomainNorm(domain=d, p25=60, p50=70, p75=80) for d in ("de", "zhi", "ti", "mei", "lao")])
    option = charts.five_domain_radar(FiveDomain(scores=FiveDomainScores(de=80, zhi=72, ti=91, mei=65, lao=70),
                                                 norms=norms), "zh")
    json.dumps(option)
    assert [i["name"] for i in option["radar"]["indicator"]] == ["德", "智", "体", "美", "劳"]
    student, median, _p25, _p75 = option["series"][0]["data"]
    assert student["value"] == [80.0, 72.0, 91.0, 65.0, 70.0] and median["value"] == [70.0] * 5
    assert option["animation"] is False  # the first frame is final: print and screenshots match


def test_radar_without_norms_has_the_student_only_and_english_names():
    option = charts.five_domain_radar(FiveDomain(scores=None), "en")
    assert len(option["series"][0]["data"]) == 1 and option["series"][0]["data"][0]["value"] == [None] * 5
    assert option["radar"]["indicator"][0]["name"] == "Moral"


def test_fitness_totals_keep_an_untested_year_as_a_gap_with_level_lines():
    option = charts.fitness_totals_line([_year(2023, 7, 70.0), _year(2024, 8, None), _year(2025, 9, 80.0)], "zh")
    series = option["series"][0]
    assert series["data"] == [70.0, None, 80.0] and series["connectNulls"] is False
    assert option["xAxis"]["data"] == ["2023\n初一", "2024\n初二", "2025\n初三"]
    assert [line["yAxis"] for line in series["markLine"]["data"]] == [60, 80, 90]


def test_item_lines_only_for_items_tested_some_year():
    option = charts.fitness_items_lines([_year(2024, 8, 70.0, run_50m=55.0), _year(2025, 9, 75.0)], "zh")
    assert [s["name"] for s in option["series"]] == ["肺活量", "50米跑"]
    assert option["series"][1]["data"] == [55.0, None]
    assert option["series"][0]["markLine"]["data"][0]["yAxis"] == 60


def test_growth_lines_per_subject_over_terms():
    growth = Growth(available=True, points=[GrowthPoint(subject="math", term_id="2025-1", percentile=60),
                                            GrowthPoint(subject="math", term_id="2024-2", percentile=40),
                                            GrowthPoint(subject="chinese", term_id="2025-1", percentile=55)])
    option = charts.growth_lines(growth, "zh")
    assert option["xAxis"]["data"] == ["2024-2", "2025-1"]
    assert {s["name"]: s["data"] for s in option["series"]} == {"语文": [None, 55.0], "数学": [40.0, 60.0]}
    assert "selected" not in option["legend"]  # few subjects: every line shown


def test_growth_lines_open_on_the_core_subjects_when_there_are_many():
    subjects = ("art", "chinese", "english", "math", "music", "pe", "science")
    growth = Growth(available=True, points=[GrowthPoint(subject=s, term_id="2025-1", percentile=50) for s in subjects])
    option = charts.growth_lines(growth, "zh")
    assert [s["name"] for s in option["series"]][:3] == ["语文", "数学", "英语"]
    assert option["legend"]["selected"] == {"语文": True, "数学": True, "英语": True, "美术": False, "音乐": False,
                                            "体育": False, "科学": False}


def test_class_growth_bars_one_per_subject_with_typical_growth_marked():
    growth = GroupGrowth(available=True, subjects=[SubjectGrowth(subject="chinese", students=44, median_growth_percentile=48.0),
                                                   SubjectGrowth(subject="math", students=45, median_growth_percentile=61.5)])
    option = charts.class_growth_bars(growth, "en")
    assert option["xAxis"]["data"] == ["Chinese", "Math"] and option["series"][0]["data"] == [48.0, 61.5]
    assert option["series"][0]["markLine"]["data"] == [{"yAxis": 50}]
    json.dumps(option)


def test_pass_rate_bars_use_the_city_cell_of_both_sexes():
    grades = [GradeFitness(grade=9, students=3, tested=3, levels={}, pass_rate=2 / 3)]
    city = [CityPassRate(school_year=2025, grade=9, sex="m", pass_rate=0.9, suppressed=False),
            CityPassRate(school_year=2025, grade=9, sex=None, pass_rate=0.8, suppressed=False)]
    option = charts.pass_rates_bars(grades, city, "zh")
    assert [s["data"] for s in option["series"]] == [[66.7], [80.0]]


def test_literacy_radar_shows_the_previous_assessment_from_the_change():
    literacy = DigitalLiteracy(dimensions=[DimensionScore(dimension="awareness", score=62, change=3),
                                           DimensionScore(dimension="application", score=58, change=None)])
    now, before = charts.literacy_radar(literacy, "zh")["series"][0]["data"]
    assert now["value"] == [62.0, 58.0] and before["value"] == [59.0, None]


def test_budget_bar_stacks_used_and_left():
    release = LedgerRelease(release="2025", epsilon_total=10, delta_total=1e-4, epsilon_spent=3.5, delta_spent=0,
                            epsilon_left=6.5, delta_left=1e-4)
    option = charts.budget_bar([release], "en")
    assert [(s["name"], s["data"]) for s in option["series"]] == [("ε used", [3.5]), ("ε left", [6.5])]


def test_odd_numbers_never_reach_the_json():
    option = charts.fitness_totals_line([_year(2025, 9, float("nan")), _year(2026, 10, float("inf"))], "zh")
    assert option["series"][0]["data"] == [None, None]
    json.dumps(option, allow_nan=False)
