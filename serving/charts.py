"""The fitness history chart, drawn server-side as inline SVG.

No JavaScript and no external resources: the page must work on a school's closed network and
print as it looks on screen. Every text node is escaped, and every coordinate is formatted
from a float, so the returned markup is safe to embed as-is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from serving.labels import GRADE_LABELS

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 44, 80, 16, 48  # margins: room for axis, band and year labels
PLOT_RIGHT, PLOT_BOTTOM = WIDTH - RIGHT, HEIGHT - BOTTOM
SLOT_PADDING = 36  # keeps the first and last point clear of the axes
Y_MAX = 120.0  # standard score 100 plus at most 20 bonus points
Y_TICKS = (0, 20, 40, 60, 80, 100, 120)
LEVEL_BANDS = ((60, "及格 60"), (80, "良好 80"), (90, "优秀 90"))
LINE_COLOUR = "#1f5fa8"
MUTED = "#6b7280"


def fitness_history_svg(history: Sequence[Mapping[str, Any]]) -> str:
    """A line chart of total score per school year (oldest first, as given).

    A year without a total (absent from the test, or not yet scored) keeps its place on the x
    axis, marked 未测, and breaks the line rather than being bridged by it.
    """
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="fitness-chart" '
        'font-size="12">',
        "<title>体测总分历年变化 (total fitness score by school year)</title>",
        *_frame(),
    ]
    if not history:
        parts.append(_text((LEFT + PLOT_RIGHT) / 2, (TOP + PLOT_BOTTOM) / 2,
                           "暂无体测记录 (no fitness tests yet)", anchor="middle", fill=MUTED))
    xs = _slot_xs(len(history))
    totals = [_finite(year.get("total_score")) for year in history]
    for run in _runs_of_present(xs, totals):
        points = " ".join(f"{x:.1f},{_y(total):.1f}" for x, total in run)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{LINE_COLOUR}" '
                     'stroke-width="2" stroke-linejoin="round"/>')
    for x, total, year in zip(xs, totals, history):
        parts.extend(_point(x, total))
        parts.extend(_x_labels(x, year))
    parts.append("</svg>")
    return "\n".join(parts)


def _frame() -> list[str]:
    parts = []
    for tick in Y_TICKS:
        y = _y(tick)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{PLOT_RIGHT}" y2="{y:.1f}" '
                     'stroke="#e5e7eb" stroke-width="1"/>')
        parts.append(_text(LEFT - 6, y + 4, str(tick), anchor="end", fill=MUTED))
    for score, label in LEVEL_BANDS:
        y = _y(score)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{PLOT_RIGHT}" y2="{y:.1f}" '
                     'stroke="#9ca3af" stroke-width="1" stroke-dasharray="6 4"/>')
        parts.append(_text(PLOT_RIGHT + 6, y + 4, label, anchor="start", fill=MUTED))
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{PLOT_BOTTOM}" stroke="#374151"/>')
    parts.append(f'<line x1="{LEFT}" y1="{PLOT_BOTTOM}" x2="{PLOT_RIGHT}" y2="{PLOT_BOTTOM}" '
                 'stroke="#374151"/>')
    return parts


def _point(x: float, total: float | None) -> list[str]:
    if total is None:
        return [_text(x, _y(0) - 6, "未测", anchor="middle", fill=MUTED)]
    y = _y(total)
    return [
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#ffffff" stroke="{LINE_COLOUR}" '
        'stroke-width="2"/>',
        _text(x, y - 10, f"{total:.1f}", anchor="middle", fill="#111827", weight="bold"),
    ]


def _x_labels(x: float, year: Mapping[str, Any]) -> list[str]:
    school_year = _finite(year.get("school_year"))
    grade = _finite(year.get("grade"))
    year_label = f"{int(school_year)}学年" if school_year is not None else "学年未知"
    grade_label = GRADE_LABELS.get(int(grade), f"{int(grade)}年级") if grade is not None else ""
    return [
        _text(x, PLOT_BOTTOM + 18, year_label, anchor="middle", fill="#111827"),
        _text(x, PLOT_BOTTOM + 34, grade_label, anchor="middle", fill=MUTED),
    ]


def _slot_xs(count: int) -> list[float]:
    if count == 1:
        return [(LEFT + PLOT_RIGHT) / 2]
    first, last = LEFT + SLOT_PADDING, PLOT_RIGHT - SLOT_PADDING
    return [first + i * (last - first) / (count - 1) for i in range(count)]


def _runs_of_present(xs: list[float], totals: list[float | None]) -> list[list[tuple[float, float]]]:
    """Consecutive years that have a total, each run drawn as its own line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, total in zip(xs, totals):
        if total is None:
            runs.append([])
        else:
            runs[-1].append((x, total))
    return [run for run in runs if run]


def _y(score: float) -> float:
    clamped = min(max(score, 0.0), Y_MAX)
    return TOP + (PLOT_BOTTOM - TOP) * (1 - clamped / Y_MAX)


def _finite(value: Any) -> float | None:
    """The value as a float, or None when missing or not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(x: float, y: float, content: str, *, anchor: str, fill: str, weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}">{escape(content)}</text>')
