"""Firmware state machine on real sample streams: thresholds with hysteresis, discharge
detection with pre-trigger, sample blocks, configuration gate, generation-1 profile,
sensor model, and the exactness of the quiet-stretch skip."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from smartlogger.device.clock import Rtc
from smartlogger.device.firmware import (
    BLOCK_MAX_SAMPLES,
    PRETRIGGER_S,
    ConfigRejected,
    Logger,
)
from smartlogger.device.sensors import NOISE_BOUND_SIGMA, Sensor, TraceSource, counter_noise
from smartlogger.device.store import MemoryStore
from smartlogger.errors import SimulationError
from smartlogger.model import (
    BlockType,
    ConfigChange,
    Event,
    EventKind,
    Generation,
    Level,
    LoggerConfig,
    LoggerIdentity,
    Quantity,
    SampleBlock,
    Side,
    gen1_config,
)

B12 = BlockType.lead_acid(12)
GEN2 = LoggerIdentity("SL2-0001", Generation.GEN2, "2.0")


def ideal_logger(points: Sequence[tuple[float, float, float]], *, cfg: LoggerConfig | None = None,
                 identity: LoggerIdentity = GEN2) -> Logger:
    """A logger with a perfect sensor and clock (device ms == true ms) on a piecewise-linear block."""
    t, v, c = (np.array(x, dtype=float) for x in zip(*points, strict=True))
    return Logger(identity, cfg or LoggerConfig.default_for(B12, 100.0), rtc=Rtc(base_ms=0, drift_ppm=0.0),
                  sensor=Sensor.ideal(B12), source=TraceSource(t, v, c))


def events(lg: Logger, *kinds: EventKind) -> list[Event]:
    return [r for _, r in lg.store.records() if isinstance(r, Event) and (not kinds or r.kind in kinds)]


def samples(lg: Logger) -> tuple[np.ndarray, np.ndarray, list[SampleBlock]]:
    blocks = [r for _, r in lg.store.records() if isinstance(r, SampleBlock)]
    t = np.concatenate([b.start_ms + b.interval_ms * np.arange(len(b)) for b in blocks])
    mv = np.concatenate([np.array(b.mv) for b in blocks])
    return t, mv, blocks


THRESHOLD_KINDS = (EventKind.ENTER_WARNING, EventKind.LEAVE_WARNING, EventKind.ENTER_ALARM, EventKind.LEAVE_ALARM)


# --------------------------------------------------------------------------- thresholds


def test_temperature_events_with_hysteresis() -> None:
    lg = ideal_logger([
        (0, 13.6, 25.0), (100, 13.6, 25.0), (101, 13.6, 35.2), (200, 13.6, 35.2),
        (201, 13.6, 34.5), (300, 13.6, 34.5),  # inside the 1.0 C hysteresis: stays in warning
        (301, 13.6, 35.2), (400, 13.6, 35.2),
        (401, 13.6, 34.0), (500, 13.6, 34.0),  # 35.0 - 1.0 C: leaves
        (501, 13.6, 45.1), (600, 13.6, 45.1),  # through warning and alarm in one step
        (601, 13.6, 20.0), (700, 13.6, 20.0),
    ])
    lg.run_until(700)
    got = [(e.t_ms // 1000, e.kind, e.quantity, e.side, e.value) for e in events(lg, *THRESHOLD_KINDS)]
    T, H = Quantity.TEMPERATURE, Side.HIGH
    assert got == [
        (101, EventKind.ENTER_WARNING, T, H, 352),
        (401, EventKind.LEAVE_WARNING, T, H, 340),
        (501, EventKind.ENTER_WARNING, T, H, 451),
        (501, EventKind.ENTER_ALARM, T, H, 451),
        (601, EventKind.LEAVE_ALARM, T, H, 200),
        (601, EventKind.LEAVE_WARNING, T, H, 200),
    ]
    assert not lg.status().active


def test_voltage_low_events_with_hysteresis() -> None:
    # warn 10.800 V, alarm 9.900 V, hysteresis 60 mV on a 12 V block
    lg = ideal_logger([
        (0, 13.6, 25), (100, 13.6, 25), (101, 10.79, 25), (200, 10.79, 25),
        (201, 10.85, 25), (300, 10.85, 25),  # below 10.86: still in warning
        (301, 9.85, 25), (400, 9.85, 25),
        (401, 9.95, 25), (500, 9.95, 25),  # alarm needs 9.96 to leave
        (501, 10.0, 25), (600, 10.0, 25),
        (601, 10.86, 25), (700, 10.86, 25),
    ])
    lg.run_until(350)
    st = lg.status()
    assert (Quantity.VOLTAGE, Side.LOW, Level.ALARM) in st.active and st.alarm and st.warning
    lg.run_until(700)
    got = [(e.t_ms // 1000, e.kind, e.value) for e in events(lg, *THRESHOLD_KINDS)]
    assert got == [
        (101, EventKind.ENTER_WARNING, 10790),
        (301, EventKind.ENTER_ALARM, 9850),
        (501, EventKind.LEAVE_ALARM, 10000),
        (601, EventKind.LEAVE_WARNING, 10860),
    ]
    assert all(e.quantity is Quantity.VOLTAGE and e.side is Side.LOW for e in events(lg, *THRESHOLD_KINDS))


def test_noise_within_hysteresis_does_not_chatter() -> None:
    """A real (noisy) sensor hovering at the warning level raises exactly one warning."""
    t = np.arange(0, 3600.0)
    v = np.where(t < 100, 13.6, 10.8)  # sits on the warning level
    cfg = LoggerConfig.default_for(B12, 100.0)
    sensor = Sensor.seeded(B12, 5)
    lg = Logger(GEN2, cfg, rtc=Rtc(base_ms=0), sensor=sensor, source=TraceSource(t, v, np.full(t.size, 25.0)))
    lg.run_until(3599)
    kinds = [e.kind for e in events(lg, *THRESHOLD_KINDS)]
    mv_true = 10800 * sensor.errors.v_gain + sensor.errors.v_offset_mv
    if mv_true < 10800 - sensor.errors.v_noise_mv * NOISE_BOUND_SIGMA:
        assert kinds == [EventKind.ENTER_WARNING]
    else:
        assert kinds in ([EventKind.ENTER_WARNING], [])


# --------------------------------------------------------------------------- discharge detection


DISCHARGE: list[tuple[float, float, float]] = [
    (0, 13.6, 25), (1000, 13.6, 25), (1000.5, 12.2, 25),  # load applied at t = 1000.5 s
    (4600, 11.0, 26), (4600.5, 11.6, 26),  # load removed: the I*R step back
    (6000, 11.7, 25),
]


@pytest.mark.parametrize("float_rate_s", [60, 600])
def test_discharge_detection_with_pretrigger(float_rate_s: int) -> None:
    cfg = LoggerConfig.default_for(B12, 100.0).with_changes(float_rate_s=float_rate_s)
    lg = ideal_logger(DISCHARGE, cfg=cfg)
    lg.run_until(2000)
    assert lg.status().mode == "discharge"
    lg.run_until(6000)
    lg.flush()
    start, = events(lg, EventKind.DISCHARGE_START)
    end, = events(lg, EventKind.DISCHARGE_END)
    rates = [e.value for e in events(lg, EventKind.RATE_CHANGE)]
    assert rates == [1, float_rate_s]
    assert start.t_ms == 1_003_000  # 3 debounce ticks: 1001, 1002, 1003
    assert start.value == 12199
    t, mv, blocks = samples(lg)
    assert np.all(np.diff(t) > 0)  # no duplicate or out-of-order samples
    # every second of the pre-trigger window before detection is stored, at float voltage
    pre_start = 1003 - PRETRIGGER_S
    fast = (t >= pre_start * 1000) & (t <= end.t_ms)
    assert np.all(np.diff(t[fast]) == 1000)
    assert t[fast][0] == pre_start * 1000
    assert t[t < pre_start * 1000][-1] < pre_start * 1000 - 1000  # the float samples end before it
    assert mv[t == 1_000_000][0] == 13600 and mv[t == 1_001_000][0] == 12200
    # the load was removed at 4600.5 s; the rise is held 60 s before the discharge ends
    assert end.t_ms == 4_660_000
    assert end.value == 11000  # minimum during the discharge
    # back to the float rate after the end
    after = t[t > end.t_ms]
    assert np.all(np.diff(after) == float_rate_s * 1000)
    assert all(len(b) <= BLOCK_MAX_SAMPLES for b in blocks)
    info = lg.status().last_discharge
    assert info is not None and (info.start_ms, info.end_ms, info.min_mv) == (1_003_000, 4_660_000, 11000)
    assert lg.status().detector == "resting"  # not recharged yet


def test_pretrigger_keeps_the_seconds_before_a_step_just_before_a_float_sample() -> None:
    """The load comes on half a second before a float sample (every 60 s) and is detected three
    ticks later: the pre-trigger still holds the fast samples before the step (it once started
    after that float sample, leaving nothing closer to the step than 60 s)."""
    pts = [(0, 13.6, 25), (959, 13.6, 25), (959.5, 12.2, 25), (2000, 12.0, 25)]
    lg = ideal_logger(pts, cfg=LoggerConfig.default_for(B12, 100.0).with_changes(float_rate_s=60))
    lg.run_until(1000)
    lg.flush()
    start, = events(lg, EventKind.DISCHARGE_START)
    assert start.t_ms == 962_000
    t, mv, _ = samples(lg)
    assert np.all(np.diff(t) > 0)
    before = t[mv >= 13500]
    assert before[-1] == 959_000 and np.all(np.diff(before[-PRETRIGGER_S + 4:]) == 1000)
    assert t[mv < 13500][0] == 960_000


def test_recharge_rearms_and_second_discharge_detected() -> None:
    pts = [*DISCHARGE[:-1], (5000, 11.7, 25), (5001, 13.6, 25), (8000, 13.6, 25), (8000.5, 12.3, 25), (9000, 12.0, 25), (9000.5, 13.6, 25), (12000, 13.6, 25)]
    lg = ideal_logger(pts)
    lg.run_until(12000)
    starts = [e.t_ms for e in events(lg, EventKind.DISCHARGE_START)]
    ends = [e.t_ms for e in events(lg, EventKind.DISCHARGE_END)]
    assert starts == [1_003_000, 8_003_000]
    assert ends[0] == 4_660_000 and 9_000_000 < ends[1] <= 9_061_000
    assert lg.status().detector == "armed"


def test_slow_discharge_detected_by_gate() -> None:
    """A small load pulls the voltage down slowly (no step): the 2.10 V/cell gate catches it."""
    lg = ideal_logger([(0, 13.6, 25), (100, 13.6, 25), (20000, 12.0, 25)])
    lg.run_until(20000)
    start, = events(lg, EventKind.DISCHARGE_START)
    v_at = 13.6 - (13.6 - 12.0) * (start.t_ms / 1000 - 100) / 19900
    assert 12.59 < v_at < 12.60  # crossed 12.600 V (6 cells x 2.10 V) three ticks before


def test_float_ripple_is_not_a_discharge() -> None:
    t = np.arange(0, 86400.0 * 2, 60.0)
    v = 13.62 + 0.05 * np.sin(2 * np.pi * t / 86400)  # temperature-compensated float swing
    lg = Logger(GEN2, LoggerConfig.default_for(B12, 100.0), rtc=Rtc(base_ms=0),
                sensor=Sensor.seeded(B12, 1), source=TraceSource(t, v, np.full(t.size, 24.0)))
    lg.run_until(t[-1])
    assert not events(lg, EventKind.DISCHARGE_START)
    assert lg.status().mode == "float"


def test_quiet_skip_is_exact() -> None:
    """Skipping quiet stretches gives bit-identical records to processing every tick."""
    t = np.arange(0, 3 * 86400.0, 60.0)
    v = 13.62 + 0.03 * np.sin(2 * np.pi * t / 86400)
    c = 25 + 12 * np.sin(2 * np.pi * t / 86400)  # warm afternoons cross 35 C
    i = int(100_000 / 60)
    v[i:i + 60] = np.linspace(12.3, 11.1, 60)
    v[i + 60:i + 120] = 11.8
    src = TraceSource(t, v, c)
    logs = []
    for skip in (True, False):
        lg = Logger(GEN2, LoggerConfig.default_for(B12, 100.0), rtc=Rtc.seeded(3), sensor=Sensor.seeded(B12, 3),
                    source=src, seed=3)
        lg.skip_quiet = skip
        for stop in (50_000.0, 100_030.0, t[-1]):
            lg.run_until(stop)
        lg.flush()
        logs.append(list(lg.store.records()))
    assert logs[0] == logs[1]
    kinds = {r.kind for _, r in logs[0] if isinstance(r, Event)}
    assert {EventKind.DISCHARGE_START, EventKind.DISCHARGE_END, EventKind.ENTER_WARNING} <= kinds


def test_blocks_hold_at_most_256_samples_and_cover_every_tick() -> None:
    cfg = LoggerConfig.default_for(B12, 100.0).with_changes(float_rate_s=1)
    lg = ideal_logger([(0, 13.6, 25), (2000, 13.6, 25)], cfg=cfg)
    lg.run_until(1000)
    lg.flush()
    t, _, blocks = samples(lg)
    assert [len(b) for b in blocks] == [256, 256, 256, 233]
    assert np.array_equal(t, np.arange(0, 1_001_000, 1000))


# --------------------------------------------------------------------------- configuration gate


def test_apply_config_logs_change_and_takes_effect() -> None:
    lg = ideal_logger([(0, 13.6, 25), (5000, 13.6, 25)])
    lg.run_until(600)
    new = LoggerConfig.default_for(B12, 100.0).with_changes(float_rate_s=300, block_label="B3")
    lg.apply_config(new, 1)
    assert lg.config is new and lg.config_seq == 1
    lg.run_until(3000)
    lg.flush()
    changes = [r for _, r in lg.store.records() if isinstance(r, ConfigChange)]
    assert [(c.seq, c.t_ms) for c in changes] == [(0, 0), (1, 600_000)]
    assert [e.value for e in events(lg, EventKind.RATE_CHANGE)] == [300]
    _, _, blocks = samples(lg)
    assert blocks[-1].interval_ms == 300_000
    assert blocks[-1].start_ms == 601_000  # the new grid starts at the first tick after the tap
    assert len(blocks[-1]) == 8  # 601 s .. 2701 s


@pytest.mark.parametrize(("reason", "make"), [
    ("block_type", lambda: LoggerConfig.default_for(BlockType.lead_acid(6), 100.0)),
    ("stale", lambda: LoggerConfig.default_for(B12, 100.0)),
])
def test_apply_config_rejected_atomically(reason: str, make) -> None:  # type: ignore[no-untyped-def]
    lg = ideal_logger([(0, 13.6, 25), (5000, 13.6, 25)])
    lg.apply_config(LoggerConfig.default_for(B12, 100.0), 5)
    before = (lg.config, lg.config_seq, lg.store.next_seq)
    with pytest.raises(ConfigRejected) as ei:
        lg.apply_config(make(), 4)
    assert ei.value.reason == reason
    assert (lg.config, lg.config_seq, lg.store.next_seq) == before


def test_apply_config_rejects_invalid_fields() -> None:
    lg = ideal_logger([(0, 13.6, 25), (5000, 13.6, 25)])
    bad = LoggerConfig.default_for(B12, 100.0)
    object.__setattr__(bad, "float_rate_s", 0)  # as a corrupted NFC write would deliver it
    with pytest.raises(ConfigRejected) as ei:
        lg.apply_config(bad, 1)
    assert ei.value.reason == "range" and ei.value.field == "float_rate_s"


def test_gen1_profile_is_fixed() -> None:
    gen1 = LoggerIdentity("SL1-0001", Generation.GEN1, "1.4")
    with pytest.raises(ConfigRejected) as ei:
        ideal_logger([(0, 13.6, 25), (10, 13.6, 25)], cfg=LoggerConfig.default_for(B12, 100.0), identity=gen1)
    assert ei.value.reason == "gen1"
    lg = ideal_logger(DISCHARGE, cfg=gen1_config(), identity=gen1)
    with pytest.raises(ConfigRejected) as ei:
        lg.apply_config(gen1_config(), 1)
    assert ei.value.reason == "gen1"
    lg.run_until(6000)
    lg.flush()
    # fixed 10 s rate also during the discharge; empty at 9.9 V
    _, _, blocks = samples(lg)
    assert {b.interval_ms for b in blocks} == {10_000}
    assert lg.config.thresholds.v_low_alarm_mv == 9900


def test_run_until_errors() -> None:
    lg = ideal_logger([(0, 13.6, 25), (10, 13.6, 25)])
    lg.run_until(5)
    with pytest.raises(SimulationError):
        lg.run_until(4)
    bare = Logger(GEN2, LoggerConfig.default_for(B12, 100.0), store=MemoryStore())
    with pytest.raises(SimulationError, match="no signal source"):
        bare.run_until(1)


# --------------------------------------------------------------------------- sensor model


@pytest.mark.parametrize("nominal_v", [2, 4, 6, 12, 16])
def test_sensor_accuracy_within_half_percent(nominal_v: int) -> None:
    bt = BlockType.lead_acid(nominal_v)
    lo, hi = bt.measuring_range_mv
    true_mv = np.linspace(lo + 50, hi - 50, 400)
    counter = np.arange(400, dtype=np.int64) * 1000
    worst = 0.0
    for seed in range(100):
        s = Sensor.seeded(bt, seed)
        mv, dc = s.measure(true_mv / 1000.0, np.full(400, 25.0), counter)
        assert mv.dtype == np.int64  # quantised to 1 mV
        worst = max(worst, float(np.max(np.abs(mv - true_mv) / true_mv)))
        assert np.all(np.abs(dc - 250) <= 7)  # 0.5 C offset + gain + noise, 0.1 C steps
    assert 0.001 < worst < 0.005  # real errors, inside the 0.5 % budget


def test_sensor_clips_to_measuring_range() -> None:
    s = Sensor.seeded(B12, 1)
    mv, dc = s.measure(np.array([0.0, 5.0, 30.0]), np.array([-60.0, 100.0, 25.0]), np.arange(3))
    assert mv.tolist()[:2] == [9700, 9700] and mv[2] == 17000
    assert dc.tolist()[:2] == [-350, 850]


def test_counter_noise_is_deterministic_bounded_unit() -> None:
    c = np.arange(200_000, dtype=np.int64) * 1000
    n = counter_noise(7, 1, c)
    assert np.array_equal(n, counter_noise(7, 1, c))
    assert not np.array_equal(n, counter_noise(8, 1, c))
    assert np.all(np.abs(n) <= NOISE_BOUND_SIGMA)
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1.0) < 0.01
    assert abs(np.corrcoef(n[:-1], n[1:])[0, 1]) < 0.01  # white


def test_sensor_bounds_hold() -> None:
    s = Sensor.seeded(B12, 11)
    v = np.full(50_000, 12.5)
    mv, _ = s.measure(v, np.full(v.size, 25.0), np.arange(v.size, dtype=np.int64))
    lo, hi, _, _ = s.bounds(12.5, 12.5, 25.0, 25.0)
    assert lo <= mv.min() and mv.max() <= hi
    assert hi - lo <= math.ceil(2 * s.errors.v_noise_mv * NOISE_BOUND_SIGMA) + 4


def test_short_excursion_between_stored_samples_is_reported() -> None:
    """Thresholds are evaluated on every tick: a 20-s overvoltage between two 60-s float
    samples raises and clears a warning although no stored sample shows it."""
    lg = ideal_logger([(0, 13.6, 25), (3000, 13.6, 25), (3000.5, 14.3, 25), (3019.5, 14.3, 25),
                       (3020, 13.6, 25), (6000, 13.6, 25)])
    lg.run_until(6000)
    lg.flush()
    got = [(e.t_ms // 1000, e.kind, e.side) for e in events(lg, *THRESHOLD_KINDS)]
    assert got == [(3001, EventKind.ENTER_WARNING, Side.HIGH), (3020, EventKind.LEAVE_WARNING, Side.HIGH)]
    _, mv, _ = samples(lg)
    assert mv.max() == 13600
    assert not events(lg, EventKind.DISCHARGE_START)
