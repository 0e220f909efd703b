"""Alignment: every logger's samples on one true (phone) time base, then on a common 1 s grid.

Owns the clock model and the resampling:

- Each logger's RTC is an oscillator with a constant frequency error (drift) whose
  register may be *set* (``ClockJump``: an NFC tap writes the phone's time). Undoing
  the recorded jumps gives the *continuous* device time ``c``; then
  ``true = c + a_g + b * (c - c_ref)`` with one drift ``b`` per logger and one offset
  ``a_g`` per group of samples that is linked by recorded jumps. A backward step
  in device time without a ``ClockSet`` record (an unrecorded jump) starts a new
  group whose offset is only known if an observation falls into it.
- ``a_g`` and ``b`` are the least-squares fit to the clock observations (tap, pull,
  every phone-referenced jump). The residual uncertainty at each sample is the
  fit's prediction standard deviation for an observation error of
  ``obs_uncertainty_ms``; when the drift cannot be fitted (one observation), it is
  assumed zero and ``max_drift_ppm`` times the distance to the observation is added.
- ``resample``: linear interpolation of each block onto a shared grid, NaN outside
  its data and inside gaps.

Does not own the discharge detection or any judgement on the values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.inputs import BlockLog
from smartlogger.model import EventKind

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

#: Default standard uncertainty of one clock observation (ms): phone clock read
#: vs. the logger's RTC read over NFC or BLE, including link latency.
DEFAULT_OBS_UNCERTAINTY_MS = 20.0
#: Worst-case RTC frequency error assumed when drift cannot be fitted (ppm);
#: the +/-50 ppm of the specification.
DEFAULT_MAX_DRIFT_PPM = 50.0
#: An implied drift above this (ppm) is no oscillator error: observations that disagree by
#: more are not fitted together (a clock set or reset that left no record, or a phone with a
#: wrong clock). Ten times the specification's bound.
CONFLICT_DRIFT_PPM = 500.0
#: Two clock observations agree within this (ms) plus the drift bound: phone clock read at the
#: tap, BLE latency, the phone's own jitter.
CONSISTENT_WITHIN_MS = 2000.0
#: An interval between samples is a gap when it is longer than this many times
#: the longer of its neighbouring intervals (and longer than 1.5 grid steps).
GAP_FACTOR = 2.5


@dataclass(frozen=True)
class ClockFit:
    """The fitted clock model of one logger.

    ``drift_ppm``: fitted frequency error (ppm; positive = logger clock fast).
    ``offset_ms``: true minus device time at the first sample (ms).
    ``observations``: clock observations used. ``drift_fitted``: false when the
    drift was assumed zero. ``residual_rms_ms``: RMS fit residual (0 with as many
    observations as unknowns). ``referenced``: false when the logger had no usable
    observation at all and device time was taken as true time.
    """

    drift_ppm: float
    offset_ms: float
    observations: int
    drift_fitted: bool
    residual_rms_ms: float
    referenced: bool


#: Samples per chunk of the alignment's in-place and on-demand arithmetic (2 MB of float64).
_CHUNK = 1 << 18


class SampleUncertainty:
    """The alignment uncertainty (ms) of each of ``size`` samples, computed for the samples asked
    for (``u[lo:hi]``, ``u[i]``, ``u.max()``) rather than held: 8 bytes per sample saved on a long
    log, whose analysis looks at the discharge's samples only. ``np.asarray(u)`` makes them all."""

    def __init__(self, size: int, of: Callable[[int, int], FloatArray]) -> None:
        self.size = size
        self.shape = (size,)
        self._of = of

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.size)
            if step == 1:
                return self._of(lo, max(hi, lo))
            return np.asarray(self)[key]
        if isinstance(key, int | np.integer):
            k = int(key) + (self.size if int(key) < 0 else 0)
            if not 0 <= k < self.size:
                raise IndexError(f"index {int(key)} is out of bounds for size {self.size}")
            return self._of(k, k + 1)[0]
        return np.asarray(self)[key]

    def max(self) -> np.float64:
        if self.size == 0:
            raise ValueError("zero-size uncertainty has no maximum")
        return np.float64(np.max([np.max(self._of(i, min(i + _CHUNK, self.size)))
                                  for i in range(0, self.size, _CHUNK)]))

    def __array__(self, dtype: Any = None, copy: Any = None) -> FloatArray:
        out = self._of(0, self.size)
        return out if dtype is None else out.astype(dtype)


