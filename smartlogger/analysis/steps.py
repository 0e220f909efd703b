"""Load steps seen in the string: instants where the blocks' voltages jump together.

A load switched on (or up) makes every block's voltage drop at the same instant by its
I x R; switched off (or down), rise. Nothing else moves all blocks at once: a weak
block's collapse, noise and the slow relaxation after a step are one block's or slow. So
a step is found in each block's own samples (a sample-to-sample change far beyond that
block's noise) and kept as a string step when at least half of the blocks that have
samples around it show it in the same direction at an instant they all allow.

Each block's step is an interval: the load changed after its last sample before and at or
before its first sample after. Loggers sample on their own clocks, so the intersection of
the blocks' intervals pins the instant far better than one logger's sample interval.

Owns ``find_steps`` and the ``StringStep``/``BlockStep`` values; used by the discharge
detection (``discharge``) and the internal resistance (``resistance``). Does not own what a
step means for the test (load on, off, a pause, a profile step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.align import AlignedBlock
from smartlogger.model import EventKind

FloatArray = npt.NDArray[np.float64]

#: A block's sample-to-sample change is a step candidate when it exceeds this many times
#: the block's noise (robust standard deviation of its changes) ...
NOISE_FACTOR = 8.0
#: ... and at least this (V per cell; 9 mV on a 12 V block): below it a load step is not
#: told from the voltage's own movement.
MIN_STEP_V_PER_CELL = 0.0015
#: Changes of one sign on consecutive samples within this span (s) are one step: a step
#: recorded by an instrument that logs every few seconds reaches a 1 Hz logger as a ramp.
MAX_SPREAD_S = 6.0
#: A run's first change at least this many times its second is the step and the rest the
#: relaxation after it (an interpolated ramp's changes are alike, its first one partial).
FIRST_OF_RUN_FACTOR = 1.25
#: Samples further apart than this (s) are a gap: a change across it is no step.
MAX_INTERVAL_S = 600.0
#: Share of the blocks with samples around an instant that must show the step.
MIN_SUPPORT = 0.5
#: The firmware raises DISCHARGE_START on the third tick in a row that meets its rule
#: (device.firmware DEBOUNCE_TICKS, docs/FIRMWARE.md).
FIRMWARE_DEBOUNCE_TICKS = 3


@dataclass(frozen=True)
class BlockStep:
    """One block's step: the change happened in ``(lo_ms, hi_ms]`` (true ms) by ``dv_per_cell`` V/cell."""

    block: int
    lo_ms: float
    hi_ms: float
    dv_per_cell: float


@dataclass(frozen=True)
class StringStep:
    """A step of the whole string.

    The instant lies in ``(lo_ms, hi_ms]`` (true ms, the intersection of the blocks'
    intervals); ``t_ms`` is its middle. ``sign``: -1 voltages fell (load on or up), +1 rose
    (load off or down). ``blocks``: the blocks' own steps; ``of``: blocks with samples around
    it. ``dv_per_cell``: median change, V/cell.
    """

    t_ms: float
    lo_ms: float
    hi_ms: float
    sign: int
    blocks: tuple[BlockStep, ...]
    of: int
    dv_per_cell: float

    @property
    def support(self) -> int:
        return len(self.blocks)

    @property
    def uncertainty_s(self) -> float:
        """Standard uncertainty of the instant, s (uniform over the interval)."""
        return (self.hi_ms - self.lo_ms) / 1000.0 / math.sqrt(12.0)

    def describe(self) -> str:
        return f"{self.support} of {self.of} blocks stepped {'down' if self.sign < 0 else 'up'} together"


