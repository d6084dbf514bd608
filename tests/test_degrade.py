"""Load governor (edge_dred.degrade): levels, hysteresis, back-off, caps, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge_dred.boards import load_board
from edge_dred.degrade import GovernorError, Level, LoadGovernor

BUDGET = 0.014  # 70 % of a 20 ms slot


def feed(gov: LoadGovernor, times) -> list[Level]:
    return [gov.observe(float(t)) for t in times]


def test_light_load_stays_full_with_every_feature():
    gov = LoadGovernor(BUDGET, dred_ms=1040)
    rng = np.random.default_rng(0)
    levels = feed(gov, rng.uniform(0.1, 0.5, 2000) * BUDGET)
    assert set(levels) == {Level.FULL}
    assert gov.allow_neural() and gov.dred_ms_cap() == 1040
    assert 0.2 < gov.load < 0.4
    assert gov.status().startswith("load 0.") and "full" in gov.status()


def test_sustained_overload_steps_down_then_to_classic_plc():
    gov = LoadGovernor(BUDGET, dred_ms=1040, short_dred_ms=200)
    # above `high` but under the whole budget: the EWMA rule, after degrade_slots = 3
    levels = feed(gov, [0.95 * BUDGET] * 3)
    assert levels == [Level.FULL, Level.FULL, Level.SHORT_DRED]
    assert gov.transitions[-1].reason == "load"
    assert gov.dred_ms_cap() == 200 and gov.allow_neural()
    assert "shorter DRED (200 ms)" in gov.status()
    levels = feed(gov, [0.95 * BUDGET] * 3)
    assert levels[-1] == Level.CLASSIC_PLC
    assert gov.dred_ms_cap() == 0 and not gov.allow_neural()
    assert [(t.old, t.new) for t in gov.transitions] == [(Level.FULL, Level.SHORT_DRED),
                                                          (Level.SHORT_DRED, Level.CLASSIC_PLC)]
    assert "2 downgrades" in gov.status()
    feed(gov, [5 * BUDGET] * 50)  # cannot go below the cheapest level
    assert gov.level == Level.CLASSIC_PLC


def test_single_spike_is_absorbed_but_two_overruns_degrade_at_once():
    gov = LoadGovernor(BUDGET)
    feed(gov, [0.3 * BUDGET] * 100)
    feed(gov, [2.0 * BUDGET] + [0.3 * BUDGET] * 100)  # one 28 ms slot: EWMA rises only briefly
    assert gov.level == Level.FULL and not gov.transitions
    # two slots over the whole budget within the window: a glitch is imminent, act now
    levels = feed(gov, [1.1 * BUDGET, 0.3 * BUDGET, 1.1 * BUDGET])
    assert levels[-1] == Level.SHORT_DRED
    assert gov.transitions[-1].reason == "overruns"
    assert gov.load < gov.high  # the EWMA alone would not have triggered


def test_hysteresis_no_flapping_around_one_threshold():
    gov = LoadGovernor(BUDGET, low=0.5, high=0.85)
    feed(gov, [0.95 * BUDGET] * 3)
    assert gov.level == Level.SHORT_DRED
    # between low and high: neither degrade nor recover, however long
    feed(gov, [0.7 * BUDGET] * 5000)
    assert gov.level == Level.SHORT_DRED and len(gov.transitions) == 1


def test_recovery_needs_a_sustained_quiet_period():
    gov = LoadGovernor(BUDGET, recover_slots=150)
    feed(gov, [1.0 * BUDGET] * 5)
    assert gov.level == Level.SHORT_DRED
    levels = feed(gov, [0.2 * BUDGET] * 400)
    first_full = levels.index(Level.FULL)
    # EWMA must first fall below `low`, then stay there 150 slots
    assert 150 <= first_full < 200
    assert gov.transitions[-1].reason == "recovered"


def _closed_loop(gov: LoadGovernor, cost: dict, n: int, noise: float = 0.05, seed: int = 0) -> list[Level]:
    """Slot time depends on the level the governor picked: the plant the receiver is."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = cost[gov.level] * BUDGET * (1 + noise * rng.standard_normal())
        out.append(gov.observe(max(t, 0.0)))
    return out


