"""The capacity-test analysis as one call: logs + metadata -> ``TestResult``.

Owns the order of the steps and the decisions that join them: validate the
logs, align every logger's clock, cut the test window out of long logs, put all
blocks on one 1 s grid, detect the string discharge, integrate the load current,
find each block's end voltage, apply the temperature correction and the IEEE
450/1188 method, rank the blocks and classify the exceedances.

The CLI and the API both call ``analyze_test``; neither adds logic of its own.
Does not own the individual computations (see the sibling modules).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from smartlogger.analysis import capacity as cap
from smartlogger.analysis import resistance as ir
from smartlogger.analysis.align import (
    CONFLICT_DRIFT_PPM,
    DEFAULT_MAX_DRIFT_PPM,
    DEFAULT_OBS_UNCERTAINTY_MS,
    AlignedBlock,
    Grid,
    align_block,
    block_gaps,
    continuous_span_ms,
    resample,
)
from smartlogger.analysis.clocks import resolve_clocks
from smartlogger.analysis.discharge import (
    DEBOUNCE_S,
    LOAD_STEP_SEARCH_S,
    START_FRACTION_OF_NOMINAL,
    DischargeSpan,
    EndReason,
    Located,
    block_end_indices,
    check_profile_overlap,
    extend_to_load_step,
    find_test_window,
    locate_discharge,
    profile_on_intervals,
)
from smartlogger.analysis.evidence import test_evidence, unchecked_block
from smartlogger.analysis.exceedances import ExceedanceRule, find_exceedances
from smartlogger.analysis.inputs import (
    BlockLog,
    ConstantCurrent,
    ConstantPower,
    CurrentProfile,
    HistoryNeeded,
    MetadataError,
    PowerProfile,
    TestMetadata,
)
from smartlogger.analysis.results import (
    SCHEMA_VERSION,
    BlockResult,
    CapacityResult,
    ClockResult,
    DischargeResult,
    EvidenceResult,
    ExceedanceResult,
    FileEvidence,
    GapResult,
    InterruptionResult,
    ResistanceStepResult,
    TestResult,
)
from smartlogger.analysis.verdict import apply_verdict
from smartlogger.model import Chemistry, Quantity
from smartlogger.quantities import format_duration

FloatArray = npt.NDArray[np.float64]

#: A capacity or SOH above this (% of rated) is no battery's: withheld with a warning.
MAX_PLAUSIBLE_PCT = 200.0
#: Most points of the common 1 s grid the analysis holds (blocks x seconds): about 0.5 GB.
MAX_GRID_CELLS = 60_000_000
#: Most grid times (3 days at 1 s): a longer test window is analysed on a coarser grid (a whole
#: multiple of ``AnalysisOptions.step_ms``, warned). The arrays over the grid's time (string
#: voltage, current, charge, ...) cost ~120 bytes per point at the peak.
MAX_GRID_POINTS = 1 << 18
#: Most samples of one logger in the test window (3 days at 1 s; ~50 bytes each while the window's
#: gaps, exceedances and grid are computed): more is refused, naming the logger.
MAX_WINDOW_SAMPLES = 1 << 18

#: Window after the discharge start over which each block's temperature is
#: averaged for K_T (s). IEEE 450 corrects with the temperature at the start of the test.
TEMPERATURE_WINDOW_S = 60.0
#: Window before the discharge start whose median block voltage is the pre-test float voltage (s).
FLOAT_WINDOW_S = 600.0

Method = Literal["auto", "time_adjusted", "rate_adjusted"]


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the analysis; every default is documented in docs/CAPACITY.md."""

    step_ms: int = 1000
    obs_uncertainty_ms: float = DEFAULT_OBS_UNCERTAINTY_MS
    max_drift_ppm: float = DEFAULT_MAX_DRIFT_PPM
    rule: ExceedanceRule = field(default_factory=ExceedanceRule)
    start_fraction_of_nominal: float = START_FRACTION_OF_NOMINAL
    debounce_s: int = DEBOUNCE_S
    method: Method = "auto"
    which_test: int = -1
    replace_below_pct: float = cap.REPLACE_BELOW_PCT
    #: Internal resistance reference (mOhm, e.g. the datasheet's); None: the string's median block.
    resistance_reference_mohm: float | None = None
    resistance_warn_pct: float = ir.WARN_FRACTION * 100.0
    resistance_fail_pct: float = ir.FAIL_FRACTION * 100.0


