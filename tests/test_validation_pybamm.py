"""The analysis against an independent physics model (PyBaMM's lead-acid model; the committed
traces in tests/data/pybamm/, no PyBaMM needed): every case replayed through the firmware, one
logger per block sampling out of step with the others, analysed as a technician would, and
compared with the model's delivered Ah, load-on/off instants and step resistances. The goals
are the issue's (benchmarks/validation.py reports the same numbers, with the real discharge)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from smartlogger.analysis.analyze import analyze_test

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module, without putting benchmarks/ on sys.path (its nfc.py would
    shadow nfcpy for the rest of the test run)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


validation = _load_benchmark("validation")

TRUTH = json.loads((validation.DATA / "truth.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_case_matches_the_model(name: str) -> None:
    case: dict[str, Any] = TRUTH[name]
    logs, meta = validation.replay_case(validation.DATA, case)
    r = analyze_test(logs, meta)
    row = validation.compare(case, r)
    assert abs(row["ah_error_pct"]) <= 1.0, row
    assert abs(row["start_error_s"]) <= 60.0 and abs(row["end_error_s"]) <= 60.0, row
    assert row["interruptions"] == row["interruptions_truth"], row
    assert r.discharge.start_method == "voltage_step", row  # not the threshold, not the events
    assert r.discharge.end_reason == "end_voltage", row  # the load bank's cut-off at the end voltage
    assert all(abs(e) <= 10.0 for e in row["resistance_errors_pct"]), row
    if name in ("c20_rest", "c1_rest", "c5_rest_pause"):
        assert len(row["resistance_errors_pct"]) >= 3, row  # every block's load-on at least


def test_validation_benchmark_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    sys.argv = ["validation.py", "--case", "c1_rest"]
    validation.main()
    out = json.loads(capsys.readouterr().out)
    assert out["cases"] == 1 and out["cases_refused"] == [] and out["ah_error_pct_max"] <= 1.0
