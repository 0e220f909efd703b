"""Discharge detection on the string and on each block.

Owns: finding the test window in long logs (``find_test_window``), the string
voltage estimate on the common grid, the discharge start (load applied), end
(string end voltage reached, load removed, or data ended) and each block's
time to its own end voltage. All rules are threshold crossings that must hold
for ``debounce_s`` consecutive grid points, so a single noisy sample neither
starts nor ends anything.

Does not own the clock alignment (``align``), the load current or any
capacity arithmetic (``capacity``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.align import AlignedBlock, Grid
from smartlogger.analysis.inputs import MetadataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: A discharge starts when the string's mean cell voltage falls below this
#: fraction of the nominal cell voltage (1.05 x 2.0 V = 2.10 V/cell for lead-acid:
#: below the open-circuit voltage of a charged cell, above any loaded voltage).
START_FRACTION_OF_NOMINAL = 1.05
#: Consecutive grid points (1 s each) a crossing must hold.
DEBOUNCE_S = 3
#: Minimum time under load before a voltage recovery counts as "load removed" (s).
MIN_DISCHARGE_S = 10
#: Load removed: the mean cell voltage rises by at least this much (V/cell) within
#: ``RISE_WINDOW_S``. Under a constant load the voltage only falls, except the slow
#: coup-de-fouet recovery in the first minutes (a few mV/cell per 10 s).
RISE_V_PER_CELL = 0.02
RISE_WINDOW_S = 10
#: The start is refined back to where the mean cell voltage left its pre-load level:
#: the first point more than this below the highest level (V/cell) of the
#: ``START_LOOKBACK_S`` before the threshold crossing.
START_STEP_V_PER_CELL = 0.01
START_LOOKBACK_S = 900
#: Where to look for the load step in the blocks' own samples before the crossing (s),
#: and how close (s) the blocks' steps must be to the median block's to count.
LOAD_STEP_LOOKBACK_S = 3600
STEP_AGREEMENT_S = 120
#: Below-threshold periods closer than this belong to the same test (s).
CLUSTER_GAP_S = 3600.0
#: Data kept before and after the test window (s): before, at least the load-step
#: lookback (a lightly loaded battery can take many minutes to fall below the start
#: threshold); both also show the exceedances around the test.
PREROLL_S = 3600.0
POSTROLL_S = 600.0


class EndReason(enum.StrEnum):
    END_VOLTAGE = "end_voltage"  # the string reached its end voltage
    LOAD_REMOVED = "load_removed"  # voltage recovered before the end voltage: test aborted
    DATA_ENDED = "data_ended"  # the logs stop while still under load


@dataclass(frozen=True)
class DischargeSpan:
    """The detected discharge on the grid: indices ``start_idx..end_idx`` (inclusive)."""

    start_idx: int
    end_idx: int
    end_reason: EndReason
    per_cell_v: FloatArray  # string mean cell voltage per grid point (V), NaN where no block has data
    string_v: FloatArray  # estimated string voltage per grid point (V)


def debounced_first(mask: npt.NDArray[np.bool_], k: int) -> IntArray:
    """Index of the first run of ``k`` consecutive true values along the last axis; -1 if none."""
    m = np.atleast_2d(mask)
    n = m.shape[1]
    if n < k:
        return np.full(m.shape[0], -1, dtype=np.int64)
    cs = np.zeros((m.shape[0], n + 1), dtype=np.int32)
    np.cumsum(m, axis=1, out=cs[:, 1:])
    ok = (cs[:, k:] - cs[:, :-k]) == k  # ok[:, i]: m[:, i:i+k] all true
    first = np.argmax(ok, axis=1).astype(np.int64)
    first[~ok.any(axis=1)] = -1
    out: IntArray = first
    return out


def find_test_window(blocks: list[AlignedBlock], start_v_per_cell: float, *,
                     which: int = -1) -> tuple[float, float]:
    """The true-time window (ms) of one test in the logs: below-start-voltage periods of all
    blocks, merged when closer than ``CLUSTER_GAP_S``; ``which`` picks the test (-1: last),
    widened by ``PREROLL_S``/``POSTROLL_S`` and clipped to the data."""
    spans: list[tuple[float, float]] = []
    t_min, t_max = np.inf, -np.inf
    for b in blocks:
        if b.true_ms.size == 0:
            continue
        t_min = min(t_min, float(b.true_ms[0]))
        t_max = max(t_max, float(b.true_ms[-1]))
        below = (b.mv < start_v_per_cell * b.log.cells * 1000.0).astype(np.int8)
        edges = np.diff(np.concatenate(([0], below, [0])))
        starts = np.nonzero(edges == 1)[0]
        ends = np.nonzero(edges == -1)[0] - 1
        spans.extend(zip(b.true_ms[starts].tolist(), b.true_ms[ends].tolist(), strict=True))
    if not spans:
        raise MetadataError(
            "logs",
            f"no discharge found: no block fell below {start_v_per_cell:.2f} V/cell",
        )
    spans.sort()
    clusters: list[list[float]] = []
    for s, e in spans:
        if clusters and s - clusters[-1][1] <= CLUSTER_GAP_S * 1000.0:
            clusters[-1][1] = max(clusters[-1][1], e)
        else:
            clusters.append([s, e])
    try:
        s, e = clusters[which]
    except IndexError:
        raise MetadataError("test_index", f"only {len(clusters)} discharges in the logs") from None
    return max(s - PREROLL_S * 1000.0, t_min), min(e + POSTROLL_S * 1000.0, t_max)


def string_voltage(grid: Grid, cells: npt.NDArray[np.int64], expected_cells: int) -> tuple[FloatArray, FloatArray]:
    """Mean cell voltage (V/cell) over the blocks with data at each grid point, and the
    string voltage (V) estimated as that mean times ``expected_cells`` (so a missing
    logger or a gap counts as an average block)."""
    valid = ~np.isnan(grid.v)
    vsum = np.nansum(grid.v, axis=0, dtype=np.float64)
    csum = (valid * cells[:, None]).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_cell = np.where(csum > 0, vsum / np.where(csum > 0, csum, 1.0), np.nan)
    return per_cell, per_cell * expected_cells


def detect_discharge(grid: Grid, cells: npt.NDArray[np.int64], expected_cells: int,
                     start_v_per_cell: float, end_v_per_cell: float, *,
                     debounce_s: int = DEBOUNCE_S, detect_load_removal: bool = True) -> DischargeSpan:
    """Start, end and end reason of the string discharge on ``grid``.

    ``detect_load_removal``: end the discharge when the voltage jumps back up; off for
    a measured current profile, whose current may step down without ending the test.
    """
    per_s = 1000.0 / grid.step_ms
    k = max(1, round(debounce_s * per_s))
    per_cell, string_v = string_voltage(grid, cells, expected_cells)
    valid = ~np.isnan(per_cell)
    cross = int(debounced_first((per_cell < start_v_per_cell) & valid, k)[0])
    if cross < 0:
        raise MetadataError("logs", f"no discharge found: the string never fell below {start_v_per_cell:.2f} V/cell")
    start = _refine_start(per_cell, cross, int(START_LOOKBACK_S * per_s))
    rest = per_cell[start:]
    rest_valid = valid[start:]
    ev = int(debounced_first((rest <= end_v_per_cell) & rest_valid, k)[0])
    rec = (_load_removed(rest, int(MIN_DISCHARGE_S * per_s), max(1, int(RISE_WINDOW_S * per_s)))
           if detect_load_removal else -1)
    last_valid = int(np.nonzero(rest_valid)[0][-1])
    candidates: list[tuple[int, EndReason]] = [(last_valid, EndReason.DATA_ENDED)]
    if ev >= 0:
        candidates.append((ev, EndReason.END_VOLTAGE))
    if rec >= 0:
        candidates.append((rec, EndReason.LOAD_REMOVED))
    end_rel, reason = min(candidates, key=lambda c: c[0])
    return DischargeSpan(start, start + end_rel, reason, per_cell, string_v)


def _refine_start(per_cell: FloatArray, cross: int, lookback: int) -> int:
    """The first grid index below the pre-load level, searching back from ``cross``."""
    lo = max(0, cross - lookback)
    window = per_cell[lo:cross + 1]
    if np.all(np.isnan(window)):
        return cross
    level = float(np.nanmax(window))
    at_level = np.nonzero(window >= level - START_STEP_V_PER_CELL)[0]
    return lo + int(at_level[-1]) + 1 if at_level.size and lo + int(at_level[-1]) < cross else cross


def refine_start_with_samples(blocks: list[AlignedBlock], grid: Grid, span: DischargeSpan) -> DischargeSpan:
    """Move the start to the load step seen in the blocks' own samples.

    Under load the voltage decays smoothly, so in the ``LOAD_STEP_LOOKBACK_S``
    before the threshold crossing the largest sample-to-sample drop of a block
    (at least ``START_STEP_V_PER_CELL``) is where the load was applied. Between a
    logger's last float sample and its first loaded one the grid is interpolated,
    which would smear the step over a float interval; the load reaches all blocks
    at once, so the start is the earliest first-loaded sample among the blocks
    that agree (within ``STEP_AGREEMENT_S``) with the median block.
    """
    t_cross = float(grid.t_ms[span.start_idx])
    lookback = LOAD_STEP_LOOKBACK_S * 1000.0
    cands: list[float] = []
    for b in blocks:
        lo, hi = np.searchsorted(b.true_ms, [t_cross - lookback, t_cross + 60_000.0])
        if hi - lo < 2:
            continue
        v = b.mv[lo:hi].astype(np.float64) / 1000.0 / b.log.cells
        steps = np.diff(v)
        j = int(np.argmin(steps))
        if -steps[j] >= START_STEP_V_PER_CELL:
            cands.append(float(b.true_ms[lo + j + 1]))
    if not cands:
        return span
    med = float(np.median(cands))
    first = min(c for c in cands if abs(c - med) <= STEP_AGREEMENT_S * 1000.0)
    new = int(np.clip(np.ceil((first - float(grid.t_ms[0])) / grid.step_ms), 0, span.end_idx))
    return DischargeSpan(new, span.end_idx, span.end_reason, span.per_cell_v, span.string_v)


def _load_removed(rest: FloatArray, min_n: int, w: int) -> int:
    """Relative index of the last loaded point before the voltage jumps back up; -1 if none."""
    if rest.size <= min_n + w:
        return -1
    with np.errstate(invalid="ignore"):
        rise = rest[min_n + w:] - rest[min_n:-w]  # rise[j]: from min_n+j to min_n+j+w
        hit = np.nonzero(rise >= RISE_V_PER_CELL)[0]
    if hit.size == 0:
        return -1
    i = min_n + int(hit[0])
    steps = np.diff(rest[i:i + w + 1])
    return i + int(np.nanargmax(steps))


def block_end_indices(grid: Grid, end_v_block: FloatArray, span: DischargeSpan, *,
                      debounce_s: int = DEBOUNCE_S) -> IntArray:
    """Per block, the grid index at which it reached its own end voltage (V) during the
    discharge; -1 if it never did."""
    k = max(1, round(debounce_s * 1000 / grid.step_ms))
    # Look k-1 points past the end so a crossing on the last loaded point can hold.
    seg = grid.v[:, span.start_idx:span.end_idx + k]
    with np.errstate(invalid="ignore"):
        below = seg <= end_v_block[:, None].astype(np.float32)
    first = debounced_first(below, k)
    ok = (first >= 0) & (first <= span.end_idx - span.start_idx)
    return np.where(ok, first + span.start_idx, -1)