def _validate_logs(logs: Sequence[BlockLog], meta: TestMetadata) -> tuple[list[BlockLog], int, list[int], Chemistry]:
    if not logs:
        raise MetadataError("logs", "no logger logs given")
    serials = Counter(log.serial for log in logs)
    dup = [s for s, n in serials.items() if n > 1]
    if dup:
        raise MetadataError("logs", f"logger {dup[0]} appears more than once")
    positions = Counter(log.position for log in logs if log.position > 0)
    dup_pos = [p for p, n in positions.items() if n > 1]
    if dup_pos:
        raise MetadataError("logs", f"two loggers claim string position {dup_pos[0]}")
    chems = {log.config.block_type.chemistry for log in logs}
    if len(chems) > 1:
        raise MetadataError("logs", f"blocks of different chemistries in one string: {sorted(c.value for c in chems)}")
    max_pos = max((log.position for log in logs), default=0)
    n = meta.string_blocks if meta.string_blocks is not None else max(len(logs), max_pos)
    if n < len(logs) or n < max_pos:
        raise MetadataError(
            "string_blocks",
            f"{n} blocks in the string, but {len(logs)} loggers (highest position {max_pos})",
        )
    ordered = sorted(logs, key=lambda g: (g.position if g.position > 0 else 1 << 30, g.serial))
    missing = sorted(set(range(1, n + 1)) - set(positions)) if positions else []
    if not positions and n > len(logs):
        missing = []  # positions unknown: we know loggers are missing, not which
    return ordered, n, missing, chems.pop()


def _current_on_grid(meta: TestMetadata, t_ms: npt.NDArray[np.int64], t_rel_s: FloatArray, string_v: FloatArray,
                     shift_ms: float = 0.0) -> FloatArray:
    """The string current (A) at the grid times: the load as stated, a profile by its own time
    (absolute: by the clock, moved by ``shift_ms``; relative: from the discharge start)."""
    load = meta.load

    def volts() -> FloatArray:
        ok = np.isfinite(string_v) & (string_v > 0)
        if not ok.any():
            raise MetadataError("logs", "no string voltage during the discharge to convert power to current")
        return np.asarray(np.interp(t_rel_s, t_rel_s[ok], string_v[ok]), dtype=np.float64)  # bridge gaps

    if isinstance(load, ConstantCurrent):
        return np.full(t_rel_s.shape, load.amps)
    if isinstance(load, ConstantPower):
        return np.asarray(load.watts / volts(), dtype=np.float64)
    if isinstance(load, CurrentProfile | PowerProfile):
        if load.origin_ms is not None:
            tp = (t_ms.astype(np.float64) - load.origin_ms - shift_ms) / 1000.0
        else:
            tp = t_rel_s
        val = np.interp(tp, load.t_s, load.values)
        return np.asarray(val if isinstance(load, CurrentProfile) else val / volts(), dtype=np.float64)
    raise MetadataError("load", f"unknown load {load!r}")  # pragma: no cover


def _kt(temps: FloatArray, reference_c: float, chem: Chemistry, warnings: list[str]) -> FloatArray:
    """K_T per block; NaN temperatures give NaN; out-of-table temperatures are clamped (warned)."""
    if not chem.is_lead_acid:
        warnings.append(f"K_T table is for lead-acid; no temperature correction for {chem.value}")
        return np.where(np.isnan(temps), np.nan, 1.0)
    lo, hi = cap.K_T_RANGE_C
    out = np.full(temps.shape, np.nan)
    ok = ~np.isnan(temps)
    clipped = np.clip(temps[ok], lo, hi)
    if np.any(clipped != temps[ok]):
        warnings.append(f"block temperature outside the K_T table ({lo:.1f}..{hi:.1f} C): clamped")
    out[ok] = cap.k_t(clipped, reference_c) if clipped.size else clipped
    return out


def _saturation_warnings(aligned: list[AlignedBlock], span: DischargeSpan, grid: Grid,
                         warnings: list[str]) -> list[str]:
    """Blocks pinned at their measuring-range floor make the string voltage an upper bound.
    Returns their serials."""
    t0, t1 = float(grid.t_ms[span.start_idx]), float(grid.t_ms[span.end_idx])
    floored = []
    for al in aligned:
        lo_mv = al.log.config.block_type.measuring_range_mv[0]
        i0, i1 = np.searchsorted(al.true_ms, [t0, t1])
        if i1 > i0 and int(al.mv[i0:i1].min()) <= lo_mv:
            warnings.append(
                f"{al.log.serial} hit the measuring-range floor {lo_mv / 1000:g} V: the string voltage "
                "estimate is an upper bound (the string may have reached its end voltage earlier)"
            )
            floored.append(al.log.serial)
    return floored


