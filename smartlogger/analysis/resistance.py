"""Internal (DC step) resistance of each block, from the load steps in the logs.

A load switched on, off or stepped makes every block's voltage jump at once by the current
step times the block's resistance; slower processes (diffusion, the decay of the float
overvoltage) follow. The loggers sample every block at 1 Hz with a pre-trigger exactly around
those steps, so each step gives each block's resistance without another instrument:

    R = -(V_after(t_s) - V_before(t_s)) / (I_after - I_before)

where ``t_s`` is the step instant (``steps.StringStep``: the intersection of the loggers'
sample intervals), ``V_before`` a line through the block's samples in the ``PRE_S`` before the
step and ``V_after`` a quadratic through its first ``POST_SAMPLES`` samples after it, both
evaluated at ``t_s``. It is the resistance of everything faster than the sampling (ohmic,
and on real cells charge transfer), the same definition as the battery model's truth
(``device.battery.LoadStep``: cells x r_T x (r_ohm + knee)).

Uncertainty (one standard deviation): the sample noise through both fits, the step instant's
uncertainty (the string's, and the block's own placement on the string's time line) times the
change of slope across the step (the extrapolated voltages move with the
instant), and half the difference between the quadratic and a line through the first three
samples after the step (the extrapolation's own error: the relaxation is no polynomial).
The relaxation in the first second is faster than a quadratic through 1 Hz samples follows;
loggers sample at their own phases, so the blocks whose first sample came within
``EARLY_SAMPLE_MS`` of the instant show how much the others' extrapolation misses (``measure``:
their median share of slope x distance corrects every block's extrapolation over its own gap,
half the correction counted as uncertainty). A step that is too small against it (below ``MIN_RELATIVE``), a block
at its measuring-range floor or without samples on both sides gives no value.

Owns the measurement per step and block, the headline value per block (the first load-on step:
the block charged, comparable test to test), and the rule that judges it against a reference
(Fluke BT5xx style: reference x (1 + warn) / (1 + fail)). Does not own finding the steps
(``steps``) or the load current (``analyze`` passes it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.align import AlignedBlock
from smartlogger.analysis.steps import StringStep

FloatArray = npt.NDArray[np.float64]

#: Samples before the step used for the line (s).
PRE_S = 10.0
#: Without samples in ``PRE_S``, the last sample before the step if it is this recent (s): a
#: float-rate sample of the flat level before the load came on.
PRE_FLAT_S = 130.0
#: Samples after the step used for the quadratic (count), within ``POST_MAX_S`` of it.
POST_SAMPLES = 6
POST_MAX_S = 12.0
#: A current step smaller than this share of the test's current gives no resistance.
MIN_CURRENT_FRACTION = 0.2
#: A block whose first sample after a step is at most this close to the instant (ms) measures
#: the relaxation the extrapolation of the others misses (``measure``).
EARLY_SAMPLE_MS = 250.0
#: Noise floor of one sample (V): the logger's 1 mV resolution (uniform, 1 mV / sqrt(12)).
QUANT_V = 0.001 / math.sqrt(12.0)
#: The load-on step is the block's figure when its relative uncertainty is at most this.
HEADLINE_MAX_RELATIVE = 0.15
#: Warn / fail above the reference by these fractions (Fluke BT510's example thresholds:
#: warning 20 %, fail 50 %) **[product default]**.
WARN_FRACTION = 0.20
FAIL_FRACTION = 0.50


@dataclass(frozen=True)
class StepResistance:
    """One block's resistance from one load step."""

    block: int
    t_ms: float  # step instant, true ms
    kind: str  # 'on', 'off', 'pause', 'resume' or 'step'
    delta_a: float  # current change, A (positive: more discharge current)
    mohm: float
    uncertainty_mohm: float
    temperature_c: float | None


