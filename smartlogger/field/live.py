"""Watching a discharge live: the loggers' adverts in, every block's state and the end alarm out.

Owns ``LiveWatch``, the watcher's model of a string under test built from the loggers' live
adverts (``protocol.live``) alone: it checks every advert (kit key MAC, key id, test tag,
sequence number: a replay or a forgery is rejected and counted), puts each block's samples
on the phone's time line, and from them derives the string voltage, the elapsed time, the
delivered ampere-hours, the blocks in warning or alarm, the stale blocks, each block's
predicted time to its end voltage (``predict_end``) and the end alarm. ``WatchOptions``
holds what the technician states (end voltage, guard band, load, blocks). The scanning
(bleak) and the screen are the CLI's (``cli.test``); this module does no I/O.

Time. An advert carries when its sample was measured as time since the logger's last NFC
tap, on the logger's own clock; the watcher does not know the tap times. It maps each
logger's time line onto the phone's clock by the earliest-arrival bound: ``offset =
min(phone time at reception - time since tap)`` over the logger's adverts (a sample is never
received before it was measured, and one received at once gives the offset exactly). So
the values' times follow the loggers' clocks, not the moments adverts happen to arrive; at a
virtual site the phone's clock is the site's virtual clock. A tap during the watch (time
since tap goes back with a newer sequence number) starts the logger's time line anew.
Staleness is the other kind of time: a block is stale when nothing was heard from it for
``stale_s`` seconds of the watcher's wall clock (reception is a wall-clock event).

Prediction (docs/LIVE.md): per block, the earlier of two estimates: the lead-acid span rule
(with ``cells`` known: the block reaches its end voltage when its settled rate of decline has
taken ``span_v_per_cell * cells`` off it, ``predict_end_span``), and a Shepherd-type discharge
curve ``v(tau) = a - b*tau - c*x/(1-x)``, ``x = tau/T``, fitted to the samples since the load
step and solved for the end voltage (``predict_end``), which answers once the knee shows.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from smartlogger.protocol.live import (
    KitKey,
    LiveAdvert,
    LiveFormatError,
    LiveState,
    from_manufacturer_data,
    tag_for_test,
)

if TYPE_CHECKING:
    from smartlogger.analysis.inputs import Datasheet

#: Samples kept per block for the prediction (older ones are thinned out, never the newest).
HISTORY_MAX = 600
#: A prediction needs this long a discharge (s) and this many samples since the load step.
PREDICT_MIN_S = 300.0
PREDICT_MIN_SAMPLES = 8
#: Samples right after the load step are left out of the fit (the fast polarisation): the
#: first max(PREDICT_SKIP_S, PREDICT_SKIP_FRACTION * elapsed) seconds.
PREDICT_SKIP_S = 120.0
PREDICT_SKIP_FRACTION = 0.1
#: A block's prediction is recomputed when its time line has moved on this far (s).
PREDICT_EVERY_S = 20.0
#: Wall seconds of prediction work one snapshot may do (the blocks due longest first; the rest
#: keep their previous prediction until a later snapshot): a fit takes ~7 ms, and recomputing all
#: 240 blocks of a string at once held the display loop (and the adverts' reception) for ~1.8 s.
PREDICT_BUDGET_S = 0.1
#: Lead-acid: the voltage a block loses per cell, at its settled mid-discharge rate of decline,
#: from the load step to its end voltage (``predict_end_span``): the span of the rest voltage
#: between full and empty on published OCV charts (CSB/Panasonic: 2.14 -> 1.95 V/cell), as the
#: steady decline covers it. docs/LIVE.md, "Prediction method".
LEAD_ACID_SPAN_V_PER_CELL = 0.183
#: The discharge time at which ``LEAD_ACID_SPAN_V_PER_CELL`` holds: the slow rates, where a
#: lead-acid block's capacity hardly depends on the rate (the 10-h rate of stationary ratings).
SPAN_RATE_S = 10 * 3600.0
#: A typical VRLA block's rated constant-current table to 1.75 V/cell, per 100 Ah at the 10-h
#: rate: discharge time (s) -> current (A). The CSB GP 12400 datasheet's 1.75 V/cell row scaled
#: to 100 Ah C10 (smartlogger/data/sim_vrla_12v100_datasheet.csv): flat from 4 h to 10 h (100 Ah),
#: 90 Ah at 2 h, 78 Ah at 1 h, 63 Ah at 30 min. The span rule's rate curve when the test states
#: the blocks' rated Ah but no datasheet (``RateCurve.typical_vrla``; docs/LIVE.md).
TYPICAL_VRLA_TABLE: tuple[tuple[float, float], ...] = (
    (300.0, 348.84), (600.0, 245.48), (900.0, 195.09), (1800.0, 126.61), (3600.0, 77.52),
    (7200.0, 44.96), (10800.0, 31.78), (14400.0, 25.09), (36000.0, 10.00), (72000.0, 5.17))


@dataclass(frozen=True)
class RateCurve:
    """How long a new block lasts at a constant rate, from a rated-discharge table to the
    watch's end voltage: ``times_s`` increasing, ``rates`` (A, or W, as the table) decreasing."""

    times_s: tuple[float, ...]
    rates: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times_s) < 2 or len(self.times_s) != len(self.rates):
            raise ValueError("a rate curve needs at least two (time, rate) points")
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:], strict=False)) or \
                any(b >= a for a, b in zip(self.rates, self.rates[1:], strict=False)) or min(self.rates) <= 0:
            raise ValueError("a rate curve's times must increase and its rates decrease (positive)")

    @classmethod
    def typical_vrla(cls, rated_ah: float) -> RateCurve:
        """``TYPICAL_VRLA_TABLE`` scaled to blocks of ``rated_ah`` (at the 10-h rate)."""
        k = rated_ah / 100.0
        return cls(tuple(t for t, _ in TYPICAL_VRLA_TABLE), tuple(r * k for _, r in TYPICAL_VRLA_TABLE))

    @classmethod
    def from_datasheet(cls, datasheet: Datasheet, end_v_per_cell: float) -> RateCurve:
        """The datasheet's table at the end voltage (``MetadataError`` when it does not cover it)."""
        times = tuple(float(t) for t in datasheet.times_s)
        return cls(times, tuple(datasheet.rated_rate(t, end_v_per_cell) for t in times))

    def time_at(self, rate: float) -> float:
        """How long a new block lasts at ``rate`` (log-log interpolation; beyond the table, its
        first or last segment extended)."""
        lr, lt = np.log(self.rates), np.log(self.times_s)
        x = math.log(rate)
        k = int(np.clip(np.searchsorted(-lr, -x) - 1, 0, lr.size - 2))
        return math.exp(float(lt[k] + (x - lr[k]) * (lt[k + 1] - lt[k]) / (lr[k + 1] - lr[k])))

    def capacity_share(self, rate: float) -> float:
        """The capacity a block delivers at ``rate``, ``rate * time_at(rate)``, as a share of
        its capacity at the slow rate (``SPAN_RATE_S``, or the table's nearest time), at most 1."""
        low_t = min(max(SPAN_RATE_S, self.times_s[0]), self.times_s[-1])
        return min(1.0, rate * self.time_at(rate) / (self.rate_for(low_t) * low_t))

    def rate_for(self, time_s: float) -> float:
        """The rate a new block sustains for ``time_s`` (log-log interpolation in the table)."""
        return math.exp(float(np.interp(math.log(time_s), np.log(self.times_s), np.log(self.rates))))


