"""Deadline arithmetic: an attempt never gets more time than is left."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.deadline import Deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


positive = st.floats(min_value=0.001, max_value=1e4, allow_nan=False)
nonneg = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@given(total=positive, elapsed=nonneg, cap=st.none() | nonneg, reserve=nonneg)
def test_budget_never_exceeds_what_is_left(total, elapsed, cap, reserve):
    clock = FakeClock()
    d = Deadline(total, clock=clock)
    clock.now += elapsed
    left = max(0.0, total - elapsed)
    budget = d.budget(cap=cap, reserve=reserve)
    assert 0.0 <= budget <= left + 1e-9
    if cap is not None:
        assert budget <= cap
    assert budget <= max(0.0, left - reserve) + 1e-9
    assert d.expired == (left <= 0.0) or abs(left) < 1e-9


@given(total=positive, steps=st.lists(nonneg, max_size=20))
def test_remaining_only_goes_down(total, steps):
    clock = FakeClock()
    d = Deadline(total, clock=clock)
    previous = d.remaining()
    for step in steps:
        clock.now += step
        now = d.remaining()
        assert now <= previous
        previous = now


@pytest.mark.parametrize("bad", [0, -1, -0.5])
def test_non_positive_deadline_is_rejected(bad):
    with pytest.raises(ValueError, match="positive"):
        Deadline(bad)
