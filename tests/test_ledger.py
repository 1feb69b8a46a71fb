"""The privacy budget ledger refuses overspending, also under concurrent spends."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from privacy.ledger import BudgetExceeded, PrivacyLedger


def test_spends_add_up_and_overspending_is_refused_with_what_is_left(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=3.0, delta=1e-5)
    ledger.spend("2025", what="model a", epsilon=2.0, delta=4e-6, mechanism="DP-SGD", accountant="prv")

    with pytest.raises(BudgetExceeded, match=r"left: ε=1, δ=6e-06"):
        ledger.spend("2025", what="model b", epsilon=1.5, delta=1e-6, mechanism="DP-SGD", accountant="prv")

    balance = ledger.balance("2025")
    assert balance.epsilon_spent == pytest.approx(2.0)
    assert [s["what"] for s in ledger.spends("2025")] == ["model a"]  # the refused spend left no trace


def test_delta_is_budgeted_too(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=10.0, delta=1e-5)
    with pytest.raises(BudgetExceeded):
        ledger.spend("2025", what="m", epsilon=0.1, delta=2e-5, mechanism="x", accountant="rdp")


def test_reopening_a_release_keeps_its_total_and_unknown_release_is_an_error(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.open_release("2025", epsilon=1.0, delta=1e-5)
    assert ledger.open_release("2025", epsilon=99.0, delta=1e-5).epsilon_total == 1.0
    with pytest.raises(KeyError, match="no privacy release named '2024'"):
        ledger.spend("2024", what="m", epsilon=0.1, delta=0, mechanism="x", accountant="prv")


def _spend_one(path: str, results) -> None:
    try:
        PrivacyLedger(path).spend("race", what="job", epsilon=1.0, delta=0.0, mechanism="x", accountant="prv")
        results.put("ok")
    except BudgetExceeded:
        results.put("refused")


def test_parallel_jobs_racing_for_the_last_of_the_budget_never_overspend(tmp_path):
    path = str(tmp_path / "ledger.db")
    PrivacyLedger(path).open_release("race", epsilon=3.0, delta=1e-5)
    context = mp.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_spend_one, args=(path, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes.count("ok") == 3 and outcomes.count("refused") == 5
    assert PrivacyLedger(path).balance("race").epsilon_spent == pytest.approx(3.0)
