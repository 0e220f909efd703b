"""Tests of the battery model: datasheet calibration, rate and temperature effects,
weak blocks, loads, float voltage compensation, reproducibility, years on float."""

from __future__ import annotations

import numpy as np
import pytest

from smartlogger.device.battery import (
    StringTrace,
    build_string,
    chemistry_params,
    float_voltage,
    float_years,
)
from smartlogger.device.load import ConstantCurrent, ConstantPower, CurrentProfile
from smartlogger.model import BlockType, Chemistry

VRLA12 = BlockType.lead_acid(12)

# CSB GP 12400 (12 V 40 Ah @ 20 h to 1.75 V/cell, 25 C), datasheet "Constant Current
# Discharge Characteristics", row F.V = 1.75 V: amperes that discharge the block to
# 10.50 V in the given time. The 20 h point is the rating itself (40 Ah / 20 h).
# The 10 h point is not legible in our copy of the GP 12400 sheet; it is taken from
# the same CSB GP series table (GP 645, 1.75 V row: 10 HR 0.435 A for 4.5 Ah C20 =
# 0.0967 C20), scaled to 40 Ah: 3.87 A. See docs/BATTERY_MODEL.md.
GP12400_C20_AH = 40.0
GP12400_CC_1V75 = [  # (hours, amperes)
    (1.0, 30.0),
    (2.0, 17.4),
    (3.0, 12.3),
    (4.0, 9.71),
    (10.0, 3.87),
    (20.0, 2.0),
]


def _hours_to_end(trace: StringTrace) -> float:
    return (trace.load_off_s - trace.load_on_s) / 3600.0


@pytest.mark.parametrize(("hours", "amps"), GP12400_CC_1V75)
def test_calibration_against_csb_gp12400(hours: float, amps: float) -> None:
    model = build_string(1, VRLA12, GP12400_C20_AH, rated_hours=20.0, spread=False)
    dt = 2.0 if hours < 3 else 10.0
    trace = model.discharge(ConstantCurrent(amps), rest_before_s=60.0, rest_after_s=0.0,
                            end_v_per_cell=1.75, dt_s=dt, max_duration_s=40 * 3600.0)
    simulated = _hours_to_end(trace)
    assert trace.block_v[0, int(trace.load_off_s / dt)] <= 10.5
    assert abs(simulated - hours) / hours <= 0.10, f"{amps} A: {simulated:.3f} h vs datasheet {hours} h"


def test_peukert_higher_rate_delivers_less_charge() -> None:
    model = build_string(1, VRLA12, 100.0, spread=False)
    low = model.discharge(ConstantCurrent(10.0), dt_s=10.0, rest_after_s=0.0)
    mid = model.discharge(ConstantCurrent(30.0), dt_s=5.0, rest_after_s=0.0)
    high = model.discharge(ConstantCurrent(60.0), dt_s=2.0, rest_after_s=0.0)
    ah_low, ah_mid, ah_high = (t.truth[0].delivered_ah for t in (low, mid, high))
    assert ah_low == pytest.approx(100.0, rel=0.03)  # the rated 10 h capacity
    assert ah_low > ah_mid > ah_high
    assert ah_high < 0.9 * ah_low


def test_colder_block_has_less_capacity() -> None:
    model = build_string(1, VRLA12, 100.0, spread=False)
    warm = model.discharge(ConstantCurrent(10.0), dt_s=10.0, ambient_c=25.0, rest_after_s=0.0)
    cold = model.discharge(ConstantCurrent(10.0), dt_s=10.0, ambient_c=0.0, rest_after_s=0.0)
    hot = model.discharge(ConstantCurrent(10.0), dt_s=10.0, ambient_c=40.0, rest_after_s=0.0)
    t_warm, t_cold, t_hot = map(_hours_to_end, (warm, cold, hot))
    assert t_cold < 0.9 * t_warm  # the datasheet says 86 % at 0 C
    assert t_cold > 0.7 * t_warm
    assert t_hot > t_warm


def test_weak_blocks_reach_end_voltage_first_and_collapse() -> None:
    model = build_string(12, VRLA12, 100.0, weak=2, seed=3)
    trace = model.discharge(ConstantCurrent(20.0), dt_s=5.0, rest_after_s=60.0)
    weak = [b for b in trace.truth if b.weak]
    healthy = [b for b in trace.truth if not b.weak]
    assert len(weak) == 2
    assert all(b.capacity_factor < 0.8 for b in weak)
    assert all(0.95 < b.capacity_factor < 1.05 for b in healthy)
    assert all(b.resistance_mohm > max(h.resistance_mohm for h in healthy) for b in weak)
    first_healthy = min((b.time_to_end_s for b in healthy if b.time_to_end_s is not None),
                        default=float("inf"))
    # the weakest block always ends first; once it collapses the string voltage may reach
    # the string's end voltage before the other weak block ends (as on a real UPS)
    weakest = min(weak, key=lambda b: b.capacity_factor)
    assert weakest.time_to_end_s is not None
    for b in weak:
        if b.time_to_end_s is None:
            continue
        assert b.time_to_end_s < first_healthy
        assert b.delivered_ah < 0.85 * 100.0
        # the knee: the voltage falls ever faster; 1.75 -> 1.5 V/cell takes a few minutes
        v = trace.block_v[b.index]
        on = int(trace.load_on_s / 5.0)
        t185, t175, t150 = (on + int(np.argmax(v[on:] < x)) for x in (11.1, 10.5, 9.0))
        assert 0 < (t175 - t185) * 5.0 < 0.3 * b.time_to_end_s
        assert 0 < (t150 - t175) < 0.5 * (t175 - t185)
        # and then it collapses far below its end voltage while the string current flows
        assert v[on: int(trace.load_off_s / 5.0) + 1].min() < 8.0


