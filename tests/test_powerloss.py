"""Power-loss sweeps over the whole blackbox (CI size; benchmarks/blackbox.py runs the full size).

Each point: the chip as a power loss during that flash operation leaves it,
remounted; the harness re-checks the invariants (no committed record lost or
changed, contiguous sequence numbers, chain anchor/head, read-out mark, summary
copies), appends a probe and remounts again.
"""

from __future__ import annotations

import numpy as np
import pytest

from smartlogger.device.flash import FlashGeometry
from smartlogger.model import (
    Generation,
    LoggerIdentity,
    Record,
)
from smartlogger.testing.powerloss import (
    MarkRead,
    Reset,
    SweepResult,
    power_loss_sweep,
    sweep_workload,
)

IDENT = LoggerIdentity("SIM-0007", Generation.GEN2, "2.1.0", simulated=True)
GEOM = FlashGeometry(size=16 * 4096)  # meta 2, summary 2, main 12 sectors
T0 = 1_767_225_600_000


def _assert_clean(r: SweepResult) -> None:
    assert (r.lost_records, r.corrupt_records, r.invariant_failures) == (0, 0, 0), r.failures


def test_linear_sweep_every_operation_with_wrap_mark_read_and_reset() -> None:
    r = power_loss_sweep(sweep_workload(420, seed=1), IDENT, geometry=GEOM, seed=1)
    assert r.points == r.operations > 1500
    assert r.main_wraps > 2  # the main ring wrapped (sectors opened / sectors in the region)
    _assert_clean(r)


def test_linear_sweep_out_of_order_completion() -> None:
    r = power_loss_sweep(sweep_workload(260, seed=2), IDENT, geometry=GEOM, out_of_order=True, seed=2)
    assert r.points == r.operations > 900
    _assert_clean(r)


def test_logarithmic_sweep_of_a_longer_run() -> None:
    steps = sweep_workload(2000, seed=3, with_reset=False)
    points = {int(x) for x in np.unique(np.geomspace(1, 8000, 60).astype(int))}
    r = power_loss_sweep(steps, IDENT, geometry=GEOM, points=points, seed=3)
    assert r.operations > 7000 and r.points == len(points)
    assert r.main_wraps > 5
    _assert_clean(r)


@pytest.mark.parametrize("seed", [4, 5])
def test_sweep_with_different_tearing(seed: int) -> None:
    """Other random torn-bit patterns at every point of a short workload."""
    r = power_loss_sweep(sweep_workload(120, seed=seed), IDENT, geometry=GEOM, seed=seed)
    _assert_clean(r)


def test_sweep_detects_a_ring_without_write_barriers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness can fail: drop the barriers and out-of-order completion loses committed data."""
    from smartlogger.device.flash import NorFlash

    monkeypatch.setattr(NorFlash, "sync", lambda self: None)
    r = power_loss_sweep(sweep_workload(60, seed=6, with_reset=False), IDENT, geometry=GEOM,
                         out_of_order=True, seed=6, probe_every=0)
    assert r.lost_records + r.corrupt_records + r.invariant_failures > 0


def test_sweep_with_bad_sectors() -> None:
    geom = FlashGeometry(size=20 * 4096)  # meta 0-1, summary 2-3, main 4-19
    r = power_loss_sweep(sweep_workload(500, seed=8), IDENT, geometry=geom, seed=8,
                         bad_sectors=frozenset({5, 12}), points=set(range(0, 4000, 3)))
    assert r.main_wraps > 1.5
    _assert_clean(r)


def test_real_power_loss_then_power_on_and_continue() -> None:
    """The PowerLoss exception path itself: the store that raised is abandoned, the chip
    is powered on, a new store mounts it and the firmware carries on."""
    from smartlogger.device.blackbox import BlackboxStore
    from smartlogger.device.flash import NorFlash, PowerLoss
    from smartlogger.logfile.records import encode_record

    steps: list[Record] = [s for s in sweep_workload(40, seed=9, with_reset=False)
                           if not isinstance(s, MarkRead | Reset)]
    probe = NorFlash(GEOM)
    base = BlackboxStore.create(IDENT, flash=probe)
    first_op = probe.op_count
    for step in steps:
        base.append(step)
    total_ops = probe.op_count - first_op
    assert total_ops > 100
    for fail_at in range(0, total_ops, 5):
        flash = NorFlash(GEOM, seed=fail_at)
        store = BlackboxStore.create(IDENT, flash=flash)
        flash.power_loss_at = flash.op_count + fail_at
        done = 0
        with pytest.raises(PowerLoss):
            for step in steps:
                store.append(step)
                done += 1
        flash.power_on()
        store = BlackboxStore.mount(flash)
        assert store.next_seq in (done, done + 1)
        for step in steps[store.next_seq:]:
            store.append(step)
        again = BlackboxStore.mount(flash)
        assert [encode_record(r) for _, r in again.records()] == [
            encode_record(s) for s in steps]
