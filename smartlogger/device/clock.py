"""The logger's real-time clock on virtual time.

Owns the mapping between *true* time (seconds since the start of a simulation,
the ground truth the battery model runs on) and *device* time (ms since the Unix
epoch as the logger's RTC reads it). Does not own what is logged when the clock
is set (``device.firmware`` logs the ``ClockSet`` record).

Model: the logger's crystal oscillator runs ``drift_ppm`` fast (positive) or slow
(negative); it counts *oscillator ms* since power-on. The RTC reads
``base_ms + oscillator_ms``. Setting the clock (from the phone at the NFC tap)
changes ``base_ms`` only; the oscillator keeps counting, so the sampling grid of
the firmware (ticks of the oscillator) is not disturbed by a clock set.
"""

from __future__ import annotations

import math

import numpy as np

from smartlogger.errors import SimulationError

#: Crystal tolerance of the logger's RTC (ppm), the bound for seeded drift.
MAX_DRIFT_PPM = 50.0

#: Seeded factory offset bound: how wrong an RTC can be before the first NFC tap (ms).
MAX_FACTORY_OFFSET_MS = 300_000

#: 2026-01-01T00:00:00Z, the default factory time of simulated loggers (ms since epoch).
DEFAULT_EPOCH_MS = 1_767_225_600_000


class Rtc:
    """One logger's real-time clock (see module docstring for the model)."""

    def __init__(self, *, base_ms: int = DEFAULT_EPOCH_MS, drift_ppm: float = 0.0) -> None:
        if not -1000.0 <= drift_ppm <= 1000.0:
            raise SimulationError(f"RTC drift {drift_ppm} ppm is outside +/-1000 ppm")
        self.base_ms = int(base_ms)
        self.drift_ppm = float(drift_ppm)
        self._rate = 1.0 + self.drift_ppm * 1e-6  # oscillator ms per true ms

    @classmethod
    def seeded(cls, seed: int, *, epoch_ms: int = DEFAULT_EPOCH_MS) -> Rtc:
        """A clock with its own drift (within +/-50 ppm) and factory offset, drawn from ``seed``."""
        rng = np.random.default_rng([seed, 0xC10C])
        drift = float(np.clip(rng.normal(0.0, 20.0), -MAX_DRIFT_PPM, MAX_DRIFT_PPM))
        offset = int(rng.integers(-MAX_FACTORY_OFFSET_MS, MAX_FACTORY_OFFSET_MS + 1))
        return cls(base_ms=epoch_ms + offset, drift_ppm=drift)

    def oscillator_ms(self, true_s: float) -> float:
        """Oscillator ms since power-on (power-on is true time 0)."""
        return true_s * 1000.0 * self._rate

    def true_s(self, oscillator_ms: np.ndarray) -> np.ndarray:
        """True seconds at which the oscillator reads ``oscillator_ms`` (vectorised)."""
        return np.asarray(oscillator_ms, dtype=np.float64) / (1000.0 * self._rate)

    def device_ms(self, true_s: float) -> int:
        """What the RTC reads at true time ``true_s`` (ms since epoch)."""
        return self.base_ms + math.floor(self.oscillator_ms(true_s))

    def set(self, new_ms: int, true_s: float) -> int:
        """Set the RTC to ``new_ms`` at true time ``true_s``; returns the reading it replaced."""
        old = self.device_ms(true_s)
        self.base_ms = int(new_ms) - math.floor(self.oscillator_ms(true_s))
        return old