def block_steps(b: AlignedBlock, index: int, t0_ms: float, t1_ms: float) -> list[BlockStep]:
    """The step candidates of one block in ``[t0_ms, t1_ms]``."""
    lo, hi = np.searchsorted(b.true_ms, [t0_ms, t1_ms])
    lo, hi = max(int(lo) - 1, 0), min(int(hi) + 1, b.true_ms.size)
    if hi - lo < 3:
        return []
    t = b.true_ms[lo:hi]
    v = b.mv[lo:hi].astype(np.float64) / 1000.0 / b.log.cells
    d = np.diff(v)
    dt = np.diff(t)
    ok = (dt > 0) & (dt <= MAX_INTERVAL_S * 1000.0)
    # The noise from a few thousand changes is as good as from all of them (and much cheaper).
    thin = max(1, int(ok.sum()) // 4000)
    fast = ok & (dt <= 1.5 * float(np.median(dt[ok][::thin]))) if ok.any() else ok
    ref = (d[fast] if fast.sum() >= 10 else d[ok])[::thin]
    if ref.size == 0:
        return []
    sigma = 1.4826 * float(np.median(np.abs(ref - np.median(ref))))
    thr = max(NOISE_FACTOR * sigma, MIN_STEP_V_PER_CELL)
    cand = np.nonzero(ok & (np.abs(d) > thr))[0]
    fast_dt = float(np.median(dt[ok])) if ok.any() else 1000.0
    cfg = b.log.config
    tick_ms = 1000.0 * math.gcd(cfg.float_rate_s, cfg.discharge_rate_s)
    starts = b.event_true_ms(EventKind.DISCHARGE_START)
    out: list[BlockStep] = []
    k = 0
    while k < cand.size:
        i = int(cand[k])
        sign = 1.0 if d[i] > 0 else -1.0
        # A run of large changes of one sign is one step (its first MAX_SPREAD_S: a step
        # recorded as a ramp) followed by the relaxation after it.
        j = i
        while (k + 1 < cand.size and int(cand[k + 1]) == j + 1 and d[j + 1] * sign > 0
               and t[j + 2] - t[i] <= MAX_SPREAD_S * 1000.0):
            k += 1
            j += 1
        while k + 1 < cand.size and int(cand[k + 1]) == int(cand[k]) + 1 and d[int(cand[k + 1])] * sign > 0:
            k += 1
        if j > i:
            # One change far larger than the others is the step itself and the rest the relaxation
            # after it; so is a first change clearly larger than the next (the relaxation only
            # decays: at 1 Hz right after a step it can be half the step's own change per second).
            # Comparable changes are a ramp (a step recorded every few seconds).
            run = np.abs(d[i:j + 1])
            top = int(np.argmax(run))
            rest = np.delete(run, top)
            if run[top] >= 2.0 * float(np.median(rest)):
                i = j = i + top
            elif top == 0 and run[0] >= FIRST_OF_RUN_FACTOR * run[1]:
                j = i
        lo_ms, hi_ms = float(t[i]), float(t[j + 1])
        dv = float(v[j + 1] - v[i])
        if hi_ms - lo_ms > 2.0 * fast_dt and j + 2 < t.size and t[j + 2] - t[j + 1] <= 1.5 * fast_dt:
            # Between far-apart samples (float rate): after a load step the voltage relaxes
            # ever more slowly, so going back from the first sample after it at its slope
            # reaches the level before the step no earlier than the step happened.
            slope = float(v[j + 2] - v[j + 1]) / float(t[j + 2] - t[j + 1])
            if slope * sign > 0:
                lo_ms = max(lo_ms, hi_ms - abs(dv) / abs(slope))
            # The firmware's own evidence: it measures every tick and raised DISCHARGE_START on
            # the third tick in a row below its rule. An event exactly two ticks after this first
            # loaded sample means the tick before it was not yet below: the load came on after it.
            if sign < 0 and starts.size:
                expect = hi_ms + (FIRMWARE_DEBOUNCE_TICKS - 1) * tick_ms
                if np.any(np.abs(starts - expect) <= 0.25 * tick_ms + 50.0):
                    lo_ms = max(lo_ms, hi_ms - tick_ms)
        out.append(BlockStep(index, lo_ms, hi_ms, dv))
        k += 1
    return out


def _covering(blocks: Sequence[AlignedBlock], t_ms: float) -> int:
    """Blocks with a sample on each side of ``t_ms`` within ``MAX_INTERVAL_S``."""
    n = 0
    w = MAX_INTERVAL_S * 1000.0
    for b in blocks:
        k = int(np.searchsorted(b.true_ms, t_ms))
        if 0 < k < b.true_ms.size and b.true_ms[k] - b.true_ms[k - 1] <= w:
            n += 1
    return n


def find_steps(blocks: Sequence[AlignedBlock], t0_ms: float, t1_ms: float) -> list[StringStep]:
    """Every string step in ``[t0_ms, t1_ms]``, in time order (see the module docstring)."""
    out: list[StringStep] = []
    every = [s for i, b in enumerate(blocks) for s in block_steps(b, i, t0_ms, t1_ms)]
    for sign in (-1, 1):
        pool = [s for s in every if (s.dv_per_cell > 0) == (sign > 0)]
        while pool:
            # The instant that most intervals allow (a sweep over their ends).
            ends = sorted([(s.lo_ms, 1) for s in pool] + [(s.hi_ms, -1) for s in pool],
                          key=lambda e: (e[0], e[1]))
            best, count, at = 0, 0, 0.0
            for x, delta in ends:
                count += delta
                if count > best:
                    best, at = count, x
            # ``at`` is a left end; the intervals open there count from just after it.
            members = [s for s in pool if s.lo_ms <= at < s.hi_ms]
            if not members:
                break
            # One step per block: a block's two candidates both spanning the instant keep the larger.
            by_block: dict[int, BlockStep] = {}
            for m in members:
                if m.block not in by_block or abs(m.dv_per_cell) > abs(by_block[m.block].dv_per_cell):
                    by_block[m.block] = m
            chosen = tuple(sorted(by_block.values(), key=lambda m: m.block))
            lo = max(m.lo_ms for m in chosen)
            hi = min(m.hi_ms for m in chosen)
            of = max(_covering(blocks, 0.5 * (lo + hi)), len(chosen))
            pool = [s for s in pool if s not in members]
            if len(chosen) < max(1, math.ceil(MIN_SUPPORT * of)):
                continue
            out.append(StringStep(0.5 * (lo + hi), lo, hi, sign, chosen, of,
                                  float(np.median([m.dv_per_cell for m in chosen]))))
    out.sort(key=lambda s: s.t_ms)
    return out