def _fit(t: FloatArray, v: FloatArray, at: float, degree: int) -> tuple[float, float, float]:
    """Value and slope of a least-squares polynomial at ``at``, and the value's standard
    deviation for the residual noise (at least the quantisation)."""
    x = (t - at) / 1000.0
    deg = min(degree, x.size - 1)
    if deg < 0:
        return math.nan, 0.0, math.nan
    a = np.vander(x, deg + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(a, v, rcond=None)
    resid = v - a @ coef
    dof = x.size - (deg + 1)
    sigma = max(float(np.sqrt(np.sum(resid**2) / dof)) if dof > 0 else 0.0, QUANT_V)
    cov = np.linalg.pinv(a.T @ a) * sigma**2
    slope = float(coef[1]) / 1000.0 if deg >= 1 else 0.0  # V per ms
    return float(coef[0]), slope, float(math.sqrt(max(cov[0, 0], 0.0)))


@dataclass(frozen=True)
class _BlockFit:
    """One block's measurement at one step, before the string's early-relaxation correction."""

    v0: float  # V before, at the instant
    v1: float  # V after, at the instant (the quadratic's extrapolation)
    u: float  # V, standard uncertainty of v1 - v0
    slope: float  # V/ms, the quadratic's slope at the instant
    gap_ms: float  # the first sample after the step, ms after the instant
    early: float | None  # this block's share of the relaxation the quadratic does not see (see measure)


def _block_fit(b: AlignedBlock, step: StringStep) -> _BlockFit | None:
    """Block ``b``'s voltages either side of ``step`` at its instant, from this block alone; None
    when it has no clean samples on both sides. ``measure`` adds what the string's other blocks show
    of the relaxation in the first second."""
    t, mv = b.true_ms, b.mv
    lo_ms, hi_ms = step.lo_ms, step.hi_ms
    i_lo = int(np.searchsorted(t, lo_ms, side="right"))  # first sample after lo
    i_hi = int(np.searchsorted(t, hi_ms, side="left"))  # first sample at or after hi
    pre = np.arange(int(np.searchsorted(t, lo_ms - PRE_S * 1000.0, side="left")), i_lo)
    pre_degree = 1
    drift_u = 0.0
    if pre.size == 0 and i_lo > 0 and lo_ms - t[i_lo - 1] <= PRE_FLAT_S * 1000.0:
        # On float (or at rest) the logger stores a sample a minute: a line through the last two,
        # its extrapolated change counted half as uncertainty (the level may still creep).
        pre = np.arange(max(i_lo - 2, 0), i_lo)
        pre = pre[t[pre] >= lo_ms - 2.5 * PRE_FLAT_S * 1000.0]
        pre_degree = 1 if pre.size >= 2 else 0
        drift_u = -1.0  # computed below from the line
    if pre.size == 0:
        return None
    post_all = np.arange(i_hi, min(i_hi + POST_SAMPLES + 1, t.size))
    post_all = post_all[t[post_all] <= hi_ms + POST_MAX_S * 1000.0]
    post = post_all[:POST_SAMPLES]
    if post.size < 2:
        return None
    lo_mv, _ = b.log.config.block_type.measuring_range_mv
    if int(mv[post].min()) <= lo_mv or int(mv[pre].min()) <= lo_mv:
        return None  # clipped at the range floor: the step is not all there

    def v(idx: npt.NDArray[np.intp]) -> FloatArray:  # volts of those samples only (a log may be long)
        return np.asarray(mv[idx].astype(np.float64) / 1000.0, dtype=np.float64)

    ts = step.t_ms
    v0, s0, u0 = _fit(t[pre], v(pre), ts, pre_degree)
    if drift_u < 0:
        drift_u = 0.5 * abs(s0 * (ts - float(t[pre[-1]])))
        u0 = math.hypot(u0, drift_u)
    v1, s1, u1 = _fit(t[post], v(post), ts, 2 if post.size >= 4 else 1)
    if not (math.isfinite(v0) and math.isfinite(v1)):
        return None
    # The relaxation after a step is no polynomial: half the difference between the quadratic
    # and a line through the first three samples stands for the extrapolation's own error.
    v1_line, _, _ = _fit(t[post[:3]], v(post[:3]), ts, 1)
    u_model = 0.5 * abs(v1 - v1_line) if post.size >= 4 else 0.0
    # The instant in this block's own time line: the string's instant and the block's placement
    # on it (a logger placed by one clock observation is only known to within its drift).
    placed_ms = float(b.uncertainty_ms[min(i_hi, t.size - 1)]) if b.uncertainty_ms.size else 0.0
    u_ms = math.hypot(step.uncertainty_s * 1000.0, placed_ms if math.isfinite(placed_ms) else 0.0)
    u_t = u_ms * abs(s1 - s0)  # V: both ends move with the instant
    gap_ms = float(t[post[0]]) - ts
    early = None
    if gap_ms <= EARLY_SAMPLE_MS and post_all.size >= POST_SAMPLES + 1:
        # A sample right after the step sees the relaxation the next ones no longer show: the
        # quadratic through them, taken back to it, misses it by this share of its own slope
        # times the distance (positive when the voltage had relaxed further than the curve says).
        later = post_all[1:]
        at = float(t[post_all[0]])
        v_ex, s_ex, _ = _fit(t[later], v(later), at, 2)
        dist = float(t[later[0]]) - at
        if s_ex != 0.0 and dist > 0:
            early = -(float(v(post_all[:1])[0]) - v_ex) / (s_ex * dist)
    return _BlockFit(v0, v1, math.sqrt(u0**2 + u1**2 + u_t**2 + u_model**2), s1, gap_ms, early)


def step_kind(step: StringStep, on_ms: float | None, off_ms: float | None,
              pauses: Sequence[tuple[float, float]]) -> str:
    """What a string step was for the test: the load on, off, a pause, its resume, or a step."""
    tol = 2000.0 + 1000.0 * step.uncertainty_s
    if on_ms is not None and abs(step.t_ms - on_ms) <= tol:
        return "on"
    if off_ms is not None and abs(step.t_ms - off_ms) <= tol:
        return "off"
    for a, b in pauses:
        if abs(step.t_ms - a) <= tol:
            return "pause"
        if abs(step.t_ms - b) <= tol:
            return "resume"
    return "step"


def measure(blocks: Sequence[AlignedBlock], steps: Sequence[StringStep],
            current_at: Callable[[float], float], i_ref: float, kinds: Sequence[str],
            temperature_at: Callable[[int, float], float | None]) -> list[StepResistance]:
    """Every block's resistance at every step whose current change is known and large enough.

    ``current_at(true_ms)``: the string current at an instant (the load as stated or measured);
    ``i_ref``: the test's typical current; ``kinds[k]``: what step ``k`` was."""
    out: list[StepResistance] = []
    for step, kind in zip(steps, kinds, strict=True):
        before = current_at(step.lo_ms - 1000.0)
        after = current_at(step.hi_ms + 1000.0)
        delta = after - before
        if not math.isfinite(delta) or abs(delta) < MIN_CURRENT_FRACTION * abs(i_ref):
            continue
        if (delta > 0) != (step.sign < 0):  # the voltage must move against the current
            continue
        fits = [_block_fit(b, step) for b in blocks]
        early = [f.early for f in fits if f is not None and f.early is not None]
        kappa = float(np.median(early)) if early else None
        for i, f in enumerate(fits):
            if f is None:
                continue
            v1, u = f.v1, f.u
            if kappa is not None and kappa > 0:
                # The relaxation in the first second after a step is faster than a quadratic through
                # 1 Hz samples can follow: the blocks that sampled right after the instant show by how
                # much (their median share ``kappa``); each block's extrapolation over its own gap is
                # corrected by that share, half the correction counted as its uncertainty.
                corr = -kappa * f.slope * f.gap_ms
                v1 += corr
                u = math.hypot(u, 0.5 * corr)
            r = -(v1 - f.v0) / delta
            if r <= 0:
                continue
            out.append(StepResistance(i, step.t_ms, kind, delta, r * 1000.0, u / abs(delta) * 1000.0,
                                      temperature_at(i, step.t_ms)))
    return out


def headline(values: Sequence[StepResistance]) -> StepResistance | None:
    """The block's figure: its first load-on step (the block charged, comparable test to test, as
    peers measure it) when that is within ``HEADLINE_MAX_RELATIVE``; else the most precise of, in
    order, the resume after a pause, the pause, the profile's steps, the load-on and the load-off
    at the end (where an exhausted block's resistance rises)."""
    on = sorted((v for v in values if v.kind == "on"), key=lambda v: v.t_ms)
    if on and on[0].uncertainty_mohm <= HEADLINE_MAX_RELATIVE * on[0].mohm:
        return on[0]
    for kind in ("resume", "pause", "step", "on", "off"):
        some = [v for v in values if v.kind == kind]
        if some:
            return min(some, key=lambda v: v.uncertainty_mohm / v.mohm)
    return None


def judge(value_mohm: float, reference_mohm: float, warn: float = WARN_FRACTION,
          fail: float = FAIL_FRACTION) -> str:
    """'ok', 'warning' (above reference x (1 + warn)) or 'fail' (above reference x (1 + fail))."""
    if value_mohm > reference_mohm * (1.0 + fail):
        return "fail"
    if value_mohm > reference_mohm * (1.0 + warn):
        return "warning"
    return "ok"
