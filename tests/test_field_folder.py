"""A test folder as it is lived: repeated and partial pulls, damaged and foreign files, one place
for the test's metadata and result.

The pulls go through the real field code (bleak on Bumble virtual controllers) against
firmware loggers that keep logging between pulls, on virtual time.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis.loading import load_test_files
from smartlogger.analysis.results import to_dict
from smartlogger.cli import main
from smartlogger.device.sim import prepare_string_test
from smartlogger.testinfo import TestInfo
from smartlogger.testing.field import pull_all, run_to

BLOCKS = 3


@pytest.fixture(scope="module")
def pulls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A string pulled during the test (incremental), at the end, again (nothing new), and once
    more in full into another folder; an interrupted pull resumed."""
    prepared = prepare_string_test(BLOCKS, weak=1, load="25A", seed=11, test_id="FOLDER-1")
    prepared.tap_all()
    end = float(prepared.trace.t_s[-1])
    inc = tmp_path_factory.mktemp("incremental")
    run_to(prepared, end * 0.6)
    first = pull_all(prepared, inc)
    run_to(prepared, end)
    # The second pull of logger 1 drops mid-transfer and gives up: the folder keeps what came.
    dropped = pull_all(prepared, inc, drop_after_bytes=2000, retries=0)
    resumed = pull_all(prepared, inc)
    again = pull_all(prepared, inc)
    full = tmp_path_factory.mktemp("full")
    whole = pull_all(prepared, full, full=True)
    return {"inc": inc, "full": full, "first": first, "dropped": dropped, "resumed": resumed,
            "again": again, "whole": whole, "prepared": prepared}


def analyse(folder: Path, names: list[str] | None = None) -> dict[str, Any]:
    files = [(p.name, p) for p in sorted(folder.glob("*.slog")) if names is None or p.name in names]
    if names is not None:
        files.sort(key=lambda f: names.index(f[0]))
    loaded = load_test_files(files)
    result = analyze_test(loaded.logs, TestMetadata(ConstantCurrent(25.0), rated_time_s=4 * 3600.0),
                          excluded=loaded.excluded)
    out = to_dict(result)
    # What the result rests on names the files it read: not a number of the analysis.
    out.pop("evidence")
    for b in out["blocks"]:
        b.pop("evidence")
    return out


def test_a_pull_with_nothing_new_writes_no_file(pulls: dict[str, Any]) -> None:
    again = pulls["again"]
    assert sorted(again.nothing_new) == [f"SIM-{i:04d}" for i in range(1, BLOCKS + 1)]
    assert again.written == {} and not again.failures
    assert all(r.status == "nothing new" for r in again.results.values())


def test_an_interrupted_pull_resumes_where_it_stopped(pulls: dict[str, Any]) -> None:
    dropped, resumed = pulls["dropped"], pulls["resumed"]
    assert list(dropped.failures) == ["SIM-0001"]
    assert "SIM-0001" in resumed.written
    state = json.loads((pulls["inc"] / "SIM-0001.pull.json").read_text())
    assert state["partial"] is None
    # The resumed transfer did not start over: fewer image bytes than the whole range.
    assert resumed.results["SIM-0001"].image_bytes < pulls["whole"].results["SIM-0001"].image_bytes


def test_incremental_pulls_analyse_exactly_like_one_full_pull(pulls: dict[str, Any]) -> None:
    inc, full = pulls["inc"], pulls["full"]
    assert len(list(inc.glob("SIM-0001-*.slog"))) == 2 and len(list(full.glob("*.slog"))) == BLOCKS
    a, b = analyse(inc), analyse(full)
    # Same records, same numbers; only the clock observations differ (more pulls, more of them).
    for key in ("discharge", "capacity", "ranking", "missing_positions", "excluded"):
        assert a[key] == b[key], key
    for ba, bb in zip(a["blocks"], b["blocks"], strict=True):
        ba.pop("clock"), bb.pop("clock")
        # The internal resistance is read at the load step's instant, which the extra pull's
        # observation moves by a millisecond or so: the same to four figures.
        for key in [k for k in ba if k.startswith("resistance")]:
            assert _close(ba.pop(key), bb.pop(key)), key
        assert ba == bb


