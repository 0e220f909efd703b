"""RTC model: seeded drift and offset, clock setting, and drift seen in the firmware's samples."""

from __future__ import annotations

import numpy as np
import pytest

from smartlogger.device.clock import MAX_DRIFT_PPM, MAX_FACTORY_OFFSET_MS, Rtc
from smartlogger.device.firmware import Logger
from smartlogger.device.sensors import Sensor, TraceSource
from smartlogger.errors import SimulationError
from smartlogger.model import (
    BlockType,
    ClockSet,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    SampleBlock,
)

B12 = BlockType.lead_acid(12)


def test_drift_accumulates() -> None:
    rtc = Rtc(base_ms=0, drift_ppm=50.0)
    # 10 days at +50 ppm: 43.2 s ahead
    assert rtc.device_ms(10 * 86400.0) == 864_000_000 + 43_200
    slow = Rtc(base_ms=0, drift_ppm=-20.0)
    assert slow.device_ms(86400.0) == 86_400_000 - 1_728


def test_seeded_clocks_differ_and_stay_in_tolerance() -> None:
    clocks = [Rtc.seeded(s, epoch_ms=1_000_000_000) for s in range(200)]
    drifts = np.array([c.drift_ppm for c in clocks])
    assert np.all(np.abs(drifts) <= MAX_DRIFT_PPM)
    assert len(set(drifts.tolist())) >= 190  # a few clip at the tolerance
    assert drifts.std() > 5.0  # a real spread, not all zero
    offsets = np.array([c.base_ms - 1_000_000_000 for c in clocks])
    assert np.all(np.abs(offsets) <= MAX_FACTORY_OFFSET_MS)
    assert Rtc.seeded(7).drift_ppm == Rtc.seeded(7).drift_ppm  # reproducible


def test_set_returns_old_and_keeps_oscillator() -> None:
    rtc = Rtc(base_ms=1000, drift_ppm=10.0)
    old = rtc.set(5_000_000, 100.0)
    assert old == 1000 + 100_001  # 100 s at +10 ppm
    assert rtc.device_ms(100.0) == 5_000_000
    assert rtc.device_ms(200.0) == 5_000_000 + 100_001


def test_unreasonable_drift_rejected() -> None:
    with pytest.raises(SimulationError):
        Rtc(drift_ppm=5000.0)


def _logger(drift_ppm: float) -> Logger:
    cfg = LoggerConfig.default_for(B12, 100.0)
    src = TraceSource([0.0, 1e7], [13.6, 13.6], [25.0, 25.0])
    return Logger(LoggerIdentity("CLK-1", Generation.GEN2, "2"), cfg, rtc=Rtc(base_ms=0, drift_ppm=drift_ppm),
                  sensor=Sensor.ideal(B12), source=src)


def test_fast_clock_logs_more_samples_on_device_grid() -> None:
    """A +50 ppm logger takes its 60-s samples on its own (fast) clock: over 14 true days
    it stores one sample more than a perfect one, and its timestamps stay on its grid."""
    fast, ideal = _logger(50.0), _logger(0.0)
    for lg in (fast, ideal):
        lg.run_until(14 * 86400.0)
        lg.flush()

    def times(lg: Logger) -> np.ndarray:
        ts = [b.start_ms + b.interval_ms * np.arange(len(b)) for _, b in lg.store.records()
              if isinstance(b, SampleBlock)]
        return np.concatenate(ts)

    tf, ti = times(fast), times(ideal)
    assert ti.size == 14 * 1440 + 1
    assert tf.size == ti.size + 1  # 14 days * 50 ppm = 60.5 s: one more 60-s tick
    assert np.all(np.diff(tf) == 60_000)
    assert fast.now_ms() - ideal.now_ms() == 60_480


def test_set_clock_logs_clockset_and_breaks_block() -> None:
    lg = _logger(0.0)
    lg.run_until(600.0)
    old = lg.set_clock(1_800_000_000_000)
    assert old == 600_000
    lg.run_until(1200.0)
    lg.flush()
    recs = [r for _, r in lg.store.records()]
    sets = [r for r in recs if isinstance(r, ClockSet)]
    assert sets == [ClockSet(600_000, 1_800_000_000_000)]
    blocks = [r for r in recs if isinstance(r, SampleBlock)]
    assert blocks[0].end_ms == 600_000  # closed at the set
    assert blocks[1].start_ms == 1_800_000_000_000 + 60_000  # next tick on the new time
    assert recs.index(sets[0]) < recs.index(blocks[1])
