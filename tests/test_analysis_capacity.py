"""K_T table, IEEE 450/1188 methods, SOH and ranking (smartlogger.analysis.capacity)."""

from __future__ import annotations

import pytest

from smartlogger.analysis import capacity as cap
from smartlogger.analysis.inputs import MetadataError


@pytest.mark.parametrize(("temp_c", "kt"), [
    # The four points of the third-party transcription quoted in issue 7; 15.6 C is 60 F
    # and 30 C is 86 F, rows of the table itself.
    ((60 - 32) * 5 / 9, 0.882), (20.0, 0.942), (25.0, 1.000), (30.0, 1.045),
])
def test_kt_matches_transcription(temp_c: float, kt: float) -> None:
    # 20 C is 68 F: a row of the table.
    assert float(cap.k_t(temp_c)[0]) == pytest.approx(kt, abs=5e-4)


def test_kt_interpolates_between_rows_and_rereferences() -> None:
    # 26 C = 78.8 F lies between 78 F (1.002) and 79 F (1.007).
    assert float(cap.k_t(26.0)[0]) == pytest.approx(1.002 + 0.8 * 0.005, abs=1e-6)
    # A rating at 20 C: K_T(20) becomes 1, K_T(25) = 1 / 0.942.
    assert float(cap.k_t(20.0, reference_c=20.0)[0]) == pytest.approx(1.0)
    assert float(cap.k_t(25.0, reference_c=20.0)[0]) == pytest.approx(1 / 0.942)


def test_kt_table_is_monotonic_and_out_of_range_is_an_error() -> None:
    values = [k for _, k in cap.K_T_TABLE_F]
    assert values == sorted(values)
    with pytest.raises(MetadataError, match="outside the K_T table"):
        cap.k_t(-10.0)


def test_time_adjusted_method() -> None:
    # IEEE 450 worked shape: 2 h 30 min on a 3 h rating at 20 C (K_T 0.942).
    pct = float(cap.time_adjusted_pct(2.5 * 3600, 3 * 3600, 0.942).item())
    assert pct == pytest.approx(2.5 / (3 * 0.942) * 100)
    with pytest.raises(MetadataError):
        cap.time_adjusted_pct(1.0, 0.0, 1.0)


def test_rate_adjusted_and_soh() -> None:
    assert float(cap.rate_adjusted_pct(100.0, 125.0, 1.0).item()) == pytest.approx(80.0)
    assert float(cap.soh_pct(72.0, 90.0).item()) == pytest.approx(80.0)


def test_ranking_puts_measured_blocks_first_then_lowest_end_voltage() -> None:
    ranks = cap.rank_blocks(
        [90.0, 75.0, 95.0, 95.0, None],
        [True, True, False, False, True],
        [0.99, 0.98, 1.05, 1.02, None],
    )
    assert ranks == [2, 1, 4, 3, None]


def test_trapezoid_ah() -> None:
    import numpy as np

    t = np.array([0.0, 1800.0, 3600.0])
    assert cap.trapezoid_ah(t, np.array([10.0, 10.0, 20.0])) == pytest.approx(12.5)