def test_constant_power_current_rises_as_voltage_falls() -> None:
    model = build_string(6, VRLA12, 100.0, seed=2)
    watts = 1200.0
    trace = model.discharge(ConstantPower(watts), dt_s=5.0, rest_after_s=0.0)
    on, off = int(trace.load_on_s / 5.0), int(trace.load_off_s / 5.0)
    i = trace.current_a[on:off + 1]
    v = trace.string_v[on:off + 1]
    assert i[-1] > 1.1 * i[60]
    assert np.all(np.diff(i[60:]) > -1e-9)  # monotone rising while the string voltage falls
    np.testing.assert_allclose(i * v, watts, rtol=5e-3)


def test_current_profile_load_follows_profile_and_ends() -> None:
    model = build_string(2, VRLA12, 100.0, seed=1)
    prof = CurrentProfile(np.array([0.0, 600.0, 1200.0]), np.array([5.0, 25.0, 25.0]))
    trace = model.discharge(prof, dt_s=1.0, rest_before_s=10.0, rest_after_s=30.0)
    on = int(trace.load_on_s)
    assert trace.current_a[on] == pytest.approx(5.0)
    assert trace.current_a[on + 300] == pytest.approx(15.0)
    assert trace.load_off_s - trace.load_on_s == pytest.approx(1200.0)
    assert trace.current_a[-1] == 0.0
    # the string recovers once the load is off
    assert trace.string_v[-1] > trace.string_v[int(trace.load_off_s)] + 0.3


def test_seed_reproduces_and_differs() -> None:
    a = build_string(24, VRLA12, 100.0, weak=3, seed=7).discharge(
        ConstantCurrent(30.0), dt_s=10.0, rest_after_s=0.0)
    b = build_string(24, VRLA12, 100.0, weak=3, seed=7).discharge(
        ConstantCurrent(30.0), dt_s=10.0, rest_after_s=0.0)
    c = build_string(24, VRLA12, 100.0, weak=3, seed=8).discharge(
        ConstantCurrent(30.0), dt_s=10.0, rest_after_s=0.0)
    np.testing.assert_array_equal(a.block_v, b.block_v)
    np.testing.assert_array_equal(a.block_temp_c, b.block_temp_c)
    assert a.truth == b.truth
    assert [t.index for t in a.truth if t.weak] != [t.index for t in c.truth if t.weak] or \
        not np.array_equal(a.block_v, c.block_v)


def test_float_voltage_is_temperature_compensated() -> None:
    assert float_voltage(VRLA12, 25.0) == pytest.approx(13.62)
    assert float_voltage(VRLA12, 35.0) == pytest.approx(13.62 - 6 * 0.003 * 10)
    assert float_voltage(VRLA12, 15.0) == pytest.approx(13.62 + 6 * 0.003 * 10)
    assert float_voltage(VRLA12, 80.0) == pytest.approx(6 * 2.20)  # charger clamp
    lfp = BlockType(Chemistry.LIFEPO4, 4)
    assert float_voltage(lfp, 0.0) == float_voltage(lfp, 40.0)
    # the simulated float phase before a discharge follows the room temperature
    model = build_string(4, VRLA12, 100.0, spread=False)
    hot = model.discharge(ConstantCurrent(10.0), ambient_c=35.0, max_duration_s=60.0, rest_after_s=0)
    cold = model.discharge(ConstantCurrent(10.0), ambient_c=15.0, max_duration_s=60.0, rest_after_s=0)
    assert hot.block_v[:, 0] == pytest.approx(np.full(4, 13.44))
    assert cold.block_v[:, 0] == pytest.approx(np.full(4, 13.80))


def test_self_heating_under_load() -> None:
    model = build_string(1, VRLA12, 100.0, spread=False)
    trace = model.discharge(ConstantCurrent(60.0), dt_s=2.0, ambient_c=20.0, rest_after_s=600.0)
    off = int(trace.load_off_s / 2.0)
    assert trace.block_temp_c[0, 0] == pytest.approx(20.0)
    assert 3.0 < trace.block_temp_c[0, off] - 20.0 < 20.0
    assert trace.block_temp_c[0, -1] < trace.block_temp_c[0, off]  # cooling in the rest


