"""Virtual batteries: blocks, strings and their ground truth, for the firmware model.

Owns the electrical and thermal model of battery blocks (lead-acid VRLA and
flooded, NiCd, LiFePO4) in a series string under a discharge load, and the
long-term float life of one block (temperature-compensated float voltage,
daily and seasonal ambient cycles, ageing, occasional outages). Every run is
seeded and reproducible. Equations, parameters and the datasheet calibration
are documented in docs/BATTERY_MODEL.md.

Does not own sensors, clocks or the logger firmware: the firmware samples the
true traces produced here (``StringTrace``) at its own clock times. Loads live
in ``smartlogger.device.load``.

Model per block (per cell values times the cells of the block):

* rest voltage ``ocv(soc)`` from a per-chemistry table, ``soc`` from the
  ampere-hours removed relative to the low-rate capacity;
* terminal voltage ``v = ocv - eta_ct - eta_diff - I * cells * rT * (r_ohm + r_knee * d/(1-d))``
  with two first-order polarisation states relaxing towards a charge-transfer
  (Butler-Volmer, ``b * asinh(I / i0)``) and a diffusion (``I * r_slow``) value
  with time constants ``tau_fast``/``tau_slow``, and a knee term that makes an
  exhausted block (``d -> 1``) collapse; while charging, a gassing term near full;
* Peukert-weighted depth of discharge ``d``: ``dd/dt = I / (C0 * fT(T) * (I_r/I)^(k-1))``;
* thermal RC: ``C_th dT/dt = I * (ocv - v) - I * T * dE/dT - G_th (T - T_ambient)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from smartlogger.device.load import ConstantCurrent, Load
from smartlogger.errors import SimulationError
from smartlogger.model import BlockType, Chemistry

__all__ = [
    "BlockBank",
    "BlockParams",
    "BlockTruth",
    "ChemistryParams",
    "DischargeWindow",
    "LoadStep",
    "StringModel",
    "StringTrace",
    "build_string",
    "chemistry_params",
    "float_voltage",
    "float_years",
]

FloatArray = npt.NDArray[np.float64]

SECONDS_PER_YEAR = 365.25 * 86400.0
SECONDS_PER_DAY = 86400.0
REFERENCE_C = 25.0  # rating temperature of the capacity tables (IEEE, CSB datasheets)


# --------------------------------------------------------------------------- chemistry


@dataclass(frozen=True)
class ChemistryParams:
    """Per-cell parameters of one chemistry.

    Resistances are given as ohm times ampere-hours (``Ω·Ah``): divide by the
    block's capacity to get ohms, because a bigger cell has proportionally
    bigger plates. Voltages are per cell.
    """

    chemistry: Chemistry
    ocv_soc: tuple[float, ...]  # state-of-charge grid, 0..1, increasing
    ocv_v: tuple[float, ...]  # rest voltage per cell at those states, V
    float_v_cell: float  # float voltage per cell at 25 C, V
    float_comp_v_per_c: float  # float temperature compensation, V per cell per C (negative)
    float_min_cell: float  # charger clamps of the compensated float voltage, V/cell
    float_max_cell: float
    end_v_cell: float  # default end-of-discharge voltage, V/cell
    peukert_k: float  # Peukert exponent (1 = no rate dependence)
    r_ohm: float  # ohmic resistance, Ω·Ah per cell
    tafel_b_v: float  # charge-transfer (Tafel) slope: eta = b * asinh(I / i0), V per cell
    i0_per_ah: float  # exchange current per Ah of capacity, A/Ah
    r_slow: float  # slow (diffusion) polarisation resistance, Ω·Ah per cell
    tau_fast_s: float  # time constant of the fast polarisation, s
    tau_slow_s: float  # time constant of the slow polarisation, s
    r_knee: float  # end-of-discharge knee resistance coefficient, Ω·Ah per cell
    cap_temp_c: tuple[float, ...]  # temperatures of the capacity-vs-temperature table, C
    cap_temp_factor: tuple[float, ...]  # capacity relative to 25 C at those temperatures
    r_temp_per_c: float  # relative resistance rise per C below 25 C
    heat_j_per_k_cell_ah: float  # heat capacity, J/K per cell per Ah
    entropic_v_per_k: float  # dE/dT of the cell reaction, V/K per cell (reversible heat)
    cooling_w_per_k: float  # thermal conductance to ambient, W/K per (cell*Ah)^(2/3)
    charge_efficiency: float  # Ah stored per Ah charged
    gassing_v: float  # end-of-charge overvoltage at full charge while charging, V per cell
    float_life_years_20c: float  # float life to 80 % capacity at 20 C, years
    life_halving_c: float  # temperature rise that halves the float life, C
    full_cycles: float  # cycles at 100 % depth of discharge to end of life
    weak_band: tuple[float, float]  # capacity factor band of a weak block


_LEAD_CAP_T = (-20.0, -15.0, 0.0, 25.0, 40.0, 50.0)
# 10-h capacity vs temperature of a 12 V AGM block (-15 C 65 %, 0 C 86 %, 25 C 100 %,
# 40 C 103 %), ends extrapolated; see docs/BATTERY_MODEL.md.
_LEAD_CAP_F = (0.58, 0.65, 0.86, 1.00, 1.03, 1.04)

_VRLA = ChemistryParams(
    chemistry=Chemistry.VRLA,
    # rest voltage: 12.86 V full, 11.7 V empty for a 12 V block (CSB/Panasonic OCV charts)
    ocv_soc=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
    ocv_v=(1.950, 1.975, 2.000, 2.040, 2.085, 2.115, 2.143),
    float_v_cell=2.27,  # 13.62 V per 12 V block (CSB GP: 13.5-13.8 V at 25 C)
    float_comp_v_per_c=-0.003,  # -3 mV/cell/C (Yuasa NP manual)
    float_min_cell=2.20,
    float_max_cell=2.35,
    end_v_cell=1.75,
    peukert_k=1.01,
    r_ohm=0.075,
    tafel_b_v=0.020,
    i0_per_ah=0.010,
    r_slow=0.070,
    tau_fast_s=20.0,
    tau_slow_s=600.0,
    r_knee=0.030,
    cap_temp_c=_LEAD_CAP_T,
    cap_temp_factor=_LEAD_CAP_F,
    r_temp_per_c=0.012,
    heat_j_per_k_cell_ah=42.0,  # 12 V 40 Ah AGM: 12.6 kg * ~0.8 J/(g K)
    entropic_v_per_k=0.00022,
    cooling_w_per_k=0.031,  # 12 V 40 Ah: ~1.2 W/K natural convection
    charge_efficiency=0.90,
    gassing_v=0.12,
    float_life_years_20c=10.0,
    life_halving_c=10.0,  # life halves per 10 C above 20 C (product brief)
    full_cycles=260.0,  # CSB GP: 260 cycles at 100 % DoD
    weak_band=(0.45, 0.75),
)

_FLOODED = ChemistryParams(
    chemistry=Chemistry.FLOODED,
    ocv_soc=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
    ocv_v=(1.960, 1.985, 2.010, 2.050, 2.090, 2.115, 2.130),  # SG 1.24 -> 2.08 V ... 1.28 -> 2.13 V
    float_v_cell=2.23,
    float_comp_v_per_c=-0.0025,
    float_min_cell=2.17,
    float_max_cell=2.30,
    end_v_cell=1.75,
    peukert_k=1.03,
    r_ohm=0.090,
    tafel_b_v=0.022,
    i0_per_ah=0.010,
    r_slow=0.090,
    tau_fast_s=20.0,
    tau_slow_s=900.0,
    r_knee=0.035,
    cap_temp_c=_LEAD_CAP_T,
    cap_temp_factor=_LEAD_CAP_F,
    r_temp_per_c=0.012,
    heat_j_per_k_cell_ah=55.0,  # more (liquid) electrolyte per Ah
    entropic_v_per_k=0.00022,
    cooling_w_per_k=0.031,
    charge_efficiency=0.88,
    gassing_v=0.12,
    float_life_years_20c=15.0,
    life_halving_c=10.0,
    full_cycles=800.0,
    weak_band=(0.45, 0.75),
)

_NICD = ChemistryParams(
    chemistry=Chemistry.NICD,
    ocv_soc=(0.0, 0.05, 0.1, 0.2, 0.5, 0.8, 0.95, 1.0),
    ocv_v=(1.00, 1.15, 1.20, 1.23, 1.27, 1.30, 1.33, 1.36),
    float_v_cell=1.42,
    float_comp_v_per_c=-0.003,
    float_min_cell=1.36,
    float_max_cell=1.50,
    end_v_cell=1.00,
    peukert_k=1.02,
    r_ohm=0.080,
    tafel_b_v=0.018,
    i0_per_ah=0.010,
    r_slow=0.050,
    tau_fast_s=15.0,
    tau_slow_s=600.0,
    r_knee=0.020,
    cap_temp_c=(-20.0, 0.0, 25.0, 40.0, 50.0),
    cap_temp_factor=(0.75, 0.92, 1.00, 1.00, 0.98),  # NiCd keeps capacity in the cold
    r_temp_per_c=0.008,
    heat_j_per_k_cell_ah=35.0,
    entropic_v_per_k=-0.0005,
    cooling_w_per_k=0.031,
    charge_efficiency=0.80,
    gassing_v=0.10,
    float_life_years_20c=20.0,
    life_halving_c=20.0,  # NiCd is much less temperature sensitive than lead
    full_cycles=1500.0,
    weak_band=(0.50, 0.78),
)

_LIFEPO4 = ChemistryParams(
    chemistry=Chemistry.LIFEPO4,
    ocv_soc=(0.0, 0.03, 0.08, 0.15, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0),
    ocv_v=(2.50, 2.95, 3.15, 3.22, 3.26, 3.29, 3.31, 3.33, 3.35, 3.37),
    float_v_cell=3.40,  # 13.6 V per 4-cell block; LFP is not temperature compensated
    float_comp_v_per_c=0.0,
    float_min_cell=3.40,
    float_max_cell=3.40,
    end_v_cell=2.50,
    peukert_k=1.01,
    r_ohm=0.025,
    tafel_b_v=0.010,
    i0_per_ah=0.020,
    r_slow=0.020,
    tau_fast_s=10.0,
    tau_slow_s=300.0,
    r_knee=0.008,
    cap_temp_c=(-20.0, -10.0, 0.0, 25.0, 45.0, 55.0),
    cap_temp_factor=(0.60, 0.72, 0.85, 1.00, 1.02, 1.02),
    r_temp_per_c=0.015,
    heat_j_per_k_cell_ah=25.0,
    entropic_v_per_k=-0.00005,
    cooling_w_per_k=0.031,
    charge_efficiency=0.99,
    gassing_v=0.03,
    float_life_years_20c=15.0,
    life_halving_c=15.0,
    full_cycles=4000.0,
    weak_band=(0.50, 0.78),
)

_PARAMS = {p.chemistry: p for p in (_VRLA, _FLOODED, _NICD, _LIFEPO4)}


def chemistry_params(chemistry: Chemistry) -> ChemistryParams:
    """The model parameters of a chemistry."""
    try:
        return _PARAMS[chemistry]
    except KeyError:
        raise SimulationError(f"no battery model for chemistry {chemistry!r}") from None


def float_voltage(block_type: BlockType, temp_c: float | FloatArray) -> float | FloatArray:
    """Temperature-compensated float voltage of one block, V.

    Lead-acid (and NiCd) chargers lower the float voltage as the battery warms
    (``float_comp_v_per_c`` per cell per C around 25 C), within the charger's
    clamps; LiFePO4 is held at a fixed voltage.
    """
    p = chemistry_params(block_type.chemistry)
    per_cell = np.clip(
        p.float_v_cell + p.float_comp_v_per_c * (np.asarray(temp_c, dtype=np.float64) - REFERENCE_C),
        p.float_min_cell, p.float_max_cell,
    )
    out = per_cell * block_type.cells
    if np.ndim(out) == 0:
        return float(out)
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class BlockParams:
    """The true parameters of one block of a string (after spread and ageing)."""

    index: int  # 0-based position in the string
    weak: bool
    capacity_factor: float  # capacity at the rated rate and 25 C relative to rated
    resistance_factor: float  # ohmic resistance relative to a new block
    c0_ah: float  # Peukert reference capacity at the rated current (to exhaustion), Ah
    c_ocv_ah: float  # charge that takes the rest voltage from full to empty, Ah
    r_ohm: float  # ohmic resistance per cell at 25 C, Ω
    i0_a: float  # exchange current of the charge-transfer polarisation, A
    r_slow: float  # slow polarisation resistance per cell, Ω
    r_knee: float  # knee coefficient per cell, Ω
    heat_j_per_k: float  # block heat capacity, J/K
    cooling_w_per_k: float  # block thermal conductance to ambient, W/K
    ambient_offset_c: float  # this block's place in the room is warmer/colder by, C
    float_offset_v: float  # this block's share of the string float voltage deviates by, V


@dataclass(frozen=True)
class BlockTruth:
    """Ground truth of one block, for validating the analysis."""

    index: int  # 0-based position in the string
    weak: bool
    capacity_factor: float  # 1.0 = as new; e.g. 0.7 = 70 % of rated capacity remains
    resistance_mohm: float  # DC ohmic resistance of the block at 25 C, mOhm
    capacity_ah_rated_rate: float  # true capacity at the rated rate and 25 C, Ah
    time_to_end_s: float | None  # s after load_on_s until this block reached its end voltage
    delivered_ah: float  # charge delivered until its end voltage (or until load off), Ah


@dataclass(frozen=True)
class DischargeWindow:
    """One discharge inside a long float run (an outage or a test)."""

    start_s: float  # true time the load was applied, s since trace start
    end_s: float  # true time the load was removed, s
    current_a: float  # constant discharge current, A
    delivered_ah: float  # charge delivered, Ah


@dataclass(frozen=True)
class LoadStep:
    """The string current changed at ``t_s``: each block's voltage jumps at once by the change
    times its instantaneous DC resistance, then relaxes (the ground truth of the step resistance
    the analysis measures; docs/BATTERY_MODEL.md)."""

    t_s: float  # instant of the change, true s since trace start (a grid time)
    current_before_a: float  # string current before, A
    current_after_a: float  # string current after, A
    resistance_mohm: FloatArray  # (blocks,) cells x r_T x (r_ohm + knee) at that moment, mOhm
    v_before: FloatArray  # (blocks,) terminal voltage just before, V
    v_after: FloatArray  # (blocks,) terminal voltage just after (before any relaxation), V
    temp_c: FloatArray  # (blocks,) block temperature, C


@dataclass
class StringTrace:
    """True voltages and temperatures of a string's blocks on a regular time grid."""

    t_s: FloatArray  # (n,) true time since trace start, s, regular grid of dt_s
    current_a: FloatArray  # (n,) string current, A, positive = discharge
    block_v: FloatArray  # (blocks, n) true terminal voltage, V
    block_temp_c: FloatArray  # (blocks, n) true block temperature, C
    load_on_s: float  # true time the load was applied (NaN: no discharge in the trace)
    load_off_s: float  # true time the load was removed (NaN: no discharge)
    truth: list[BlockTruth]
    ambient_c: FloatArray | None = None  # (n,) room temperature, C (float_years only)
    discharges: list[DischargeWindow] = field(default_factory=list)
    steps: list[LoadStep] = field(default_factory=list)  # every step of the load (discharge runs only)

    def jumps(self, block: int) -> list[tuple[float, float, float]]:
        """The load steps of one block as ``(instant s, next grid time s, volts just after)`` for
        ``sensors.TraceSource``: the voltage steps at the instant, not over a grid interval."""
        dt = self.dt_s
        return [(st.t_s, st.t_s + dt, float(st.v_after[block])) for st in self.steps]

    @property
    def dt_s(self) -> float:
        return float(self.t_s[1] - self.t_s[0]) if self.t_s.size > 1 else 0.0

    @property
    def string_v(self) -> FloatArray:
        """String terminal voltage, V."""
        return np.asarray(self.block_v.sum(axis=0), dtype=np.float64)


