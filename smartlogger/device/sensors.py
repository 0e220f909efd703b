"""The logger's measurement chain: true block signal in, quantised ADC readings out.

Owns the signal-source seam (``SignalSource``: what the block "really" does, e.g.
one block of a simulated ``StringTrace`` or a replayed CSV trace), the trace
source that interpolates a recorded/simulated grid, and the ``Sensor`` model of
one logger's voltage and temperature channels (gain and offset error, ADC noise,
quantisation to 1 mV and 0.1 C, clipping to the measuring range).
Does not own when samples are taken (``device.firmware``) or the battery
physics (``device.battery``).

Noise is *counter-based*: the noise of a reading is a pure function of the
logger's seed and the oscillator time of the reading (ms since power-on). The
firmware relies on this to recompute any past reading exactly (pre-trigger
buffer, skipping quiet stretches of a 10-year run) without storing it.
The noise is Irwin-Hall distributed (sum of four uniforms): close to Gaussian
but bounded at +/-3.47 sigma, like a real ADC's noise floor, so a bound on the
true signal gives a hard bound on the reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from smartlogger.errors import SimulationError
from smartlogger.model import TEMPERATURE_RANGE_DC, BlockType

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Irwin-Hall(4) noise is bounded at 2*sqrt(3) standard deviations.
NOISE_BOUND_SIGMA = 2.0 * math.sqrt(3.0)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@runtime_checkable
class SignalSource(Protocol):
    """The true voltage and temperature of one block as functions of true time.

    ``at`` must be deterministic; ``envelope`` must bound ``at`` over the closed
    interval (the firmware skips stretches whose envelope cannot trigger anything).
    """

    @property
    def t_end_s(self) -> float:
        """True seconds of the last point the source knows (held constant afterwards)."""
        ...

    def at(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(volts, degrees C) at true seconds ``t_s``."""
        ...

    def envelope(self, t0_s: float, t1_s: float) -> tuple[float, float, float, float]:
        """(v_min, v_max, c_min, c_max) over ``[t0_s, t1_s]``."""
        ...


