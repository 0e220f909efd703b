"""The library seams take data: the same function on bytes or text gives what the path
convenience gives, and the command line and the API share one function per job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartlogger.analysis.inputs import (
    metadata_from_values,
    parse_datasheet_csv,
    read_datasheet_csv,
    read_load_csv,
)
from smartlogger.cli import main
from smartlogger.errors import ConfigError, InputFileError
from smartlogger.export.adapters import (
    load_test_dir,
    logger_export_inputs,
    report_inputs_from_logfiles,
)
from smartlogger.export.chart_series import chart_series
from smartlogger.export.string_report import string_report_bytes
from smartlogger.logfile import read_logfile
from smartlogger.testing.api import simulated_logfiles

DATA = Path(__file__).resolve().parent / "data"
DATASHEET = DATA / "datasheet_synthetic_12v100.csv"


def test_a_datasheet_from_text_or_bytes_is_the_datasheet_from_its_file() -> None:
    from_file = read_datasheet_csv(DATASHEET)
    for data in (DATASHEET.read_bytes(), DATASHEET.read_text(encoding="utf-8")):
        sheet = parse_datasheet_csv(data, "upload.csv")
        assert sheet.values.tolist() == from_file.values.tolist()
        assert sheet.times_s.tolist() == from_file.times_s.tolist()
        assert sheet.end_v_per_cell.tolist() == from_file.end_v_per_cell.tolist()
    with pytest.raises(InputFileError) as err:
        parse_datasheet_csv(DATASHEET.read_text(encoding="utf-8").replace("10h", "10 fortnights"), "upload.csv")
    assert err.value.path == "upload.csv" and err.value.line == 7
    with pytest.raises(InputFileError, match="not UTF-8"):
        parse_datasheet_csv(b"end_v_per_cell,1h\n\xff", "upload.csv")


def test_a_load_profile_from_text_is_the_profile_from_its_file(tmp_path: Path) -> None:
    text = "# clamp meter\nt_s,current_a\n0,-20.5\n60,-20.1\n120,-19.8\n"
    path = tmp_path / "load.csv"
    path.write_text(text, encoding="utf-8")
    a, b = read_load_csv(path), read_load_csv(text.encode(), name="load.csv")
    assert a.amps.tolist() == b.amps.tolist() == [20.5, 20.1, 19.8]  # type: ignore[union-attr]
    assert a.t_s.tolist() == b.t_s.tolist()


def test_test_metadata_from_the_values_as_typed_or_stored() -> None:
    meta = metadata_from_values(load="50A", rated_time="2.5", datasheet=None, end_voltage="10.5V/block",
                                string_blocks=24, test_id="T9")
    assert meta.load.amps == 50.0 and meta.rated_time_s == 2.5 * 3600  # type: ignore[union-attr]
    assert meta.end_voltage is not None and meta.end_voltage.scope == "block"
    assert meta.string_blocks == 24 and meta.test_id == "T9"
    sheet = metadata_from_values(load="4.8kW", datasheet=DATASHEET.read_text(encoding="utf-8"),
                                 end_v_per_cell=1.8)
    assert sheet.datasheet is not None and sheet.load.watts == 4800.0  # type: ignore[union-attr]
    assert sheet.end_v_per_cell == 1.8
    with pytest.raises(ConfigError) as err:  # the quantity parser's error, naming the field
        metadata_from_values(load="50", end_voltage="about 1.8")
    assert err.value.field == "load"


@pytest.fixture(scope="module")
def pulls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    files = simulated_logfiles(3)
    folder = tmp_path_factory.mktemp("test")
    for data in files:
        (folder / f"{read_logfile(data).identity.serial}.slog").write_bytes(data)
    return folder, files


def test_a_test_report_from_bytes_is_the_report_from_the_folder(pulls: tuple[Path, list[bytes]]) -> None:
    folder, files = pulls
    by_folder = load_test_dir(folder)
    named = [(f"{read_logfile(d).identity.serial}.slog", d) for d in files]
    by_bytes = report_inputs_from_logfiles(named)
    assert by_bytes.outcome == by_folder.outcome
    assert [e.sha256 for e in by_bytes.evidence] == [e.sha256 for e in by_folder.evidence]
    assert [e.file for e in by_bytes.evidence] == [e.file for e in by_folder.evidence]
    data = string_report_bytes(by_bytes.outcome, by_bytes.series, exceedances=by_bytes.exceedances,
                               evidence=by_bytes.evidence)
    assert data[:4] == b"PK\x03\x04"
    one = logger_export_inputs(files[0])
    assert one.evidence.file == read_logfile(files[0]).identity.serial
    assert one.evidence.sha256 == hashlib.sha256(files[0]).hexdigest()


def test_logfile_series_on_the_command_line_is_the_api_series(pulls: tuple[Path, list[bytes]]) -> None:
    folder, files = pulls
    path = folder / f"{read_logfile(files[0]).identity.serial}.slog"
    want = chart_series(files[0], max_points=100).to_dict()
    r = CliRunner().invoke(main, ["logfile", "series", str(path), "--max-points", "100", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == want and want["reduced"] and len(want["t_ms"]) <= 100
    lo, hi = want["t_ms"][10], want["t_ms"][40]
    window = CliRunner().invoke(main, ["logfile", "series", str(path), "--from", str(lo), "--to", str(hi),
                                       "--json"])
    got = json.loads(window.output)
    assert got == chart_series(files[0], from_ms=lo, to_ms=hi).to_dict()
    assert got["from_ms"] == lo and all(lo <= t <= hi for t in got["t_ms"])
    text = CliRunner().invoke(main, ["logfile", "series", str(path), "--max-points", "10"])
    assert text.exit_code == 0 and text.output.splitlines()[1] == "time_utc,voltage_v,temperature_c"
    bad = CliRunner().invoke(main, ["logfile", "series", str(path), "--from", "yesterday"])
    assert bad.exit_code == 2 and "ISO-8601" in bad.output and "Traceback" not in bad.output
