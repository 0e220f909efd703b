"""Clock alignment and resampling (smartlogger.analysis.align) against synthetic truth."""

from __future__ import annotations

import numpy as np
import pytest

from smartlogger.analysis.align import align_block, gap_mask, resample
from smartlogger.analysis.inputs import BlockLog
from smartlogger.testing.synthetic import synthetic_string_test, with_clock_jump


def _one(drift: float, offset: float, **kw: object) -> tuple[BlockLog, np.ndarray]:
    logs, truth = synthetic_string_test(1, current_a=50.0, drift_ppm=[drift], offset_ms=[offset],
                                        seed=4, **kw)  # type: ignore[arg-type]
    return logs[0], truth.sample_true_ms[0]


@pytest.mark.parametrize("drift", [-50.0, 0.0, 50.0])
def test_drift_and_offset_are_recovered(drift: float) -> None:
    log, true = _one(drift, 1500.0)
    al = align_block(log)
    assert al.fit.drift_fitted and al.fit.observations == 2
    assert al.fit.drift_ppm == pytest.approx(drift, abs=2.0)
    err = np.abs(al.true_ms - true)
    assert err.max() < 25.0  # two observations with 5 ms phone-time noise
    assert float(al.uncertainty_ms.max()) == pytest.approx(20.0, rel=0.1)  # default 20 ms per observation


def test_recorded_clock_jump_is_undone() -> None:
    log, true = _one(30.0, -800.0)
    jumped = with_clock_jump(log, 3000, 3_600_000)  # RTC 1 h wrong until a tap mid-test
    assert np.any(np.diff(jumped.t_ms) < 0)  # device time really steps back at the tap
    al = align_block(jumped)
    assert al.dropped == 0 and al.fit.observations == 3
    assert np.abs(al.true_ms - true).max() < 25.0


def test_unrecorded_backward_jump_gets_its_own_offset() -> None:
    log, true = _one(-20.0, 300.0)
    jumped = with_clock_jump(log, 3000, -600_000, recorded=False)
    al = align_block(jumped)
    # Tap before and pull after the jump: one observation per group, drift unknown.
    assert not al.fit.drift_fitted
    err = np.abs(al.true_ms - true)
    assert err.max() < 300.0  # up to 50 ppm over ~1.2 h from the nearest observation
    assert float(al.uncertainty_ms.max()) >= err.max()  # the reported bound holds


def test_unrecorded_jump_without_observation_drops_samples_with_warning() -> None:
    log, _ = _one(0.0, 0.0)
    only_tap = BlockLog(log.identity, log.config, log.t_ms, log.mv, log.dc,
                        clock_observations=log.clock_observations[:1])
    jumped = with_clock_jump(only_tap, 3000, -600_000, recorded=False)
    al = align_block(jumped)
    assert al.dropped == len(log) - 3000
    assert any("unrecorded clock jump" in w for w in al.warnings)


def test_no_observations_means_unreferenced() -> None:
    log, _ = _one(0.0, 0.0, with_clock_obs=False)
    al = align_block(log)
    assert not al.fit.referenced and al.max_uncertainty_ms(0.0, 1e13) is None
    assert np.array_equal(al.true_ms, log.t_ms.astype(float))


def test_gap_mask_and_resample_mark_gaps_nan() -> None:
    t = np.array([0.0, 1000, 2000, 3000, 60000, 61000, 62000])
    assert gap_mask(t, 1500.0).tolist() == [False, False, False, True, False, False]
    # Float logging at 60 s then a 1 s discharge: the float interval is not a gap.
    t2 = np.array([0.0, 60000, 120000, 121000, 122000])
    assert not gap_mask(t2, 1500.0).any()
    log, _ = _one(0.0, 0.0)
    al = align_block(log)
    keep = np.ones(al.true_ms.size, dtype=bool)
    keep[1000:1300] = False
    al.true_ms, al.mv, al.dc, al.uncertainty_ms = al.true_ms[keep], al.mv[keep], al.dc[keep], al.uncertainty_ms[keep]
    start = int(al.true_ms[0] // 1000 * 1000 + 1000)
    g = resample([al], start, start + 2000 * 1000)
    nan = np.isnan(g.v[0])
    assert 290 <= nan.sum() <= 302
    assert not nan[:990].any()
