"""Evidence travels with the data: every bad file gets a named status and none changes a verified result.

A small hardware test (loggers certified by a throwaway production root, each pulled twice) is
analysed alone and with each adversarial file of ``testing.evidence_cases`` added: a forged
SIMULATED file for a hardware serial, a tampered file (+400 mV, CRCs and footer recomputed), a
valid file of another logger with a relabelled serial, an unsigned continuation of a signed
chain, an older pull, a second device key, junk. Controls show that merging the file blindly
would have changed the result, so the tests can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, MetadataError, TestMetadata
from smartlogger.analysis.loading import block_logs_from_logfiles, load_test_files
from smartlogger.analysis.results import TestResult
from smartlogger.cli import main
from smartlogger.export.adapters import load_test_dir
from smartlogger.export.check import formula_cells
from smartlogger.export.string_report import write_string_report
from smartlogger.logfile.trust import trust_toml
from smartlogger.testing.evidence_cases import SignedTest, signed_string_test

META = TestMetadata(ConstantCurrent(100.0), rated_time_s=1800.0)


@pytest.fixture(scope="module")
def case() -> SignedTest:
    return signed_string_test(3)


def _numbers(r: TestResult) -> list[tuple[object, ...]]:
    """Everything a block's result states, and the string's."""
    blocks = [(b.serial, b.position, b.samples, b.capacity_pct, b.delivered_ah, b.time_to_end_s, b.soh_pct,
               b.min_voltage_v, b.yellow, b.red) for b in r.blocks]
    return [*blocks, (r.discharge.start_ms, r.discharge.end_ms, r.capacity.capacity_pct)]


def _analyse(files: dict[str, bytes], trust: object) -> TestResult:
    loaded = load_test_files(list(files.items()), trust=trust)  # type: ignore[arg-type]
    return analyze_test(loaded.logs, META, excluded=loaded.excluded)


@pytest.fixture(scope="module")
def genuine(case: SignedTest) -> TestResult:
    return _analyse(case.files(), case.trust)


def test_a_verified_test_says_it_rests_on_verified_evidence_only(case: SignedTest, genuine: TestResult) -> None:
    ev = genuine.evidence
    assert ev.verified_only and ev.status == "verified" and ev.blocks == {"verified": 3}
    assert ev.statement.startswith("Rests on verified hardware evidence only")
    assert ev.files_used == 6 and ev.files_excluded == 0 and genuine.excluded == []
    for b in genuine.blocks:
        assert b.evidence.status == "verified"
        assert [f.used for f in b.evidence.files] == [True, True]  # both pulls merged
        assert {f.latest_pull for f in b.evidence.files} == {1, 2}
        assert all(f.authority == "production" and f.sha256 for f in b.evidence.files)
    # The JSON carries it all, and reads back.
    again = TestResult.from_json(genuine.to_json())
    assert again.evidence == genuine.evidence and again.blocks[0].evidence == genuine.blocks[0].evidence


def test_the_same_files_against_an_untrusted_root_are_refused(case: SignedTest) -> None:
    loaded = load_test_files(list(case.files().items()))  # the default root does not know this one
    assert loaded.logs == [] and {f.reason for f in loaded.excluded} == {"tampered"}
    with pytest.raises(MetadataError, match="no usable logfile: all 6 were excluded"):
        analyze_test(loaded.logs, META, excluded=loaded.excluded)


@pytest.mark.parametrize(("attack", "status", "reason"), [
    ("forged_simulated", "simulated", "simulated_not_merged"),
    ("tampered", "tampered", "tampered"),
    ("relabelled", "tampered", "tampered"),
    ("unsigned_continuation", "unsigned", "unsigned_not_merged"),
    ("second_key", "verified", "second_device_key"),
    ("junk", "unreadable", "unreadable"),
])
def test_a_bad_file_is_named_and_changes_nothing(case: SignedTest, genuine: TestResult, attack: str,
                                                  status: str, reason: str) -> None:
    bad = (b"\x89SLOG\r\n\x1a\x02garbage" if attack == "junk" else
           case.relabelled(0, 1) if attack == "relabelled" else getattr(case, attack)(0))
    files = {**case.files(), f"attack-{attack}.slog": bad}
    r = _analyse(files, case.trust)
    assert _numbers(r) == _numbers(genuine)
    (ex,) = r.excluded
    assert (ex.file, ex.status, ex.reason, ex.used) == (f"attack-{attack}.slog", status, reason, False)
    assert ex.message and (attack == "junk" or ex.serial == "SL2-000001")
    # Still verified evidence only (the bad file was not used), and the statement names it.
    assert r.evidence.verified_only and r.evidence.files_excluded == 1
    assert f"attack-{attack}.slog ({reason})" in r.evidence.statement
    if attack != "junk":
        block = r.block("SL2-000001")
        assert block.evidence.status == "verified"
        assert [f.reason for f in block.evidence.files if not f.used] == [reason]
        assert reason in block.evidence.note


def test_an_older_pull_is_genuine_and_changes_nothing(case: SignedTest, genuine: TestResult) -> None:
    files = {**case.files(latest_only=True), "again-pull1.slog": case.older_pull(0)}
    r = _analyse(files, case.trust)
    assert _numbers(r) == _numbers(genuine) and r.excluded == [] and r.evidence.verified_only


def test_controls_merging_blindly_would_have_changed_the_result(case: SignedTest, genuine: TestResult) -> None:
    """Without the evidence rules the attacks do change the numbers: the tests above can fail."""
    latest = case.files(latest_only=True)
    # The unsigned continuation merged by sequence number into the signed log of SL2-000001 ...
    merged = analyze_test(block_logs_from_logfiles([*latest.values(), case.unsigned_continuation(0)]), META)
    # ... and the tampered file in place of the genuine one.
    swapped = dict(latest, **{"SL2-000001-pull2.slog": case.tampered(0)})
    shifted = analyze_test(block_logs_from_logfiles(swapped.values()), META)
    for blind in (merged, shifted):
        assert _numbers(blind) != _numbers(genuine)
        assert blind.evidence.status == "unchecked" and not blind.evidence.verified_only


def test_simulated_unsigned_and_unchecked_blocks_are_not_evidence(case: SignedTest) -> None:
    sim = signed_string_test(2, hardware=False)
    r = _analyse(sim.files(), None)
    assert r.evidence.status == "simulated" and not r.evidence.verified_only
    assert r.evidence.statement.startswith("NOT verified evidence only")
    assert "rest on SIMULATED/REPLAYED data" in r.evidence.statement
    # A logger whose only data is unsigned: analysed, and called unsigned; the others stay verified.
    files = {k: v for k, v in case.files().items() if not k.startswith("SL2-000002")}
    files["SL2-000002-stripped.slog"] = _stripped(case.loggers[1].pulls[-1])
    r = _analyse(files, case.trust)
    assert r.block("SL2-000002").evidence.status == "unsigned"
    assert r.evidence.status == "unsigned" and r.evidence.blocks == {"unsigned": 1, "verified": 2}
    assert "block 2 (SL2-000002) rests on unsigned data" in r.evidence.statement
    # Logs built in code were never checked.
    blind = analyze_test(block_logs_from_logfiles(case.files(latest_only=True).values()), META)
    assert {b.evidence.status for b in blind.blocks} == {"unchecked"}


def _stripped(data: bytes) -> bytes:
    """The same records without certificate or signed pulls (an unsigned copy)."""
    from smartlogger.logfile.format import build_logfile, read_logfile

    lf = read_logfile(data)
    return build_logfile(lf.identity, None, [[(r.seq, r.data) for r in st.records] for st in lf.streams],
                         [(st.anchor_seq, st.anchor_hash) for st in lf.streams], [], lf.metadata)


def test_a_result_written_before_evidence_reads_back_as_unchecked(genuine: TestResult) -> None:
    old = json.loads(genuine.to_json())
    del old["evidence"], old["excluded"]
    for b in old["blocks"]:
        del b["evidence"]
    r = TestResult.from_json(json.dumps(old))
    assert r.evidence.status == "unchecked" and not r.evidence.verified_only and r.excluded == []
    assert {b.evidence.status for b in r.blocks} == {"unchecked"}
    assert "not recorded" in r.evidence.statement


def _folder(tmp_path: Path, case: SignedTest) -> tuple[Path, Path]:
    d = tmp_path / "logs"
    d.mkdir()
    for name, data in case.files().items():
        (d / name).write_bytes(data)
    (d / "x-forged.slog").write_bytes(case.forged_simulated(0))
    (d / "x-tampered.slog").write_bytes(case.tampered(1))
    (d / "x-unsigned.slog").write_bytes(case.unsigned_continuation(2))
    trust = tmp_path / "trust.toml"
    trust.write_text(trust_toml(case.trust))
    return d, trust


def test_cli_analyze_names_the_exclusions_and_the_evidence(tmp_path: Path, case: SignedTest,
                                                           genuine: TestResult) -> None:
    d, trust = _folder(tmp_path, case)
    runner = CliRunner()
    res = runner.invoke(main, ["test", "analyze", str(d), "--load", "100A", "--rated-time", "30min",
                               "--trust", str(trust), "--json"])
    assert res.exit_code == 0, res.output
    r = TestResult.from_json(res.output)
    assert _numbers(r) == _numbers(genuine) and r.evidence.verified_only
    assert sorted((Path(f.file).name, f.reason) for f in r.excluded) == [
        ("x-forged.slog", "simulated_not_merged"), ("x-tampered.slog", "tampered"),
        ("x-unsigned.slog", "unsigned_not_merged")]
    res = runner.invoke(main, ["test", "analyze", str(d), "--load", "100A", "--rated-time", "30min",
                               "--trust", str(trust)])
    assert res.exit_code == 0 and "Evidence: Rests on verified hardware evidence only" in res.output
    assert res.output.count("excluded:") == 3 and "x-tampered.slog" in res.output
    # Without the right trust list the genuine files are untrusted (excluded as tampered); what is
    # left is the forged SIMULATED file (and an unsigned file without configuration): the result
    # says it does not rest on evidence.
    res = runner.invoke(main, ["test", "analyze", str(d), "--load", "100A", "--json"])
    assert res.exit_code == 0, res.output
    r = TestResult.from_json(res.output)
    assert [b.serial for b in r.blocks] == ["SL2-000001"] and r.evidence.status == "simulated"
    assert not r.evidence.verified_only and "SIMULATED" in r.evidence.statement
    reasons = sorted(f.reason for f in r.excluded)
    assert reasons == ["tampered"] * 7 + ["unusable"]


def test_string_report_shows_the_evidence_and_charts_only_used_data(tmp_path: Path, case: SignedTest) -> None:
    d, _ = _folder(tmp_path, case)
    t = load_test_dir(d, trust=case.trust)
    assert t.outcome.verified_only and {b.evidence for b in t.outcome.blocks} == {"verified"}
    assert sorted(Path(e[0]).name for e in t.outcome.excluded) == ["x-forged.slog", "x-tampered.slog",
                                                                   "x-unsigned.slog"]
    clean = tmp_path / "clean"
    clean.mkdir()
    for name, data in case.files().items():
        (clean / name).write_bytes(data)
    ref = load_test_dir(clean, trust=case.trust)
    for a, b in zip(t.series, ref.series, strict=True):  # the charts and Data sheet hold the same samples
        assert a.identity == b.identity and (a.mv == b.mv).all() and (a.t_ms == b.t_ms).all()
    out = write_string_report(tmp_path / "r.xlsx", t.outcome, t.series, exceedances=t.exceedances,
                              evidence=t.evidence, resolution_s=60, chart_points=200)
    assert formula_cells(out) == []
    wb = load_workbook(out)
    rows = [[c.value for c in r] for r in wb["Summary"].iter_rows()]
    ev = next(r for r in rows if r[0] == "Evidence")
    assert ev[1].startswith("Rests on verified hardware evidence only")
    head = next(i for i, r in enumerate(rows) if r[0] == "Position")
    assert rows[head][13] == "Evidence" and rows[head + 1][13] == "verified"
    excluded_at = next(i for i, r in enumerate(rows) if r[0] == "Logfiles excluded from the analysis")
    assert {rows[i][2] for i in range(excluded_at + 2, excluded_at + 5)} == {
        "simulated_not_merged", "tampered", "unsigned_not_merged"}
    evidence = [[c.value for c in r] for r in wb["Evidence"].iter_rows()]
    used = {r[1]: r[7] for r in evidence[2:] if r[0] and r[1] and str(r[1]).endswith(".slog")}
    assert used["x-tampered.slog"].startswith("NO: tampered") and used["SL2-000001-pull2.slog"] == "yes"


def test_a_trend_keeps_each_tests_evidence(tmp_path: Path, genuine: TestResult) -> None:
    from smartlogger.analysis.trend import block_trends

    old = json.loads(genuine.to_json())
    del old["evidence"], old["excluded"]
    for b in old["blocks"]:
        del b["evidence"]
    old["discharge"]["start_ms"] -= 365 * 86_400_000
    earlier = TestResult.from_json(json.dumps(old))  # written before evidence was recorded
    (trend, *_) = block_trends([genuine, earlier], by="serial")
    assert [p.evidence for p in trend.points] == ["unchecked", "verified"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(genuine.to_json())
    b.write_text(earlier.to_json())
    res = CliRunner().invoke(main, ["test", "trend", str(a), str(b)])
    assert res.exit_code == 0 and "* not verified evidence" in res.output