@dataclass(eq=False)
class AlignedBlock:
    """One logger's kept samples with their true times (ms since epoch, float64) and uncertainty (ms)."""

    log: BlockLog
    true_ms: FloatArray
    mv: npt.NDArray[np.int32]
    dc: npt.NDArray[np.int16]
    uncertainty_ms: FloatArray | SampleUncertainty
    fit: ClockFit
    dropped: int = 0
    warnings: list[str] = field(default_factory=list)
    device_ms: npt.NDArray[np.int64] | None = None  # device time of each kept sample (ms)
    #: when the logger's clock observations disagree: the consistent sets, and the one used
    candidates: tuple[ClockCandidate, ...] = ()
    chosen: int = -1
    _events: dict[EventKind, FloatArray] = field(default_factory=dict, repr=False)

    def event_true_ms(self, kind: EventKind) -> FloatArray:
        """True times (ms) of the logger's firmware events of ``kind``: each event takes the
        clock correction of the sample nearest to it in device time (the latest such sample
        when a clock set made device times repeat)."""
        cached = self._events.get(kind)
        if cached is not None:
            return cached
        ev_ms = np.array([e.t_ms for e in self.log.events if e.kind is kind], dtype=np.int64)
        ev = ev_ms.astype(np.float64)
        dm = self.device_ms
        if ev.size == 0 or dm is None or dm.size == 0:
            out: FloatArray = np.zeros(0, dtype=np.float64)
        else:
            # Only the samples next to each event are looked at (the times are whole ms, so the
            # integer search finds what a search of their float64 values would).
            if dm.size < 2 or not bool(np.any(dm[1:] < dm[:-1])):
                k = np.clip(np.searchsorted(dm, ev_ms), 1, dm.size - 1) if dm.size > 1 else np.zeros(ev.size, int)
                left = np.maximum(k - 1, 0)
                near = np.where(np.abs(dm[left].astype(np.float64) - ev) < np.abs(dm[k].astype(np.float64) - ev),
                                left, k)
            else:  # device time repeats after a clock set: the latest nearest sample
                dev = dm.astype(np.float64)
                near = np.array([np.nonzero(np.abs(dev - t) == np.abs(dev - t).min())[0][-1] for t in ev])
            out = np.sort(ev + (self.true_ms[near] - dm[near].astype(np.float64)))
        self._events[kind] = out
        return out

    def max_uncertainty_ms(self, start_ms: float, end_ms: float) -> float | None:
        """Largest alignment uncertainty (ms) of samples in [start_ms, end_ms]; None if unreferenced."""
        if not self.fit.referenced:
            return None
        lo, hi = np.searchsorted(self.true_ms, [start_ms, end_ms])
        if hi <= lo:
            return None
        return float(np.max(self.uncertainty_ms[lo:hi]))


def continuous_time(log: BlockLog) -> tuple[FloatArray, npt.NDArray[np.int64], FloatArray]:
    """Device time with the recorded jumps undone.

    Returns ``(c, group, shift)``: continuous device time per sample (ms),
    the group id per sample (a new group after every unrecorded backward step),
    and the shift (ms) added to device times in each recorded-jump segment.
    Costs the 8 bytes per sample of ``c``: without a backward step (the common case) ``group``
    is a read-only view of one zero.
    """
    n = len(log)
    shift = _shifts(log)
    c = log.t_ms.astype(np.float64)
    for lo, hi, sh in _segments(log, shift, 0, n):
        if sh != 0.0:
            c[lo:hi] += sh
    group: npt.NDArray[np.int64]
    back = c[1:] < c[:-1] if n > 1 else np.zeros(0, dtype=bool)
    if back.any():
        group = np.zeros(n, dtype=np.int64)
        np.cumsum(back, out=group[1:])
    else:
        group = np.broadcast_to(np.zeros(1, dtype=np.int64), (n,))
    return c, group, shift