def span_for_rate(curve: RateCurve, rate: float, span_v_per_cell: float = LEAD_ACID_SPAN_V_PER_CELL) -> float:
    """The span rule's span (V/cell) at a constant ``rate`` (in the curve's unit): the share of
    the rest-voltage span a block uses before its end voltage falls as its capacity at the rate
    does (``span * capacity_share(rate)``; docs/LIVE.md, "Prediction method")."""
    return span_v_per_cell * curve.capacity_share(rate)


@dataclass(frozen=True)
class WatchOptions:
    """What the technician states for the watch (all voltages per block, V)."""

    end_v: float  # end voltage of one block
    guard_v: float = 0.0  # the alarm fires at end_v + guard_v
    current_a: float | None = None  # constant-current load, A
    power_w: float | None = None  # constant-power load (string), W
    blocks: int | None = None  # blocks in the string (names the missing ones)
    test_id: str | None = None  # follow only loggers programmed for this test
    stale_s: float = 10.0  # wall seconds without an advert before a block is stale
    cells: int | None = None  # cells per block (lead-acid): enables the span rule
    span_v_per_cell: float = LEAD_ACID_SPAN_V_PER_CELL
    serials: dict[int, str] = field(default_factory=dict)  # position -> serial, when known

    @property
    def alarm_mv(self) -> float:
        return (self.end_v + self.guard_v) * 1000.0