def _opt(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def analyze_test(logs: Sequence[BlockLog], meta: TestMetadata,
                 options: AnalysisOptions | None = None, *,
                 excluded: Sequence[FileEvidence] = ()) -> TestResult:
    """Analyse one capacity test (see module docstring). Raises ``AnalysisError`` subclasses.

    Each block's result carries its log's ``evidence`` ("unchecked" for a log built in code);
    ``excluded`` (from ``loading.load_test_files``) names the files that were not used, and the
    result's ``evidence`` says whether it rests on verified hardware evidence only.
    """
    opt = options or AnalysisOptions()
    if not logs and excluded:
        raise MetadataError("logs", f"no usable logfile: all {len(excluded)} were excluded ("
                            + "; ".join(f"{f.file}: {f.reason}" for f in excluded[:5])
                            + ("; ..." if len(excluded) > 5 else "") + ")")
    if meta.string_blocks is None and excluded:
        # Loggers of this string excluded for their data are still blocks of the string (their
        # positions are missing): an excluded logger never shrinks the string. Files of another
        # test, or that said nothing of their logger, do not count.
        ours = [f for f in excluded if f.serial and f.reason not in ("other_test", "not_a_logfile")]
        serials = {log.serial for log in logs} | {f.serial for f in ours}
        highest = max([log.position for log in logs] + [f.position for f in ours])
        if max(len(serials), highest) > max([len(logs), *(log.position for log in logs)]):
            meta = replace(meta, string_blocks=max(len(serials), highest))
    ordered, n_string, missing, chem = _validate_logs(logs, meta)
    warnings: list[str] = []
    cells = np.array([log.cells for log in ordered], dtype=np.int64)
    common_cells = Counter(cells.tolist()).most_common(1)[0][0]
    end_v_pc = meta.end_voltage_for(chem, cells_per_block=common_cells, blocks=n_string)
    start_v_pc = chem.cell_nominal_mv / 1000.0 * opt.start_fraction_of_nominal

    aligned = [align_block(log, obs_uncertainty_ms=opt.obs_uncertainty_ms,
                           max_drift_ppm=opt.max_drift_ppm) for log in ordered]
    # One time line for the string: clocks that disagree are decided with the string's evidence;
    # a logger whose samples cannot be placed is left out, named (never stretched over years).
    decision = resolve_clocks(ordered, aligned, obs_uncertainty_ms=opt.obs_uncertainty_ms,
                              max_drift_ppm=opt.max_drift_ppm)
    warnings.extend(decision.warnings)
    clock_excluded = [f for x in decision.excluded for f in _clock_exclusions(ordered[x.index], x.message)]
    keep = [i for i, al in enumerate(decision.aligned) if al is not None]
    if not keep:
        raise MetadataError("logs", "no logger's clock can be placed on a common time line: "
                            + "; ".join(f"{x.serial}: {x.message}" for x in decision.excluded[:3]))
    clock_notes = {j: decision.notes[i] for j, i in enumerate(keep) if i in decision.notes}
    aligned = [a for a in decision.aligned if a is not None]
    if len(keep) < len(ordered):
        gone = [ordered[i].position for i in range(len(ordered)) if i not in keep and ordered[i].position > 0]
        missing = sorted(set(missing) | set(gone))
        ordered = [ordered[i] for i in keep]
        cells = np.array([log.cells for log in ordered], dtype=np.int64)
    if len(ordered) < n_string:
        warnings.append(
            f"{n_string - len(ordered)} of {n_string} loggers missing or left out"
            + (f" (positions {', '.join(map(str, missing))})" if missing else "")
            + ": the string voltage counts them as average blocks"
        )
    expected_cells = int(cells.sum()) + (n_string - len(ordered)) * common_cells
    profile = meta.load if isinstance(meta.load, CurrentProfile | PowerProfile) else None
    p_on_ms: list[tuple[float, float]] | None = None
    p_rel: list[tuple[float, float]] | None = None
    if profile is not None:
        on_iv = profile_on_intervals(profile.t_s, profile.values)
        if not on_iv:
            raise MetadataError("load_csv", f"{profile.source or 'the load profile'}: the load never came on "
                                "(no value above 5 % of its peak)")
        if profile.origin_ms is not None:
            p_on_ms = [(profile.origin_ms + a * 1000.0, profile.origin_ms + b * 1000.0) for a, b in on_iv]
            check_profile_overlap(aligned, p_on_ms, profile.source or "the load file")
        else:
            p_rel = on_iv
    ws, we = find_test_window(aligned, start_v_pc, which=opt.which_test, extra=p_on_ms or ())
    _check_history(aligned, start_v_pc, ws - (LOAD_STEP_SEARCH_S + HISTORY_CONTEXT_S) * 1000.0, we)
    ws = extend_to_load_step(aligned, ws)
    step = opt.step_ms
    # The cost budget (docs/API.md): what follows works on the window's samples and grid points,
    # so both are bounded, whatever the files hold. A discharge is hours; a window of days at the
    # logger's fastest rate is no test (e.g. a file whose every sample is below the start level).
    for al in aligned:
        inside = int(np.searchsorted(al.true_ms, we, side="right") - np.searchsorted(al.true_ms, ws, side="left"))
        if inside > MAX_WINDOW_SAMPLES:
            raise MetadataError("logs", f"the test window is {format_duration((we - ws) / 1000.0)} long and holds "
                                f"{inside:,} samples of {al.log.serial} (at most {MAX_WINDOW_SAMPLES:,} per logger): "
                                "no capacity test's discharge; refused")
    cells_needed = len(aligned) * (int((we - ws) // step) + 1)
    if cells_needed > MAX_GRID_CELLS:
        # Loggers whose clocks spread one test over weeks: refused, not analysed on a coarse grid
        # (that would print a weeks-long "discharge").
        raise MetadataError("logs", f"the test window is {format_duration((we - ws) / 1000.0)} long for "
                            f"{len(aligned)} loggers ({cells_needed:,} points on the 1 s grid, at most "
                            f"{MAX_GRID_CELLS:,}): the loggers' clocks do not agree on one test")
    points = int((we - ws) // step) + 1
    if points > MAX_GRID_POINTS:
        step *= -(-points // MAX_GRID_POINTS)
        warnings.append(f"the test window is {format_duration((we - ws) / 1000.0)} long: analysed on a "
                        f"{step / 1000.0:g} s grid (at most {MAX_GRID_POINTS:,} points)")
    grid = resample(aligned, int(math.floor(ws / step) * step), int(math.ceil(we / step) * step), step)
    found = locate_discharge(aligned, grid, cells, expected_cells, start_v_pc, end_v_pc,
                             debounce_s=opt.debounce_s, profile_on_ms=p_on_ms, profile_rel_on_s=p_rel,
                             profile_name=profile.source if profile is not None and profile.source else "the load file")
    span = found.span
    warnings.extend(found.warnings)
    floored = _saturation_warnings(aligned, span, grid, warnings)

    s, e = span.start_idx, span.end_idx
    t_rel = (grid.t_ms[s:e + 1] - grid.t_ms[s]).astype(np.float64) / 1000.0
    load_on = np.ones(t_rel.size, dtype=bool)
    for a, b in found.interruptions:
        load_on[a + 1 - s:b - s] = False
    current = _current_on_grid(meta, grid.t_ms[s:e + 1], t_rel, span.string_v[s:e + 1], found.profile_shift_ms)
    if profile is None:
        current = np.where(load_on, current, 0.0)
    cum_ah = np.zeros(t_rel.size)
    if t_rel.size > 1:
        cum_ah[1:] = np.cumsum((current[1:] + current[:-1]) * np.diff(t_rel)) / 2.0 / 3600.0
    # Time under load: the discharge less its interruptions (IEEE 450 counts the time the load was on).
    paused = np.zeros(t_rel.size)
    if t_rel.size > 1:
        off_step = (~load_on[1:]) | (~load_on[:-1])
        paused[1:] = np.cumsum(np.where(off_step, np.diff(t_rel), 0.0))
    t_on = t_rel - paused
    duration_s = float(t_on[-1])
    _check_span(ordered, (t_end_ms := float(grid.t_ms[e])) - float(grid.t_ms[s]))
    del t_end_ms
    if span.end_reason is EndReason.LOAD_REMOVED and floored:
        # The logged string voltage is an upper bound: the test set, which measures the real one,
        # has most likely stopped the test at its end-voltage cutoff.
        warnings.append(f"the load was removed before the logged string voltage reached its end voltage, "
                        f"after {', '.join(floored)} had read below the logger's measuring range: most likely the "
                        "test set's end-voltage cutoff stopped the test, not an abort")
    elif span.end_reason is EndReason.LOAD_REMOVED:
        warnings.append("test aborted: the load was removed before the string reached its end voltage")
    elif span.end_reason is EndReason.DATA_ENDED:
        warnings.append("the logs end before the string reached its end voltage")

    end_v_block = end_v_pc * cells.astype(np.float64)
    b_end = block_end_indices(grid, end_v_block, span, debounce_s=opt.debounce_s)
    reached = b_end >= 0
    # A block that did not reach its end voltage is known to have lasted until its last
    # sample in the discharge (the discharge end, unless its logger stopped early).
    valid = ~np.isnan(grid.v[:, s:e + 1])
    has_data: npt.NDArray[np.bool_] = np.asarray(valid.any(axis=1))
    last_valid = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    b_stop = np.where(reached, b_end - s, last_valid)  # relative index where each block's count stops
    b_time = t_on[b_stop]
    b_ah = cum_ah[b_stop]

    tw = max(1, int(TEMPERATURE_WINDOW_S * 1000 / step))
    with np.errstate(invalid="ignore"), _quiet_nan():
        temps = np.nanmean(grid.temp[:, s:s + tw], axis=1).astype(np.float64)
    reference_c = meta.datasheet.temperature_c if meta.datasheet is not None else meta.reference_temperature_c
    kt = _kt(temps, reference_c, chem, warnings)
    string_temp = float(np.nanmean(temps)) if np.any(~np.isnan(temps)) else math.nan
    kt_string = float(_kt(np.array([string_temp]), reference_c, chem, [])[0]) if math.isfinite(string_temp) else math.nan

    # Rate in the datasheet's unit: A, W per block or W per cell.
    power_string = current * np.nan_to_num(span.string_v[s:e + 1], nan=float(np.nanmean(span.string_v[s:e + 1])))
    mean_current = float(np.mean(current[load_on])) if load_on.any() else float(np.mean(current))
    t_rated: float | None = meta.rated_time_s
    rate_test: float | None = None
    ds = meta.datasheet
    if ds is not None:
        if ds.unit == "A":
            rate_test = mean_current
        else:
            rate_test = float(np.mean(power_string[load_on] if load_on.any() else power_string)) / n_string
            if ds.unit == "W/cell":
                rate_test /= common_cells
        t_rated = ds.rated_time_s(rate_test, end_v_pc)

    method: str
    if opt.method == "rate_adjusted" and ds is None:
        raise MetadataError("method", "the rate-adjusted method needs a datasheet")
    if opt.method == "auto":
        if ds is not None and duration_s < cap.RATE_ADJUSTED_BELOW_S:
            method = "rate_adjusted"
        elif t_rated is not None:
            method = "time_adjusted"
        else:
            method = "none"
    else:
        method = opt.method if t_rated is not None else "none"

    # Per-block % capacity.
    ta = cap.time_adjusted_pct(b_time, t_rated, kt) if t_rated is not None else np.full(len(ordered), np.nan)
    ra = np.full(len(ordered), np.nan)
    if ds is not None and rate_test is not None:
        for i in range(len(ordered)):
            try:
                ra[i] = float(cap.rate_adjusted_pct(rate_test, ds.rated_rate(float(b_time[i]), end_v_pc), kt[i]).item())
            except MetadataError as err:
                warnings.append(f"{ordered[i].serial}: rate-adjusted % not computed: {err.message}")
    chosen = ra if method == "rate_adjusted" else ta
    # No data at all during the discharge: nothing can be said about the block.
    ta[~has_data] = np.nan
    ra[~has_data] = np.nan
    # SOH: Ah of a new block at this rate and temperature = I x t_rated x K_T.
    if t_rated is not None:
        rated_ah_rate = mean_current * t_rated / 3600.0 * kt
    else:
        rated_ah_rate = np.array([log.config.rated_ah for log in ordered]) * kt
        warnings.append("no rated time or datasheet: SOH is against the nominal Ah, not rate-corrected")
    soh = cap.soh_pct(b_ah, rated_ah_rate)
    soh[~has_data] = np.nan
    # Voltage at the discharge end relative to the block's end voltage, for ranking
    # the blocks that outlasted the discharge.
    with _quiet_nan():
        v_end = np.nanmean(grid.v[:, max(s, e - 4):e + 1], axis=1) / end_v_block

    # Numbers no battery can produce are withheld and named, never printed as if fine.
    for i in range(len(ordered)):
        for arr, what in ((chosen, "capacity"), (soh, "SOH")):
            if math.isfinite(float(arr[i])) and float(arr[i]) > MAX_PLAUSIBLE_PCT:
                warnings.append(f"{ordered[i].serial}: a {what} of {float(arr[i]):.0f} % of rated is not physically "
                                f"possible (limit {MAX_PLAUSIBLE_PCT:g} %): withheld; check the load, the rated time "
                                "or datasheet, and the logger's clock")
                arr[i] = math.nan
    ta = np.where(ta > MAX_PLAUSIBLE_PCT, np.nan, ta)
    ra = np.where(ra > MAX_PLAUSIBLE_PCT, np.nan, ra)
    ranks = cap.rank_blocks([_opt(x) for x in chosen], reached.tolist(), [_opt(x) for x in v_end])

    # String capacity.
    string_pct = math.nan
    if method == "time_adjusted" and t_rated is not None:
        string_pct = float(cap.time_adjusted_pct(duration_s, t_rated, kt_string).item())
    elif method == "rate_adjusted" and ds is not None and rate_test is not None:
        try:
            string_pct = float(cap.rate_adjusted_pct(rate_test, ds.rated_rate(duration_s, end_v_pc), kt_string).item())
        except MetadataError as err:
            warnings.append(f"string rate-adjusted % not computed: {err.message}")
    string_lb = span.end_reason is not EndReason.END_VOLTAGE
    if math.isfinite(string_pct) and string_pct > MAX_PLAUSIBLE_PCT:
        warnings.append(f"a string capacity of {string_pct:.0f} % of rated is not physically possible (limit "
                        f"{MAX_PLAUSIBLE_PCT:g} %): withheld; check the load and the rated time or datasheet")
        string_pct = math.nan

    res_by_block = _resistances(aligned, grid, meta, found, span, current, mean_current, warnings)
    heads = [ir.headline(v) for v in res_by_block]
    if opt.resistance_reference_mohm is not None:
        r_ref: float | None = float(opt.resistance_reference_mohm)
        r_ref_kind = "datasheet"
    else:
        measured = [h.mohm for h in heads if h is not None]
        r_ref = float(np.median(measured)) if len(measured) >= 3 else None
        r_ref_kind = "string_median" if r_ref is not None else "none"
    blocks: list[BlockResult] = []
    t0 = int(grid.t_ms[s])
    t_end = int(grid.t_ms[e])
    seg_v = grid.v[:, s:e + 1]
    with _quiet_nan():
        vmin = np.nanmin(np.where(np.isnan(seg_v), np.inf, seg_v), axis=1)
    max_unc: list[float] = []
    all_markers: set[str] = set()
    for i, (log, al) in enumerate(zip(ordered, aligned, strict=True)):
        # true_ms is sorted: the window is a slice (no mask over a long log's every sample)
        w_lo = int(np.searchsorted(al.true_ms, ws, side="left"))
        w_hi = int(np.searchsorted(al.true_ms, we, side="right"))
        in_win = slice(w_lo, max(w_lo, w_hi))
        tt = al.true_ms[in_win]
        exc: list[ExceedanceResult] = []
        for q, vals in ((Quantity.VOLTAGE, al.mv[in_win] / 1000.0), (Quantity.TEMPERATURE, al.dc[in_win] / 10.0)):
            for iv in find_exceedances(tt, vals, q, log.config.thresholds, opt.rule):
                exc.append(ExceedanceResult(
                    iv.quantity.value, iv.side.value, iv.level.value, iv.severity, round(iv.start_ms),
                    round((iv.start_ms - t0) / 1000.0, 3), round(iv.duration_s, 3), round(iv.alarm_duration_s, 3),
                    round(iv.worst, 4), iv.reason,
                ))
        exc.sort(key=lambda x: x.start_ms)
        unc = al.max_uncertainty_ms(float(t0), float(t_end))
        if unc is not None:
            max_unc.append(unc)
        gaps = [GapResult(round(gs), round(gd, 3)) for gs, gd in block_gaps(al, float(t0), float(t_end), step)]
        bw = list(al.warnings)
        if i in clock_notes:
            bw.append(clock_notes[i])
        if gaps:
            bw.append(f"{len(gaps)} gap(s) during the discharge, longest {max(g.duration_s for g in gaps):.0f} s")
        if not has_data[i]:
            bw.append("no data during the discharge: no capacity")
        elif not reached[i] and b_stop[i] < e - s:
            bw.append(f"data ends {t_on[-1] - b_time[i]:.0f} s before the discharge end, above the end "
                      "voltage: capacity and SOH are lower bounds")
        elif not reached[i]:
            bw.append("did not reach its end voltage: capacity and SOH are lower bounds")
        if tt.size == 0:
            bw.append("no samples in the test window")
        markers = list(log.identity.markers)
        all_markers.update(markers)
        temps_win = al.dc[in_win]
        pct = _opt(float(chosen[i]))
        # Pre-test float voltage: the block at rest on float charge just before the load came on.
        p_lo, p_hi = (int(x) for x in np.searchsorted(al.true_ms, [t0 - FLOAT_WINDOW_S * 1000.0, t0 - 2000.0]))
        pre = slice(p_lo, max(p_lo, p_hi))
        blocks.append(BlockResult(
            serial=log.serial, position=log.position, label=log.config.block_label, markers=markers,
            block_type=log.config.block_type.describe(), cells=log.cells, rated_ah=float(log.config.rated_ah),
            samples=int(tt.size), end_voltage_v=round(float(end_v_block[i]), 4),
            reached_end_voltage=bool(reached[i]),
            time_to_end_s=round(float(b_time[i]), 3) if reached[i] else None,
            discharge_time_s=round(float(b_time[i]), 3), delivered_ah=round(float(b_ah[i]), 4),
            temperature_c=_r(temps[i], 2), k_t=_r(kt[i], 4),
            capacity_pct_time_adjusted=_r(ta[i], 3), capacity_pct_rate_adjusted=_r(ra[i], 3),
            capacity_pct=_r(chosen[i], 3), soh_pct=_r(soh[i], 3), lower_bound=not bool(reached[i]),
            rank=ranks[i], replace=bool(reached[i]) and pct is not None and pct < opt.replace_below_pct,
            min_voltage_v=_r(vmin[i], 4), max_temperature_c=_r(float(temps_win.max()) / 10.0, 1) if temps_win.size else None,
            yellow=sum(1 for x in exc if x.severity == "yellow"), red=sum(1 for x in exc if x.severity == "red"),
            clock=ClockResult(round(al.fit.drift_ppm, 4), round(al.fit.offset_ms, 3), al.fit.observations,
                              al.fit.drift_fitted, round(al.fit.residual_rms_ms, 3), _r(unc, 3),
                              note=clock_notes.get(i, "")),
            gaps=gaps, exceedances=exc, warnings=bw,
            **_resistance_fields(heads[i], res_by_block[i], r_ref, opt),
            evidence=log.evidence if log.evidence is not None else unchecked_block(),
            float_voltage_v=round(float(np.median(al.mv[pre])) / 1000.0, 3) if p_hi > p_lo else None,
        ))
    ranking = [b.serial for b in sorted((b for b in blocks if b.rank is not None), key=lambda b: b.rank or 0)]
    load = meta.load
    kind = ("constant_current" if isinstance(load, ConstantCurrent)
            else "constant_power" if isinstance(load, ConstantPower)
            else "power_profile" if isinstance(load, PowerProfile) else "current_profile")
    test_id = meta.test_id or next((log.config.test_id for log in ordered if log.config.test_id), "")
    with _quiet_nan():
        min_string = float(np.nanmin(span.string_v[s:e + 1]))
    return apply_verdict(TestResult(
        schema_version=SCHEMA_VERSION, test_id=test_id, load=load.describe(), load_kind=kind,
        string_blocks=n_string, grid_step_s=step / 1000.0,
        discharge=DischargeResult(
            start_ms=t0, end_ms=t_end, duration_s=round((t_end - t0) / 1000.0, 3), end_reason=span.end_reason.value,
            end_v_per_cell=end_v_pc, string_end_voltage_v=round(end_v_pc * expected_cells, 4),
            min_string_voltage_v=round(min_string, 4), mean_current_a=round(mean_current, 4),
            delivered_ah=round(float(cum_ah[-1]), 4), mean_temperature_c=_r(string_temp, 2),
            start_method=found.start_method, start_uncertainty_s=found.start_uncertainty_s,
            end_method=found.end_method, end_uncertainty_s=found.end_uncertainty_s,
            load_time_s=round(duration_s, 3),
            interruptions=[InterruptionResult(int(grid.t_ms[a]), round((b - a) * step / 1000.0, 3))
                           for a, b in found.interruptions],
            load_shift_s=round(found.profile_shift_ms / 1000.0, 3) if p_on_ms else None,
            evidence=[EvidenceResult(ev.what, ev.source, None if ev.t_ms is None else round(ev.t_ms), ev.used,
                                     ev.detail) for ev in found.evidence],
        ),
        capacity=CapacityResult(
            method=method, capacity_pct=_r(string_pct, 3), lower_bound=string_lb,
            rated_time_s=_r(t_rated, 3) if t_rated is not None else None,
            k_t=_r(kt_string, 4), temperature_c=_r(string_temp, 2), rating_reference_c=reference_c,
        ),
        blocks=blocks, ranking=ranking, missing_positions=missing,
        alignment_uncertainty_ms=round(max(max_unc), 3) if max_unc else None,
        exceedance_rule={k: float(v) for k, v in asdict(opt.rule).items()},
        markers=sorted(all_markers), warnings=warnings,
        resistance_reference=r_ref_kind, resistance_reference_mohm=_r(r_ref, 4),
        resistance_rule={"warn_pct": float(opt.resistance_warn_pct), "fail_pct": float(opt.resistance_fail_pct)},
        evidence=test_evidence(((b.serial, b.position, b.evidence) for b in blocks), [*excluded, *clock_excluded]),
        excluded=[*excluded, *clock_excluded],
    ), opt.replace_below_pct)


#: Samples the analysis may look at before the window's load-step search (s): the float level
#: (``FLOAT_WINDOW_S``), a resistance step's flat context (``resistance.PRE_FLAT_S``), with room.
HISTORY_CONTEXT_S = 3600.0


def _check_history(aligned: Sequence[AlignedBlock], start_v_pc: float, lo_ms: float, hi_ms: float) -> None:
    """Raise ``HistoryNeeded`` when a log's left-out float history (``BlockLog.history``) could
    matter: the window (``lo_ms``..``hi_ms``, true time, with the context before it) reaches into
    one of its holes, or the start level is above the one the history was cut for."""
    for al in aligned:
        cut = al.log.history
        if cut is None:
            continue
        if start_v_pc * al.log.cells * 1000.0 > cut.below_mv or al.true_ms.size != len(al.log):
            raise HistoryNeeded("logs", f"{al.log.serial}: its float history was left out for another start "
                                "level or clock: load the logs whole")
        t = al.true_ms
        for k in cut.holes:
            if float(t[k + 1]) > lo_ms and float(t[k]) < hi_ms:
                raise HistoryNeeded("logs", f"{al.log.serial}: the test window reaches into the float history "
                                    "the loader left out: load the logs whole")


def _clock_exclusions(log: BlockLog, message: str) -> list[FileEvidence]:
    """The exclusion records of a logger left out for its clock: each file it was loaded from."""
    used = [f for f in (log.evidence.files if log.evidence is not None else []) if f.used]
    if used:
        return [replace(f, used=False, reason="clock", message=message) for f in used]
    # A log built in code (no files behind it): named by its source, its evidence unchecked.
    return [FileEvidence(log.source or log.serial, None, log.serial, log.position, "unchecked", None,
                         list(log.identity.markers), None, None, False, "clock", message)]


def _check_span(logs: Sequence[BlockLog], discharge_ms: float) -> None:
    """A discharge longer than every logger's own record (on its own continuous clock) can only
    come from clocks aligned wrongly: refused, never reported."""
    longest = 0.0
    for log in logs:
        longest = max(longest, continuous_span_ms(log))
    if discharge_ms > longest * (1 + CONFLICT_DRIFT_PPM * 1e-6) + 60_000.0:
        raise MetadataError("logs", f"the discharge found is {format_duration(discharge_ms / 1000.0)} long, longer "
                            f"than any logger's own record ({format_duration(longest / 1000.0)}): the clocks "
                            "cannot be aligned; refused")


def _resistances(aligned: list[AlignedBlock], grid: Grid, meta: TestMetadata, found: Located, span: DischargeSpan,
                 current: FloatArray, mean_current: float, warnings: list[str]) -> list[list[ir.StepResistance]]:
    """Each block's resistance at every load step of the test (see ``analysis.resistance``)."""
    s, e = span.start_idx, span.end_idx
    t_grid = grid.t_ms[s:e + 1].astype(np.float64)
    on_ms = found.load_on_ms
    off_ms = found.load_off_ms
    pauses = [(float(grid.t_ms[a]), float(grid.t_ms[b])) for a, b in found.interruptions]
    last_on = off_ms if off_ms is not None else float(grid.t_ms[e])
    load = meta.load
    sv = span.string_v

    def string_v_at(ms: float) -> float:
        ok = np.isfinite(sv)
        return float(np.interp(ms, grid.t_ms[ok].astype(np.float64), sv[ok])) if ok.any() else math.nan

    def load_is_on(ms: float) -> bool:
        return on_ms <= ms <= last_on and not any(a < ms < b for a, b in pauses)

    def current_at(ms: float) -> float:
        if isinstance(load, CurrentProfile | PowerProfile):
            if load.origin_ms is not None:
                tp = (ms - load.origin_ms - found.profile_shift_ms) / 1000.0
            else:
                tp = (ms - on_ms) / 1000.0
            if tp < float(load.t_s[0]) or tp > float(load.t_s[-1]) or (load.origin_ms is None and ms < on_ms):
                return 0.0
            val = float(np.interp(tp, load.t_s, load.values))
            return val if isinstance(load, CurrentProfile) else val / string_v_at(ms)
        if not load_is_on(ms):
            return 0.0
        if isinstance(load, ConstantCurrent):
            return load.amps
        if isinstance(load, ConstantPower):
            return load.watts / string_v_at(ms)
        return float(np.interp(ms, t_grid, current))  # pragma: no cover - every load is handled above

    lo_ms = on_ms - 5000.0 if math.isfinite(on_ms) else float(grid.t_ms[s])
    hi_ms = (off_ms if off_ms is not None else float(grid.t_ms[e])) + 5000.0
    steps = [st for st in found.steps if lo_ms <= st.t_ms <= hi_ms]
    kinds = [ir.step_kind(st, on_ms, off_ms, pauses) for st in steps]
    step_ms = grid.step_ms

    def temp_at(i: int, ms: float) -> float | None:
        k = int(np.clip(round((ms - float(grid.t_ms[0])) / step_ms), 0, grid.t_ms.size - 1))
        x = float(grid.temp[i, k])
        return round(x, 1) if math.isfinite(x) else None

    got = ir.measure(aligned, steps, current_at, mean_current, kinds, temp_at)
    out: list[list[ir.StepResistance]] = [[] for _ in aligned]
    for r in got:
        out[r.block].append(r)
    if steps and not got:
        warnings.append("no block resistance: the load steps' current change is not known well enough "
                        "(give the measured current with --load-csv)")
    return out


def _resistance_fields(head: ir.StepResistance | None, values: list[ir.StepResistance], ref: float | None,
                       opt: AnalysisOptions) -> dict[str, Any]:
    steps = [ResistanceStepResult(round(v.t_ms), v.kind, round(v.delta_a, 4), round(v.mohm, 4),
                                  round(v.uncertainty_mohm, 4), v.temperature_c) for v in values]
    if head is None:
        return {"resistance_steps": steps}
    change = (head.mohm / ref - 1.0) * 100.0 if ref else None
    status = (ir.judge(head.mohm, ref, opt.resistance_warn_pct / 100.0, opt.resistance_fail_pct / 100.0)
              if ref else None)
    return {"resistance_mohm": round(head.mohm, 4), "resistance_uncertainty_mohm": round(head.uncertainty_mohm, 4),
            "resistance_step": head.kind, "resistance_temperature_c": head.temperature_c,
            "resistance_change_pct": _r(change, 2), "resistance_status": status, "resistance_steps": steps}


def _r(x: float | None, nd: int) -> float | None:
    if x is None:
        return None
    xf = float(x)
    return round(xf, nd) if math.isfinite(xf) else None


class _quiet_nan:
    """Silence numpy's all-NaN slice warnings where NaN results are handled."""

    def __enter__(self) -> None:
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(None, None, None)


__all__ = ["AlignedBlock", "AnalysisOptions", "DischargeSpan", "Grid", "analyze_test"]