def _shifts(log: BlockLog) -> FloatArray:
    """The shift (ms) added to the device times of each recorded-jump segment."""
    shift = np.zeros(len(log.clock_jumps) + 1, dtype=np.float64)
    for k, j in enumerate(log.clock_jumps):
        shift[k + 1] = shift[k] + float(j.old_ms - j.new_ms)
    return shift


def _segments(log: BlockLog, shift: FloatArray, lo: int, hi: int) -> list[tuple[int, int, float]]:
    """The recorded-jump segments' parts inside samples ``lo..hi-1``: ``(start, end, shift)``."""
    bounds = [0, *(j.index for j in log.clock_jumps), len(log)]
    out = []
    for k in range(len(shift)):
        a, b = max(bounds[k], lo), min(bounds[k + 1], hi)
        if b > a:
            out.append((a, b, float(shift[k])))
    return out


def _continuous_slice(log: BlockLog, shift: FloatArray, lo: int, hi: int) -> FloatArray:
    """``continuous_time(log)[0][lo:hi]``, computed for those samples only."""
    c = log.t_ms[lo:hi].astype(np.float64)
    for a, b, sh in _segments(log, shift, lo, hi):
        if sh != 0.0:
            c[a - lo:b - lo] += sh
    return c


def continuous_span_ms(log: BlockLog) -> float:
    """``c.max() - c.min()`` of ``continuous_time(log)``, without making ``c``: the length of the
    logger's own record on its continuous clock (ms); 0 for fewer than two samples."""
    if len(log) < 2:
        return 0.0
    shift = _shifts(log)
    ends = [(float(log.t_ms[a:b].min()) + sh, float(log.t_ms[a:b].max()) + sh)
            for a, b, sh in _segments(log, shift, 0, len(log))]
    return max(e[1] for e in ends) - min(e[0] for e in ends)


@dataclass(frozen=True)
class Observation:
    """One clock observation on the continuous device time line: ``c`` (continuous device ms),
    ``phone_ms``, the sample ``group`` it belongs to and where it came from (``nfc``: a tap set
    the clock to the phone's time; ``ble``: a signed pull read the clock)."""

    c: float
    phone_ms: float
    group: int
    source: str


@dataclass(frozen=True)
class ClockCandidate:
    """A set of a logger's clock observations that agree with each other, when all of them
    together do not (see ``align_block``): ``indices`` into the logger's observations, a
    description of them (``NFC tap at ...``) and their offset, true minus device time (ms)."""

    indices: tuple[int, ...]
    label: str
    offset_ms: float
    members: tuple[int, ...] = ()  # the observations of the split group that agree (in ``indices``)


def _iso(ms: float) -> str:
    try:
        return str(np.datetime64(round(ms), "ms").astype("datetime64[m]")).replace("T", " ") + " UTC"
    except (OverflowError, ValueError):
        return f"{ms:.0f} ms"


def clock_candidates(obs: list[Observation], *, tolerance_ms: float = CONSISTENT_WITHIN_MS,
                     conflict_ppm: float = CONFLICT_DRIFT_PPM) -> list[ClockCandidate]:
    """The consistent sets of ``obs`` when they disagree, else ``[]``.

    Two observations of one sample group agree when their offsets (phone minus device time)
    differ by at most ``tolerance_ms`` plus ``conflict_ppm`` of the device time between them: no
    oscillator drifts more, so a larger difference is a clock set or reset that left no record,
    or a phone whose clock was wrong. Observations are grouped in device-time order; each group
    of the first group that splits is one candidate, with every observation of the other groups.
    """
    by_group: dict[int, list[int]] = {}
    for i, o in enumerate(obs):
        by_group.setdefault(o.group, []).append(i)
    for g, idx in sorted(by_group.items()):
        idx = sorted(idx, key=lambda i: obs[i].c)
        clusters: list[list[int]] = [[idx[0]]]
        for i in idx[1:]:
            prev = obs[clusters[-1][-1]]
            o = obs[i]
            if abs((o.phone_ms - o.c) - (prev.phone_ms - prev.c)) > tolerance_ms + conflict_ppm * 1e-6 * abs(o.c - prev.c):
                clusters.append([i])
            else:
                clusters[-1].append(i)
        if len(clusters) < 2:
            continue
        others = [i for i in range(len(obs)) if obs[i].group != g]
        out = []
        for cl in clusters:
            kinds = sorted({obs[i].source for i in cl})
            words = {"nfc": "NFC tap", "ble": "pull"}
            label = " and ".join(f"{words.get(k, k)}{'s' if sum(obs[i].source == k for i in cl) > 1 else ''}"
                                 for k in kinds) + f" at {_iso(obs[cl[0]].phone_ms)}"
            offset = float(np.mean([obs[i].phone_ms - obs[i].c for i in cl]))
            out.append(ClockCandidate(tuple(sorted(cl + others)), label, offset, tuple(cl)))
        return out
    return []


