"""ECharts options for the pages, built from the public response shapes.

The pages carry each chart's option as JSON in a `data-chart` attribute; `static/portrait.js`
hands it to the ECharts the engine serves itself (`static/echarts.min.js`), rendering SVG so a
chart prints as sharp as it looks. These functions only build plain dicts: no HTML, no script,
nothing from the caller's input but numbers and labels the template escapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from serving.labels import label
from serving.schemas import (
    CityPassRate,
    ClassPortraits,
    DigitalLiteracy,
    FitnessYear,
    FiveDomain,
    FiveDomainScores,
    GradeFitness,
    GroupGrowth,
    Growth,
    LedgerRelease,
)

DOMAINS = ("de", "zhi", "ti", "mei", "lao")
ITEMS = ("vital_capacity", "run_50m", "sit_and_reach", "rope_skip_1min", "sit_up_1min", "shuttle_50x8",
         "standing_long_jump", "pull_up", "run_800m", "run_1000m")
BLUE, ORANGE, GREY, RED, GREEN = "#1f5fa8", "#d97706", "#9ca3af", "#b91c1c", "#15803d"
LEVEL_LINES = ((60, "pass"), (80, "good"), (90, "excellent"))
# No animation: the first frame is the final one, for print and for screenshots alike.
BASE = {"animation": False, "textStyle": {"fontFamily": "inherit"}}
# Radar axis names dark enough to read on paper (ECharts' default grey fades in print).
AXIS_NAME = {"color": "#374151"}
# With more subjects than this, the growth chart opens on the core subjects; the legend shows the rest.
GROWTH_SHOWN = 4
CORE_SUBJECTS = ("chinese", "math", "english")
# School year over grade, every year labelled (`_year_label`).
YEAR_AXIS_LABEL = {"interval": 0, "lineHeight": 15}


def five_domain_radar(five: FiveDomain, lang: str) -> dict[str, Any]:
    """The student's five domains against the DP norms of their grade and sex (median, P25, P75)."""
    indicator = [{"name": label("domain", d, lang), "max": 100, "min": 0} for d in DOMAINS]
    data = [{"name": _t(lang, "本人", "Student"), "value": _values(five.scores, DOMAINS),
             "areaStyle": {"opacity": 0.25}, "lineStyle": {"width": 2, "color": BLUE}, "itemStyle": {"color": BLUE}}]
    if five.norms is not None:
        norms = {norm.domain: norm for norm in five.norms.domains}
        for stat, name, style in (("p50", _t(lang, "常模中位数", "Norm median"), "solid"),
                                  ("p25", "P25", "dashed"), ("p75", "P75", "dashed")):
            data.append({"name": name, "value": [_num(getattr(norms[d], stat)) if d in norms else None for d in DOMAINS],
                         "lineStyle": {"type": style, "color": ORANGE if stat == "p50" else GREY},
                         "itemStyle": {"color": ORANGE if stat == "p50" else GREY}, "symbol": "none"})
    return {**BASE, "legend": {"bottom": 0}, "tooltip": {},
            "radar": {"indicator": indicator, "radius": "65%", "splitNumber": 4, "axisName": AXIS_NAME},
            "series": [{"type": "radar", "data": data}]}


def mini_radar(lang: str) -> dict[str, Any]:
    """The small radar of the class overview, shared by every student of the page: each student's
    card carries only its five values (`mini_radar_values`), which `static/portrait.js` puts in."""
    indicator = [{"name": label("domain", d, lang), "max": 100, "min": 0} for d in DOMAINS]
    return {**BASE, "radar": {"indicator": indicator, "radius": "62%", "splitNumber": 2,
                              "axisName": {"fontSize": 10, "color": "#374151"}},
            "series": [{"type": "radar", "symbol": "none",
                        "data": [{"value": [], "areaStyle": {"opacity": 0.3, "color": BLUE},
                                  "lineStyle": {"color": BLUE, "width": 1.5}}]}]}


def mini_radar_values(scores: FiveDomainScores | None) -> str:
    """A student's five domains as "de,zhi,ti,mei,lao" ("" for a missing one)."""
    return ",".join("" if value is None else f"{value:g}" for value in _values(scores, DOMAINS))


