"""DP statistics (privacy.release) and the statistics job (training.statistics).

OpenDP draws noise from the OS's CSPRNG and cannot be seeded, so the tests are statistical:
either many independent cells in one release (the empirical spread against the theory), or an ε
large enough that the event tested for has a probability below 1e-9 (stated at each test).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import privacy.release as release_module
from core.config import Settings
from privacy.ledger import BudgetExceeded, PrivacyLedger
from privacy.release import dp_counts, dp_means, dp_quantiles, key_grid
from training.budget import Budget


def cohort(sizes: dict[int, int], *, value=None, start: int = 0) -> pd.DataFrame:
    """`sizes[cell]` distinct students in each cell (one row each), unit ids s<start>, s<start+1>, ..."""
    cells = np.repeat(np.fromiter(sizes, dtype=np.int64), list(sizes.values()))
    frame = pd.DataFrame({"student": [f"s{i}" for i in range(start, start + len(cells))], "cell": cells})
    if value is not None:
        frame["score"] = value(len(frame)) if callable(value) else float(value)
    return frame


def discrete_laplace_std(scale: float) -> float:
    """Standard deviation of the integer (discrete) Laplace with P(k) ∝ exp(-|k| / scale)."""
    q = math.exp(-1.0 / scale)
    return math.sqrt(2 * q) / (1 - q)


# --- (a) noise scale matches the declared ε -------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_count_noise_has_the_scale_its_epsilon_promises(epsilon):
    # 2000 cells of exactly 100 students: 2000 independent draws of the count noise in one release.
    n_cells, size = 2000, 100
    frame = cohort({cell: size for cell in range(n_cells)})
    released = dp_counts(frame, by=["cell"], keys=key_grid(cell=range(n_cells)), unit="student", epsilon=epsilon)

    # The privacy map OpenDP attached to the measurement, and the scale it chose: 1/ε for sensitivity 1.
    assert epsilon * 0.999 <= released.epsilon_map <= epsilon
    assert released.table["noise_scale"].to_numpy() == pytest.approx(1 / epsilon, rel=1e-3)
    assert (released.table["mechanism"] == "Integer Laplace").all()

    noise = released.table["value"].to_numpy(dtype=float) - size
    expected = discrete_laplace_std(1 / epsilon)  # √2/ε for the continuous Laplace; a little less when discrete
    # Relative standard error of a Laplace sample's std with n = 2000 is √(5 / 4n) ≈ 2.5 %: 10 % is 4 errors.
    assert np.std(noise) == pytest.approx(expected, rel=0.10)
    assert abs(np.mean(noise)) < 4 * expected / math.sqrt(n_cells)  # signed noise: unbiased, not clamped at 0


def test_a_mean_splits_epsilon_evenly_between_its_noisy_sum_and_count():
    epsilon, bounds = 1.0, (0.0, 100.0)
    frame = cohort({0: 400, 1: 400}, value=lambda n: np.linspace(0, 100, n))
    released = dp_means(frame, value="score", bounds=bounds, by=["cell"], keys=key_grid(cell=[0, 1]),
                        unit="student", epsilon=epsilon)
    table = released.table
    count, mean = table[table["statistic"] == "count"], table[table["statistic"] == "mean"]
    assert count["epsilon"].tolist() == [epsilon / 2] * 2 and mean["epsilon"].tolist() == [epsilon] * 2
    assert count["noise_scale"].to_numpy() == pytest.approx(2 / epsilon, rel=1e-3)  # sensitivity 1, ε/2
    # The sum runs over values centred on the bounds' midpoint: sensitivity (high - low) / 2 = 50, at ε/2.
    assert mean["noise_scale"].to_numpy() == pytest.approx(2 * 50 / epsilon, rel=1e-3)
    assert released.epsilon_map <= epsilon
    # The scores run evenly 0 → 100 across both cells: true means 25 and 75, noise about 200 / 400 · √2 ≈ 0.7.
    assert mean["value"].to_numpy(dtype=float) == pytest.approx([25, 75], abs=4)


def test_each_rows_epsilon_is_what_opendp_spends_on_that_statistic():
    # A statistic released alone at its row's ε must get the same noise scale as inside the call.
    frame = cohort({0: 200, 1: 200}, value=lambda n: np.linspace(0, 100, n))
    common = dict(by=["cell"], keys=key_grid(cell=[0, 1]), unit="student")
    together = dp_quantiles(frame, value="score", bounds=(0, 100), quantiles=[0.1, 0.5, 0.75], epsilon=1.2, **common)
    rows = together.table.drop_duplicates("statistic").set_index("statistic")
    assert rows["epsilon"].to_dict() == pytest.approx({"count": 0.3, "p10": 0.3, "p50": 0.3, "p75": 0.3})
    assert together.epsilon_map == pytest.approx(1.2, rel=1e-3) and together.epsilon_map <= 1.2

    counts = dp_counts(frame, epsilon=0.3, **common)
    assert counts.table["noise_scale"].iloc[0] == pytest.approx(rows.at["count", "noise_scale"], rel=1e-3)
    for name, q in (("p10", 0.1), ("p50", 0.5), ("p75", 0.75)):
        alone = dp_quantiles(frame, value="score", bounds=(0, 100), quantiles=[q], epsilon=0.3, counts=counts,
                             **common)
        assert alone.table["noise_scale"].iloc[0] == pytest.approx(rows.at[name, "noise_scale"], rel=1e-3)


# --- (b) small cells never reveal a value --------------------------------------------------------------------


def test_a_small_cell_is_suppressed_with_all_its_statistics_and_a_large_one_is_not():
    # 100 cells of 3 students and 100 of 500. The counts (the mean's: ε/2 of 10) have noise scale 0.2:
    # P(noise ≥ 7) < 1e-15 per cell, so a 3-student cell never reaches 10 here, and no 500 one falls under.
    # (At ε = 1 it would in about 1 cell of 1500: suppression is on the noisy count, as it must be.)
    small, large = range(100), range(100, 200)
    frame = cohort({**{c: 3 for c in small}, **{c: 500 for c in large}}, value=lambda n: np.full(n, 42.0))
    keys = key_grid(cell=[*small, *large])
    common = dict(by=["cell"], keys=keys, unit="student")

    counts = dp_counts(frame, epsilon=5.0, **common)
    means = dp_means(frame, value="score", bounds=(0, 100), epsilon=10.0, **common)
    quantiles = dp_quantiles(frame, value="score", bounds=(0, 100), quantiles=[0.25, 0.5], epsilon=1.0,
                             counts=counts, **common)
    for released in (counts, means, quantiles):
        table = released.table
        is_small = table["cell"].isin(small)
        assert table.loc[is_small, "suppressed"].all() and table.loc[is_small, "value"].isna().all()
        assert not table.loc[~is_small, "suppressed"].any() and table.loc[~is_small, "value"].notna().all()
        assert table[["epsilon", "mechanism"]].notna().all().all()  # a suppressed cell still says what it cost

    released_counts = counts.values("count").query("not suppressed")["value"].astype(float)
    assert released_counts.to_numpy() == pytest.approx(500, abs=3)
    assert means.values("mean").query("not suppressed")["value"].astype(float).to_numpy() == pytest.approx(42, abs=0.5)


def test_quantiles_without_counts_release_their_own_count_and_suppress_on_it():
    frame = cohort({0: 3, 1: 800}, value=lambda n: np.linspace(0, 100, n))
    released = dp_quantiles(frame, value="score", bounds=(0, 100), quantiles=[0.1, 0.5, 0.9], by=["cell"],
                            keys=key_grid(cell=[0, 1]), unit="student", epsilon=20.0)
    table = released.table
    assert table["statistic"].tolist() == ["count", "p10", "p50", "p90"] * 2
    assert table["epsilon"].to_numpy() == pytest.approx(20.0 / 4)  # ε split evenly over count and 3 quantiles
    assert released.epsilon == 20.0 and released.epsilon_map <= 20.0
    assert table.loc[table["cell"] == 0, "value"].isna().all()  # count scale 0.2: 3 students never reach 10
    p = released.values("p10").join(released.values("p50"), rsuffix="_50").join(released.values("p90"), rsuffix="_90")
    assert p.loc[1, ["value", "value_50", "value_90"]].astype(float).tolist() == pytest.approx([10, 50, 90], abs=3)


# --- (c) contribution bounding: one student is one row -----------------------------------------------------


def test_duplicating_one_students_rows_does_not_move_counts_or_means_beyond_noise():
    # 500 students score 0 in cell 0 and 500 in cell 1; student s0 (cell 0) scores 100 and shows up
    # 100 more times in cell 0 and 100 times in cell 1. Bounded, s0 is one row in one cell.
    frame = cohort({0: 500, 1: 500}, value=0.0)
    frame.loc[0, "score"] = 100.0
    copies = pd.concat([frame.iloc[[0]].assign(cell=0)] * 100 + [frame.iloc[[0]].assign(cell=1)] * 100)
    inflated = pd.concat([frame, copies], ignore_index=True)
    common = dict(by=["cell"], keys=key_grid(cell=[0, 1]), unit="student")

    # ε = 5: count noise scale 0.2, P(|noise| ≥ 3) < 1e-6. Unbounded, the cells would hold 600 rows.
    counts = dp_counts(inflated, epsilon=5.0, **common).values("count")["value"].astype(float)
    assert counts.sum() == pytest.approx(1000, abs=6)
    assert counts.max() <= 501 + 3

    # ε = 10: the sum's noise scale is 2 · 50 / 10 = 10, i.e. 0.02 on a mean of 500: unbounded, the
    # duplicates alone would push cell 0's mean to 100 · 101 / 600 ≈ 17.
    means = dp_means(inflated, value="score", bounds=(0, 100), epsilon=10.0, **common).values("mean")
    assert means["value"].astype(float).max() < 1.0


# --- (d) public keys --------------------------------------------------------------------------------------


def test_every_public_key_is_released_in_the_callers_order_and_only_those():
    frame = pd.concat([
        cohort({1: 50}).assign(sex="f"),
        cohort({1: 50}, start=50).assign(sex="m"),
        cohort({99: 50}, start=100).assign(sex="m"),  # grade 99 is not in the public domain
    ], ignore_index=True).rename(columns={"cell": "grade"})
    keys = key_grid(grade=[3, 2, 1], sex=["m", "f"])  # grades 2 and 3 have nobody
    released = dp_counts(frame, by=["grade", "sex"], keys=keys, unit="student", epsilon=1.0)

    table = released.table
    assert table[["grade", "sex"]].values.tolist() == keys.values.tolist()
    empty = table["grade"].isin([2, 3])
    assert table.loc[empty, "suppressed"].all() and table.loc[empty, "value"].isna().all()
    assert (table.loc[empty, "epsilon"] == 1.0).all() and table.loc[empty, "noise_scale"].notna().all()


# --- (e) the ledger is charged first -----------------------------------------------------------------------


def test_the_ledger_is_charged_before_computing_and_an_over_budget_call_computes_nothing(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    budget = Budget(ledger=ledger, release="2025", snapshot="")
    frame = cohort({0: 100, 1: 100})
    common = dict(by=["cell"], keys=key_grid(cell=[0, 1]), unit="student", budget=budget)

    computed = []  # the ledger's spends as they stood each time OpenDP was about to run
    noisy = release_module._noisy

    def spy(*args, **kwargs):
        computed.append([s["what"] for s in ledger.spends("2025")])
        return noisy(*args, **kwargs)

    monkeypatch.setattr(release_module, "_noisy", spy)

    dp_counts(frame, epsilon=0.6, what="counts a", **common)
    assert computed == [["counts a"]]  # already on the ledger when the computation started
    spend = ledger.spends("2025")[0]
    assert (spend["epsilon"], spend["delta"]) == (0.6, 0.0)
    assert "Laplace" in spend["mechanism"] and spend["accountant"] == release_module.ACCOUNTANT

    with pytest.raises(BudgetExceeded):
        dp_counts(frame, epsilon=0.6, what="counts b", **common)
    with pytest.raises(KeyError):  # a mistake found before the spend costs nothing either
        dp_means(frame, value="no_such_column", bounds=(0, 1), epsilon=0.1, **common)
    assert len(computed) == 1
    assert [s["what"] for s in ledger.spends("2025")] == ["counts a"]
    assert ledger.balance("2025").epsilon_left == pytest.approx(0.4)


# --- (f) the job -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from features.indicators import build_indicators
    from portrait.pipeline import run_ingest, run_synth

    root = tmp_path_factory.mktemp("statistics-city")
    settings = Settings(home=root / "home")
    run_synth(root / "export", students=300, seed=5, school_years=2)
    run_ingest(root / "export", settings)
    build_indicators(settings.lake_dir, settings.indicators_dir)
    return settings


def test_the_job_writes_norms_and_pass_rates_and_spends_what_it_declares(city):
    from training.budget import Budget
    from training.statistics import DOMAINS, NORM_QUANTILES, release_statistics

    ledger = PrivacyLedger(city.home / "ledger.db")
    ledger.open_release("job", epsilon=10.0, delta=1e-5)
    paths = release_statistics(city, Budget(ledger, "job", snapshot="v-test"))

    assert set(paths) == {"five_domain_norms", "fitness_pass_rates"}
    assert all(path.parent == city.home / "statistics" for path in paths.values())
    norms, rates = (pd.read_parquet(paths[name]) for name in ("five_domain_norms", "fitness_pass_rates"))
    cells = 12 * 2  # grades 1-12 × m / f: every public key, whether or not the city has such students
    assert len(norms) == cells * (1 + len(DOMAINS) * len(NORM_QUANTILES))
    assert len(rates) == cells * 3
    for table in (norms, rates):
        assert set(map(tuple, table[["grade", "sex"]].drop_duplicates().values)) == set(
            map(tuple, key_grid(grade=range(1, 13), sex="mf").values))
        assert table.loc[table["suppressed"], "value"].isna().all()
        assert table.loc[~table["suppressed"], "value"].notna().all()
    scores = norms[norms["domain"].notna() & ~norms["suppressed"]]["value"]
    assert scores.between(0, 100).all()
    rate = rates[(rates["statistic"] == "pass_rate") & ~rates["suppressed"]]["value"]
    assert rate.between(0, 1).all()

    spends = ledger.spends("job")
    assert len(spends) == 1 + len(DOMAINS) + 2  # one spend per released statistic, each named
    assert sum(s["epsilon"] for s in spends) == pytest.approx(0.1 + 5 * 0.5 + 2 * 0.2)
    assert all(s["delta"] == 0 and s["what"].startswith("statistics: ") for s in spends)
    is_count = norms["statistic"] == "count"
    assert (norms.loc[is_count, "epsilon"] == 0.1).all() and norms.loc[is_count, "domain"].isna().all()
    assert norms.loc[~is_count, "epsilon"].to_numpy() == pytest.approx(0.5 / len(NORM_QUANTILES))
    # A suppressed count suppresses every percentile of its cell.
    small = norms.loc[is_count & norms["suppressed"], ["grade", "sex"]]
    assert norms.merge(small)["suppressed"].all()


def test_the_job_refuses_up_front_when_the_release_cannot_pay_for_all_of_it(city):
    from training.budget import Budget
    from training.statistics import release_statistics

    ledger = PrivacyLedger(city.home / "ledger-small.db")
    ledger.open_release("small", epsilon=1.0, delta=1e-5)
    with pytest.raises(BudgetExceeded, match=r"spending ε=3, δ=0 .* left: ε=1"):
        release_statistics(city, Budget(ledger, "small", snapshot="v-test"))
    assert ledger.spends("small") == []
