"""Replay of a real lead-acid constant-current discharge (public data, not redistributed).

Data: github.com/vmehra813/lead_acid_battery_data, file
"Dropbox (MIT)/ulink_matlab/100Ah/Batt_IV_Data_100Ah_071116_FINAL_VM_ACM.xlsx": a full
charge/discharge cycle of a Universal UB121000 12 V 100 Ah lead-acid battery, 5 s samples
of terminal voltage, battery temperature and current (July 2016). The repository has no
licence, so no excerpt is committed here; this test reads the workbook from
``$SMARTLOGGER_LEADACID_XLSX`` or from a local mirror of that repository, and is skipped
when neither is available (see docs/CAPACITY.md, "Real data").

What is measured there: voltage and temperature throughout. The current column during the
discharge is the constant 10 A setpoint entered by formula ("=-10"), and it starts 14.75
min before the voltage shows the load. The independent reference below therefore takes the
load interval from the raw voltage step (load on) and the last labelled 10 A row (the next
row's voltage jumps back up), and integrates the labelled current over it by the
trapezoid rule on the raw timestamps.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import BlockLog, ConstantCurrent, TestMetadata
from smartlogger.model import BlockType, Generation, LoggerConfig, LoggerIdentity

MIRROR = Path("/work/.mirror/vmehra813+lead_acid_battery_data/repo/.git")
XLSX_PATH = "Dropbox (MIT)/ulink_matlab/100Ah/Batt_IV_Data_100Ah_071116_FINAL_VM_ACM.xlsx"


def _workbook(tmp: Path) -> Path | None:
    env = os.environ.get("SMARTLOGGER_LEADACID_XLSX")
    if env and Path(env).is_file():
        return Path(env)
    if MIRROR.is_dir():
        out = tmp / "ub121000.xlsx"
        blob = subprocess.run(["git", f"--git-dir={MIRROR}", "show", f"HEAD:{XLSX_PATH}"],
                              capture_output=True, check=False)
        if blob.returncode == 0 and blob.stdout[:2] == b"PK":
            out.write_bytes(blob.stdout)
            return out
    return None


@pytest.fixture(scope="module")
def columns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    path = _workbook(tmp_path_factory.mktemp("realdata"))
    if path is None:
        pytest.skip("real lead-acid workbook not available (set SMARTLOGGER_LEADACID_XLSX)")
    import warnings

    import openpyxl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the workbook uses an extension openpyxl does not read
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        rows = list(wb["Calibrated Data"].iter_rows(min_row=2, values_only=True))
        wb.close()
    return {
        "t_ms": np.array([round(r[0].replace(tzinfo=UTC).timestamp() * 1000) for r in rows], dtype=np.int64),
        "current_a": np.array([r[5] for r in rows], dtype=np.float64),
        "volts": np.array([r[8] for r in rows], dtype=np.float64),
        "temp_c": np.array([r[11] for r in rows], dtype=np.float64),
    }


def test_replayed_discharge_delivered_ah_matches_trapezoid(columns: dict[str, np.ndarray]) -> None:
    t, cur, v = columns["t_ms"], columns["current_a"], columns["volts"]
    # Independent reference: load on = the largest voltage drop inside the labelled
    # discharge rows, load off = the last labelled row.
    labelled = np.nonzero(cur < 0)[0]
    first, last = int(labelled[0]), int(labelled[-1])
    on = first + 1 + int(np.argmin(np.diff(v[first:last + 1])))
    assert v[on - 1] - v[on] > 0.1 and v[last + 1] - v[last] > 0.3  # the steps are really there
    ref_ah = float(np.trapezoid(-cur[on:last + 1], t[on:last + 1] / 1000.0)) / 3600.0

    ident = LoggerIdentity("REPLAY-UB121000", Generation.GEN2, "replay", replayed=True)
    cfg = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0).with_changes(block_position=1)
    log = BlockLog(ident, cfg, t, np.round(v * 1000).astype(np.int32),
                   np.round(columns["temp_c"] * 10).astype(np.int16), source="vmehra813/lead_acid_battery_data")
    # The load was cut at 10.45 V (1.742 V/cell): an end voltage below that makes the
    # discharge end where the load was removed, as in the reference.
    r = analyze_test([log], TestMetadata(ConstantCurrent(10.0), end_v_per_cell=1.70))
    assert r.markers == ["REPLAYED"]
    assert r.discharge.end_reason == "load_removed"
    assert abs(r.discharge.start_ms - t[on]) <= 5000
    assert abs(r.discharge.end_ms - t[last]) <= 5000
    print(f"replay: analysis {r.discharge.delivered_ah:.3f} Ah, trapezoid reference {ref_ah:.3f} Ah")
    assert r.discharge.delivered_ah == pytest.approx(ref_ah, rel=0.01)
    b = r.blocks[0]
    assert b.delivered_ah == pytest.approx(ref_ah, rel=0.01)
    assert b.min_voltage_v == pytest.approx(float(v[on:last + 1].min()), abs=0.01)
    assert b.clock.uncertainty_ms is None  # no tap/pull: the recorder's clock is the time base
    assert b.temperature_c == pytest.approx(float(columns["temp_c"][on:on + 12].mean()), abs=0.2)
