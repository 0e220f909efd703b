"""``smartlogger logfile info|verify|convert`` through click, with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from smartlogger.cli import main
from smartlogger.testing.logfile_examples import example_pulls


def _files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    older, latest, _ = example_pulls("SIM-0001")
    good = tmp_path / "good.slog"
    good.write_bytes(latest)
    bad = tmp_path / "tampered.slog"
    flipped = bytearray(latest)
    flipped[len(latest) // 2] ^= 1
    bad.write_bytes(bytes(flipped))
    junk = tmp_path / "junk.slog"
    junk.write_bytes(b"hello")
    old = tmp_path / "older.slog"
    old.write_bytes(older)
    return good, bad, junk, old


def test_verify_exit_codes(tmp_path: Path) -> None:
    good, bad, junk, old = _files(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["logfile", "verify", str(good)])
    # a simulated logger's intact file is never evidence: its own status and exit code
    assert res.exit_code == 6 and res.output.startswith("SIMULATED: ")
    assert res.output.splitlines()[1].strip().startswith("NOT EVIDENCE (SIMULATED)")
    res = runner.invoke(main, ["logfile", "verify", str(good), "--allow-simulated", "--json"])
    out = json.loads(res.output)
    assert res.exit_code == 0 and out["status"] == "simulated" and out["accepted"] and not out["verified"]
    res = runner.invoke(main, ["logfile", "verify", str(bad), "--json"])
    assert res.exit_code == 5 and json.loads(res.output)["status"] == "tampered"
    res = runner.invoke(main, ["logfile", "verify", str(junk)])
    assert res.exit_code == 4 and "UNREADABLE" in res.output
    nonce = bytes(range(16, 32)).hex()
    res = runner.invoke(main, ["logfile", "verify", str(old), "--expected-nonce", nonce, "--allow-simulated"])
    assert res.exit_code == 5 and "stale_pull" in res.output


def test_verify_of_several_files_exits_with_the_worst_refused_status(tmp_path: Path) -> None:
    good, bad, _, old = _files(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["logfile", "verify", str(good), str(old)])
    assert res.exit_code == 6 and res.output.count("NOT EVIDENCE (SIMULATED)") == 2
    res = runner.invoke(main, ["logfile", "verify", str(good), str(old), "--allow-simulated", "--json"])
    assert res.exit_code == 0 and [d["accepted"] for d in json.loads(res.output)] == [True, True]
    # a tampered file outranks simulated ones, whatever the exit codes' numbers
    res = runner.invoke(main, ["logfile", "verify", str(good), str(bad), "--allow-simulated"])
    assert res.exit_code == 5
    res = runner.invoke(main, ["logfile", "verify", str(tmp_path), "--allow-simulated"])
    assert res.exit_code == 5 and "junk.slog" in res.output  # a folder: every .slog in it


def test_verify_with_a_trust_file(tmp_path: Path) -> None:
    """Exit 0 only for a logger certified by a production root named in --trust."""
    from smartlogger.device.store import MemoryStore
    from smartlogger.logfile.evidence import new_authority, provision_device, test_authority
    from smartlogger.logfile.format import pull_logfile
    from smartlogger.logfile.trust import load_trust, trust_toml
    from smartlogger.model import Generation, LoggerIdentity
    from smartlogger.testing.logfile_examples import float_trace, sample_blocks

    prod = new_authority("production", name='ACME "root" 2026')
    ident = LoggerIdentity("SL2-000777", Generation.GEN2, "2.1.0")
    store = MemoryStore(serial=ident.serial)
    mv, dc = float_trace(120)
    for block in sample_blocks(0, 60_000, mv, dc, 60):
        store.append(block)
    real = tmp_path / "real.slog"
    real.write_bytes(pull_logfile(provision_device(ident, prod), ident, store, device_ms=10_000_000))
    trust = tmp_path / "trust.toml"
    trust.write_text(trust_toml([prod.public_only()]))
    assert load_trust(trust)[0].public_key == prod.public_key
    runner = CliRunner()
    res = runner.invoke(main, ["logfile", "verify", str(real)])  # not the default production root
    assert res.exit_code == 5 and "not from a trusted authority" in res.output
    res = runner.invoke(main, ["logfile", "verify", str(real), "--trust", str(trust)])
    assert res.exit_code == 0 and res.output.splitlines()[1].strip().startswith("VERIFIED EVIDENCE")
    res = runner.invoke(main, ["logfile", "verify", str(real)], env={"SMARTLOGGER_TRUST_FILE": str(trust)})
    assert res.exit_code == 0
    # the default trust list is a valid trust file; a broken one is a one-line error
    printed = runner.invoke(main, ["logfile", "trust"])
    (tmp_path / "default.toml").write_text(printed.output)
    assert {a.kind for a in load_trust(tmp_path / "default.toml")} == {"production", "test"}
    for text, msg in (("x", "not TOML"), ("", "no [[authority]]"),
                      ('[[authority]]\nkind="production"\npublic_key="00"', "32 bytes"),
                      ('[[authority]]\nkind="root"\npublic_key="00"', "kind must be"),
                      (f'[[authority]]\nkind="production"\npublic_key="{test_authority().public_key.hex()}"',
                       "cannot be a production root")):
        trust.write_text(text)
        res = runner.invoke(main, ["logfile", "verify", str(real), "--trust", str(trust)])
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, res.output


def test_info_and_convert(tmp_path: Path) -> None:
    good, _, junk, _ = _files(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["logfile", "info", str(good), "--json"])
    assert res.exit_code == 0
    info = json.loads(res.output)
    assert info["serial"] == "SIM-0001" and info["markers"] == ["SIMULATED"] and info["signed"]
    res = runner.invoke(main, ["logfile", "info", str(good)])
    assert "SIM-0001" in res.output and "[SIMULATED]" in res.output
    out = tmp_path / "out.csv"
    res = runner.invoke(main, ["logfile", "convert", str(good), "-o", str(out)])
    assert res.exit_code == 0 and out.read_text().startswith("time_utc,voltage_v,temperature_c\n")
    res = runner.invoke(main, ["logfile", "info", str(junk)])
    assert res.exit_code == 4 and "not a smartlogger logfile" in res.output
