"""LayerSelector alone: what a budget buys, temporal before spatial, down at once, up after a steady hold."""

from __future__ import annotations

from roomcast.sfu.selector import LayerSelector, step_up

RATES = [[50e3, 80e3, 100e3], [150e3, 250e3, 300e3], [500e3, 800e3, 1e6]]  # [spatial][temporal], cumulative


def test_the_best_option_that_fits_temporal_first() -> None:
    s = LayerSelector()
    assert s.select(RATES, 900e3, (2, 2), 0.0) == (2, 1)  # the full layer at a lower frame rate first
    assert s.select(RATES, 400e3, (2, 1), 0.0) == (1, 2)  # then the resolution
    assert s.select(RATES, 10e3, (1, 2), 0.0) == (0, 0)  # nothing fits: the least there is
    assert s.select([[0.0], [0.0]], 1e6, (1, 0), 0.0) is None  # nothing measured yet: no opinion


def test_up_only_after_the_budget_covered_the_next_option_with_headroom_for_the_hold_time() -> None:
    s = LayerSelector(headroom=1.15, hold=2.0)
    assert s.select(RATES, 1.2e6, (1, 2), 0.0) == (1, 2)
    assert s.select(RATES, 1.2e6, (1, 2), 1.9) == (1, 2)
    assert s.select(RATES, 0.5e6, (1, 2), 2.0) == (1, 2)  # (2, 0) fits, but without headroom: the hold restarts
    assert s.select(RATES, 1.2e6, (1, 2), 2.1) == (1, 2)
    assert s.select(RATES, 1.2e6, (1, 2), 4.2) == (2, 2)


def test_keep_lets_the_budget_limit_only_the_way_up() -> None:
    s = LayerSelector(headroom=1.15, hold=2.0)
    assert s.select(RATES, 100e3, (2, 1), 0.0, keep=True) == (2, 1)  # a path that has not pushed back: no reason down
    assert s.select(RATES, 100e3, (2, 1), 0.0) == (0, 2)
    assert s.select(RATES, 0.5e6, (1, 1), 0.0, keep=True) == (1, 1)
    assert s.select(RATES, 0.5e6, (1, 1), 2.0, keep=True) == (1, 2)  # up as far as the budget covers, after the hold


def test_step_up_is_the_next_option_and_its_cost() -> None:
    assert step_up(RATES, (1, 1)) == (250e3, 300e3)
    assert step_up(RATES, (1, 2)) == (300e3, 800e3)  # (2, 0) is below half the frame rate: not an option
    assert step_up(RATES, (2, 2)) == (1e6, 0.0)  # the top
    assert step_up([[50e3, 0.0], [0.0, 0.0]], (1, 1)) == (0.0, 0.0)  # not arriving: nothing known


def test_next_option_is_one_step_above() -> None:
    from roomcast.sfu.selector import next_option

    assert next_option(RATES, (0, 2)) == (1, 1) and next_option(RATES, (2, 2)) is None
    assert next_option([[50e3, 0.0], [0.0, 0.0]], (1, 1)) is None