def test_board_too_slow_for_full_settles_with_exponential_backoff():
    # FULL does not fit (1.1 x budget), SHORT_DRED fits easily (0.4 x): a naive governor flaps.
    gov = LoadGovernor(BUDGET, recover_slots=100, probe_slots=400, max_backoff=16)
    levels = _closed_loop(gov, {Level.FULL: 1.1, Level.SHORT_DRED: 0.4, Level.CLASSIC_PLC: 0.1}, 50 * 60 * 5)
    ups = [t for t in gov.transitions if t.new < t.old]
    # retries after 100, 200, 400, 800, then every 1600 slots (32 s): 13 in 5 minutes instead of
    # one every ~2 s, each abandoned within a few slots, so FULL takes a tiny share of the time
    assert 8 <= len(ups) <= 14
    gaps = np.diff([t.slot for t in ups])
    assert all(g2 >= g1 - 10 for g1, g2 in zip(gaps, gaps[1:])) and gaps[-1] >= 1600
    assert levels.count(Level.FULL) / len(levels) < 0.01
    naive = LoadGovernor(BUDGET, recover_slots=100, probe_slots=400, max_backoff=1)
    _closed_loop(naive, {Level.FULL: 1.1, Level.SHORT_DRED: 0.4, Level.CLASSIC_PLC: 0.1}, 50 * 60 * 5)
    assert len([t for t in naive.transitions if t.new < t.old]) > 5 * len(ups)
    assert Level.CLASSIC_PLC not in levels  # never dropped further than needed


def test_transient_overload_returns_to_full_and_backoff_resets():
    gov = LoadGovernor(BUDGET, recover_slots=100, probe_slots=300)
    cost = {Level.FULL: 0.4, Level.SHORT_DRED: 0.3, Level.CLASSIC_PLC: 0.1}
    _closed_loop(gov, cost, 200)
    cost[Level.FULL] = 1.3  # e.g. another process takes the core for a while
    _closed_loop(gov, cost, 1000)
    assert gov.level == Level.SHORT_DRED
    cost[Level.FULL] = 0.4
    levels = _closed_loop(gov, cost, 3000)
    assert levels[-1] == Level.FULL
    assert gov._backoff[Level.FULL] == 1  # held long enough: back-off forgotten


def test_from_board_uses_board_dred_length_and_budget():
    gov = LoadGovernor.from_board(load_board("rpi4"))
    assert gov.dred_ms_cap() == 1040 and math.isclose(gov.budget_s, 0.014)
    assert gov.short_dred_ms == 200
    armv7 = LoadGovernor.from_board(load_board("generic_armv7"), budget_fraction=0.5)
    assert armv7.dred_ms == 200 and armv7.short_dred_ms == 80  # half, in 40 ms chunks
    assert math.isclose(armv7.budget_s, 0.010)
    feed(armv7, [0.02] * 3)
    assert armv7.dred_ms_cap() == 80


def test_reset_forgets_history():
    gov = LoadGovernor(BUDGET)
    feed(gov, [2 * BUDGET] * 10)
    gov.reset()
    assert gov.level == Level.FULL and gov.slots == 0 and not gov.transitions and gov.load == 0.0


@pytest.mark.parametrize("t", [-1e-3, float("nan"), float("inf"), 1e9, "5", None, True])
def test_bad_measurements_raise(t):
    gov = LoadGovernor(BUDGET)
    with pytest.raises(GovernorError):
        gov.observe(t)
    assert gov.slots == 0


@pytest.mark.parametrize("kw", [dict(budget_s=0.0), dict(budget_s=float("nan")), dict(budget_s=0.01, dred_ms=50),
                                dict(budget_s=0.01, dred_ms=2000), dict(budget_s=0.01, short_dred_ms=-40),
                                dict(budget_s=0.01, low=0.9, high=0.8), dict(budget_s=0.01, alpha=0.0),
                                dict(budget_s=0.01, degrade_slots=0), dict(budget_s=0.01, recover_slots=1.5)])
def test_bad_parameters_raise(kw):
    with pytest.raises(GovernorError):
        LoadGovernor(**kw)
    assert issubclass(GovernorError, ValueError)


def test_from_board_rejects_bad_period_and_fraction():
    with pytest.raises(GovernorError, match="period_ms"):
        LoadGovernor.from_board(load_board("rpi4"), period_ms=7)
    with pytest.raises(GovernorError, match="budget_fraction"):
        LoadGovernor.from_board(load_board("rpi4"), budget_fraction=1.5)