def default_candidate(candidates: list[ClockCandidate], obs: list[Observation]) -> int:
    """The candidate to use without other evidence: the one holding the NFC tap that set the
    clock (the logger kept that time base; a phone clock that disagrees later is reported, not
    trusted), else the one with the most observations, else the latest."""
    def score(k: int) -> tuple[bool, int, float]:
        cand = candidates[k]
        return (any(obs[i].source == "nfc" for i in cand.indices), len(cand.indices),
                max(obs[i].c for i in cand.indices))
    return max(range(len(candidates)), key=score)


def observations_of(log: BlockLog) -> list[Observation]:
    """Every clock observation of ``log`` (NFC clock sets and pulls) on its continuous time line."""
    c, group, shift = continuous_time(log)
    return _observations(log, c, group, shift)


def _observations(log: BlockLog, c: FloatArray, group: npt.NDArray[np.int64],
                  shift: FloatArray) -> list[Observation]:
    """Every clock observation as ``(continuous device ms, phone ms, group, source)``."""
    n = len(log)
    out: list[Observation] = []
    for k, j in enumerate(log.clock_jumps):
        if not j.phone_referenced:
            continue
        ref = j.index - 1 if j.index > 0 else 0
        g = int(group[ref]) if n else 0
        out.append(Observation(float(j.old_ms) + shift[k], float(j.new_ms), g, "nfc"))
    bounds = np.array([0, *(j.index for j in log.clock_jumps), n], dtype=np.int64)
    for obs in log.clock_observations:
        cc = float(obs.device_ms) + shift[obs.segment]
        lo, hi = int(bounds[obs.segment]), int(bounds[obs.segment + 1])
        if n == 0:
            g = 0
        elif hi > lo:
            # The group of the last sample of this segment taken before the observation.
            pos = lo + int(np.searchsorted(c[lo:hi], cc, side="right")) - 1
            g = int(group[max(pos, lo)])
        else:
            g = int(group[min(max(lo - 1, 0), n - 1)])
        out.append(Observation(cc, float(obs.phone_ms), g, obs.source))
    return out


