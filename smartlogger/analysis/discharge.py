"""Discharge detection on the string and on each block, from all the evidence.

Owns: finding the test window in long logs (``find_test_window``), the string
voltage estimate on the common grid, the discharge start (load applied), end
(string end voltage reached, load removed, or data ended), short interruptions
(load removed and applied again) and each block's time to its own end voltage,
and the record of how start and end were found (``Evidence``).

The evidence, strongest first: the load steps the blocks show together
(``steps``), placed by the firmware's own DISCHARGE_START/END events and by a load
profile with absolute time stamps; then the threshold rule (the string's mean cell
voltage below the start level, debounced) as the last resort. docs/CAPACITY.md
states every rule and default.

Does not own the clock alignment (``align``), the load current or any
capacity arithmetic (``capacity``).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.align import AlignedBlock, Grid
from smartlogger.analysis.inputs import MetadataError
from smartlogger.analysis.steps import StringStep, find_steps
from smartlogger.model import EventKind

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
    rows, n = m.shape
    if n < k:
        return np.full(rows, -1, dtype=np.int64)
    out: IntArray = np.empty(rows, dtype=np.int64)
    # A few rows at a time: the running counts are 2^20 points, not 8 bytes per point of the
    # whole mask (240 blocks x a 10 h discharge: 70 MB). Rows are independent.
    step = max(1, (1 << 20) // (n + 1))
    for a in range(0, rows, step):
        mm = m[a:a + step]
        cs = np.zeros((mm.shape[0], n + 1), dtype=np.int32)
        np.cumsum(mm, axis=1, out=cs[:, 1:])
        ok = (cs[:, k:] - cs[:, :-k]) == k  # ok[:, i]: m[:, i:i+k] all true
        first = np.argmax(ok, axis=1).astype(np.int64)
        first[~ok.any(axis=1)] = -1
        out[a:a + step] = first
    return out


def find_test_window(blocks: list[AlignedBlock], start_v_per_cell: float, *,
                     which: int = -1, extra: Sequence[tuple[float, float]] = ()) -> tuple[float, float]:
    """The true-time window (ms) of one test in the logs: below-start-voltage periods of all
    blocks, the firmware's discharges (DISCHARGE_START to DISCHARGE_END) and ``extra`` spans
    (a load profile's on-time), merged when closer than ``CLUSTER_GAP_S``; ``which`` picks the
    test (-1: last), widened by ``PREROLL_S``/``POSTROLL_S`` and clipped to the data."""
    spans: list[tuple[float, float]] = list(extra)
    for b in blocks:
        starts_ev = b.event_true_ms(EventKind.DISCHARGE_START)
        ends_ev = b.event_true_ms(EventKind.DISCHARGE_END)
        for s0 in starts_ev:
            later = ends_ev[ends_ev > s0]
            e0 = float(later[0]) if later.size else (float(b.true_ms[-1]) if b.true_ms.size else float(s0))
            spans.append((float(s0), e0))
    t_min, t_max = np.inf, -np.inf
    for b in blocks:
        if b.true_ms.size == 0:
            continue
        t_min = min(t_min, float(b.true_ms[0]))
        t_max = max(t_max, float(b.true_ms[-1]))
        below = b.mv < start_v_per_cell * b.log.cells * 1000.0
        # Runs of samples below: where the mask changes (1 byte per sample, not the 8 of a diff).
        change = np.flatnonzero(below[1:] != below[:-1]) + 1
        starts = np.concatenate(([0] if below[0] else [], change[below[change]])).astype(np.int64)
        ends = np.concatenate((change[~below[change]] - 1, [below.size - 1] if below[-1] else [])).astype(np.int64)
        del below, change
        spans.extend(zip(b.true_ms[starts].tolist(), b.true_ms[ends].tolist(), strict=True))
    if not spans:
        raise MetadataError(
            "logs",
            f"no discharge found: no block fell below {start_v_per_cell:.2f} V/cell and no logger "
            "logged a discharge",
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


#: How far before the window the load step is looked for (s): a light load on a battery at
#: rest takes hours to reach the start threshold or the firmware's own rule (C/20: ~6 h).
LOAD_STEP_SEARCH_S = 24 * 3600.0
#: Data kept before a load step found that way (s).
STEP_PREROLL_S = 600.0


def extend_to_load_step(blocks: list[AlignedBlock], window_start_ms: float) -> float:
    """Move the window's start back to a load step of the string in the ``LOAD_STEP_SEARCH_S``
    before it that is still on when the window starts (a down-step not followed by an up-step),
    so a slowly falling discharge keeps its start. Returns the (possibly earlier) start, ms."""
    steps = find_steps(blocks, window_start_ms - LOAD_STEP_SEARCH_S * 1000.0, window_start_ms)
    on: StringStep | None = None
    for st in steps:
        if st.sign < 0 and (on is None or abs(st.dv_per_cell) > RESTART_FACTOR * abs(on.dv_per_cell)):
            on = st
        elif st.sign > 0 and on is not None and abs(st.dv_per_cell) >= OFF_FRACTION * abs(on.dv_per_cell):
            on = None
    if on is None:
        return window_start_ms
    t_min = min((float(b.true_ms[0]) for b in blocks if b.true_ms.size), default=window_start_ms)
    return max(min(window_start_ms, on.lo_ms - STEP_PREROLL_S * 1000.0), t_min)


def string_voltage(grid: Grid, cells: npt.NDArray[np.int64], expected_cells: int) -> tuple[FloatArray, FloatArray]:
    """Mean cell voltage (V/cell) over the blocks with data at each grid point, and the
    string voltage (V) estimated as that mean times ``expected_cells`` (so a missing
    logger or a gap counts as an average block)."""
    # A few columns (grid times) at a time: the temporaries are 2^20 points, not the grid's size
    # (its int64 cell counts alone were 8 bytes per point). Sums along the blocks, column by column,
    # are the same in any column chunks.
    n_t = grid.v.shape[1]
    vsum = np.empty(n_t, dtype=np.float64)
    csum = np.empty(n_t, dtype=np.float64)
    cols = max(1, (1 << 20) // max(1, grid.v.shape[0]))
    for a in range(0, n_t, cols):
        v = grid.v[:, a:a + cols]
        vsum[a:a + cols] = np.nansum(v, axis=0, dtype=np.float64)
        csum[a:a + cols] = (~np.isnan(v) * cells[:, None]).sum(axis=0).astype(np.float64)
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


# --------------------------------------------------------------------------- all the evidence

#: Pauses in the load up to this long (s) are an interruption of one test (the technician
#: bypassed a block and went on); longer, the load came on for another test. **[product default]**
MAX_INTERRUPTION_S = 1800.0
#: An up-step while the load is on is the load going off when it is at least this share of
#: the load-on step (a smaller one is the load stepping down).
OFF_FRACTION = 0.5
#: A load profile's time stamps and the blocks' step agree within this (s); further apart,
#: the load file's clock is off and the blocks' step wins (the profile is shifted, warned).
PROFILE_AGREEMENT_S = 120.0
#: A load removed while the string was within this of its end voltage (V/cell) was cut off
#: at the end voltage (a load bank measures at its own terminals, behind the cables).
CUTOFF_TOLERANCE_V_PER_CELL = 0.01
#: The firmware ends a discharge when the voltage has been recovered for this long (s):
#: its DISCHARGE_END event comes that long after the load went off (device.firmware).
FIRMWARE_RECOVERY_HOLD_S = 60.0
#: A profile's current counts as on above this share of its 95th percentile.
PROFILE_ON_FRACTION = 0.05


@dataclass(frozen=True)
class Evidence:
    """One source's say on the start or the end of the discharge."""

    what: str  # 'start' or 'end'
    source: str  # 'voltage_step', 'firmware_event', 'load_profile', 'threshold', 'end_voltage', 'data_end'
    t_ms: float | None  # the instant it gives (true ms), None when it gives none
    used: bool  # this source placed the instant
    detail: str


@dataclass(frozen=True)
class Located:
    """The discharge as found from all the evidence (see ``locate_discharge``)."""

    span: DischargeSpan
    start_method: str
    start_uncertainty_s: float
    end_method: str
    end_uncertainty_s: float
    evidence: tuple[Evidence, ...]
    interruptions: tuple[tuple[int, int], ...]  # grid indices: load off after the first, on again at the second
    steps: tuple[StringStep, ...]  # every string step in the window
    profile_shift_ms: float  # added to an absolute load profile's times to match the blocks' steps
    warnings: tuple[str, ...]
    load_on_ms: float = math.nan  # the instant the load came on, true ms
    load_off_ms: float | None = None  # the instant it went off, if it did in the logs


def profile_on_intervals(t_s: FloatArray, values: FloatArray) -> list[tuple[float, float]]:
    """Where a load profile is on (above ``PROFILE_ON_FRACTION`` of its 95th percentile): a
    list of (first, last) on-point times in the profile's own seconds."""
    ref = float(np.percentile(values, 95))
    on = values > PROFILE_ON_FRACTION * ref
    if not on.any():
        return []
    edges = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    starts = np.nonzero(edges == 1)[0]
    ends = np.nonzero(edges == -1)[0] - 1
    out = []
    for a, b in zip(starts, ends, strict=True):
        # The load came on between the last off point and the first on point: take the first on
        # point unless the profile ramps (then the middle).
        out.append((float(t_s[a]), float(t_s[b])))
    return out


def check_profile_overlap(blocks: Sequence[AlignedBlock], on_ms: Sequence[tuple[float, float]], name: str) -> None:
    """Refuse a load profile whose load-on time lies outside the logs altogether."""
    spans = [(float(b.true_ms[0]), float(b.true_ms[-1])) for b in blocks if b.true_ms.size]
    if not spans or not on_ms:
        return
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    p_lo, p_hi = on_ms[0][0], on_ms[-1][1]
    if p_hi < lo or p_lo > hi:
        raise MetadataError(
            "load_csv", f"{name} has the load on {_iso(p_lo)}..{_iso(p_hi)}, the logs run {_iso(lo)}..{_iso(hi)}: "
            "they do not overlap; check --load-timezone, the instrument's clock or the file")


#: With a constant load, a step down while "on" this much larger than the step that started
#: it is the load coming on, and the earlier one was something else (a charger switched off).
RESTART_FACTOR = 1.5


def _group_intervals(steps: list[StringStep], *, constant_load: bool = True,
                     ) -> list[list[tuple[StringStep, StringStep | None]]]:
    """Load on-intervals from the string steps, grouped into tests (pauses up to
    ``MAX_INTERRUPTION_S`` inside a group)."""
    intervals: list[tuple[StringStep, StringStep | None]] = []
    on: StringStep | None = None
    for st in steps:
        if st.sign < 0:
            if on is None or (constant_load and abs(st.dv_per_cell) > RESTART_FACTOR * abs(on.dv_per_cell)):
                on = st
        elif on is not None and abs(st.dv_per_cell) >= OFF_FRACTION * abs(on.dv_per_cell):
            intervals.append((on, st))
            on = None
    if on is not None:
        intervals.append((on, None))
    groups: list[list[tuple[StringStep, StringStep | None]]] = []
    for iv in intervals:
        prev_off = groups[-1][-1][1] if groups else None
        if groups and prev_off is not None and iv[0].t_ms - prev_off.t_ms <= MAX_INTERRUPTION_S * 1000.0:
            groups[-1].append(iv)
        else:
            groups.append([iv])
    return groups


def locate_discharge(aligned: list[AlignedBlock], grid: Grid, cells: npt.NDArray[np.int64], expected_cells: int,
                     start_v_per_cell: float, end_v_per_cell: float, *, debounce_s: int = DEBOUNCE_S,
                     profile_on_ms: list[tuple[float, float]] | None = None,
                     profile_rel_on_s: list[tuple[float, float]] | None = None,
                     profile_name: str = "the load file") -> Located:
    """Start, end, interruptions and end reason of the string discharge, from all the evidence.

    ``profile_on_ms``: the on-intervals of a load profile with absolute time stamps (true
    ms, the instrument's clock); ``profile_rel_on_s``: those of a relative profile (s since
    the load was applied). Falls back to the threshold rule where nothing else speaks.
    """
    step_ms = grid.step_ms
    t = grid.t_ms.astype(np.float64)
    t0 = float(t[0])
    n = t.size
    k = max(1, round(debounce_s * 1000.0 / step_ms))
    per_cell, string_v = string_voltage(grid, cells, expected_cells)
    valid = ~np.isnan(per_cell)
    evidence: list[Evidence] = []
    warnings: list[str] = []
    profile = profile_rel_on_s is not None or profile_on_ms is not None

    def idx_at_or_after(ms: float) -> int:
        return int(np.clip(math.ceil((ms - t0) / step_ms - 1e-9), 0, n - 1))

    def idx_at_or_before(ms: float) -> int:
        return int(np.clip(math.floor((ms - t0) / step_ms + 1e-9), 0, n - 1))

    # ---- what each source says
    steps = find_steps(aligned, t0, float(t[-1]))
    cross = int(debounced_first((per_cell < start_v_per_cell) & valid, k)[0])
    t_cross = float(t[cross]) if cross >= 0 else None
    # Each logger's first DISCHARGE_START in the window (its log may hold earlier tests' too).
    ev_start = [x for b in aligned for x in [y for y in b.event_true_ms(EventKind.DISCHARGE_START)
                                             if t0 <= y <= float(t[-1])][:1]]
    ev_end = [x for b in aligned for x in b.event_true_ms(EventKind.DISCHARGE_END)
              if t0 <= x <= float(t[-1])]
    t_ev = float(np.median(ev_start)) if ev_start else None
    shift = 0.0
    if profile_on_ms:
        p_lo = min(a for a, _ in profile_on_ms)
        p_hi = max(b for _, b in profile_on_ms)
        if p_hi < t0 or p_lo > float(t[-1]):
            raise MetadataError(
                "load_csv",
                f"{profile_name} has the load on {_iso(p_lo)}..{_iso(p_hi)}, the logs of this test run "
                f"{_iso(t0)}..{_iso(float(t[-1]))}: they do not overlap; check --load-timezone or the file")

    # ---- the start: the load-on step of the group of on-intervals under load at the anchor
    anchors = [x for x in (t_ev, t_cross) if x is not None]
    if profile_on_ms:
        anchors.append(profile_on_ms[0][0] + 1.0)
    groups = _group_intervals(steps, constant_load=not profile)
    chosen = None
    if groups and anchors:
        anchor = min(anchors)
        for g in groups:
            first_on = g[0][0]
            last_off = g[-1][1]
            # the anchor may lag the step (threshold, event) but not precede it by more than the
            # profile tolerance (a load file's clock may be a little ahead)
            if first_on.lo_ms - PROFILE_AGREEMENT_S * 1000.0 <= anchor and (
                    last_off is None or anchor <= last_off.hi_ms):
                chosen = g
        if chosen is None:
            # no group holds the anchor: the last group that starts before it
            before = [g for g in groups if g[0][0].t_ms <= anchor + PROFILE_AGREEMENT_S * 1000.0]
            chosen = before[-1] if before else None
    legacy = detect_discharge(grid, cells, expected_cells, start_v_per_cell, end_v_per_cell,
                              debounce_s=debounce_s, detect_load_removal=not profile) if cross >= 0 else None
    if legacy is not None:
        legacy = refine_start_with_samples(aligned, grid, legacy)

    start_method = "threshold"
    start_unc = float(step_ms) / 1000.0
    if chosen is not None:
        on = chosen[0][0]
        start_ms = on.t_ms
        start_method = "voltage_step"
        start_unc = on.uncertainty_s
        evidence.append(Evidence("start", "voltage_step", on.t_ms, True, on.describe()))
    elif profile_on_ms:
        start_ms = profile_on_ms[0][0]
        start_method = "load_profile"
        start_unc = 1.0
    elif t_ev is not None:
        start_ms = t_ev
        start_method = "firmware_event"
        start_unc = 60.0
    elif legacy is not None:
        start_ms = float(t[legacy.start_idx])
    else:
        raise MetadataError("logs", f"no discharge found: no load step in the blocks, no firmware discharge event "
                            f"and the string never fell below {start_v_per_cell:.2f} V/cell")
    if chosen is None:
        evidence.append(Evidence("start", "voltage_step", None, False, "no step of the blocks together"))
    if t_ev is not None:
        evidence.append(Evidence("start", "firmware_event", t_ev, start_method == "firmware_event",
                                 f"DISCHARGE_START of {len(ev_start)} of {len(aligned)} loggers, "
                                 f"{(t_ev - start_ms) / 1000.0:+.0f} s from the start"))
    else:
        evidence.append(Evidence("start", "firmware_event", None, False, "no DISCHARGE_START event in the window"))
    if profile_on_ms:
        p_on = profile_on_ms[0][0]
        diff_s = (start_ms - p_on) / 1000.0
        if start_method == "voltage_step" and abs(diff_s) > 2.0 * start_unc + 1.0:
            shift = start_ms - p_on
            msg = (f"{profile_name}: its load came on {abs(diff_s):.0f} s "
                   f"{'before' if diff_s > 0 else 'after'} the blocks' step: its clock is off; the load profile "
                   f"was shifted by {diff_s:+.0f} s to the blocks' step")
            if abs(diff_s) > PROFILE_AGREEMENT_S:
                msg += " (more than the usual clock error: check the file and --load-timezone)"
            warnings.append(msg)
        evidence.append(Evidence("start", "load_profile", p_on, start_method == "load_profile",
                                 f"load on in the profile, {diff_s:+.1f} s from the start"))
    evidence.append(Evidence("start", "threshold", t_cross, start_method == "threshold",
                             f"string below {start_v_per_cell:.2f} V/cell" + (
                                 f", {(t_cross - start_ms) / 1000.0:+.0f} s from the start" if t_cross else ": never")))
    start = idx_at_or_after(start_ms) if start_method != "threshold" or legacy is None else legacy.start_idx

    # ---- the end and the interruptions
    interruptions: list[tuple[int, int]] = []
    off_ms: float | None = None
    off_unc = 1.0
    off_source = "voltage_step"
    if chosen is not None:
        for (_, off_a), (on_b, _) in itertools.pairwise(chosen):
            if off_a is not None:
                interruptions.append((idx_at_or_before(off_a.t_ms), idx_at_or_after(on_b.t_ms)))
        last_off = chosen[-1][1]
        if last_off is not None:
            off_ms, off_unc = last_off.t_ms, last_off.uncertainty_s
    if profile_on_ms:
        p_off = profile_on_ms[-1][1] + shift
        if off_ms is None or abs(p_off - off_ms) > PROFILE_AGREEMENT_S * 1000.0:
            if off_ms is not None:
                warnings.append(f"{profile_name}: the load goes off {_iso(p_off)}, the blocks stepped up "
                                f"{_iso(off_ms)}: the load profile was followed")
            off_ms, off_unc, off_source = p_off, 1.0, "load_profile"
        if chosen is None:
            interruptions = []
            for (_, a_off), (b_on, _) in itertools.pairwise(profile_on_ms):
                interruptions.append((idx_at_or_before(a_off + shift), idx_at_or_after(b_on + shift)))
    elif profile_rel_on_s:
        p_off = start_ms + profile_rel_on_s[-1][1] * 1000.0
        if off_ms is None or abs(p_off - off_ms) > PROFILE_AGREEMENT_S * 1000.0:
            off_ms, off_unc, off_source = p_off, 1.0, "load_profile"
        interruptions = [(idx_at_or_before(start_ms + a_off * 1000.0), idx_at_or_after(start_ms + b_on * 1000.0))
                         for (_, a_off), (b_on, _) in itertools.pairwise(profile_rel_on_s)]
    ev_end_after = sorted(x for x in ev_end if x > start_ms)
    if off_ms is None and ev_end_after and start_method != "threshold":
        off_ms, off_unc, off_source = ev_end_after[-1] - FIRMWARE_RECOVERY_HOLD_S * 1000.0, 5.0, "firmware_event"
    if off_ms is None and legacy is not None and legacy.end_reason is EndReason.LOAD_REMOVED and start_method == "threshold":
        off_ms, off_source = float(t[legacy.end_idx]), "voltage_step"

    last_valid = int(np.nonzero(valid)[0][-1]) if valid.any() else start
    # end voltage: the string at or below it, debounced, while the load is on
    load_on = np.ones(n, dtype=bool)
    for a, b in interruptions:
        load_on[a + 1:b] = False
    hi_idx = idx_at_or_before(off_ms) if off_ms is not None else last_valid
    seg = (per_cell <= end_v_per_cell) & valid & load_on
    seg[:start] = False
    ev = int(debounced_first(seg[: hi_idx + k], k)[0])
    end_unc = float(step_ms) / 1000.0
    if ev >= 0 and ev <= hi_idx:
        end, reason, end_method = ev, EndReason.END_VOLTAGE, "end_voltage"
    elif off_ms is not None:
        end = max(start, hi_idx)
        last_loaded = per_cell[max(start, end - 2):end + 1]
        if last_loaded.size and np.nanmin(last_loaded) <= end_v_per_cell + CUTOFF_TOLERANCE_V_PER_CELL:
            reason, end_method = EndReason.END_VOLTAGE, off_source
            warnings.append(f"the load was removed with the string at {np.nanmin(last_loaded):.3f} V/cell, within "
                            f"{CUTOFF_TOLERANCE_V_PER_CELL * 1000:.0f} mV/cell of its end voltage: taken as the "
                            "test set's end-voltage cut-off")
        else:
            reason, end_method = EndReason.LOAD_REMOVED, off_source
        end_unc = off_unc
    else:
        end, reason, end_method = max(start, last_valid), EndReason.DATA_ENDED, "data_end"
    end = max(start, min(end, last_valid))
    if off_ms is not None:
        evidence.append(Evidence("end", off_source, off_ms, end_method == off_source,
                                 "load removed" + (f" ({chosen[-1][1].describe()})" if chosen and chosen[-1][1] and
                                                   off_source == "voltage_step" else "")))
    evidence.append(Evidence("end", "end_voltage", float(t[ev]) if ev >= 0 else None, end_method == "end_voltage",
                             f"string at or below {end_v_per_cell:.3f} V/cell" + ("" if ev >= 0 else ": never")))
    if ev_end_after:
        evidence.append(Evidence("end", "firmware_event", ev_end_after[-1], end_method == "firmware_event",
                                 f"DISCHARGE_END of {len(ev_end_after)} loggers (the firmware ends "
                                 f"{FIRMWARE_RECOVERY_HOLD_S:.0f} s after the load goes off)"))
    if end_method == "data_end":
        evidence.append(Evidence("end", "data_end", float(t[end]), True, "the logs end under load"))
    interruptions = [(a, b) for a, b in interruptions if start <= a < b <= end]
    for a, b in interruptions:
        warnings.append(f"the load was off for {(b - a) * step_ms / 1000.0:.0f} s from {_iso(float(t[a]))} "
                        "(an interruption): that time is not counted")
    span = DischargeSpan(start, end, reason, per_cell, string_v)
    return Located(span, start_method, round(start_unc, 3), end_method, round(end_unc, 3), tuple(evidence),
                   tuple(interruptions), tuple(steps), shift, tuple(warnings), start_ms, off_ms)


def _iso(ms: float) -> str:
    return str(np.datetime64(round(ms), "ms").astype("datetime64[s]")) + "Z"
