"""A battery string that lives step by step: the virtual site's battery.

Owns the string's state between steps (``BlockBank``), what is connected to it now
(a load bank, the charger, or nothing), the load bank's own end-voltage cutoff, the
true voltage and temperature history the loggers sample (``history``), and the ground
truth of every discharge it has seen (``Discharge``): per block the charge delivered
until its end voltage, the time to it, and, on request, the capacity at the test's rate.
Its whole state is plain JSON data, so a site resumes it after a restart.

Does not own the block physics (``device.battery``: this module only steps the same
equations ``StringModel.discharge`` uses), the loggers, or time itself (the site says
how far to run).

Stepping (docs/SIMULATOR.md):

- under load: 1 s steps, the string's operating point solved each step as in
  ``StringModel.discharge`` (constant current: the load's amps; constant power: a fixed
  point on the string voltage); the load bank switches off at the first step where the
  string voltage is at or below its cutoff;
- charger on, charging: 10 s steps, 0.1 C current limit, then held at the compensated
  float voltage while the current tapers (``StringModel.charge_current``); once the
  blocks are full the string is on steady float;
- at rest (nothing connected) and on steady float no charge moves, so the state over a
  step of any length is exact (first-order relaxations); steps grow with the time since
  the last change (1 s up to 10 min), so weeks of float cost next to nothing.

History points are labelled as in ``StringModel.discharge``: under load the point at
``t`` carries the voltage the step from ``t`` produces; the switching of the load itself
is an instantaneous jump of ``dI x R`` (``BlockBank.instant_resistance``) placed at the
grid time before, so the loggers see a step, not a 1-s ramp (``jumps``, as
``sensors.TraceSource`` has them), and the discharge records it (``Discharge.steps``: the
truth of the step resistance).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from smartlogger.device.battery import BlockBank, StringModel, float_voltage
from smartlogger.device.load import ConstantCurrent, ConstantPower, Load
from smartlogger.errors import SimulationError

FloatArray = npt.NDArray[np.float64]

#: Seconds of history kept behind the present for the loggers' look-back (baseline and
#: pre-trigger windows of the firmware are 60 s each).
HISTORY_KEEP_S = 300.0
#: Step while a load is connected, s (the loggers' fastest log rate).
LOADED_DT_S = 1.0
#: Step while the charger recharges, s.
CHARGING_DT_S = 10.0
#: Bounds of the growing step at rest and on steady float, s.
QUIET_MIN_DT_S = 1.0
QUIET_MAX_DT_S = 600.0
#: The charge counts as complete (steady float) below these fractions of the rated Ah / current.
FULL_AH_FRACTION = 1e-3
FULL_CURRENT_FRACTION = 0.005  # float current of a full VRLA block is ~0.003 C
#: Longest what-if discharge for the capacity at the test's rate, s.
WHAT_IF_MAX_S = 48 * 3600.0
WHAT_IF_DT_S = 2.0


def load_to_json(load: Load) -> dict[str, Any]:
    if isinstance(load, ConstantCurrent):
        return {"kind": "current", "amps": load.amps}
    if isinstance(load, ConstantPower):
        return {"kind": "power", "watts": load.watts}
    raise SimulationError(f"a site's load bank runs constant current or power, not {type(load).__name__}")


def load_from_json(raw: dict[str, Any]) -> Load:
    if raw.get("kind") == "current":
        return ConstantCurrent(float(raw["amps"]))
    if raw.get("kind") == "power":
        return ConstantPower(float(raw["watts"]))
    raise SimulationError(f"unknown load kind {raw.get('kind')!r}")


def describe_load(load: Load) -> str:
    if isinstance(load, ConstantCurrent):
        return f"{load.amps:g}A"
    if isinstance(load, ConstantPower):
        return f"{load.watts:g}W"
    return type(load).__name__


@dataclass
class Discharge:
    """One discharge of the string: a load bank connected at ``start_s`` (site seconds).

    Per block (by position - 1): ``end_s`` is the time after ``start_s`` at which the
    block's voltage first reached ``end_v_block`` (None: not reached), ``delivered_ah``
    the charge until then (or until the load was removed).
    """

    start_s: float
    load: dict[str, Any]  # load_to_json
    cutoff_v_per_cell: float | None  # the load bank's own string cutoff, None: none
    end_v_per_cell: float  # per block end voltage for the truth (cutoff, else chemistry default)
    end_v_block: float
    start_state: dict[str, list[float]]  # the bank at load-on, for the what-if capacity
    end_s: float | None = None  # site seconds the load was removed (None: still on)
    end_reason: str | None = None  # "cutoff" (the load bank switched off), "manual", "load_end"
    delivered_ah: float = 0.0  # the string's charge so far
    amp_seconds: float = 0.0  # integral of the current, for the mean current
    seconds: float = 0.0  # loaded seconds
    block_end_s: list[float | None] = field(default_factory=list)
    block_delivered_ah: list[float] = field(default_factory=list)
    capacity_ah_test_rate: list[float | None] | None = None  # what-if, filled on request
    # the load switching on and off: t_s (the instant), current_before_a, current_after_a,
    # resistance_mohm per block (instantaneous DC resistance then), temp_c per block
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean_current_a(self) -> float:
        return self.amp_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "start_s", "load", "cutoff_v_per_cell", "end_v_per_cell", "end_v_block", "start_state",
            "end_s", "end_reason", "delivered_ah", "amp_seconds", "seconds", "block_end_s",
            "block_delivered_ah", "capacity_ah_test_rate", "steps")}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Discharge:
        return cls(**raw)


_BANK_STATE = ("dod", "ah_out", "eta_f", "eta_s", "temp")


def _b64(a: FloatArray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode()


def _unb64(text: str) -> FloatArray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").astype(np.float64)


def _bank_state(bank: BlockBank) -> dict[str, list[float]]:
    return {k: np.asarray(getattr(bank, k), dtype=np.float64).tolist() for k in _BANK_STATE}


def _set_bank_state(bank: BlockBank, raw: dict[str, list[float]], n: int) -> None:
    for k in _BANK_STATE:
        arr = np.asarray(raw[k], dtype=np.float64)
        if arr.shape != (n,) or not np.all(np.isfinite(arr)):
            raise SimulationError(f"battery state {k!r} is not {n} finite numbers")
        setattr(bank, k, arr)


class LiveString:
    """A ``StringModel`` stepped on demand (see the module docstring)."""

    def __init__(self, model: StringModel, *, ambient_c: float, t_s: float = 0.0) -> None:
        self.model = model
        self.n = len(model.blocks)
        self.cells = model.block_type.cells
        self.ambient_c = float(ambient_c)
        self.block_ambient = self.ambient_c + np.array([b.ambient_offset_c for b in model.blocks])
        self.float_offsets = np.array([b.float_offset_v for b in model.blocks])
        self.bank = model.new_bank()
        self.bank.knee_on_charge = False
        self.bank.temp = self.block_ambient.copy()
        self.bank.set_float(self._float_targets())
        self.t_s = float(t_s)
        self.charger = True
        self.steady = True  # on float with full blocks: the voltage is the float voltage
        self.mode_since_s = self.t_s  # when the present mode (what is connected) began
        self.load: Load | None = None
        self.discharges: list[Discharge] = []
        v, temp = self._present()
        self.hist_t: FloatArray = np.array([self.t_s])
        self.hist_v: FloatArray = v[:, None].copy()
        self.hist_c: FloatArray = temp[:, None].copy()
        # instantaneous steps of the voltage: (instant, next grid time, per-block value just after)
        self.jumps: list[tuple[float, float, FloatArray]] = []
        self.current_a = 0.0

    # ------------------------------------------------------------------ what is connected

    @property
    def mode(self) -> str:
        if self.load is not None:
            return "discharge"
        if self.charger:
            return "float" if self.steady else "charge"
        return "rest"

    @property
    def active(self) -> Discharge | None:
        d = self.discharges[-1] if self.discharges else None
        return d if d is not None and d.end_s is None else None

    def connect_load(self, load: Load, *, cutoff_v_per_cell: float | None,
                     end_v_per_cell: float | None = None) -> Discharge:
        """Connect a load bank now; the charger is switched off (the string is on test)."""
        if self.load is not None:
            raise SimulationError("a load bank is already connected; switch it off first")
        load_to_json(load)  # only loads the site can keep
        p = self.model.params
        end_cell = (cutoff_v_per_cell if cutoff_v_per_cell is not None
                    else end_v_per_cell if end_v_per_cell is not None else p.end_v_cell)
        # The load switches on now: the point now holds the state as it was (the loggers may
        # have read it already), the voltage jumps right after, and the first loaded point is
        # one step later: the discharge starts there (``StringModel.discharge``'s load_on).
        v0, temp0 = self._present()
        self._append(np.array([self.t_s]), v0[:, None], temp0[:, None])
        d = Discharge(self.t_s + LOADED_DT_S, load_to_json(load), cutoff_v_per_cell, float(end_cell),
                      float(end_cell) * self.cells, _bank_state(self.bank),
                      block_end_s=[None] * self.n, block_delivered_ah=[0.0] * self.n)
        self.discharges.append(d)
        self.load = load
        self.charger = False
        self.steady = False
        self.mode_since_s = self.t_s
        return d

    def disconnect_load(self, reason: str = "manual") -> Discharge | None:
        """Remove the load bank now (the string rests until the charger is switched on)."""
        d = self.active
        if self.load is None or d is None:
            return None
        self.load = None
        d.end_s = self.t_s  # the last loaded point is now
        d.end_reason = reason
        self.mode_since_s = self.t_s
        # the voltage jumps back right after it (the loggers have read up to now)
        self._step(d, self.t_s, self.current_a, 0.0, self.hist_v[:, -1])
        self.current_a = 0.0
        return d

    def _step(self, d: Discharge, t: float, before: float, after: float,
              v_before: FloatArray) -> None:
        """The current changes at ``t`` from ``before`` to ``after``: the voltage jumps at once."""
        r = self.bank.instant_resistance()
        v_after = np.maximum(v_before - (after - before) * r, 0.0)
        self.jumps.append((t, t + LOADED_DT_S, v_after))
        d.steps.append({"t_s": t, "current_before_a": before, "current_after_a": after,
                        "resistance_mohm": (r * 1000.0).tolist(),
                        "temp_c": self.bank.temp.tolist()})

    def set_charger(self, on: bool) -> None:
        if on and self.load is not None:
            raise SimulationError("the charger stays off while a load bank discharges the string")
        if on != self.charger:
            self.charger = on
            self.steady = False
            self.mode_since_s = self.t_s

    # ------------------------------------------------------------------ running

    def run(self, t_to: float) -> list[tuple[str, float]]:
        """Step the string to site time ``t_to``; returns what happened on its own
        (``("cutoff", t)``: the load bank switched off at its cutoff)."""
        if t_to < self.t_s - 1e-9:
            raise SimulationError(f"cannot run the string back from {self.t_s} s to {t_to} s")
        events: list[tuple[str, float]] = []
        pts_t: list[float] = []
        pts_v: list[FloatArray] = []
        pts_c: list[FloatArray] = []
        while self.t_s < t_to - 1e-9:
            if self.load is not None:
                if self._loaded_step(pts_t, pts_v, pts_c):
                    events.append(("cutoff", self.t_s))
            elif self.charger and not self.steady:
                self._charging_step(t_to, pts_t, pts_v, pts_c)
            else:
                self._quiet_step(t_to, pts_t, pts_v, pts_c)
        if pts_t:
            self._append(np.array(pts_t), np.stack(pts_v, axis=1), np.stack(pts_c, axis=1))
        self._trim()
        return events

    def _loaded_step(self, pts_t: list[float], pts_v: list[FloatArray],
                     pts_c: list[FloatArray]) -> bool:
        load = self.load
        d = self.active
        assert load is not None and d is not None
        dt = LOADED_DT_S
        bank = self.bank
        # The step from t_s carries the load from t_s on and is labelled t_s + dt: the loggers
        # have read up to t_s, so nothing they read changes (StringModel.discharge labels the
        # same point t_s; a site's discharge is that trace one step later).
        t_rel = self.t_s - (d.start_s - dt)
        label = self.t_s + dt
        if isinstance(load, ConstantCurrent):
            current = float(load.amps)
            v, ocv, rt = bank.voltages(current, dt)
        else:
            # fixed point on the string voltage, as StringModel.discharge does
            v_s = float(self.hist_v[:, -1].sum()) if not pts_v else float(pts_v[-1].sum())
            for _ in range(4):
                current = float(load.current_a(t_rel, max(v_s, 0.0)))
                v, ocv, rt = bank.voltages(current, dt)
                v_s = float(v.sum())
        if not d.steps:  # the first loaded step: the load switches on
            self._step(d, self.t_s, 0.0, current, self.hist_v[:, -1] if not pts_v else pts_v[-1])
        pts_t.append(label)
        pts_v.append(v)
        pts_c.append(bank.temp.copy())
        self.current_a = current
        for i in np.flatnonzero(v <= d.end_v_block):
            if d.block_end_s[int(i)] is None:
                d.block_end_s[int(i)] = label - d.start_s
                d.block_delivered_ah[int(i)] = d.delivered_ah
        if d.cutoff_v_per_cell is not None and float(v.sum()) <= d.cutoff_v_per_cell * self.cells * self.n:
            # the load bank sees its end voltage and switches itself off: no charge this step
            self.load = None
            self.t_s = label
            d.end_s = label
            d.end_reason = "cutoff"
            self._step(d, label, current, 0.0, v)
            self._finish_blocks(d)
            self.mode_since_s = label
            self.current_a = 0.0
            return True
        bank.advance(current, v, ocv, rt, dt, self.block_ambient)
        d.delivered_ah += current * dt / 3600.0
        d.amp_seconds += current * dt
        d.seconds += dt
        self.t_s += dt
        self._finish_blocks(d)
        return False

    @staticmethod
    def _finish_blocks(d: Discharge) -> None:
        # blocks that have not reached their end voltage delivered the string's charge so far
        for i, end in enumerate(d.block_end_s):
            if end is None:
                d.block_delivered_ah[i] = d.delivered_ah

    def _charging_step(self, t_to: float, pts_t: list[float], pts_v: list[FloatArray],
                       pts_c: list[FloatArray]) -> None:
        dt = min(CHARGING_DT_S, t_to - self.t_s)
        bank = self.bank
        current = self.model.charge_current(bank, self.float_offsets, dt)
        v, ocv, rt = bank.voltages(current, dt)
        pts_t.append(self.t_s)
        pts_v.append(v)
        pts_c.append(bank.temp.copy())
        bank.advance(current, v, ocv, rt, dt, self.block_ambient)
        self.current_a = current
        self.t_s += dt
        full = (float(bank.ah_out.max()) <= FULL_AH_FRACTION * self.model.rated_ah
                and -current < FULL_CURRENT_FRACTION * self.model.rated_ah)
        if full:
            bank.set_float(self._float_targets())
            self.steady = True
            self.mode_since_s = self.t_s
            self.current_a = 0.0

    def _quiet_step(self, t_to: float, pts_t: list[float], pts_v: list[FloatArray],
                    pts_c: list[FloatArray]) -> None:
        # no charge moves: the relaxations are exact over any step, so steps grow
        since = self.t_s - self.mode_since_s
        dt = min(max(QUIET_MIN_DT_S, 0.1 * since), QUIET_MAX_DT_S, t_to - self.t_s)
        bank = self.bank
        if self.steady:
            # float current is negligible; only the temperature relaxes to the room
            g = np.array([b.cooling_w_per_k for b in self.model.blocks])
            c = np.array([b.heat_j_per_k for b in self.model.blocks])
            bank.temp = self.block_ambient + (bank.temp - self.block_ambient) * np.exp(-dt * g / c)
            v = self._float_targets()
        else:
            v, ocv, rt = bank.voltages(0.0, dt)
            bank.advance(0.0, v, ocv, rt, dt, self.block_ambient)
        self.t_s += dt
        self.current_a = 0.0
        pts_t.append(self.t_s)
        pts_v.append(np.asarray(v, dtype=np.float64).copy())
        pts_c.append(bank.temp.copy())

    # ------------------------------------------------------------------ history

    def _float_targets(self) -> FloatArray:
        base = np.asarray(float_voltage(self.model.block_type, self.bank.temp), dtype=np.float64)
        return np.asarray(base + self.float_offsets, dtype=np.float64)

    def _present(self) -> tuple[FloatArray, FloatArray]:
        """Voltages and temperatures now, with nothing changing this instant."""
        if self.steady:
            return self._float_targets(), self.bank.temp.copy()
        v, _, _ = self.bank.voltages(0.0, 1e-9)
        return np.asarray(v, dtype=np.float64), self.bank.temp.copy()

    def _append(self, t: FloatArray, v: FloatArray, c: FloatArray) -> None:
        # a point at the same time replaces the older one (a change of what is connected)
        if self.hist_t.size and t.size and t[0] <= self.hist_t[-1] + 1e-9:
            keep = int(np.searchsorted(self.hist_t, t[0] - 1e-9))
            self.hist_t, self.hist_v, self.hist_c = (
                self.hist_t[:keep], self.hist_v[:, :keep], self.hist_c[:, :keep])
        self.hist_t = np.concatenate((self.hist_t, t))
        self.hist_v = np.concatenate((self.hist_v, v), axis=1)
        self.hist_c = np.concatenate((self.hist_c, c), axis=1)

    def _trim(self) -> None:
        cut = int(np.searchsorted(self.hist_t, self.t_s - HISTORY_KEEP_S)) - 1
        if cut > 0:
            self.hist_t = self.hist_t[cut:]
            self.hist_v = self.hist_v[:, cut:]
            self.hist_c = self.hist_c[:, cut:]
        self.jumps = [j for j in self.jumps if j[1] >= self.hist_t[0]]

    def string_voltage(self) -> float:
        return float(self.hist_v[:, -1].sum())

    # ------------------------------------------------------------------ truth

    def capacity_at_test_rate(self, d: Discharge) -> list[float | None]:
        """Per block, the charge it delivers to its end voltage at the test's (mean) current.

        A what-if run from the bank as it was at load-on: in a series string at a constant
        current every block discharges on its own, so each block's run ends at its own end
        voltage, whichever block ends the string. Blocks that do not reach it within
        ``WHAT_IF_MAX_S`` give None.
        """
        if d.capacity_ah_test_rate is not None:
            return d.capacity_ah_test_rate
        current = float(d.load["amps"]) if d.load.get("kind") == "current" else d.mean_current_a
        out: list[float | None] = [None] * self.n
        if current <= 0:
            return out
        bank = self.model.new_bank()
        _set_bank_state(bank, d.start_state, self.n)
        delivered = 0.0
        done = np.zeros(self.n, dtype=bool)
        steps = int(WHAT_IF_MAX_S / WHAT_IF_DT_S)
        for _ in range(steps):
            v, ocv, rt = bank.voltages(current, WHAT_IF_DT_S)
            newly = ~done & (v <= d.end_v_block)
            for i in np.flatnonzero(newly):
                out[int(i)] = delivered
            done |= newly
            if done.all():
                break
            bank.advance(current, v, ocv, rt, WHAT_IF_DT_S, self.block_ambient)
            delivered += current * WHAT_IF_DT_S / 3600.0
        if d.end_s is not None:
            d.capacity_ah_test_rate = out  # a finished discharge never changes: keep it
        return out

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "t_s": self.t_s,
            "charger": self.charger,
            "steady": self.steady,
            "mode_since_s": self.mode_since_s,
            "load": None if self.load is None else load_to_json(self.load),
            "bank": _bank_state(self.bank),
            "current_a": self.current_a,
            # base64 of little-endian float64: exact, and a fraction of the size of JSON numbers
            "hist_t": _b64(self.hist_t),
            "hist_v": _b64(self.hist_v),
            "hist_c": _b64(self.hist_c),
            "jumps": [[a, b, _b64(v)] for a, b, v in self.jumps],
            "discharges": [d.to_json() for d in self.discharges],
        }

    @classmethod
    def from_json(cls, model: StringModel, raw: dict[str, Any], *, ambient_c: float) -> LiveString:
        """The string as ``to_json`` left it; ``SimulationError`` if it does not fit ``model``."""
        self = cls(model, ambient_c=ambient_c)
        try:
            if raw.get("v") != 1:
                raise ValueError(f"battery state version {raw.get('v')!r}")
            self.t_s = float(raw["t_s"])
            self.charger = bool(raw["charger"])
            self.steady = bool(raw["steady"])
            self.mode_since_s = float(raw["mode_since_s"])
            self.load = None if raw["load"] is None else load_from_json(raw["load"])
            _set_bank_state(self.bank, raw["bank"], self.n)
            self.current_a = float(raw["current_a"])
            self.hist_t = _unb64(raw["hist_t"])
            self.hist_v = _unb64(raw["hist_v"]).reshape(self.n, -1)
            self.hist_c = _unb64(raw["hist_c"]).reshape(self.n, -1)
            self.jumps = [(float(a), float(b), _unb64(v)) for a, b, v in raw["jumps"]]
            if any(v.shape != (self.n,) for _, _, v in self.jumps):
                raise ValueError("a jump is not one value per block")
            if self.hist_t.size != self.hist_v.shape[1] or self.hist_t.size != self.hist_c.shape[1]:
                raise ValueError("history arrays differ in length")
            self.discharges = [Discharge.from_json(d) for d in raw["discharges"]]
        except (KeyError, TypeError, ValueError, binascii.Error) as err:
            raise SimulationError(f"unreadable battery state: {err}") from None
        if not math.isfinite(self.t_s):
            raise SimulationError("battery state time is not finite")
        return self


class BlockSignal:
    """One block of a ``LiveString`` as a ``SignalSource`` for the logger clipped on it."""

    def __init__(self, string: LiveString, index: int) -> None:
        self.string = string
        self.index = index

    @property
    def t_end_s(self) -> float:
        return float(self.string.hist_t[-1])

    def at(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        s = self.string
        row = s.hist_v[self.index]
        v = np.interp(t_s, s.hist_t, row)
        for a, b, after in s.jumps:
            m = (t_s > a) & (t_s < b)
            if m.any():  # from the value just after the switch to the next grid value
                nxt = float(np.interp(b, s.hist_t, row))
                x = float(after[self.index])
                v = np.where(m, x + (nxt - x) * (t_s - a) / (b - a), v)
        return v, np.interp(t_s, s.hist_t, s.hist_c[self.index])

    def envelope(self, t0_s: float, t1_s: float) -> tuple[float, float, float, float]:
        s = self.string
        t = s.hist_t
        i0 = int(np.searchsorted(t, t0_s, side="right"))
        i1 = int(np.searchsorted(t, t1_s, side="left"))
        ve, ce = self.at(np.array([t0_s, t1_s]))
        vi, ci = s.hist_v[self.index, i0:i1], s.hist_c[self.index, i0:i1]
        vj = [float(v[self.index]) for a, b, v in s.jumps if a < t1_s and b > t0_s]
        vs = np.concatenate((ve, vi, vj))
        cs = np.concatenate((ce, ci))
        return float(vs.min()), float(vs.max()), float(cs.min()), float(cs.max())