@dataclass
class Block:
    """One block as the watcher sees it (position from the logger's configuration)."""

    position: int
    address: str
    seq: int
    t_ds: int
    offset_ms: float  # phone ms of the logger's tap (earliest-arrival bound)
    mv: int
    dc: int
    state: LiveState
    warning: bool
    heard_wall: float  # watcher's monotonic clock at the last advert (new or repeated)
    updates: int = 1
    min_mv: int = 0
    history_t: list[float] = field(default_factory=list)  # phone ms of each sample
    history_mv: list[int] = field(default_factory=list)
    last_float_ms: float | None = None  # phone ms of the newest float sample
    first_discharge_ms: float | None = None

    @property
    def sample_ms(self) -> float:
        return self.offset_ms + self.t_ds * 100.0


@dataclass(frozen=True)
class Prediction:
    """A block's predicted end: phone ms at which it reaches the end voltage."""

    end_ms: float


def predict_end(tau_s: np.ndarray, v: np.ndarray, end_v: float) -> tuple[float, float, float] | None:
    """Fit ``v(tau) = a - b*tau - c*x/(1-x)``, ``x = tau/T`` to the samples (``tau`` s since the
    load step, ``v`` V) and return (tau at which v reaches ``end_v``, T, rms residual in V), or
    None when the data cannot carry a prediction. See docs/LIVE.md."""
    n = tau_s.size
    if n < PREDICT_MIN_SAMPLES:
        return None
    tau_now = float(tau_s[-1])
    if tau_now < PREDICT_MIN_S:
        return None
    keep = tau_s >= max(PREDICT_SKIP_S, PREDICT_SKIP_FRACTION * tau_now)
    t, y = tau_s[keep], v[keep]
    if t.size < PREDICT_MIN_SAMPLES:
        return None
    if float(y[-1]) <= end_v:
        return tau_now, tau_now, 0.0
    best: tuple[float, float, float, float, float] | None = None  # sse, T, a, b, c
    ones = np.ones_like(t)

    def fit(T: float) -> tuple[float, float, float, float] | None:
        x = t / T
        knee = x / (1.0 - x)
        A = np.column_stack([ones, -t, -knee])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        a, b, c = (float(k) for k in coef)
        if c < 0 or b < 0:
            # the fit must decline and bend down: fall back to the constrained forms
            forms = []
            for cols, idx in (([ones, -knee], (0, 2)), ([ones, -t], (0, 1)), ([ones], (0,))):
                cf, *_ = np.linalg.lstsq(np.column_stack(cols), y, rcond=None)
                full = [0.0, 0.0, 0.0]
                for k, i in enumerate(idx):
                    full[i] = float(cf[k])
                if full[1] >= 0 and full[2] >= 0:
                    forms.append(full)
            if not forms:
                return None
            scored = [(float(np.sum((y - (f[0] - f[1] * t - f[2] * knee)) ** 2)), f) for f in forms]
            sse, f = min(scored, key=lambda s: s[0])
            return sse, f[0], f[1], f[2]
        sse = float(np.sum((y - A @ coef) ** 2))
        return sse, a, b, c

    # T from just past now to 50 x now, log-spaced, then refined around the best
    grid = tau_now * np.exp(np.linspace(math.log(1.005), math.log(50.0), 80))
    for T in grid:
        r = fit(float(T))
        if r is not None and (best is None or r[0] < best[0]):
            best = (r[0], float(T), r[1], r[2], r[3])
    if best is None:
        return None
    lo, hi = best[1] / 1.06, best[1] * 1.06
    for T in np.linspace(max(lo, tau_now * 1.001), hi, 25):
        r = fit(float(T))
        if r is not None and r[0] < best[0]:
            best = (r[0], float(T), r[1], r[2], r[3])
    sse, T, a, b, c = best

    def model(tau: float) -> float:
        x = min(tau / T, 1.0 - 1e-9)
        return a - b * tau - c * x / (1.0 - x)

    if model(tau_now) <= end_v:
        end = tau_now
    else:
        lo_t, hi_t = tau_now, T * (1.0 - 1e-9)
        if model(hi_t) > end_v:
            return None  # the fit never reaches the end voltage (no knee seen yet)
        for _ in range(60):
            mid = 0.5 * (lo_t + hi_t)
            if model(mid) > end_v:
                lo_t = mid
            else:
                hi_t = mid
        end = hi_t
    return end, T, math.sqrt(sse / t.size)