def fitness_totals_line(history: Sequence[FitnessYear], lang: str) -> dict[str, Any]:
    """Total score per school year, with the standard's level lines; an untested year breaks the line."""
    years = [_year_label(year, lang) for year in history]
    totals = [_num(year.total_score) for year in history]
    mark_lines = [{"yAxis": score, "name": label("level", name, lang), "label": {"formatter": f"{{b}} {score}"}}
                  for score, name in LEVEL_LINES]
    return {**BASE, "grid": {"left": 40, "right": 80, "top": 20, "bottom": 50}, "tooltip": {"trigger": "axis"},
            "xAxis": {"type": "category", "data": years, "axisLabel": YEAR_AXIS_LABEL},
            "yAxis": {"type": "value", "min": 0, "max": 120},
            "series": [{"type": "line", "name": _t(lang, "总分", "Total"), "data": totals, "connectNulls": False,
                        "label": {"show": True, "position": "top"}, "lineStyle": {"color": BLUE, "width": 2},
                        "itemStyle": {"color": BLUE},
                        "markLine": {"symbol": "none", "silent": True,
                                     "lineStyle": {"type": "dashed", "color": GREY}, "data": mark_lines}}]}


def fitness_items_lines(history: Sequence[FitnessYear], lang: str) -> dict[str, Any]:
    """Each tested item's score (0-100) per school year, with the pass line at 60."""
    years = [_year_label(year, lang) for year in history]
    series = []
    for item in ITEMS:
        values = [_num(getattr(year.scores, item)) for year in history]
        if any(value is not None for value in values):
            series.append({"type": "line", "name": label("item", item, lang), "data": values, "connectNulls": False})
    if series:
        series[0]["markLine"] = {"symbol": "none", "silent": True, "lineStyle": {"type": "dashed", "color": RED},
                                 "data": [{"yAxis": 60, "label": {"formatter": _t(lang, "及格 60", "pass 60")}}]}
    return {**BASE, "grid": {"left": 40, "right": 70, "top": 50, "bottom": 50}, "tooltip": {"trigger": "axis"},
            "legend": {"top": 0, "type": "scroll"},
            "xAxis": {"type": "category", "data": years, "axisLabel": YEAR_AXIS_LABEL},
            "yAxis": {"type": "value", "min": 0, "max": 100}, "series": series}


def growth_lines(growth: Growth, lang: str) -> dict[str, Any]:
    """Growth percentile per subject over all terms (50 = typical growth for the student's history).

    Seven crossing lines read as noise: past `GROWTH_SHOWN` subjects the chart opens on the core
    ones (Chinese, math, English, listed first) and the legend switches the others on."""
    terms = sorted({point.term_id for point in growth.points})
    subjects = sorted({point.subject for point in growth.points},
                      key=lambda s: (CORE_SUBJECTS.index(s) if s in CORE_SUBJECTS else len(CORE_SUBJECTS), s))
    by = {(p.subject, p.term_id): p.percentile for p in growth.points}
    series = [{"type": "line", "name": label("subject", s, lang), "connectNulls": False,
               "data": [by.get((s, term)) for term in terms]} for s in subjects]
    if series:
        series[0]["markLine"] = {"symbol": "none", "silent": True, "lineStyle": {"type": "dashed", "color": GREY},
                                 "data": [{"yAxis": 50}]}
    legend: dict[str, Any] = {"top": 0, "type": "scroll"}
    core = [s for s in subjects if s in CORE_SUBJECTS]
    if len(subjects) > GROWTH_SHOWN and core:
        legend["selected"] = {label("subject", s, lang): s in CORE_SUBJECTS for s in subjects}
    return {**BASE, "grid": {"left": 40, "right": 30, "top": 50, "bottom": 40}, "tooltip": {"trigger": "axis"},
            "legend": legend, "xAxis": {"type": "category", "data": terms},
            "yAxis": {"type": "value", "min": 1, "max": 99}, "series": series}


def pass_rates_bars(grades: Sequence[GradeFitness], city: Sequence[CityPassRate], lang: str) -> dict[str, Any]:
    """Pass rate per grade: the school (exact) beside the city (DP release, both sexes)."""
    city_by_grade = {cell.grade: cell.pass_rate for cell in city if cell.sex is None}
    names = [label("grade", g.grade, lang) for g in grades]
    return {**BASE, "grid": {"left": 50, "right": 20, "top": 40, "bottom": 40}, "tooltip": {"trigger": "axis"},
            "legend": {"top": 0}, "xAxis": {"type": "category", "data": names},
            "yAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
            "series": [
                {"type": "bar", "name": _t(lang, "本校", "School"), "itemStyle": {"color": BLUE},
                 "data": [_percent(g.pass_rate) for g in grades]},
                {"type": "bar", "name": _t(lang, "全市（差分隐私）", "City (DP)"), "itemStyle": {"color": GREY},
                 "data": [_percent(city_by_grade.get(g.grade)) for g in grades]},
            ]}


