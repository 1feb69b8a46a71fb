import re

from serving.charts import fitness_history_svg


def _year(school_year, grade, total):
    return {"school_year": school_year, "grade": grade, "total_score": total}


def _polyline_points(svg: str) -> list[list[str]]:
    return [points.split() for points in re.findall(r'<polyline points="([^"]*)"', svg)]


def test_one_point_per_year_on_one_line():
    svg = fitness_history_svg([_year(2023, 7, 65.0), _year(2024, 8, 82.5), _year(2025, 9, 93.0)])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    [points] = _polyline_points(svg)
    assert len(points) == 3
    assert svg.count("<circle") == 3
    for label in ("65.0", "82.5", "93.0", "2023学年", "初一", "及格 60", "良好 80", "优秀 90"):
        assert label in svg
    assert svg.count('stroke-dasharray="6 4"') == 3


def test_higher_score_is_drawn_higher():
    [points] = _polyline_points(fitness_history_svg([_year(2023, 7, 50.0), _year(2024, 8, 100.0)]))
    (_, y_low), (_, y_high) = (map(float, point.split(",")) for point in points)
    assert y_high < y_low


def test_empty_history_draws_a_frame_and_a_message():
    svg = fitness_history_svg([])
    assert svg.startswith("<svg") and "暂无体测记录" in svg
    assert "<polyline" not in svg and "<circle" not in svg


def test_missing_total_breaks_the_line_but_keeps_its_year():
    svg = fitness_history_svg([_year(2023, 7, 70.0), _year(2024, 8, None), _year(2025, 9, 80.0)])
    assert [len(points) for points in _polyline_points(svg)] == [1, 1]
    assert "未测" in svg and "2024学年" in svg
    assert svg.count("<circle") == 2


def test_all_totals_missing_and_odd_values():
    svg = fitness_history_svg([_year(None, None, None), _year("<b>", 8, float("nan"))])
    assert "<polyline" not in svg
    assert "<b>" not in svg
    assert svg.count("未测") == 2


def test_single_year_and_out_of_range_totals_stay_inside_the_plot():
    svg = fitness_history_svg([_year(2025, 9, 130.0)])
    [points] = _polyline_points(svg)
    x, y = map(float, points[0].split(","))
    assert y >= 0
    assert "130.0" in svg