def settled_slope(tau_s: np.ndarray, v: np.ndarray) -> float | None:
    """The block's settled rate of decline (V/s): ``v = a - b*tau + d*exp(-tau/ts)`` fitted by
    least squares (``ts`` by a search over 100..5000 s: the slow polarisation building up
    after the load step), returning ``b``; None without enough data."""
    if tau_s.size < PREDICT_MIN_SAMPLES or float(tau_s[-1]) < PREDICT_MIN_S:
        return None
    keep = tau_s >= 60.0
    t, y = tau_s[keep], v[keep]
    if t.size < PREDICT_MIN_SAMPLES:
        return None
    best: tuple[float, float] | None = None
    ones = np.ones_like(t)
    for ts in np.exp(np.linspace(math.log(100.0), math.log(5000.0), 30)):
        A = np.column_stack([ones, -t, np.exp(-t / ts)])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        sse = float(np.sum((y - A @ coef) ** 2))
        if best is None or sse < best[0]:
            best = (sse, float(coef[1]))
    assert best is not None
    # a decline of less than 10 mV over the whole discharge so far is no decline to extrapolate
    return best[1] if best[1] * float(t[-1]) >= 0.010 else None


def predict_end_span(tau_s: np.ndarray, v: np.ndarray, span_v: float) -> float | None:
    """Lead-acid span rule: the time (s after the load step) at which a block that declines at
    its settled rate ``b`` has lost ``span_v`` (V per block): ``span_v / b``. None without a
    settled decline yet."""
    b = settled_slope(tau_s, v)
    return None if b is None else span_v / b


