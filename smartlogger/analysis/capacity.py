"""Capacity arithmetic: temperature correction, IEEE 450 / IEEE 1188 methods, SOH, ranking.

Owns:
- ``K_T_TABLE``: the temperature correction factors of IEEE 450 Table 1 (vented
  lead-acid, reference 25 C / 77 F), also used by IEEE 1188 for VRLA, and ``k_t``
  interpolating it (and re-referencing it for ratings at 20 C).
- ``time_adjusted_pct``: % capacity = t_actual / (t_rated x K_T) x 100.
- ``rate_adjusted_pct``: % capacity = rate_actual / (rate_rated(t_actual) x K_T) x 100,
  for tests shorter than about an hour, where the rated rate for the actual
  discharge time comes from the datasheet.
- ``soh_pct``: delivered Ah / (Ah a new block delivers at this rate and temperature).
- ``rank_blocks``: weakest first.

Sources and the exact wording of every formula are in docs/CAPACITY.md.
Does not own the load, the grid or the discharge detection.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.inputs import MetadataError

FloatArray = npt.NDArray[np.float64]

#: IEEE 450 Table 1 "temperature correction factors K_T" as (electrolyte temperature F, K_T),
#: reference 77 F (25 C) = 1.000. Transcribed from the table as reproduced in the
#: open-source DC-Battery-Testing calculator (github.com/ReaganCuthbert/DC-Battery-Testing,
#: lib/charts/KTChart.js); it agrees with the independent transcription in issue 7 at
#: 15.6 C 0.882, 20 C 0.942, 25 C 1.000, 30 C 1.045. See docs/CAPACITY.md.
K_T_TABLE_F: tuple[tuple[float, float], ...] = (
    (40, 0.670), (45, 0.735), (50, 0.790), (55, 0.840), (60, 0.882), (65, 0.920),
    (66, 0.927), (67, 0.935), (68, 0.942), (69, 0.948), (70, 0.955), (71, 0.960),
    (72, 0.970), (73, 0.975), (74, 0.980), (75, 0.986), (76, 0.990), (77, 1.000),
    (78, 1.002), (79, 1.007), (80, 1.011), (81, 1.017), (82, 1.023), (83, 1.030),
    (84, 1.035), (85, 1.040), (86, 1.045), (87, 1.050), (88, 1.055), (89, 1.060),
    (90, 1.065), (95, 1.090), (100, 1.112), (105, 1.140), (110, 1.162), (115, 1.183),
    (120, 1.210),
)
_KT_C = np.array([(f - 32.0) * 5.0 / 9.0 for f, _ in K_T_TABLE_F])
_KT_V = np.array([k for _, k in K_T_TABLE_F])

#: Temperature range of the table (C): about 4.4 .. 48.9 C.
K_T_RANGE_C = (float(_KT_C[0]), float(_KT_C[-1]))
#: Tests shorter than this use the rate-adjusted method (s); IEEE 450 recommends
#: the rate-adjusted method for tests of less than 1 h.
RATE_ADJUSTED_BELOW_S = 3600.0
#: Blocks below this % capacity are flagged for replacement (PRODUCT.md: "commonly
#: replaced when its capacity falls below 80 % of rated"; IEEE 450 replacement criterion).
REPLACE_BELOW_PCT = 80.0


def k_t(temperature_c: float | FloatArray, reference_c: float = 25.0) -> FloatArray:
    """K_T at ``temperature_c`` (C), linear between table rows, for a rating at ``reference_c``.

    For a rating at 25 C this is the table; for another rating temperature (EUROBAT
    datasheets: 20 C) the table is re-referenced, K_T(T) / K_T(reference).
    Temperatures outside the table raise ``MetadataError``.
    """
    t = np.atleast_1d(np.asarray(temperature_c, dtype=np.float64))
    lo, hi = K_T_RANGE_C
    bad = ~((t >= lo - 1e-9) & (t <= hi + 1e-9))
    if bad.any():
        raise MetadataError(
            "temperature",
            f"{float(t[bad][0]):.1f} C is outside the K_T table ({lo:.1f}..{hi:.1f} C)",
        )
    if not lo <= reference_c <= hi:
        raise MetadataError("reference_temperature_c", f"{reference_c} C is outside the K_T table")
    ref = float(np.interp(reference_c, _KT_C, _KT_V))
    return np.asarray(np.interp(t, _KT_C, _KT_V) / ref, dtype=np.float64)


def time_adjusted_pct(t_actual_s: float | FloatArray, t_rated_s: float,
                      kt: float | FloatArray) -> FloatArray:
    """IEEE 450 time-adjusted method: % capacity = t_a / (t_s x K_T) x 100."""
    if not t_rated_s > 0:
        raise MetadataError("rated_time", f"{t_rated_s!r} s must be positive")
    return np.asarray(np.asarray(t_actual_s, dtype=np.float64) / (t_rated_s * np.asarray(kt)) * 100.0)


def rate_adjusted_pct(rate_actual: float | FloatArray, rate_rated: float | FloatArray,
                      kt: float | FloatArray) -> FloatArray:
    """Rate-adjusted method: % capacity = rate_actual / (rate_rated(t_actual) x K_T) x 100.

    ``rate_rated`` is the datasheet rate (A or W) for which a new battery lasts
    exactly the actual discharge time; ``rate_actual`` is the rate the block carried.
    """
    return np.asarray(np.asarray(rate_actual, dtype=np.float64) / (np.asarray(rate_rated) * np.asarray(kt)) * 100.0)


def soh_pct(delivered_ah: float | FloatArray, rated_ah_at_rate: float | FloatArray) -> FloatArray:
    """State of health: delivered Ah / Ah of a new block at this rate and temperature x 100."""
    return np.asarray(np.asarray(delivered_ah, dtype=np.float64) / np.asarray(rated_ah_at_rate) * 100.0)


def rank_blocks(capacity_pct: list[float | None], reached: list[bool],
                end_voltage_v: list[float | None]) -> list[int | None]:
    """Rank 1 = weakest. Blocks that reached their end voltage come first, by % capacity;
    then the blocks that outlasted the discharge (their % is only a lower bound), by
    their voltage at the discharge end relative to their end voltage, lowest first.
    Blocks without a % capacity get no rank."""
    keyed = []
    for i, (pct, done, v) in enumerate(zip(capacity_pct, reached, end_voltage_v, strict=True)):
        if pct is None or not math.isfinite(pct):
            continue
        if done:
            keyed.append(((0, pct), i))
        else:
            keyed.append(((1, v if v is not None and math.isfinite(v) else math.inf), i))
    ranks: list[int | None] = [None] * len(capacity_pct)
    for r, (_, i) in enumerate(sorted(keyed), start=1):
        ranks[i] = r
    return ranks


def trapezoid_ah(t_s: FloatArray, current_a: FloatArray) -> float:
    """Charge (Ah) of a current (A) sampled at times (s), by the trapezoid rule."""
    if t_s.size < 2:
        return 0.0
    return float(np.sum((current_a[1:] + current_a[:-1]) * np.diff(t_s)) / 2.0 / 3600.0)