class TraceSource:
    """A block signal given on a time grid (regular or not), linearly interpolated.

    ``t_s`` must be non-decreasing; before the first point and after the last one
    the end values are held. ``jumps``: ``(instant, next grid time, value just after)``
    where the voltage steps at once (a load switched at ``instant``): between the two
    times the value runs from the value just after to the next grid value, instead of
    ramping over the whole interval (a load step is instantaneous, not a 1-s ramp).
    """

    def __init__(self, t_s: npt.ArrayLike, volts: npt.ArrayLike, temp_c: npt.ArrayLike,
                 jumps: Sequence[tuple[float, float, float]] = ()) -> None:
        t = np.asarray(t_s, dtype=np.float64)
        v = np.asarray(volts, dtype=np.float64)
        c = np.asarray(temp_c, dtype=np.float64)
        if t.ndim != 1 or t.shape != v.shape or t.shape != c.shape or t.size == 0:
            raise SimulationError(
                f"trace arrays must be equal-length, non-empty 1-D (t {t.shape}, v {v.shape}, c {c.shape})"
            )
        if np.any(np.diff(t) < 0):
            raise SimulationError("trace time must be non-decreasing")
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
            raise SimulationError("trace voltage/temperature contain NaN or infinity")
        for a, b, _ in jumps:
            if not a < b:
                raise SimulationError(f"a jump's instant {a} must come before its next grid time {b}")
        self.t_s = t
        self.volts = v
        self.temp_c = c
        self.jumps = [(float(a), float(b), float(x), float(np.interp(b, t, v))) for a, b, x in jumps]

    @property
    def t_end_s(self) -> float:
        return float(self.t_s[-1])

    def at(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        v = np.interp(t_s, self.t_s, self.volts)
        for a, b, after, nxt in self.jumps:
            m = (t_s > a) & (t_s < b)
            if m.any():
                v = np.where(m, after + (nxt - after) * (t_s - a) / (b - a), v)
        return v, np.interp(t_s, self.t_s, self.temp_c)

    def envelope(self, t0_s: float, t1_s: float) -> tuple[float, float, float, float]:
        # Linear interpolation: the extremes over an interval are at its ends or
        # at grid points inside it (and at the values just after a jump inside it).
        i0 = int(np.searchsorted(self.t_s, t0_s, side="right"))
        i1 = int(np.searchsorted(self.t_s, t1_s, side="left"))
        ends = np.array([t0_s, t1_s])
        v_ends, c_ends = self.at(ends)
        v_in = np.concatenate((self.volts[i0:i1], [x for a, b, x, _ in self.jumps if a < t1_s and b > t0_s]))
        c_in = self.temp_c[i0:i1]
        vmin = min(float(v_in.min()), float(v_ends.min())) if v_in.size else float(v_ends.min())
        vmax = max(float(v_in.max()), float(v_ends.max())) if v_in.size else float(v_ends.max())
        if c_in.size:
            return (vmin, vmax, min(float(c_in.min()), float(c_ends.min())), max(float(c_in.max()), float(c_ends.max())))
        return vmin, vmax, float(c_ends.min()), float(c_ends.max())


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The splitmix64 finaliser: a fast, well-mixed 64-bit hash (vectorised, wraps mod 2**64)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return z ^ (z >> np.uint64(31))


def counter_noise(seed: int, channel: int, counter: IntArray) -> FloatArray:
    """Unit-variance, zero-mean noise that depends only on (seed, channel, counter).

    Irwin-Hall(4) of the four 16-bit lanes of one 64-bit hash; bounded by
    ``NOISE_BOUND_SIGMA``.
    """
    key = np.uint64((seed * 0x2545F4914F6CDD1D + channel * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF)
    h = _splitmix64(counter.astype(np.uint64) ^ key)
    lanes = (
        (h & np.uint64(0xFFFF)).astype(np.float64)
        + ((h >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.float64)
        + ((h >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.float64)
        + (h >> np.uint64(48)).astype(np.float64)
    )
    # Each lane is uniform on 0..65535: mean 32767.5, variance (65536**2 - 1) / 12.
    return (lanes - 4 * 32767.5) / math.sqrt(4 * (65536.0**2 - 1) / 12.0)


@dataclass(frozen=True)
class SensorErrors:
    """One logger's calibration errors (fixed for its life) and noise levels."""

    v_gain: float  # multiplicative, e.g. 1.002 = reads 0.2 % high
    v_offset_mv: float  # additive, mV
    v_noise_mv: float  # noise standard deviation, mV
    t_gain: float
    t_offset_dc: float  # additive, tenths of a degree C
    t_noise_dc: float  # noise standard deviation, tenths of a degree C


class Sensor:
    """The voltage and temperature channels of one logger on one block class.

    Accuracy budget (voltage): gain error within +/-0.25 %, offset within
    +/-0.1 % of the class nominal, noise sigma 0.008 % of the class nominal
    (at least 0.5 mV) bounded at 3.47 sigma, quantisation 1 mV: the worst case
    stays inside 0.5 % of the reading anywhere in the measuring range.
    Temperature: gain within +/-0.5 %, offset within +/-0.5 C, noise sigma 0.03 C,
    quantisation 0.1 C, clipped to the -35..+85 C sensor range.
    """

    def __init__(self, block_type: BlockType, errors: SensorErrors, *, seed: int = 0) -> None:
        self.block_type = block_type
        self.errors = errors
        self.seed = seed
        self.range_mv = block_type.measuring_range_mv

    @classmethod
    def seeded(cls, block_type: BlockType, seed: int) -> Sensor:
        """A logger with calibration errors drawn from ``seed`` (reproducible)."""
        rng = np.random.default_rng([seed, 0x5E50])
        nominal = block_type.measuring_class_mv
        errors = SensorErrors(
            v_gain=1.0 + float(rng.uniform(-0.0025, 0.0025)),
            v_offset_mv=float(rng.uniform(-0.001, 0.001)) * nominal,
            v_noise_mv=max(0.5, 8e-5 * nominal),
            t_gain=1.0 + float(rng.uniform(-0.005, 0.005)),
            t_offset_dc=float(rng.uniform(-5.0, 5.0)),
            t_noise_dc=0.3,
        )
        return cls(block_type, errors, seed=seed)

    @classmethod
    def ideal(cls, block_type: BlockType) -> Sensor:
        """A perfect sensor (quantisation and clipping only): used for replaying recorded traces."""
        return cls(block_type, SensorErrors(1.0, 0.0, 0.0, 1.0, 0.0, 0.0))

    def measure(self, volts: FloatArray, temp_c: FloatArray, counter: IntArray) -> tuple[IntArray, IntArray]:
        """Readings (mV, dC) for true values taken at oscillator times ``counter`` (ms since power-on)."""
        e = self.errors
        mv = volts * 1000.0 * e.v_gain + e.v_offset_mv
        dc = temp_c * 10.0 * e.t_gain + e.t_offset_dc
        if e.v_noise_mv:
            mv = mv + e.v_noise_mv * counter_noise(self.seed, 1, counter)
        if e.t_noise_dc:
            dc = dc + e.t_noise_dc * counter_noise(self.seed, 2, counter)
        lo, hi = self.range_mv
        mv_q = np.clip(np.rint(mv), lo, hi).astype(np.int64)
        dc_q = np.clip(np.rint(dc), TEMPERATURE_RANGE_DC[0], TEMPERATURE_RANGE_DC[1]).astype(np.int64)
        return mv_q, dc_q

    def bounds(self, v_min: float, v_max: float, c_min: float, c_max: float) -> tuple[int, int, int, int]:
        """Hard bounds (mV lo, mV hi, dC lo, dC hi) on readings of true values in the given ranges."""
        e = self.errors
        gains_v = sorted((v_min * 1000.0 * e.v_gain, v_max * 1000.0 * e.v_gain))
        gains_t = sorted((c_min * 10.0 * e.t_gain, c_max * 10.0 * e.t_gain))
        nv = e.v_noise_mv * NOISE_BOUND_SIGMA
        nt = e.t_noise_dc * NOISE_BOUND_SIGMA
        lo, hi = self.range_mv
        tlo, thi = TEMPERATURE_RANGE_DC
        mv_lo = min(max(math.floor(gains_v[0] + e.v_offset_mv - nv) - 1, lo), hi)
        mv_hi = min(max(math.ceil(gains_v[1] + e.v_offset_mv + nv) + 1, lo), hi)
        dc_lo = min(max(math.floor(gains_t[0] + e.t_offset_dc - nt) - 1, tlo), thi)
        dc_hi = min(max(math.ceil(gains_t[1] + e.t_offset_dc + nt) + 1, tlo), thi)
        return mv_lo, mv_hi, dc_lo, dc_hi