def class_growth_bars(growth: GroupGrowth, lang: str) -> dict[str, Any]:
    """The class's median growth percentile per subject (1-99), with typical growth (50) marked."""
    subjects = growth.subjects
    return {**BASE, "grid": {"left": 50, "right": 20, "top": 20, "bottom": 40}, "tooltip": {"trigger": "axis"},
            "xAxis": {"type": "category", "data": [label("subject", s.subject, lang) for s in subjects],
                      "axisLabel": {"interval": 0}},
            "yAxis": {"type": "value", "min": 0, "max": 100},
            "series": [{"type": "bar", "name": _t(lang, "成长中位数", "Median growth percentile"),
                        "data": [_num(s.median_growth_percentile) for s in subjects],
                        "itemStyle": {"color": BLUE}, "barMaxWidth": 40,
                        "markLine": {"silent": True, "symbol": "none", "lineStyle": {"type": "dashed", "color": GREY},
                                     "label": {"formatter": _t(lang, "典型成长 50", "typical 50"),
                                               "position": "insideEndTop"},
                                     "data": [{"yAxis": 50}]}}]}


def literacy_radar(literacy: DigitalLiteracy, lang: str) -> dict[str, Any]:
    """A teacher's five digital-literacy dimensions now, and at the assessment before."""
    indicator = [{"name": label("dimension", d.dimension, lang), "max": 100, "min": 0} for d in literacy.dimensions]
    now = [_num(d.score) for d in literacy.dimensions]
    before = [None if d.score is None or d.change is None else _num(d.score - d.change) for d in literacy.dimensions]
    data = [{"name": _t(lang, "最近一次", "Latest"), "value": now, "areaStyle": {"opacity": 0.25},
             "lineStyle": {"color": BLUE}, "itemStyle": {"color": BLUE}}]
    if any(value is not None for value in before):
        data.append({"name": _t(lang, "上一次", "Previous"), "value": before, "symbol": "none",
                     "lineStyle": {"type": "dashed", "color": GREY}, "itemStyle": {"color": GREY}})
    return {**BASE, "legend": {"bottom": 0}, "tooltip": {},
            "radar": {"indicator": indicator, "radius": "62%", "splitNumber": 4, "axisName": AXIS_NAME},
            "series": [{"type": "radar", "data": data}]}


def budget_bar(releases: Sequence[LedgerRelease], lang: str) -> dict[str, Any]:
    """ε used and left per release, stacked to the release's total."""
    names = [release.release for release in releases]
    # containLabel: a release named "2025/teachers" must not be cut at the chart's edge.
    return {**BASE, "grid": {"left": 10, "right": 30, "top": 40, "bottom": 30, "containLabel": True},
            "tooltip": {"trigger": "axis"}, "legend": {"top": 0}, "yAxis": {"type": "category", "data": names},
            "xAxis": {"type": "value", "name": "ε"},
            "series": [
                {"type": "bar", "stack": "budget", "name": _t(lang, "已用 ε", "ε used"), "itemStyle": {"color": ORANGE},
                 "data": [_num(r.epsilon_spent, 4) for r in releases], "label": {"show": True}},
                {"type": "bar", "stack": "budget", "name": _t(lang, "剩余 ε", "ε left"), "itemStyle": {"color": GREEN},
                 "data": [_num(r.epsilon_left, 4) for r in releases], "label": {"show": True}},
            ]}


def class_warning_pie(portraits: ClassPortraits, lang: str) -> dict[str, Any]:
    """How many students of the class have a high, a watch, or no warning."""
    none = len(portraits.students) - portraits.warnings_high - portraits.warnings_watch
    slices = ((label("warning", "high", lang), portraits.warnings_high, RED),
              (label("warning", "watch", lang), portraits.warnings_watch, ORANGE),
              (_t(lang, "无预警", "None"), none, GREEN))
    return {**BASE, "tooltip": {}, "legend": {"bottom": 0},
            "series": [{"type": "pie", "radius": ["40%", "65%"], "center": ["50%", "45%"],
                        "data": [{"name": name, "value": value, "itemStyle": {"color": colour},
                                  "label": {"show": value > 0, "formatter": "{c}"}}
                                 for name, value, colour in slices]}]}


def _values(scores, names: Sequence[str]) -> list[float | None]:
    return [None if scores is None else _num(getattr(scores, name)) for name in names]


def _num(value: float | None, digits: int = 1) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, digits) if math.isfinite(number) else None


def _percent(rate: float | None) -> float | None:
    return None if rate is None else _num(100 * rate)


def _year_label(year: FitnessYear, lang: str) -> str:
    school_year = f"{year.school_year}" if year.school_year is not None else "?"
    # Two lines, so every year keeps its label in a half-width chart (one line drops every other one).
    return f"{school_year}\n{label('grade', year.grade, lang)}" if year.grade else school_year


def _t(lang: str, zh: str, en: str) -> str:
    return en if lang == "en" else zh
