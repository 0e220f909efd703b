"""A real lead-acid constant-current discharge, replayed and checked against an independent
reference (public data that is NOT redistributed).

Data: github.com/vmehra813/lead_acid_battery_data, file
"Dropbox (MIT)/ulink_matlab/100Ah/Batt_IV_Data_100Ah_071116_FINAL_VM_ACM.xlsx": a full
charge/discharge cycle of a Universal UB121000 12 V 100 Ah lead-acid battery, 5 s samples of
terminal voltage, battery temperature and current (July 2016). The repository has no licence,
so no excerpt is committed; ``find_workbook`` reads it from ``$SMARTLOGGER_LEADACID_XLSX`` or a
local mirror of that repository and gives None when neither is there (docs/CAPACITY.md, "Real
measured data").

What is measured: voltage and temperature throughout. The current column during the discharge
is the constant 10 A setpoint entered by formula ("=-10"), starting 14.75 min before the voltage
shows the load. The independent reference therefore takes the load interval from the raw voltage
step (load on) and the last labelled 10 A row (the next row's voltage jumps back up), and
integrates the labelled current over it by the trapezoid rule on the raw time stamps.

Used by tests/test_analysis_realdata.py and benchmarks/validation.py.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import BlockLog, ConstantCurrent, TestMetadata
from smartlogger.model import BlockType, Generation, LoggerConfig, LoggerIdentity

MIRROR = Path("/work/.mirror/vmehra813+lead_acid_battery_data/repo/.git")
XLSX_PATH = "Dropbox (MIT)/ulink_matlab/100Ah/Batt_IV_Data_100Ah_071116_FINAL_VM_ACM.xlsx"
SOURCE = "github.com/vmehra813/lead_acid_battery_data (no licence: not redistributed)"


def find_workbook(tmp: Path) -> Path | None:
    """The workbook: ``$SMARTLOGGER_LEADACID_XLSX``, else a local mirror (written into ``tmp``)."""
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


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """Time (ms), labelled current (A, charge positive), voltage (V) and battery temperature (C)."""
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


def reference(cols: dict[str, np.ndarray]) -> tuple[int, int, float]:
    """(load-on index, last loaded index, trapezoid Ah) of the independent reference."""
    t, cur, v = cols["t_ms"], cols["current_a"], cols["volts"]
    labelled = np.nonzero(cur < 0)[0]
    first, last = int(labelled[0]), int(labelled[-1])
    on = first + 1 + int(np.argmin(np.diff(v[first:last + 1])))
    ah = float(np.trapezoid(-cur[on:last + 1], t[on:last + 1] / 1000.0)) / 3600.0
    return on, last, ah


def analyse(cols: dict[str, np.ndarray]) -> Any:
    """The analysis of the real discharge as a replayed logger's log: voltage and temperature
    only, the load stated as 10 A, an end voltage below the load bank's 10.45 V cut-off."""
    ident = LoggerIdentity("REPLAY-UB121000", Generation.GEN2, "replay", replayed=True)
    cfg = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0).with_changes(block_position=1)
    log = BlockLog(ident, cfg, cols["t_ms"], np.round(cols["volts"] * 1000).astype(np.int32),
                   np.round(cols["temp_c"] * 10).astype(np.int16), source="vmehra813/lead_acid_battery_data")
    return analyze_test([log], TestMetadata(ConstantCurrent(10.0), end_v_per_cell=1.70))


def replay_and_compare(cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """The validation row of the real discharge (as ``benchmarks/validation.py`` reports cases)."""
    on, last, ref_ah = reference(cols)
    r = analyse(cols)
    d = r.discharge
    t = cols["t_ms"]
    return {"case": "real_ub121000_10A", "end_reason": d.end_reason, "start_method": d.start_method,
            "end_method": d.end_method, "ah": round(d.delivered_ah, 4), "ah_truth": round(ref_ah, 4),
            "ah_error_pct": round(100.0 * (d.delivered_ah / ref_ah - 1.0), 3),
            "start_error_s": round((d.start_ms - int(t[on])) / 1000.0, 3),
            "end_error_s": round((d.end_ms - int(t[last])) / 1000.0, 3),
            "resistance_errors_pct": [], "source": SOURCE}