@pytest.mark.parametrize("nominal_v", [2, 4, 6, 16])
def test_lead_acid_block_sizes_scale_per_cell(nominal_v: int) -> None:
    ref = build_string(1, VRLA12, 200.0, spread=False).discharge(
        ConstantCurrent(40.0), dt_s=10.0, rest_after_s=0.0)
    bt = BlockType.lead_acid(nominal_v)
    tr = build_string(1, bt, 200.0, spread=False).discharge(
        ConstantCurrent(40.0), dt_s=10.0, rest_after_s=0.0)
    assert _hours_to_end(tr) == pytest.approx(_hours_to_end(ref), rel=0.02)
    lo, hi = bt.measuring_range_mv
    assert lo / 1000 < tr.block_v[0, 0] < hi / 1000


@pytest.mark.parametrize(("block", "end_cell"), [
    (BlockType(Chemistry.NICD, 10), 1.0),
    (BlockType(Chemistry.LIFEPO4, 4), 2.5),
    (BlockType(Chemistry.FLOODED, 6), 1.75),
])
def test_other_chemistries_discharge_plausibly(block: BlockType, end_cell: float) -> None:
    assert chemistry_params(block.chemistry).end_v_cell == end_cell
    trace = build_string(2, block, 100.0, spread=False).discharge(
        ConstantCurrent(20.0), dt_s=10.0, rest_after_s=0.0)
    hours = _hours_to_end(trace)
    assert 3.5 < hours < 6.0  # 100 Ah at the 5 h rate
    lo, hi = block.measuring_range_mv
    assert lo / 1000 < trace.block_v[0, 0] < hi / 1000
    assert trace.string_v[int(trace.load_off_s / 10.0)] <= 2 * block.cells * end_cell + 1e-9


def test_float_years_short_run() -> None:
    tr = float_years(VRLA12, 100.0, years=0.25, dt_s=60.0, seed=4, discharges_per_year=16.0)
    n = tr.t_s.size
    assert n == round(0.25 * 365.25 * 1440) + 1
    assert np.all(np.diff(tr.t_s) == 60.0)
    assert len(tr.discharges) >= 1
    on_float = tr.current_a == 0.0
    v, t = tr.block_v[0, on_float], tr.block_temp_c[0, on_float]
    # float voltage tracks temperature with the compensation slope (plus the block's own share)
    slope = np.polyfit(t, v, 1)[0]
    assert slope == pytest.approx(-6 * 0.003, rel=0.05)
    w = tr.discharges[0]
    i0 = int(w.start_s / 60.0)
    assert tr.current_a[i0] == pytest.approx(w.current_a)
    assert tr.block_v[0, i0] < tr.block_v[0, i0 - 1] - 0.5
    after = tr.current_a[int(w.end_s / 60.0) + 1:]
    assert after[0] < 0  # recharging
    back = int(np.argmax(after == 0.0))
    assert back > 0 and np.all(after[back:back + 600] == 0.0)  # then float again
    assert tr.truth[0].capacity_factor < 1.01
    again = float_years(VRLA12, 100.0, years=0.25, dt_s=60.0, seed=4, discharges_per_year=16.0)
    np.testing.assert_array_equal(tr.block_v, again.block_v)


def test_float_years_ageing_depends_on_temperature() -> None:
    cool = float_years(VRLA12, 100.0, years=8.0, dt_s=3600.0, ambient_c=20.0, discharges_per_year=0)
    hot = float_years(VRLA12, 100.0, years=8.0, dt_s=3600.0, ambient_c=30.0, discharges_per_year=0)
    assert np.isnan(cool.load_on_s)
    assert cool.truth[0].capacity_factor > 0.8  # within its 10-year design life at 20 C
    assert hot.truth[0].capacity_factor < cool.truth[0].capacity_factor - 0.1
    assert hot.truth[0].resistance_mohm > cool.truth[0].resistance_mohm


def test_recharge_after_discharge_returns_to_float() -> None:
    model = build_string(4, VRLA12, 100.0, seed=1)
    trace = model.discharge(ConstantCurrent(20.0), dt_s=10.0, max_duration_s=3600.0,
                            rest_after_s=8 * 3600.0, recharge=True)
    off = int(trace.load_off_s / 10.0)
    after = trace.current_a[off + 1:]
    assert after[0] == pytest.approx(-10.0)  # 0.1 C current limit
    assert np.all(after <= 0.0)
    float_string = sum(float(float_voltage(VRLA12, t)) for t in trace.block_temp_c[:, -1])
    assert trace.string_v[off + 1:].max() <= float_string + 0.05  # the charger caps the voltage
    assert trace.string_v[-1] == pytest.approx(float_string, abs=0.05)
    assert -10.0 < after[-1] < -0.05  # tapering in the float (constant-voltage) phase
    # open-circuit rest instead: no current, the voltage recovers only to the rest voltage
    rest = model.discharge(ConstantCurrent(20.0), dt_s=10.0, max_duration_s=3600.0,
                           rest_after_s=3600.0)
    assert np.all(rest.current_a[off + 1:] == 0.0)
    assert rest.string_v[-1] < float_string - 1.0
