"""《国家学生体质健康标准（2014年修订）》 (CSPHS 2014) as a queryable object.

The tables ship with the package (`csphs2014.json`, the machine-readable standard kept in
`shared/data/csphs2014/`), because the engine must score fitness wherever it is installed.
`tests/test_fitness_standard.py` checks them cell for cell against the shared CSV, so the two
cannot drift apart.

Grades are the contract's 1–12; the university columns of the standard are not served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

SCORE_LEVELS = (100, 95, 90, 85, 80, 78, 76, 74, 72, 70, 68, 66, 64, 62, 60, 50, 40, 30, 20, 10)
GRADES = tuple(range(1, 13))
SEXES = ("m", "f")


@dataclass(frozen=True)
class Item:
    name: str  # the standard's item name, used in `score_<name>` columns
    column: str  # the fitness_tests column holding the raw value (CONTRACT.md)
    unit: str
    higher_is_better: bool
    step: float  # the unit a measurement is recorded in (one step worse = one of these)


ITEMS: tuple[Item, ...] = (
    Item("vital_capacity", "vital_capacity_ml", "ml", True, 1),
    Item("run_50m", "run_50m_s", "s", False, 0.1),
    Item("sit_and_reach", "sit_and_reach_cm", "cm", True, 0.1),
    Item("rope_skip_1min", "rope_skip_1min", "count", True, 1),
    Item("sit_up_1min", "sit_up_1min", "count", True, 1),
    Item("shuttle_50x8", "shuttle_50x8_s", "s", False, 1),
    Item("standing_long_jump", "standing_long_jump_cm", "cm", True, 1),
    Item("pull_up", "pull_up", "count", True, 1),
    Item("run_800m", "run_800m_s", "s", False, 1),
    Item("run_1000m", "run_1000m_s", "s", False, 1),
)
ITEM_BY_NAME = {item.name: item for item in ITEMS}

BMI_SCORES = {"normal": 100, "underweight": 80, "overweight": 80, "obese": 60}
LEVEL_CUTS = (("excellent", 90.0), ("good", 80.0), ("pass", 60.0))  # else "fail"


@dataclass(frozen=True)
class BmiBands:
    underweight_max: float
    normal_max: float
    overweight_max: float


@dataclass(frozen=True)
class StepBonus:
    """Bonus points for the excess over an item's 100-point threshold (grades 7–12)."""

    item: str
    excess: tuple[float, ...]  # extra reps, or seconds faster, needed for 1, 2, ... points
    points: tuple[int, ...]


class Csphs2014:
    """The standard's tables and rules. Build with `standard()`; immutable."""

    ROPE_SKIP_REPS_PER_POINT = 2
    ROPE_SKIP_MAX_BONUS = 20
    MAX_BONUS = 20

    def __init__(self, raw: dict):
        self._weights = {band: dict(weights) for band, weights in raw["items_and_weights"].items()}
        self._tables: dict[tuple[str, str, int], tuple[tuple[int, float], ...]] = {}
        for item, by_sex in raw["tables"].items():
            for sex, by_grade in by_sex.items():
                for grade, cells in by_grade.items():
                    if not grade.isdigit():
                        continue
                    # A null threshold is a level the table does not have (pull-ups): skip it.
                    self._tables[(item, sex.lower(), int(grade))] = tuple(
                        (int(level), float(threshold)) for level, threshold in cells if threshold is not None
                    )
        self._bmi = {
            (row["sex"].lower(), int(row["grade"])): BmiBands(
                row["underweight_max"], row["normal_max"], row["overweight_max"]
            )
            for row in raw["bmi"]
            if row["grade"].isdigit()
        }
        bonus = raw["bonus_加分"]
        self._step_bonus = {
            "m": (
                StepBonus("pull_up", _floats(bonus["pull_up_M_7plus"]["extra_reps"]), _ints(bonus["pull_up_M_7plus"]["points"])),
                StepBonus("run_1000m", _floats(bonus["run_1000m_M_7plus"]["seconds_faster"]), _ints(bonus["run_1000m_M_7plus"]["points"])),
            ),
            "f": (
                StepBonus("sit_up_1min", _floats(bonus["sit_up_1min_F_7plus"]["extra_reps"]), _ints(bonus["sit_up_1min_F_7plus"]["points"])),
                StepBonus("run_800m", _floats(bonus["run_800m_F_7plus"]["seconds_faster"]), _ints(bonus["run_800m_F_7plus"]["points"])),
            ),
        }

    def weights(self, grade: int, sex: str) -> dict[str, float]:
        """Items tested in this grade band, BMI included, with their weights (they sum to 1)."""
        if grade <= 2:
            band = self._weights["grades_1_2"]
        elif grade <= 4:
            band = self._weights["grades_3_4"]
        elif grade <= 6:
            band = self._weights["grades_5_6"]
        else:
            band = {}
            for key, weight in self._weights["junior_senior_university"].items():
                # "pull_up(M)|sit_up_1min(F)": one item per sex
                for option in key.split("|"):
                    name, _, only = option.partition("(")
                    if not only or only.rstrip(")").lower() == sex:
                        band[name] = weight
        return band

    def tested_items(self, grade: int, sex: str) -> list[Item]:
        return [ITEM_BY_NAME[name] for name in self.weights(grade, sex) if name != "bmi"]

    def thresholds(self, item: str, sex: str, grade: int) -> tuple[tuple[int, float], ...]:
        """(score level, threshold) from 100 down to 10, levels the table lacks left out."""
        return self._tables[(item, sex, grade)]

    def bmi_bands(self, sex: str, grade: int) -> BmiBands:
        return self._bmi[(sex, grade)]

    def step_bonuses(self, sex: str) -> tuple[StepBonus, ...]:
        return self._step_bonus[sex]


def level_for(total: float) -> str:
    for level, cut in LEVEL_CUTS:
        if total >= cut:
            return level
    return "fail"


def levels_for(totals: np.ndarray) -> np.ndarray:
    """`level_for` of every total at once (None where the total is NaN), as an object array."""
    totals = np.asarray(totals, dtype=float)
    levels = np.select([totals >= cut for _, cut in LEVEL_CUTS], [level for level, _ in LEVEL_CUTS],
                       default="fail").astype(object)
    levels[np.isnan(totals)] = None
    return levels


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@lru_cache(maxsize=1)
def standard() -> Csphs2014:
    text = resources.files(__package__).joinpath("csphs2014.json").read_text(encoding="utf-8")
    return Csphs2014(json.loads(text))