def align_block(log: BlockLog, *, obs_uncertainty_ms: float = DEFAULT_OBS_UNCERTAINTY_MS,
                max_drift_ppm: float = DEFAULT_MAX_DRIFT_PPM, use: Sequence[int] | None = None,
                ) -> AlignedBlock:
    """Fit the logger's clock and map its samples to true time (see module docstring).

    Observations that disagree beyond any drift (``clock_candidates``) are not fitted together:
    the fit uses one consistent set, ``use`` (indices into ``observations_of(log)``) or else
    ``default_candidate``; ``AlignedBlock.candidates`` lists the sets and ``chosen`` the one used,
    so the analysis can pick another with the rest of the string's evidence.
    """
    c, group, shift = continuous_time(log)
    all_obs = _observations(log, c, group, shift)
    warnings: list[str] = []
    candidates = clock_candidates(all_obs)
    if candidates and use is None:
        # A clock that jumped forward without a record leaves a step in the samples' device
        # times as large as the observations disagree: split there, and each side keeps its own.
        brk = _forward_jump(c, group, all_obs, candidates)
        if brk is not None:
            jump = float(c[brk] - c[brk - 1])
            group = group.copy()
            group[brk:] += 1
            all_obs = _observations(log, c, group, shift)
            candidates = clock_candidates(all_obs)
            warnings.append(f"its clock jumped {_span_text(jump, signed=True)} without a record after sample "
                            f"{brk - 1} (a reset?): the samples before are placed by the observations before "
                            "the jump, the samples after by those after")
    chosen = -1
    if use is not None:
        obs = [all_obs[i] for i in use]
        chosen = next((k for k, cand in enumerate(candidates) if tuple(sorted(use)) == cand.indices), -1)
    elif candidates:
        chosen = default_candidate(candidates, all_obs)
        obs = [all_obs[i] for i in candidates[chosen].indices]
    else:
        obs = all_obs
    if candidates:
        spread = max(cand.offset_ms for cand in candidates) - min(cand.offset_ms for cand in candidates)
        warnings.append(
            f"clock observations disagree by {_span_text(spread)} ({'; '.join(c.label for c in candidates)}): "
            f"more than any drift; fitted to the {candidates[chosen].label if chosen >= 0 else 'chosen set'} only")
    n = len(log)
    if n == 0:
        empty = np.zeros(0, dtype=np.float64)
        return _finish(log, empty, empty, np.zeros(0, dtype=bool),
                       ClockFit(0.0, 0.0, len(obs), False, 0.0, bool(obs)), ["log has no samples"])
    if not obs:
        warnings.append("no clock observations (tap or pull): device time taken as true time")
        fit = ClockFit(0.0, 0.0, 0, False, 0.0, False)
        return _finish(log, c, SampleUncertainty(n, lambda lo, hi: np.full(max(hi - lo, 0), math.nan)), None,
                       fit, warnings)

    oc = np.array([o.c for o in obs])
    op = np.array([o.phone_ms for o in obs])
    og = np.array([o.group for o in obs], dtype=np.int64)
    groups = np.unique(og)
    gi = {int(g): i for i, g in enumerate(groups)}
    c_ref = float(np.mean(oc))
    y = op - oc
    spread = float(np.ptp(oc)) if len(oc) > 1 else 0.0
    # Drift is identifiable only with more observations than group offsets and a
    # real time spread between them.
    fit_drift = len(obs) > len(groups) and spread >= 60_000.0
    ncol = len(groups) + (1 if fit_drift else 0)
    a = np.zeros((len(obs), ncol))
    a[np.arange(len(obs)), [gi[int(g)] for g in og]] = 1.0
    if fit_drift:
        a[:, -1] = oc - c_ref
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ coef
    dof = len(obs) - ncol
    rms = float(np.sqrt(np.mean(resid**2))) if dof > 0 else 0.0
    b = float(coef[-1]) if fit_drift else 0.0
    if abs(b) * 1e6 > 3 * max_drift_ppm:
        warnings.append(
            f"clock fit implies {b * 1e6:+.0f} ppm drift (limit {max_drift_ppm:g} ppm): "
            "an unrecorded clock jump between the observations?"
        )
    sigma = max(obs_uncertainty_ms, rms)
    cov = np.linalg.pinv(a.T @ a) * sigma**2

    single = int(group[-1]) == 0  # common case: no unrecorded jump, one group (fast path)
    if single:
        # In place, a chunk at a time: ``c`` becomes the true times (the only per-sample array
        # the alignment makes), and the uncertainty is computed for the samples asked for.
        offs0 = float(coef[gi[0]]) if 0 in gi else 0.0
        off0 = np.float64(offs0)
        for i in range(0, n, _CHUNK):
            cc = c[i:i + _CHUNK]
            cc[...] = cc + (off0 + b * (cc - c_ref))
        true = c
        var0 = float(cov[0, 0])
        g_mean0 = float(np.mean(oc[og == 0])) if 0 in gi else 0.0
        shift_ = shift

        def unc_of(lo: int, hi: int) -> FloatArray:
            cs = _continuous_slice(log, shift_, lo, hi)
            dcs = cs - c_ref
            if fit_drift:
                var = var0 + 2.0 * cov[0, -1] * dcs + cov[-1, -1] * dcs**2
                u = np.sqrt(np.maximum(var, 0.0))
            else:
                u = np.sqrt(np.maximum(var0, 0.0)) + max_drift_ppm * 1e-6 * np.abs(cs - g_mean0)
            return np.broadcast_to(u, cs.shape).astype(np.float64)

        offset0 = float(true[0] - log.t_ms[0])
        fit = ClockFit(-b * 1e6, offset0, len(obs), fit_drift, rms, True)
        out = _finish(log, true, SampleUncertainty(n, unc_of), None, fit, warnings, 0)
        out.candidates, out.chosen = tuple(candidates), chosen
        return out
    keep = np.isin(group, groups)
    dropped = int(n - np.count_nonzero(keep))
    if dropped:
        first = int(np.argmax(~keep))
        warnings.append(
            f"{dropped} samples from sample {first} on follow an unrecorded clock jump "
            "and have no clock observation: left out"
        )
    offs = np.zeros(int(group.max()) + 1)
    col = np.zeros(offs.shape[0], dtype=np.int64)
    for g, i in gi.items():
        offs[g] = coef[i]
        col[g] = i
    g_s = group
    dcs = c - c_ref
    true = c + offs[g_s] + b * dcs
    ci = col[g_s]
    var: Any = cov[ci, ci]
    if fit_drift:
        var = var + 2.0 * cov[ci, -1] * dcs + cov[-1, -1] * dcs**2
        unc = np.sqrt(np.maximum(var, 0.0))
    else:
        # Drift unknown: distance (ms) to the group's mean observation times the drift bound.
        g_mean = np.zeros(offs.shape[0])
        for g in gi:
            g_mean[g] = float(np.mean(oc[og == g]))
        unc = np.sqrt(np.maximum(var, 0.0)) + max_drift_ppm * 1e-6 * np.abs(c - g_mean[g_s])
    unc = np.broadcast_to(unc, true.shape).astype(np.float64)
    offset0 = float(true[0] - log.t_ms[0])
    # true = c (1 + b): a logger running fast (drift > 0) needs b < 0.
    fit = ClockFit(-b * 1e6, offset0, len(obs), fit_drift, rms, True)
    out = _finish(log, true, unc, keep, fit, warnings, dropped)
    out.candidates, out.chosen = tuple(candidates), chosen
    return out


