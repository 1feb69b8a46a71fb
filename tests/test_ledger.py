"""The privacy budget ledger refuses overspending, also under concurrent spends."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from privacy.ledger import BudgetExceeded, PrivacyLedger


def test_spends_add_up_and_overspending_is_refused_with_what_is_left(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=3.0, delta=1e-5, snapshot="v-1")
    ledger.spend("2025", what="model a", epsilon=2.0, delta=4e-6, mechanism="DP-SGD", accountant="prv",
                 snapshot="v-1")

    with pytest.raises(BudgetExceeded, match=r"release '2025'.*'model b'.*left: ε=1, δ=6e-06"):
        ledger.spend("2025", what="model b", epsilon=1.5, delta=1e-6, mechanism="DP-SGD", accountant="prv")

    balance = ledger.balance("2025")
    assert balance.epsilon_spent == pytest.approx(2.0) and balance.epsilon_left == pytest.approx(1.0)
    [spend] = ledger.spends("2025")  # the refused spend left no trace
    assert (spend["what"], spend["mechanism"], spend["accountant"], spend["snapshot"]) == (
        "model a", "DP-SGD", "prv", "v-1")
    assert spend["spent_at"]


def test_spending_exactly_the_rest_is_allowed_and_then_nothing_more(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    for _ in range(10):
        ledger.spend("2025", what="count", epsilon=0.1, delta=0, mechanism="Laplace", accountant="basic")
    assert ledger.balance("2025").epsilon_left == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(BudgetExceeded):
        ledger.spend("2025", what="one more", epsilon=1e-6, delta=0, mechanism="Laplace", accountant="basic")


def test_delta_is_budgeted_too(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=10.0, delta=1e-5)
    with pytest.raises(BudgetExceeded):
        ledger.spend("2025", what="m", epsilon=0.1, delta=2e-5, mechanism="x", accountant="rdp")


def test_bad_budgets_and_spends_are_refused_clearly(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    with pytest.raises(ValueError, match="release '2025' needs epsilon > 0"):
        ledger.open_release("2025", epsilon=0, delta=1e-5)
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    with pytest.raises(ValueError, match="cannot be negative"):
        ledger.spend("2025", what="m", epsilon=-1, delta=0, mechanism="x", accountant="x")
    with pytest.raises(ValueError, match="cannot be negative"):
        ledger.spend("2025", what="m", epsilon=float("nan"), delta=0, mechanism="x", accountant="x")


def test_reopening_a_release_keeps_its_total_and_unknown_release_is_an_error(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    assert ledger.open_release("2025", epsilon=99.0, delta=1e-5).epsilon_total == 1.0
    with pytest.raises(KeyError, match="no privacy release named '2024'"):
        ledger.spend("2024", what="m", epsilon=0.1, delta=0, mechanism="x", accountant="prv")
    assert [b.release for b in ledger.releases()] == ["2025"]


def test_a_sqlalchemy_url_works_like_a_path(tmp_path):
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'sub' / 'ledger.db'}")
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    assert PrivacyLedger(tmp_path / "sub" / "ledger.db").balance("2025").epsilon_total == 1.0


def _spend_many(url: str, start, results) -> None:
    ledger = PrivacyLedger(url)
    start.wait()  # every process has imported and connected: now they race
    outcomes = []
    for _ in range(25):
        try:
            ledger.spend("race", what="job", epsilon=0.05, delta=0.0, mechanism="x", accountant="prv")
            outcomes.append("ok")
        except BudgetExceeded:
            outcomes.append("refused")
    results.put(outcomes)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("postgres_url")
    import sqlalchemy as sa

    with sa.create_engine(url).begin() as db:  # a clean ledger for each test
        db.exec_driver_sql("DROP TABLE IF EXISTS spends, releases")
    return url


def test_parallel_jobs_racing_for_the_last_of_the_budget_never_overspend(ledger_url):
    url = ledger_url
    PrivacyLedger(url).open_release("race", epsilon=3.0, delta=1e-5)
    context = mp.get_context("spawn")
    results, start = context.Queue(), context.Barrier(8)
    workers = [context.Process(target=_spend_many, args=(url, start, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    outcomes = [outcome for _ in workers for outcome in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
    # 200 attempts at ε = 0.05 for a budget of 3: exactly 60 fit, whatever the interleaving.
    assert outcomes.count("ok") == 60 and outcomes.count("refused") == 140
    assert PrivacyLedger(url).balance("race").epsilon_spent == pytest.approx(3.0)
    assert len(PrivacyLedger(url).spends("race")) == 60


def test_several_spends_are_paid_all_or_none(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    items = [dict(what=f"count {i}", epsilon=0.3, delta=0.0, mechanism="Laplace", accountant="OpenDP")
             for i in range(4)]
    with pytest.raises(BudgetExceeded, match="ε=1.2.*left: ε=1"):
        ledger.spend_all("2025", items)
    assert ledger.spends("2025") == []
    ledger.spend_all("2025", items[:3], snapshot="v-2")
    assert [s["what"] for s in ledger.spends("2025")] == ["count 0", "count 1", "count 2"]
    assert ledger.balance("2025").epsilon_left == pytest.approx(0.1)


def test_a_spend_settles_to_what_the_accountant_read_back_but_never_higher(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=3.0, delta=1e-4)
    receipt = ledger.spend("2025", what="training", epsilon=2.0, delta=1e-5, mechanism="DP-SGD", accountant="prv")
    assert receipt.balance.epsilon_left == pytest.approx(1.0)
    assert ledger.settle(receipt.ids[0], epsilon=1.97, delta=1e-5).epsilon_left == pytest.approx(1.03)
    with pytest.raises(ValueError, match="can only be settled lower"):
        ledger.settle(receipt.ids[0], epsilon=2.5, delta=1e-5)
    assert ledger.spends("2025")[0]["epsilon"] == pytest.approx(1.97)


def test_teachers_and_students_spend_from_separate_releases_of_the_year(tmp_path):
    """A teacher model's ε protects teachers: it never eats into the students' budget, and the
    teachers' release refuses overspending on its own."""
    import pandas as pd

    from core.config import Settings
    from training.budget import STUDENTS, TEACHERS, current_budget, release_name

    settings = Settings(home=tmp_path, release_epsilon_budget=2.0, release_delta_budget=1e-5)
    settings.lake_dir.mkdir(parents=True)
    pd.DataFrame({"term_id": ["2025-1"], "school_year": [2025]}).to_parquet(settings.lake_dir / "terms.parquet")

    teachers = current_budget(settings, TEACHERS)
    assert teachers.release == release_name("2025", TEACHERS) == "2025/teachers"
    teachers.spend(what="teacher_training training", epsilon=1.5, delta=1e-6, mechanism="DP-SGD", accountant="prv")
    with pytest.raises(BudgetExceeded, match=r"release '2025/teachers'.*left: ε=0.5"):
        teachers.spend(what="again", epsilon=1.0, delta=1e-6, mechanism="DP-SGD", accountant="prv")

    students = current_budget(settings, STUDENTS)
    assert students.release == "2025"
    assert students.ledger.balance("2025").epsilon_spent == 0.0  # untouched by the teacher model
    students.spend(what="fitness_risk training", epsilon=2.0, delta=1e-6, mechanism="DP-SGD", accountant="prv")
    with pytest.raises(ValueError, match="unknown unit of privacy 'classes'"):
        current_budget(settings, "classes")