def _close(x: Any, y: Any) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_close(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= max(1e-3 * max(abs(x), abs(y)), 0.011)  # a rounded last digit
    return bool(x == y)


def test_any_order_and_duplicates_give_the_same_result(pulls: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    shutil.copytree(pulls["inc"], folder)
    names = sorted(p.name for p in folder.glob("*.slog"))
    base = analyse(folder, names)
    shutil.copy(folder / names[0], folder / "copy-of-the-first-pull.slog")  # "pulled again to be sure"
    names_dup = [*names, "copy-of-the-first-pull.slog"]
    for order in itertools.islice(itertools.permutations(names_dup), 0, None, 997):
        assert analyse(folder, list(order)) == base


def test_damaged_and_foreign_files_are_excluded_and_named(pulls: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    shutil.copytree(pulls["full"], folder)
    victim = sorted(folder.glob("SIM-0002-*.slog"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the middle of the file
    victim.write_bytes(bytes(data))
    (folder / "report.slog").write_bytes(b"PK\x03\x04" + b"\x00" * 300)  # a workbook renamed to .slog
    result = analyse(folder)
    excluded = {e["file"]: e for e in result["excluded"]}
    assert excluded["report.slog"]["reason"] == "not_a_logfile" and "renamed" in excluded["report.slog"]["message"]
    assert excluded[victim.name]["reason"] in ("unreadable", "tampered")
    # The rest of the string is analysed; the damaged logger's position is reported missing.
    assert [b["serial"] for b in result["blocks"]] == ["SIM-0001", "SIM-0003"]
    assert result["missing_positions"] == [2] and result["string_blocks"] == BLOCKS


def test_two_different_logs_for_one_serial_exclude_that_logger(pulls: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    shutil.copytree(pulls["full"], folder)
    other = prepare_string_test(1, weak=0, load="25A", seed=99)
    other.tap_all()
    run_to(other, 600.0)
    stranger = tmp_path / "stranger"
    pull_all(other, stranger, full=True)
    (src,) = stranger.glob("*.slog")
    shutil.copy(src, folder / ("X-" + src.name))  # another string's SIM-0001
    result = analyse(folder)
    excluded = result["excluded"]
    assert {e["serial"] for e in excluded} == {"SIM-0001"} and {e["reason"] for e in excluded} == {"unusable"}
    assert all("disagree on record seq" in e["message"] for e in excluded)
    assert "X-" + src.name in {e["file"] for e in excluded}
    assert [b["serial"] for b in result["blocks"]] == ["SIM-0002", "SIM-0003"]


def test_analyze_export_keep_one_place(pulls: dict[str, Any], tmp_path: Path) -> None:
    """The README order without extra flags: analyse a folder, export it; options that disagree
    with what the folder states are refused naming both values; new pulls make the result stale."""
    folder = tmp_path / "logs"
    shutil.copytree(pulls["full"], folder)
    run = CliRunner().invoke
    res = run(main, ["test", "analyze", str(folder), "--load", "25A", "--rated-time", "4h"])
    assert res.exit_code == 0, res.output
    assert (folder / "result.json").exists()
    info = TestInfo.read(folder)
    assert info is not None and info.load == "25A" and info.rated_time == "4h" and info.test_id == ""
    res = run(main, ["export", "xlsx", "--test", str(folder), "-o", str(tmp_path / "r.xlsx")])
    assert res.exit_code == 0, res.output
    res = run(main, ["export", "xlsx", "--test", str(folder), "-o", str(tmp_path / "r.xlsx"), "--load", "30A"])
    assert res.exit_code == 2
    assert "--load: 30A conflicts with the test's load 25A in" in res.output
    res = run(main, ["test", "analyze", str(folder), "--rated-time", "5h"])
    assert res.exit_code == 2 and "5h conflicts with the test's rated time 4h" in res.output
    res = run(main, ["test", "analyze", str(folder), "--load-power", "4.8kW"])
    assert res.exit_code == 2 and "--load-power: 4800W conflicts with the test's load 25A" in res.output
    # Analysing again without options reads everything from the folder.
    res = run(main, ["test", "analyze", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["capacity"]["rated_time_s"] == 4 * 3600.0
    # A new pull in the folder: the kept result no longer describes it.
    shutil.copy(next(pulls["inc"].glob("SIM-0001-*.slog")), folder / "SIM-0001-extra.slog")
    res = run(main, ["export", "xlsx", "--test", str(folder), "-o", str(tmp_path / "r.xlsx")])
    assert res.exit_code == 1 and "result.json is out of date" in res.output and "SIM-0001-extra.slog" in res.output
    res = run(main, ["test", "show", str(folder), "--json"])
    assert json.loads(res.output)["result"].startswith("out of date")


def test_test_new_set_show(tmp_path: Path) -> None:
    folder = tmp_path / "t1"
    run = CliRunner().invoke
    res = run(main, ["test", "new", str(folder), "--site", "Plant North", "--customer", "Bank", "--system", "UPS A",
                     "--string", "String 1", "--blocks", "24", "--technician", "Tina", "--company", "Acme",
                     "--make", "CSB", "--model", "GP12400", "--chemistry", "vrla", "--block-voltage", "12",
                     "--rated-ah", "100", "--load", "20A", "--rated-time", "3h", "--tz", "Europe/Berlin",
                     "--notes", "room 3", "--test-id", "UPS-A-2026"])
    assert res.exit_code == 0, res.output
    doc = json.loads((folder / "test.json").read_text())
    assert doc["site"] == {"name": "Plant North", "customer": "Bank"} and doc["string"]["blocks"] == 24
    assert doc["battery"] == {"make": "CSB", "model": "GP12400", "chemistry": "vrla", "block_voltage_v": 12.0,
                              "rated_ah": 100.0}
    assert len(doc["client_key"]) == 32 and doc["tz"] == "Europe/Berlin"
    res = run(main, ["test", "new", str(folder)])
    assert res.exit_code == 2 and "exists already" in res.output
    res = run(main, ["test", "set", str(folder), "--load", "25A", "--tz", "Mars/Olympus"])
    assert res.exit_code == 2 and "'Mars/Olympus' is not an IANA time zone" in res.output
    assert json.loads((folder / "test.json").read_text())["load"] == "20A"  # nothing half-written
    res = run(main, ["test", "set", str(folder), "--load", "25A"])
    assert res.exit_code == 0 and "load: 25A" in res.output
    res = run(main, ["test", "show", str(folder)])
    assert "Plant North" in res.output and "25A" in res.output and "not analysed" in res.output
    info = TestInfo.read(folder)
    assert info is not None and info.server_metadata()["battery.make"] == "CSB"
    assert asdict(info.site)["customer"] == "Bank"
