"""The per-identity sliding-hour PHI row budget, with time passed in."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.budget import PhiBudget

T0 = dt.datetime(2024, 6, 4, 10, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_sliding_hour() -> None:
    budget = PhiBudget()
    budget.record("alice", 100, at(0))
    budget.record("alice", 50, at(1800))
    assert budget.used("alice", at(1800)) == 150
    assert budget.used("alice", at(3599)) == 150
    assert budget.used("alice", at(3600)) == 50  # the first entry is an hour old
    assert budget.used("alice", at(5400)) == 0


def test_identities_are_separate() -> None:
    budget = PhiBudget()
    budget.record("alice", 10, at(0))
    budget.record("bob", 7, at(0))
    assert (budget.used("alice", at(1)), budget.used("bob", at(1))) == (10, 7)
    assert budget.used("nobody", at(1)) == 0


def test_same_second_is_one_bucket_and_memory_is_bounded() -> None:
    budget = PhiBudget()
    for i in range(10_000):
        budget.record("alice", 1, at(i / 1000))  # ten seconds of traffic
    assert budget.used("alice", at(10)) == 10_000
    assert len(budget._ledgers["alice"].buckets) <= 11


def test_clock_stepping_back_still_counts() -> None:
    budget = PhiBudget()
    budget.record("alice", 5, at(100))
    budget.record("alice", 5, at(50))
    assert budget.used("alice", at(100)) == 10


def test_prune_forgets_idle_identities() -> None:
    budget = PhiBudget()
    budget.record("alice", 5, at(0))
    budget.prune(at(4000))
    assert budget._ledgers == {}


def test_custom_window_and_errors() -> None:
    budget = PhiBudget(dt.timedelta(minutes=1))
    budget.record("a", 3, at(0))
    budget.record("a", 0, at(0))
    assert budget.used("a", at(59)) == 3 and budget.used("a", at(60)) == 0
    with pytest.raises(ValueError):
        budget.record("a", -1, at(0))
    with pytest.raises(ValueError):
        budget.used("a", dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        PhiBudget(dt.timedelta(0))