class LiveWatch:
    """The watcher's state (see the module docstring). Feed it ``receive``; read ``snapshot``."""

    def __init__(self, key: KitKey, options: WatchOptions, *,
                 predict_budget_s: float | None = PREDICT_BUDGET_S) -> None:
        self.key = key
        self.options = options
        self.predict_budget_s = predict_budget_s  # None: every due prediction in each snapshot
        self.test_tag = None if options.test_id is None else tag_for_test(options.test_id)
        self.blocks: dict[int, Block] = {}
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.alarm: dict[str, Any] | None = None
        self.start_ms: float | None = None  # phone ms of the load step (estimated)
        self.first_seen_ms: float | None = None
        self.started_ms: float | None = None  # phone ms the watch started and last looked (set by its runner)
        self.ended_ms: float | None = None
        self._ah = 0.0
        self._ah_at_ms: float | None = None
        self._predictions: dict[int, Prediction | None] = {}
        self._predicted_at: dict[int, float] = {}

    # ------------------------------------------------------------------ adverts in

    def receive(self, manufacturer_data: dict[int, bytes], address: str, now_ms: float,
                wall: float) -> str:
        """One advert heard (bleak's ``AdvertisementData.manufacturer_data``) at phone time
        ``now_ms`` and watcher wall time ``wall``. Returns what became of it: ``accepted``,
        ``repeat`` (the same advert again), ``none`` (not a live advert), or the reason it was
        rejected (``malformed``, ``foreign_kit``, ``bad_mac``, ``other_test``, ``replay``,
        ``conflict``), which is also counted in ``rejected``."""
        try:
            adv = from_manufacturer_data(manufacturer_data)
        except LiveFormatError:
            return self._reject("malformed")
        if adv is None:
            return "none"
        if adv.key_id != self.key.key_id:
            return self._reject("foreign_kit")  # another kit's loggers (or a guess)
        if not adv.verify(self.key):
            return self._reject("bad_mac")
        if self.test_tag is not None and adv.test_tag != self.test_tag:
            return self._reject("other_test")
        if adv.position == 0:
            return self._reject("no_position")
        blk = self.blocks.get(adv.position)
        if blk is not None:
            if adv.seq == blk.seq:
                if (adv.t_ds, adv.mv, adv.dc) != (blk.t_ds, blk.mv, blk.dc):
                    return self._reject("conflict")
                blk.heard_wall = wall
                blk.offset_ms = min(blk.offset_ms, now_ms - adv.t_ds * 100.0)
                return "repeat"
            if adv.seq < blk.seq:
                return self._reject("replay")
        self._accept(adv, address, now_ms, wall)
        return "accepted"

    def _reject(self, why: str) -> str:
        self.rejected[why] += 1
        return why

    def _accept(self, adv: LiveAdvert, address: str, now_ms: float, wall: float) -> None:
        self.accepted += 1
        if self.first_seen_ms is None:
            self.first_seen_ms = now_ms
        blk = self.blocks.get(adv.position)
        offset = now_ms - adv.t_ds * 100.0
        if blk is None or adv.t_ds < blk.t_ds:
            # new block, or a new tap since: a new time line
            blk = Block(adv.position, address, adv.seq, adv.t_ds, offset, adv.mv, adv.dc, adv.state,
                        adv.warning, wall, min_mv=adv.mv)
            self.blocks[adv.position] = blk
        else:
            blk.offset_ms = min(blk.offset_ms, offset)
            blk.seq, blk.t_ds, blk.mv, blk.dc = adv.seq, adv.t_ds, adv.mv, adv.dc
            blk.state, blk.warning, blk.heard_wall, blk.address = adv.state, adv.warning, wall, address
            blk.updates += 1
            blk.min_mv = min(blk.min_mv, adv.mv)
        t = blk.sample_ms
        if adv.state is LiveState.FLOAT:
            blk.last_float_ms = t
        else:
            if blk.first_discharge_ms is None:
                blk.first_discharge_ms = t
                self._discharge_seen(blk)
            blk.history_t.append(t)
            blk.history_mv.append(adv.mv)
            if len(blk.history_t) > HISTORY_MAX:
                del blk.history_t[1:-1:2]  # thin out, keep the first and the newest
                del blk.history_mv[1:-1:2]
        if self.alarm is None and adv.state is not LiveState.FLOAT and adv.mv <= self.options.alarm_mv:
            self.alarm = {"position": blk.position, "serial": self.options.serials.get(blk.position),
                          "mv": adv.mv, "v": adv.mv / 1000.0, "sample_ms": round(t),
                          "fired_ms": round(now_ms), "alarm_v": self.options.alarm_mv / 1000.0,
                          "elapsed_s": None if self.start_ms is None else round((t - self.start_ms) / 1000, 1),
                          "seq": adv.seq}

    def _discharge_seen(self, blk: Block) -> None:
        """The load step, once more blocks are in discharge: it came after every block's last
        float sample and before every block's first discharge sample, so between the latest
        such float sample (of the blocks in discharge, at most 600 s before) and the earliest
        first discharge sample: the midpoint of that interval, or the earliest first discharge
        sample when no float sample bounds it. (The midpoint of each block's own interval, the
        earliest over the blocks, was biased early by up to half a float interval: at a site at
        60x, whose float adverts are 600 site s apart, 205 s over 240 blocks, which moved the
        span rule's prediction by 18 %: docs/PERFORMANCE.md.)"""
        ending = [b for b in self.blocks.values() if b.first_discharge_ms is not None]
        hi = min(b.first_discharge_ms for b in ending if b.first_discharge_ms is not None)
        lows = [b.last_float_ms for b in ending
                if b.last_float_ms is not None and 0 <= hi - b.last_float_ms < 600_000]
        self.start_ms = 0.5 * (max(lows) + hi) if lows else hi

    # ------------------------------------------------------------------ state out

    def _due(self, blk: Block) -> bool:
        last = self._predicted_at.get(blk.position)
        return last is None or blk.sample_ms - last >= PREDICT_EVERY_S * 1000.0

    def _refresh_predictions(self) -> None:
        """Recompute the due predictions, those due longest first, within ``predict_budget_s``
        (at least one per call, so every block gets its turn)."""
        if self.start_ms is None:
            return
        due = [b for b in self.blocks.values()
               if b.state is not LiveState.FLOAT and b.history_t and self._due(b)]
        due.sort(key=lambda b: self._predicted_at.get(b.position, -math.inf))
        deadline = None if self.predict_budget_s is None else time.perf_counter() + self.predict_budget_s
        for b in due:
            self.prediction(b)
            if deadline is not None and time.perf_counter() >= deadline:
                break

    def prediction(self, blk: Block) -> Prediction | None:
        """The block's predicted end (recomputed when it has new samples)."""
        if self.start_ms is None or not blk.history_t:
            return None
        if not self._due(blk):
            return self._predictions.get(blk.position)
        tau = (np.asarray(blk.history_t) - self.start_ms) / 1000.0
        v = np.asarray(blk.history_mv, dtype=float) / 1000.0
        ok = tau >= 0
        tau, v = tau[ok], v[ok]
        ends: list[float] = []
        r = predict_end(tau, v, self.options.end_v)
        if r is not None:
            ends.append(r[0])
        if self.options.cells is not None and tau.size:
            span = predict_end_span(tau, v, self.options.span_v_per_cell * self.options.cells)
            if span is not None:
                ends.append(max(span, float(tau[-1])))
        # the earlier of the two: the knee fit once the bend shows, the span rule before it
        pred = Prediction(self.start_ms + min(ends) * 1000.0) if ends else None
        self._predictions[blk.position] = pred
        self._predicted_at[blk.position] = blk.sample_ms
        return pred

    def missing(self) -> list[int]:
        if self.options.blocks is None:
            return []
        return [p for p in range(1, self.options.blocks + 1) if p not in self.blocks]

    def snapshot(self, now_ms: float, wall: float) -> dict[str, Any]:
        """The live state as one JSON object (one line of ``--json``)."""
        opts = self.options
        rows = []
        stale = []
        warn = []
        alarm_blocks = []
        ends = []
        self._refresh_predictions()
        for pos in sorted(self.blocks):
            b = self.blocks[pos]
            is_stale = wall - b.heard_wall > opts.stale_s
            pred = self._predictions.get(pos) if b.state is not LiveState.FLOAT else None
            if is_stale:
                stale.append(pos)
            if b.state is LiveState.ALARM or b.mv <= opts.alarm_mv:
                alarm_blocks.append(pos)
            elif b.warning:
                warn.append(pos)
            if pred is not None:
                ends.append((pred.end_ms, pos))
            rows.append({
                "position": pos, "serial": opts.serials.get(pos), "v": b.mv / 1000.0, "c": b.dc / 10.0,
                "state": b.state.name.lower(), "warning": b.warning, "seq": b.seq,
                "sample_ms": round(b.sample_ms), "age_s": round((now_ms - b.sample_ms) / 1000.0, 1),
                "stale": is_stale, "min_v": b.min_mv / 1000.0,
                "predicted_end_ms": None if pred is None else round(pred.end_ms),
                "to_end_s": None if pred is None else round(max(0.0, pred.end_ms - now_ms) / 1000.0),
            })
        complete = opts.blocks is None or len(self.blocks) >= opts.blocks
        string_mv = sum(b.mv for b in self.blocks.values())
        newest = max((b.sample_ms for b in self.blocks.values()), default=None)
        elapsed = None
        if self.start_ms is not None and newest is not None:
            elapsed = max(0.0, (newest - self.start_ms) / 1000.0)
            self._integrate(newest, string_mv / 1000.0)
        first_end = min(ends) if ends else None
        return {
            "type": "update", "now_ms": round(now_ms), "blocks_seen": len(self.blocks),
            "blocks": rows, "missing": self.missing(), "stale": stale,
            "string_v": round(string_mv / 1000.0, 3) if self.blocks else None,
            "string_complete": complete,
            "discharge_start_ms": None if self.start_ms is None else round(self.start_ms),
            "elapsed_s": None if elapsed is None else round(elapsed, 1),
            "delivered_ah": None if self.start_ms is None or (opts.current_a is None and opts.power_w is None)
            else round(self._ah, 3),
            "warning_blocks": warn, "alarm_blocks": alarm_blocks,
            "predicted_end_ms": None if first_end is None else round(first_end[0]),
            "predicted_first_block": None if first_end is None else first_end[1],
            "alarm": self.alarm, "accepted": self.accepted, "rejected": dict(self.rejected),
        }

    def _integrate(self, t_ms: float, string_v: float) -> None:
        """Delivered Ah since the load step: the stated current, or power / string voltage."""
        assert self.start_ms is not None
        opts = self.options
        if self._ah_at_ms is None:
            self._ah_at_ms = self.start_ms
        dt_h = (t_ms - self._ah_at_ms) / 3_600_000.0
        if dt_h <= 0:
            return
        if opts.current_a is not None:
            amps = opts.current_a
        elif opts.power_w is not None and string_v > 0:
            amps = opts.power_w / string_v
        else:
            return
        self._ah += amps * dt_h
        self._ah_at_ms = t_ms

    def record(self) -> dict[str, Any]:
        """The watch record (saved in the test folder): what was seen, per block, and the alarm."""
        return {
            "format": "smartlogger-watch", "v": 1,
            "options": {"end_v": self.options.end_v, "guard_v": self.options.guard_v,
                        "current_a": self.options.current_a, "power_w": self.options.power_w,
                        "blocks": self.options.blocks, "test_id": self.options.test_id,
                        "key_id": self.key.key_id, "cells": self.options.cells,
                        "span_v_per_cell": None if self.options.cells is None
                        else round(self.options.span_v_per_cell, 4)},
            "started_ms": None if self.started_ms is None else round(self.started_ms),
            "ended_ms": None if self.ended_ms is None else round(self.ended_ms),
            "first_seen_ms": None if self.first_seen_ms is None else round(self.first_seen_ms),
            "discharge_start_ms": None if self.start_ms is None else round(self.start_ms),
            "alarm": self.alarm, "accepted": self.accepted, "rejected": dict(self.rejected),
            "blocks": [{"position": b.position, "serial": self.options.serials.get(b.position),
                        "updates": b.updates, "last_seq": b.seq, "last_v": b.mv / 1000.0,
                        "min_v": b.min_mv / 1000.0,
                        "samples": [[round(t), mv] for t, mv in zip(b.history_t, b.history_mv,
                                                                     strict=True)]}
                       for b in sorted(self.blocks.values(), key=lambda x: x.position)],
        }