#: A forward clock jump is found as a step in device time this much (ms) longer than the jump
#: at most: the logger may have been off for a while around it (a power loss).
JUMP_STEP_SLACK_MS = 3_600_000.0


def _forward_jump(c: FloatArray, group: npt.NDArray[np.int64], obs: list[Observation],
                  candidates: list[ClockCandidate]) -> int | None:
    """Index of the first sample after an unrecorded forward jump that explains the disagreement
    of two consecutive candidates, or None."""
    ordered = sorted(candidates, key=lambda cand: min(obs[i].c for i in cand.members))
    steps = np.diff(c)
    for a, b in itertools.pairwise(ordered):
        jump = a.offset_ms - b.offset_ms  # device time gained on true time between them
        if jump <= CONSISTENT_WITHIN_MS:
            continue
        lo_c = max(obs[i].c for i in a.members)
        hi_c = min(obs[i].c for i in b.members)
        lo, hi = np.searchsorted(c, [lo_c, hi_c])  # c is ascending within a group
        lo, hi = max(int(lo) - 1, 0), min(int(hi), steps.size)
        if hi <= lo:
            continue
        window = steps[lo:hi]
        fits = np.nonzero((window >= jump - CONSISTENT_WITHIN_MS) & (window <= jump + JUMP_STEP_SLACK_MS))[0]
        if fits.size:
            k = lo + int(fits[np.argmin(window[fits])]) + 1
            if group[k - 1] == group[k]:
                return k
    return None


def _span_text(ms: float, *, signed: bool = False) -> str:
    """``2.4 s``, ``3:10:00`` (h:mm:ss), ``276 d``: a clock offset or difference in words."""
    sign = ("+" if ms >= 0 else "-") if signed else ""
    a = abs(ms) / 1000.0
    if a < 60:
        return f"{sign}{a:.1f} s"
    if a < 2 * 86400:
        h, rem = divmod(round(a), 3600)
        return f"{sign}{h}:{rem // 60:02d}:{rem % 60:02d}"
    return f"{sign}{a / 86400:.0f} d"