class BlockBank:
    """Vectorised state of the blocks of one string (all arrays have one entry per block).

    The state (``dod``, ``ah_out``, ``eta_f``, ``eta_s``, ``temp``) is what a stepped
    simulation carries from one step to the next (``device.live_string`` keeps it
    across a virtual site's restarts).
    """

    def __init__(self, p: ChemistryParams, cells: int, blocks: list[BlockParams],
                 rated_current_a: float) -> None:
        self.p = p
        self.cells = cells
        self.i_r = rated_current_a  # A, the rated (reference) current of the Peukert law
        self.c0 = np.array([b.c0_ah for b in blocks])
        self.c_ocv = np.array([b.c_ocv_ah for b in blocks])
        self.r_ohm = np.array([b.r_ohm for b in blocks])
        self.i0 = np.array([b.i0_a for b in blocks])
        self.r_slow = np.array([b.r_slow for b in blocks])
        self.r_knee = np.array([b.r_knee for b in blocks])
        self.cth = np.array([b.heat_j_per_k for b in blocks])
        self.gth = np.array([b.cooling_w_per_k for b in blocks])
        n = len(blocks)
        self.dod = np.zeros(n)  # Peukert-weighted depth of discharge, 0 = full, 1 = exhausted
        self.ah_out = np.zeros(n)  # Ah removed since full
        self.eta_f = np.zeros(n)  # fast polarisation, V per block (positive while discharging)
        self.eta_s = np.zeros(n)  # slow polarisation, V per block
        self.temp = np.full(n, REFERENCE_C)  # block temperature, C
        self._soc_grid = np.array(p.ocv_soc)
        self._ocv_grid = np.array(p.ocv_v) * cells
        self._capt_t = np.array(p.cap_temp_c)
        self._capt_f = np.array(p.cap_temp_factor)
        self._floor_v = 0.0  # a collapsed block sits near 0 V (reversal is not modelled)
        # The knee models the end-of-discharge diffusion limit. A block driven past exhaustion
        # (d > 1; reversal is not modelled) would carry it into a recharge as an unbounded
        # charging voltage; a stepped string that recharges such blocks switches it off.
        self.knee_on_charge = True

    def ocv(self) -> FloatArray:
        # np.interp clamps outside the grid, so no explicit clip of soc is needed
        out: FloatArray = np.interp(1.0 - self.ah_out / self.c_ocv, self._soc_grid, self._ocv_grid)
        return out

    def set_float(self, v_float: FloatArray) -> None:
        """Steady float: full, polarisation equal to the float overvoltage (negative)."""
        self.dod[:] = 0.0
        self.ah_out[:] = 0.0
        # negative: the charger holds the block above its rest voltage; this surface
        # overvoltage is gone within a minute of load (fast state), as on real blocks
        self.eta_f = self.ocv() - v_float
        self.eta_s = np.zeros_like(self.eta_f)

    def voltages(self, current: float, dt: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Terminal voltages if ``current`` flows during the next step of ``dt`` s.

        Returns (v, ocv, rt); rt is the temperature factor of the resistances.
        """
        p = self.p
        rt = np.minimum(np.maximum(1.0 + p.r_temp_per_c * (REFERENCE_C - self.temp), 0.6), 4.0)
        a_f = 1.0 - math.exp(-dt / p.tau_fast_s)
        a_s = 1.0 - math.exp(-dt / p.tau_slow_s)
        d = np.maximum(self.dod, 0.0)
        # knee: grows as d -> 1 and stays huge past exhaustion, so an empty block collapses
        knee = self.r_knee * d / np.maximum(1.0 - d, 1e-4)
        if current < 0 and not self.knee_on_charge:
            knee = np.zeros_like(knee)
        ocv = self.ocv()
        eta_f = self.eta_f + a_f * (self._eta_f_ss(current, rt) - self.eta_f)
        eta_s = self.eta_s + a_s * (current * self.cells * rt * self.r_slow - self.eta_s)
        v = ocv - eta_f - eta_s - current * self.cells * rt * (self.r_ohm + knee)
        if current < 0:
            # near full charge the charge is no longer accepted: the voltage climbs steeply
            # (gas evolution), which is where a charger's float/CV limit takes over
            soc = np.minimum(np.maximum(1.0 - self.ah_out / self.c_ocv, 0.0), 1.0)
            v = v + self.cells * p.gassing_v * soc**6
        return np.maximum(v, self._floor_v), ocv, rt

    def instant_resistance(self) -> FloatArray:
        """Each block's instantaneous DC resistance now (ohm): what a current step sees at once,
        before any polarisation moves: cells x r_T x (r_ohm + knee)."""
        rt = np.minimum(np.maximum(1.0 + self.p.r_temp_per_c * (REFERENCE_C - self.temp), 0.6), 4.0)
        d = np.maximum(self.dod, 0.0)
        knee = self.r_knee * d / np.maximum(1.0 - d, 1e-4)
        out: FloatArray = self.cells * rt * (self.r_ohm + knee)
        return out

    def _eta_f_ss(self, current: float, rt: FloatArray) -> FloatArray:
        # Butler-Volmer (symmetric) charge-transfer overvoltage; cold slows the kinetics
        return self.cells * self.p.tafel_b_v * np.arcsinh(current / (self.i0 / rt))

    def advance(self, current: float, v: FloatArray, ocv: FloatArray, rt: FloatArray,
                dt: float, ambient: FloatArray | float) -> None:
        """Move the state over one step of ``dt`` seconds at string current ``current``."""
        p = self.p
        a_f = 1.0 - math.exp(-dt / p.tau_fast_s)
        a_s = 1.0 - math.exp(-dt / p.tau_slow_s)
        self.eta_f += a_f * (self._eta_f_ss(current, rt) - self.eta_f)
        self.eta_s += a_s * (current * self.cells * rt * self.r_slow - self.eta_s)
        dq = current * dt / 3600.0  # Ah this step
        if current > 0:
            i_eff = max(current, 0.05 * self.i_r)
            fT = np.interp(self.temp, self._capt_t, self._capt_f)
            q = self.c0 * fT * (self.i_r / i_eff) ** (p.peukert_k - 1.0)
            self.dod += dq / q
            self.ah_out += dq
        elif current < 0:
            stored = -dq * p.charge_efficiency
            self.dod = np.maximum(self.dod - stored / self.c0, 0.0)
            self.ah_out = np.maximum(self.ah_out - stored, 0.0)
        # thermal RC, exact over the step. Heat = irreversible losses I * (ocv - v) minus the
        # reversible (entropic) heat I * T * dE/dT: lead-acid discharge is slightly endothermic
        heat = current * (ocv - v) - current * (self.temp + 273.15) * p.entropic_v_per_k * self.cells
        t_ss = ambient + heat / self.gth
        self.temp = t_ss + (self.temp - t_ss) * np.exp(-dt * self.gth / self.cth)


# --------------------------------------------------------------------------- the string


class StringModel:
    """N blocks in series; the string current flows through every block."""

    def __init__(self, block_type: BlockType, rated_ah: float, rated_hours: float,
                 ambient_c: float, blocks: list[BlockParams], seed: int) -> None:
        self.block_type = block_type
        self.rated_ah = rated_ah  # Ah at the rated_hours rate, 25 C, to the default end voltage
        self.rated_hours = rated_hours
        self.ambient_c = ambient_c
        self.blocks = blocks
        self.seed = seed
        self.params = chemistry_params(block_type.chemistry)

    @property
    def rated_current_a(self) -> float:
        return self.rated_ah / self.rated_hours

    def resistance_mohm(self, index: int) -> float:
        """DC ohmic resistance of block ``index`` at 25 C, mOhm."""
        return self.blocks[index].r_ohm * self.block_type.cells * 1000.0

    def charge_current(self, bank: BlockBank, offsets: FloatArray, dt_s: float) -> float:
        """The charger's current (negative) for the next step: 0.1 C limit, float voltage cap."""
        target = float(np.sum(np.asarray(float_voltage(self.block_type, bank.temp)) + offsets))
        i_lim = 0.1 * self.rated_ah
        if float(bank.voltages(-i_lim, dt_s)[0].sum()) <= target:
            return -i_lim  # bulk: current limited
        if float(bank.voltages(0.0, dt_s)[0].sum()) >= target:
            return 0.0  # the string is above float already: no charge flows
        lo, hi = -i_lim, 0.0  # string voltage falls monotonically from lo to hi
        for _ in range(20):  # bisection to ~1e-6 of the limit: the float (CV) phase
            mid = 0.5 * (lo + hi)
            if float(bank.voltages(mid, dt_s)[0].sum()) > target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def new_bank(self) -> BlockBank:
        """The blocks of this string, fully charged (state from ``set_float``)."""
        return BlockBank(self.params, self.block_type.cells, self.blocks, self.rated_current_a)

    def discharge(self, load: Load, *, rest_before_s: float = 300.0, rest_after_s: float = 600.0,
                  end_v_per_cell: float | None = None, max_duration_s: float = 24 * 3600,
                  dt_s: float = 1.0, ambient_c: float | None = None,
                  recharge: bool = False, from_rest: bool = False) -> StringTrace:
        """Float charge, then the load until the string reaches its end voltage, then rest.

        The string floats for ``rest_before_s``; the load is applied and runs until
        the string voltage reaches ``cells * blocks * end_v_per_cell`` (default: the
        chemistry's end voltage, 1.75 V/cell for lead-acid), ``max_duration_s`` or
        the load's own end; then, for ``rest_after_s``, the string rests open-circuit
        (voltages recover) or, with ``recharge=True``, the charger returns: current
        limited to 0.1 C until the string reaches its compensated float voltage, then
        held at float voltage with the current tapering (``current_a`` negative).
        ``from_rest=True``: the charger was switched off long before, the blocks sit at their
        rest (open-circuit) voltage instead of on float. One loop over time steps, vectorised
        over blocks.
        """
        p = self.params
        if dt_s <= 0 or not math.isfinite(dt_s):
            raise SimulationError(f"dt_s {dt_s!r} must be a positive number of seconds")
        if rest_before_s < 0 or rest_after_s < 0 or max_duration_s <= 0:
            raise SimulationError("rest times must be >= 0 s and max_duration_s > 0 s")
        end_cell = p.end_v_cell if end_v_per_cell is None else float(end_v_per_cell)
        cells, n_blocks = self.block_type.cells, len(self.blocks)
        end_block = cells * end_cell
        end_string = end_block * n_blocks
        amb = self.ambient_c if ambient_c is None else float(ambient_c)
        block_amb = amb + np.array([b.ambient_offset_c for b in self.blocks])

        n_before = round(rest_before_s / dt_s)
        max_load = max(math.ceil(max_duration_s / dt_s), 1)
        load_end = load.end_s
        if load_end is not None:
            max_load = min(max_load, math.floor(load_end / dt_s) + 1)
        n_after = round(rest_after_s / dt_s)
        cap = n_before + max_load + n_after
        volts = np.empty((n_blocks, cap))
        temps = np.empty((n_blocks, cap))
        amps = np.zeros(cap)

        bank = self.new_bank()
        bank.temp = block_amb.copy()
        v_float = np.asarray(float_voltage(self.block_type, block_amb), dtype=np.float64)
        v_float = v_float + np.array([b.float_offset_v for b in self.blocks])
        bank.set_float(v_float)
        if from_rest:
            bank.eta_f = np.zeros_like(bank.eta_f)  # the float overvoltage has long decayed
            v_float = bank.ocv()
        volts[:, :n_before] = v_float[:, None]
        temps[:, :n_before] = block_amb[:, None]

        constant = load.amps if isinstance(load, ConstantCurrent) else None
        end_k = np.full(n_blocks, -1, dtype=np.int64)
        delivered_at_end = np.zeros(n_blocks)
        delivered = 0.0
        current = 0.0
        v_prev_string = float(v_float.sum())
        k = n_before
        last_load_k = n_before
        steps: list[LoadStep] = []
        i_max = [0.0]

        def note_step(k: int, before: float, after: float) -> None:
            # The model's grid value at k already holds one step of relaxation: the step itself is
            # placed at the grid time before (k - 1), as an instantaneous jump of dI x R.
            i_max[0] = max(i_max[0], abs(before), abs(after))
            if k == 0 or abs(after - before) <= max(0.01 * i_max[0], 0.05):
                return
            r = bank.instant_resistance()
            v0 = volts[:, k - 1].copy()
            steps.append(LoadStep(float((k - 1) * dt_s), before, after, r * 1000.0, v0,
                                  np.maximum(v0 - (after - before) * r, self_floor), bank.temp.copy()))

        self_floor = 0.0
        for j in range(max_load):
            t_rel = j * dt_s
            if constant is not None:
                current = constant
                v, ocv, rt = bank.voltages(current, dt_s)
            else:
                # fixed point on the string voltage: converges for any load whose current
                # changes slowly with voltage (constant power: P R / V^2 << 1)
                v_s = v_prev_string
                for _ in range(4):
                    current = float(load.current_a(t_rel, max(v_s, 0.0)))
                    v, ocv, rt = bank.voltages(current, dt_s)
                    v_s = float(v.sum())
            note_step(k, float(amps[k - 1]) if k > 0 else 0.0, current)
            volts[:, k] = v
            temps[:, k] = bank.temp
            amps[k] = current
            newly = (end_k < 0) & (v <= end_block)
            if newly.any():
                end_k[newly] = k
                delivered_at_end[newly] = delivered
            v_string = float(v.sum())
            v_prev_string = v_string
            last_load_k = k
            k += 1
            if v_string <= end_string:
                break
            bank.advance(current, v, ocv, rt, dt_s, block_amb)
            delivered += current * dt_s / 3600.0
        load_on = n_before * dt_s
        load_off = last_load_k * dt_s
        # the load is removed right after the last loaded sample (load_off)
        offsets = np.array([b.float_offset_v for b in self.blocks])
        for a in range(n_after):
            current = self.charge_current(bank, offsets, dt_s) if recharge else 0.0
            if a == 0:
                note_step(k, float(amps[k - 1]), current)
            v, ocv, rt = bank.voltages(current, dt_s)
            volts[:, k] = v
            temps[:, k] = bank.temp
            amps[k] = current
            bank.advance(current, v, ocv, rt, dt_s, block_amb)
            k += 1
        n = k
        truth = []
        for i, b in enumerate(self.blocks):
            ended = end_k[i] >= 0
            truth.append(BlockTruth(
                index=b.index,
                weak=b.weak,
                capacity_factor=b.capacity_factor,
                resistance_mohm=self.resistance_mohm(i),
                capacity_ah_rated_rate=self.rated_ah * b.capacity_factor,
                time_to_end_s=float(end_k[i] * dt_s - load_on) if ended else None,
                delivered_ah=float(delivered_at_end[i] if ended else delivered),
            ))
        return StringTrace(
            t_s=np.arange(n, dtype=np.float64) * dt_s,
            current_a=amps[:n].copy(),
            block_v=volts[:, :n].copy(),
            block_temp_c=temps[:, :n].copy(),
            load_on_s=load_on,
            load_off_s=load_off,
            truth=truth,
            steps=steps,
        )


# --------------------------------------------------------------------------- construction


def _make_blocks(p: ChemistryParams, block_type: BlockType, rated_ah: float, rated_hours: float,
                 cf: FloatArray, r_factor: FloatArray, weak: list[bool], amb_off: FloatArray,
                 float_off: FloatArray) -> list[BlockParams]:
    """Block parameters such that each block delivers exactly ``cf * rated_ah`` at the rated rate.

    Resistances are fixed by the rating, capacity and resistance factors; the
    Peukert reference capacity ``C0`` is then chosen from one isothermal (25 C)
    discharge of all blocks at the rated current, which tells what fraction of
    ``C0`` each block delivers before reaching the chemistry's end voltage.
    """
    cells = block_type.cells
    n = cf.size
    cell_ah = cells * rated_ah

    def blocks_with(c0: FloatArray, heat: float | None) -> list[BlockParams]:
        return [BlockParams(
            index=i, weak=weak[i], capacity_factor=float(cf[i]),
            resistance_factor=float(r_factor[i]), c0_ah=float(c0[i]),
            c_ocv_ah=float(c0[i] * 2.0 ** (p.peukert_k - 1.0)),
            r_ohm=p.r_ohm / rated_ah * float(r_factor[i]),
            # less active material -> higher current density -> more polarisation
            i0_a=p.i0_per_ah * rated_ah * float(cf[i]),
            r_slow=p.r_slow / (rated_ah * float(cf[i])),
            r_knee=p.r_knee / (rated_ah * float(cf[i])),
            heat_j_per_k=p.heat_j_per_k_cell_ah * cell_ah if heat is None else heat,
            cooling_w_per_k=p.cooling_w_per_k * cell_ah ** (2.0 / 3.0),
            ambient_offset_c=float(amb_off[i]),
            float_offset_v=float(float_off[i]),
        ) for i in range(n)]

    trial_c0 = rated_ah * cf
    i_r = rated_ah / rated_hours
    bank = BlockBank(p, cells, blocks_with(trial_c0, 1e15), i_r)  # isothermal: no self-heating
    dt = rated_hours * 3600.0 / 1000.0
    delivered = 0.0
    end_at = np.full(n, np.nan)
    for _ in range(40000):
        v, ocv, rt = bank.voltages(i_r, dt)
        newly = np.isnan(end_at) & (v <= cells * p.end_v_cell)
        end_at[newly] = delivered
        if not np.isnan(end_at).any():
            break
        bank.advance(i_r, v, ocv, rt, dt, REFERENCE_C)
        delivered += i_r * dt / 3600.0
    else:
        raise SimulationError("block normalisation did not reach the end voltage")
    frac = end_at / trial_c0
    return blocks_with(rated_ah * cf / frac, None)


def build_string(n_blocks: int, block_type: BlockType, rated_ah: float, *, weak: int = 0,
                 seed: int = 0, ambient_c: float = 25.0, rated_hours: float = 10.0,
                 spread: bool = True) -> StringModel:
    """A string of ``n_blocks`` blocks of ``rated_ah`` (at the ``rated_hours`` rate, 25 C).

    Healthy blocks spread about +-3 % in capacity and +-4 % in resistance, sit in
    slightly warmer or colder places (sigma 0.7 C) and share the string's float
    voltage unevenly; ``weak`` blocks, at seeded random positions, keep 45-75 % of
    their capacity (lead-acid; chemistry-specific band) with resistance rising as
    capacity fades. ``spread=False`` makes every healthy block exactly nominal
    (for calibration). The same ``seed`` gives the same string.
    """
    if not 1 <= n_blocks <= 1000:
        raise SimulationError(f"{n_blocks} blocks is outside 1..1000")
    if not 0 <= weak <= n_blocks:
        raise SimulationError(f"{weak} weak blocks in a string of {n_blocks}")
    if not (math.isfinite(rated_ah) and 0.1 <= rated_ah <= 20000):
        raise SimulationError(f"rated capacity {rated_ah!r} Ah is outside 0.1..20000 Ah")
    if not (math.isfinite(rated_hours) and 0.1 <= rated_hours <= 100):
        raise SimulationError(f"rated_hours {rated_hours!r} is outside 0.1..100 h")
    p = chemistry_params(block_type.chemistry)
    rng = np.random.default_rng(seed)
    weak_idx = set(int(i) for i in rng.choice(n_blocks, size=weak, replace=False)) if weak else set()
    healthy_cf = np.clip(rng.normal(1.0, 0.015, n_blocks), 0.96, 1.04)
    weak_cf = rng.uniform(p.weak_band[0], p.weak_band[1], n_blocks)
    r_noise = rng.normal(0.0, 0.02, n_blocks)
    amb_off = rng.normal(0.0, 0.7, n_blocks)
    float_off = rng.normal(0.0, 0.010 * block_type.cells, n_blocks)
    float_off -= float_off.mean()  # the charger fixes the string voltage: deviations sum to zero
    if not spread:
        healthy_cf = np.ones(n_blocks)
        r_noise = np.zeros(n_blocks)
        amb_off = np.zeros(n_blocks)
        float_off = np.zeros(n_blocks)
    weak_flags = [i in weak_idx for i in range(n_blocks)]
    cf = np.where(weak_flags, weak_cf, healthy_cf)
    # ageing raises the resistance as the capacity fades (grid corrosion, dry-out)
    r_factor = np.maximum(1.0 + 3.0 * np.maximum(1.0 - cf, 0.0) + r_noise, 0.8)
    blocks = _make_blocks(p, block_type, rated_ah, rated_hours, cf, r_factor, weak_flags,
                          amb_off, float_off)
    return StringModel(block_type, rated_ah, rated_hours, ambient_c, blocks, seed)


# --------------------------------------------------------------------------- years on float

_SEASON_AMP_C = 5.0  # seasonal swing of a battery room around its mean, C (coldest in January)
_DAY_AMP_C = 1.5  # daily swing, C (warmest at 15:00)
_DAY_PEAK_H = 15.0
_WEATHER_SIGMA_C = 0.8  # slow random room-temperature excursions (weather, HVAC), C
_WEATHER_TAU_S = 12 * 3600.0
_NOISE_STEP_S = 3600.0  # the random excursions are generated hourly and interpolated
_FADE_AT_LIFE = 0.20  # capacity lost at the end of float life (80 % criterion)
_RES_RISE_AT_LIFE = 0.50  # resistance rise at the end of float life
_FADE_SHAPE = 1.5  # fade accelerates towards end of life (grid corrosion)


def float_years(block_type: BlockType, rated_ah: float, *, years: float, dt_s: float = 60.0,
                seed: int = 0, ambient_c: float = 25.0,
                discharges_per_year: float = 1.0) -> StringTrace:
    """One block over ``years`` on float charge, with outages, on a regular grid of ``dt_s``.

    The room follows a seasonal and a daily cycle plus slow random excursions;
    the block follows the room through its thermal time constant; the charger
    holds the temperature-compensated float voltage; the block ages (float life
    halves per ``life_halving_c`` above 20 C; each discharge costs its depth over
    the cycle life). Outages arrive at random (Poisson, ``discharges_per_year``),
    each a constant-current discharge between the 1-h and 8-h rate lasting
    minutes to hours (or until the end voltage), then a current-limited recharge
    back to float. The float part is computed on the whole time axis at once;
    the discharges and recharges are short stepped segments.

    ``current_a`` is positive while discharging and negative while recharging.
    ``load_on_s``/``load_off_s`` are the first discharge (NaN if none); all are in
    ``discharges``. ``truth`` is the block at the end of the run.
    """
    if not (math.isfinite(years) and 0 < years <= 30):
        raise SimulationError(f"years {years!r} is outside 0..30")
    if not (math.isfinite(dt_s) and 1.0 <= dt_s <= 86400.0):
        raise SimulationError(f"dt_s {dt_s!r} is outside 1 s .. 1 day")
    if not (math.isfinite(discharges_per_year) and 0 <= discharges_per_year <= 365):
        raise SimulationError(f"discharges_per_year {discharges_per_year!r} is outside 0..365")
    p = chemistry_params(block_type.chemistry)
    model = build_string(1, block_type, rated_ah, seed=seed, ambient_c=ambient_c)
    block0 = model.blocks[0]
    rng = np.random.default_rng([seed, 0x5EA5])
    n = round(years * SECONDS_PER_YEAR / dt_s) + 1
    t = np.arange(n, dtype=np.float64) * dt_s
    tau_th = block0.heat_j_per_k / block0.cooling_w_per_k

    # room: seasonal + daily sinusoids + hourly AR(1) excursions
    w_year, w_day = 2.0 * math.pi / SECONDS_PER_YEAR, 2.0 * math.pi / SECONDS_PER_DAY
    day_phase = 2.0 * math.pi * _DAY_PEAK_H / 24.0
    n_h = int(t[-1] // _NOISE_STEP_S) + 2
    rho = math.exp(-_NOISE_STEP_S / _WEATHER_TAU_S)
    shocks = rng.normal(0.0, _WEATHER_SIGMA_C * math.sqrt(1.0 - rho * rho), n_h)
    weather = np.empty(n_h)
    felt = np.empty(n_h)  # the weather as the block feels it, through its thermal RC
    a_th = 1.0 - math.exp(-_NOISE_STEP_S / tau_th)
    x = y = 0.0
    for i in range(n_h):  # ~88k hourly steps for 10 years: cheap, and keeps numpy-only
        weather[i] = x
        felt[i] = y
        y += a_th * (x - y)
        x = rho * x + shocks[i]
    t_h = np.arange(n_h, dtype=np.float64) * _NOISE_STEP_S
    ambient = (ambient_c - _SEASON_AMP_C * np.cos(w_year * t)
               + _DAY_AMP_C * np.cos(w_day * t - day_phase) + np.interp(t, t_h, weather))
    # block: a first-order RC passes a sinusoid with gain 1/sqrt(1+(w tau)^2) and lag atan(w tau)
    g_y, l_y = 1.0 / math.hypot(1.0, w_year * tau_th), math.atan(w_year * tau_th)
    g_d, l_d = 1.0 / math.hypot(1.0, w_day * tau_th), math.atan(w_day * tau_th)
    temp = (ambient_c + block0.ambient_offset_c - _SEASON_AMP_C * g_y * np.cos(w_year * t - l_y)
            + _DAY_AMP_C * g_d * np.cos(w_day * t - day_phase - l_d) + np.interp(t, t_h, felt))

    # ageing on float: life consumed per second doubles every life_halving_c above 20 C
    life_rate = np.exp2((temp - 20.0) / p.life_halving_c) / (p.float_life_years_20c * SECONDS_PER_YEAR)
    damage = np.cumsum(life_rate) * dt_s
    del life_rate

    volts = np.asarray(float_voltage(block_type, temp), dtype=np.float64)
    float_share = float(rng.normal(0.0, 0.010 * block_type.cells))
    volts += float_share
    amps = np.zeros(n)

    # outages: Poisson arrivals, at least 3 days apart so each recharge completes
    count = int(rng.poisson(discharges_per_year * years))
    starts = np.sort(rng.uniform(SECONDS_PER_DAY, max(t[-1] - 3 * SECONDS_PER_DAY, SECONDS_PER_DAY),
                                 count))
    kept: list[float] = []
    for s0 in starts:
        if not kept or s0 - kept[-1] >= 3 * SECONDS_PER_DAY:
            kept.append(float(s0))
    windows: list[DischargeWindow] = []
    cycle_damage = 0.0
    total_delivered = 0.0
    for s0 in kept:
        i0 = int(s0 // dt_s)
        if i0 >= n - 2:
            break
        hours_rate = float(rng.uniform(1.0, 8.0))
        current = rated_ah / hours_rate
        duration = float(np.clip(rng.exponential(1800.0), 120.0, 6 * 3600.0))
        d_now = float(damage[i0]) + cycle_damage
        cf, rf = _aged(block0, d_now)
        blk = _make_blocks(p, block_type, rated_ah, model.rated_hours, np.array([cf]),
                           np.array([rf]), [False], np.array([block0.ambient_offset_c]),
                           np.zeros(1))[0]
        i_end, delivered = _outage_segment(
            p, block_type, blk, rated_ah, current, duration, dt_s, i0, ambient, temp, volts, amps)
        windows.append(DischargeWindow(start_s=i0 * dt_s, end_s=(i0 + delivered[1] - 1) * dt_s,
                                       current_a=current, delivered_ah=delivered[0]))
        total_delivered += delivered[0]
        # a discharge costs its depth over the cycle life, as a fraction of the float life
        cycle_damage += delivered[0] / (rated_ah * cf) / p.full_cycles
        del i_end
    damage_end = float(damage[-1]) + cycle_damage
    cf_end, rf_end = _aged(block0, damage_end)
    truth = [BlockTruth(
        index=0, weak=cf_end < 0.8, capacity_factor=cf_end,
        resistance_mohm=p.r_ohm / rated_ah * rf_end * block_type.cells * 1000.0,
        capacity_ah_rated_rate=rated_ah * cf_end, time_to_end_s=None,
        delivered_ah=total_delivered,
    )]
    first = windows[0] if windows else None
    return StringTrace(
        t_s=t, current_a=amps, block_v=volts[None, :], block_temp_c=temp[None, :],
        load_on_s=first.start_s if first else math.nan,
        load_off_s=first.end_s if first else math.nan,
        truth=truth, ambient_c=ambient, discharges=windows,
    )


def _aged(block0: BlockParams, damage: float) -> tuple[float, float]:
    """Capacity and resistance factors after ``damage`` (1.0 = one float life used)."""
    d = max(damage, 0.0) ** _FADE_SHAPE
    cf = max(block0.capacity_factor * (1.0 - _FADE_AT_LIFE * d), 0.05)
    rf = block0.resistance_factor * (1.0 + _RES_RISE_AT_LIFE * d)
    return cf, rf


def _outage_segment(p: ChemistryParams, block_type: BlockType, blk: BlockParams, rated_ah: float,
                    current: float, duration_s: float, dt: float, i0: int, ambient: FloatArray,
                    temp: FloatArray, volts: FloatArray, amps: FloatArray) -> tuple[int, tuple[float, int]]:
    """Step one outage and its recharge into the float arrays, in place, from index ``i0``.

    Returns (index where the block is back on float, (delivered Ah, steps under load)).
    """
    n = volts.size
    cells = block_type.cells
    share = volts[i0] - float(np.asarray(float_voltage(block_type, temp[i0])))  # this block's float share
    bank = BlockBank(p, cells, [blk], rated_ah / 10.0)
    bank.temp = np.array([temp[i0]])
    bank.set_float(np.array([volts[i0]]))
    end_v = cells * p.end_v_cell
    i = i0
    delivered = 0.0
    max_load = max(round(duration_s / dt), 1)
    steps = 0
    while steps < max_load and i < n:
        v, ocv, rt = bank.voltages(current, dt)
        volts[i], temp[i], amps[i] = v[0], bank.temp[0], current
        i += 1
        steps += 1
        if v[0] <= end_v:  # the UPS disconnects at the end voltage
            break
        bank.advance(current, v, ocv, rt, dt, ambient[i - 1])
        delivered += current * dt / 3600.0
    # recharge: current-limited (0.1 C) until the float voltage is reached, then the
    # charger holds the float voltage and the current tapers as the block fills
    i_lim = 0.1 * rated_ah
    taper_tau = 1.5 * 3600.0
    cv_since: int | None = None
    limit = min(n, i + int(72 * 3600.0 / dt))
    while i < limit:
        # the charger's compensated float voltage at this block's present temperature
        v_float = share + block_type.cells * min(max(
            p.float_v_cell + p.float_comp_v_per_c * (float(bank.temp[0]) - REFERENCE_C),
            p.float_min_cell), p.float_max_cell)
        if cv_since is None:
            v, ocv, rt = bank.voltages(-i_lim, dt)
            if v[0] >= v_float:
                cv_since = i
        if cv_since is not None:
            i_ch = i_lim * math.exp(-(i - cv_since) * dt / taper_tau)
            _, ocv, rt = bank.voltages(-i_ch, dt)
            v = np.array([v_float])
            if bank.ah_out[0] <= 1e-3 * rated_ah or i_ch < 0.002 * rated_ah:
                break
        else:
            i_ch = i_lim
        volts[i], amps[i] = v[0], -i_ch
        bank.advance(-i_ch, v, ocv, rt, dt, ambient[i])
        temp[i] = bank.temp[0]
        i += 1
    # the float temperature resumes: let the self-heating difference decay with the block's RC
    if i < n:
        diff = float(bank.temp[0] - temp[i])
        m = min(n - i, int(5 * blk.heat_j_per_k / blk.cooling_w_per_k / dt) + 1)
        temp[i:i + m] += diff * np.exp(-np.arange(m) * dt * blk.cooling_w_per_k / blk.heat_j_per_k)
    return i, (delivered, steps)