def _finish(log: BlockLog, true: FloatArray, unc: FloatArray | SampleUncertainty, keep: BoolArray | None,
            fit: ClockFit, warnings: list[str], dropped: int = 0) -> AlignedBlock:
    """``keep`` None: every sample is kept."""
    u: FloatArray | SampleUncertainty
    if keep is None or keep.all():
        t, mv, dc, u, dev = true, log.mv, log.dc, unc, log.t_ms
    else:
        t, mv, dc, u, dev = true[keep], log.mv[keep], log.dc[keep], np.asarray(unc)[keep], log.t_ms[keep]
    if t.size > 1 and bool(np.any(t[1:] < t[:-1])):
        # Overlapping groups (after an unrecorded jump) interleave: order by true time.
        order = np.argsort(t, kind="stable")
        t, mv, dc, u, dev = t[order], mv[order], dc[order], np.asarray(u)[order], dev[order]
    return AlignedBlock(log, t, mv, dc, u, fit, dropped, warnings, dev)


@dataclass(eq=False)
class Grid:
    """All blocks on one time base: ``t_ms`` (int64, true ms since epoch, step ``step_ms``),
    ``v`` block voltage (V) and ``temp`` (C), float32 arrays [block, time], NaN where a
    block has no data (before/after its log, inside a gap)."""

    t_ms: npt.NDArray[np.int64]
    v: F32Array
    temp: F32Array
    step_ms: int

    @property
    def t_s(self) -> FloatArray:
        return np.asarray((self.t_ms - self.t_ms[0]) / 1000.0, dtype=np.float64)


def gap_mask(t: FloatArray, min_gap_ms: float) -> BoolArray:
    """``mask[i]`` is true when the interval ``t[i] -> t[i+1]`` is a gap (see ``GAP_FACTOR``)."""
    d = np.diff(t)
    if d.size == 0:
        return np.zeros(0, dtype=bool)
    prev = np.concatenate(([d[0]], d[:-1]))
    nxt = np.concatenate((d[1:], [d[-1]]))
    neighbour = np.maximum(prev, nxt)
    if d.size == 1:
        neighbour = np.array([0.0])
    out: BoolArray = (d > GAP_FACTOR * neighbour) & (d > min_gap_ms)
    return out


def resample(blocks: list[AlignedBlock], start_ms: int, end_ms: int, step_ms: int = 1000) -> Grid:
    """Linear interpolation of every block onto ``start_ms..end_ms`` every ``step_ms``."""
    t = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    tf = t.astype(np.float64)
    v = np.full((len(blocks), t.size), np.nan, dtype=np.float32)
    temp = np.full((len(blocks), t.size), np.nan, dtype=np.float32)
    for i, b in enumerate(blocks):
        tt = b.true_ms
        if tt.size == 0:
            continue
        lo, hi = np.searchsorted(tt, [start_ms - 10 * step_ms, end_ms + 10 * step_ms])
        lo, hi = max(int(lo) - 1, 0), min(int(hi) + 1, tt.size)
        ts = tt[lo:hi]
        if ts.size == 0:
            continue
        inside = (tf >= ts[0]) & (tf <= ts[-1])
        vi = np.interp(tf, ts, b.mv[lo:hi].astype(np.float64) / 1000.0)
        ti = np.interp(tf, ts, b.dc[lo:hi].astype(np.float64) / 10.0)
        gaps = gap_mask(ts, 1.5 * step_ms)
        if gaps.any():
            idx = np.searchsorted(ts, tf, side="right") - 1  # interval index left of each grid time
            idx = np.clip(idx, 0, gaps.size - 1)
            in_gap = gaps[idx] & (tf > ts[idx]) & (tf < ts[np.minimum(idx + 1, ts.size - 1)])
            inside &= ~in_gap
        v[i] = np.where(inside, vi, np.nan)
        temp[i] = np.where(inside, ti, np.nan)
    return Grid(t, v, temp, step_ms)


def block_gaps(b: AlignedBlock, start_ms: float, end_ms: float, step_ms: int = 1000) -> list[tuple[float, float]]:
    """The gaps of a block inside [start_ms, end_ms] as (start true ms, duration s)."""
    lo, hi = np.searchsorted(b.true_ms, [start_ms, end_ms])
    ts = b.true_ms[max(int(lo) - 1, 0):min(int(hi) + 1, b.true_ms.size)]
    if ts.size < 2:
        return []
    gaps = gap_mask(ts, 1.5 * step_ms)
    idx = np.nonzero(gaps)[0]
    return [(float(ts[i]), float(ts[i + 1] - ts[i]) / 1000.0) for i in idx]
