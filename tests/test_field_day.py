"""A technician's field day on a virtual site, command by command, each in its own process, as
docs/USER_GUIDE.md tells it: every number the commands print is compared with the site's ground
truth (``smartlogger sim site truth --json``).

The day (a 6-block string, one weak block): the test folder is made (``test new``), the loggers
are programmed by NFC, one logger's backup cell goes flat after its tap (clock reset), the
discharge runs to the load bank's cutoff, one logger is lost before the pull (detached), the
first pull is interrupted (Ctrl-C) and run again, a second pull "to be sure" finds nothing new,
a damaged copy of a logfile lands in the folder; verify, analyse and export; the sync to the
company's old server refuses the damaged file, the technician moves it out and syncs to the
company's new server, where the test is analysed with the right results (``smartlogger serve``
in its own process, on a free loopback port). Two weeks later the same string is tested again
(the lost logger found and clipped back on) and the trend compares the two tests.

Tolerances: durations to the second they are printed in (+ the load step's location, < 1 s),
delivered Ah and the time to the end voltage within 1 % (the rehearsal's tolerance, the site's
1 Hz samples near a steep knee), internal resistance within two of the standard uncertainties
the analysis prints with it (plus the print's rounding), lower bounds never above the truth.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from rehearsal import stop_sites
from site_support import SMARTLOGGER, wait_for

from smartlogger.api.admin import Admin

ROOT = Path(__file__).resolve().parents[1]
DATASHEET = ROOT / "smartlogger" / "data" / "sim_vrla_12v100_datasheet.csv"

BLOCKS = 6
WEAK_POSITION = 5  # --seed 3 makes block 5 the weak one (checked against the truth below)
RESET_POSITION = 4  # its logger's backup cell goes flat after the tap
LOST_POSITION = 6  # its logger is lost before the pull
ORG, EMAIL = "Acme Battery Service", "pat@acme.example"

TEST_META = ('--site "Data centre North" --customer ACME --system "UPS A" --system-kind UPS '
             '--string "String 1" --blocks 6 --chemistry vrla --block-voltage 12 --rated-ah 100 '
             '--load 20A --end-voltage 1.75V/cell --datasheet vrla-100ah.csv --technician "Pat Smith"')


class Day:
    """Runs ``smartlogger ...`` command lines as typed, each in a new process, in one folder."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = dict(os.environ, COLUMNS="160", NO_COLOR="1")
        self.log: list[tuple[str, float, int]] = []

    def popen(self, command: str) -> subprocess.Popen[str]:
        args = shlex.split(command)
        assert args[0] == "smartlogger", command
        # Ctrl-C must reach it even when this test runs where SIGINT is ignored (a background job).
        return subprocess.Popen([SMARTLOGGER, *args[1:]], cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def run(self, command: str, *, rc: int = 0, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        t0 = time.perf_counter()
        args = shlex.split(command)
        assert args[0] == "smartlogger", command
        proc = subprocess.run([SMARTLOGGER, *args[1:]], cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        self.log.append((command, time.perf_counter() - t0, proc.returncode))
        assert proc.returncode == rc, (f"{command}: exit {proc.returncode}, expected {rc}\n"
                                       f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, command: str) -> Any:
        return json.loads(self.run(command).stdout)


# ----------------------------------------------------------------------------- reading output

def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in ``text`` (a wrapped cell's continuation joined on)."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def seconds(hms: str) -> float | None:
    """'2:50:26' -> 10226 s; '-' -> None."""
    if hms == "-":
        return None
    h, m, s = (int(x) for x in hms.split(":"))
    return float(h * 3600 + m * 60 + s)


def value_and_u(text: str) -> tuple[float, float]:
    """'5.22±1.84' -> (5.22, 1.84)."""
    v, u = text.split("±")
    return float(v), float(u)


def lower_bound(text: str) -> tuple[float, bool]:
    """'>=62.1' -> (62.1, True); '57.5' -> (57.5, False)."""
    return (float(text[2:]), True) if text.startswith(">=") else (float(text), False)


# ----------------------------------------------------------------------------- the API

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A company server: ``smartlogger serve`` in its own process, with a technician's token."""

    def __init__(self, data: Path) -> None:
        data.mkdir()
        admin = Admin(f"sqlite:///{data.resolve() / 'smartlogger.db'}")
        try:
            org = admin.create_org(ORG)
            admin.create_user(org.name, EMAIL, "technician", name="Pat Smith")
            self.token = admin.issue_token(EMAIL, days=30, label="field laptop").token
        finally:
            admin.close()
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.log = (data / "serve.log").open("w")
        self.proc = subprocess.Popen([SMARTLOGGER, "serve", "--data", str(data), "--port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        assert self.proc.poll() is None, "smartlogger serve ended"
        try:
            with urllib.request.urlopen(f"{self.api}/health", timeout=5) as rsp:
                return bool(rsp.status == 200)
        except OSError:
            return False

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.api + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as rsp:
            return json.loads(rsp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------- checks

def check_analysis(out: str, result: dict[str, Any], truth: dict[str, Any], *, missing: set[int],
                   clock_unsure: frozenset[int] = frozenset()) -> None:
    """What ``test analyze`` printed (and kept) against the truth of that discharge.
    ``clock_unsure``: blocks whose logger's place in time is known only roughly (its resistance
    is then uncertain by what its voltage moves in that time)."""
    rated_s = result["capacity"]["rated_time_s"]  # from the datasheet at the test's current
    assert rated_s is not None and 4.5 * 3600 < rated_s < 5.5 * 3600  # 20 A: between its 4 h and 10 h rows
    m = re.search(r"String capacity \(([^)]*)\): (>=)?([\d.]+) %", out)
    assert m, out
    # the string reached the load bank's cutoff (its end voltage) at the end of the discharge;
    # the logged string voltage is an upper bound once a logger read below its range (a warning
    # says so), so the analysis may give a lower bound, never more than the truth
    string_cap = 100.0 * truth["duration_s"] / rated_s
    assert float(m.group(3)) <= string_cap * 1.02, (m.group(0), string_cap)
    assert m.group(2) or abs(float(m.group(3)) - string_cap) <= 2.0, (m.group(0), string_cap)
    m = re.search(r"discharge (\d+:\d\d:\d\d) \([^)]*\), ([\d.]+) Ah", out)
    assert m, out
    duration, ah = seconds(m.group(1)), float(m.group(2))
    assert duration is not None and abs(duration - truth["duration_s"]) <= 2.0, (duration, truth["duration_s"])
    assert abs(ah - truth["delivered_ah"]) <= 0.06 + 0.001 * truth["delivered_ah"], (ah, truth["delivered_ah"])
    rows = [r for r in table_rows(out) if r[0].isdigit()]
    assert {int(r[0]) for r in rows} == set(range(1, BLOCKS + 1)) - missing, out
    for r in rows:
        pos, serial, to_end, ah_s, cap, soh, _rank, ir, yellow, red = r[:10]
        t = truth["blocks"][int(pos) - 1]
        assert serial == t["serial"]
        end_s = seconds(to_end)
        assert (end_s is not None) == t["reached_end_voltage"], (r, t)
        if end_s is not None:
            assert abs(end_s - t["time_to_end_s"]) <= 0.01 * t["time_to_end_s"], (r, t)
        assert abs(float(ah_s) - t["delivered_ah"]) <= 0.05 + 0.01 * t["delivered_ah"], (r, t)
        # Capacity % (IEEE 450 time-adjusted): the block's time to its end voltage at the test's
        # current against the datasheet's rated time at that current (the test's own input).
        cap_v, cap_bound = lower_bound(cap)
        truth_cap = 100.0 * t["capacity_ah_test_rate"] / truth["mean_current_a"] * 3600.0 / rated_s
        assert cap_bound == (not t["reached_end_voltage"]), (r, t)
        if cap_bound:
            assert cap_v <= truth_cap + 0.05, (r, t, truth_cap)
        else:
            assert abs(cap_v - truth_cap) <= 2.0, (r, t, truth_cap)  # K_T from the logger's temperature
        soh_v, bound = lower_bound(soh)
        # SOH is the block's Ah (temperature corrected) against the rated Ah: a lower bound while
        # the block had not reached its end voltage, never above what the block can deliver.
        truth_soh = 100.0 * t["capacity_ah_test_rate"] / 100.0
        assert bound == (not t["reached_end_voltage"]), (r, t)
        if bound:
            assert soh_v <= truth_soh + 0.05, (r, t)
        else:
            assert abs(soh_v - truth_soh) <= 2.0, (r, t)  # K_T from the logger's temperature
        r_v, r_u = value_and_u(ir)
        assert abs(r_v - t["step_resistance_mohm"]) <= 2.0 * r_u + 0.01, (r, t)
        # ... and precise enough to follow from test to test (the re-test once read 14-49 % low,
        # +-1.3 mOhm: its load came on just before a float sample, which cut the pre-trigger)
        if t["position"] not in clock_unsure:
            assert r_u <= 0.1 * r_v, (r, t)
        # Below the red alarm (9.90 V) only past the end voltage (10.50 V/block).
        if not t["reached_end_voltage"]:
            assert red == "0", r
        assert yellow.isdigit() and red.isdigit()
    blocks = {b["position"]: b for b in result["blocks"]}
    for r in rows:  # what was printed is what was kept in result.json
        b = blocks[int(r[0])]
        assert f"{b['delivered_ah']:.1f}" == r[3]
        assert value_and_u(r[7])[0] == round(b["resistance_mohm"], 2)
    assert set(result["missing_positions"]) == missing
    if missing:
        assert f"missing loggers at positions {', '.join(map(str, sorted(missing)))}" in out


def check_server_result(server: Server, test_id: int, local: dict[str, Any], truth: dict[str, Any]) -> None:
    """The test as the web app shows it: analysed on the server with the right results."""
    test = server.get(f"/tests/{test_id}")
    assert test["name"] == "Annual capacity test" and test["blocks"] == BLOCKS
    assert test["metadata"]["site"] == "Data centre North" and test["metadata"]["test_id"] == "FD-1"
    got = server.get(f"/tests/{test_id}/results")["result"]
    assert abs(got["discharge"]["duration_s"] - truth["duration_s"]) <= 2.0
    assert got["missing_positions"] == [LOST_POSITION]
    assert got["markers"] == ["SIMULATED"] and got["evidence"]["status"] != "verified"
    assert [b["serial"] for b in got["blocks"]] == [b["serial"] for b in local["blocks"]]
    for b, mine in zip(got["blocks"], local["blocks"], strict=True):
        t = truth["blocks"][b["position"] - 1]
        assert b["serial"] == t["serial"]
        assert abs(b["delivered_ah"] - t["delivered_ah"]) <= 0.01 * t["delivered_ah"]
        assert b["reached_end_voltage"] == t["reached_end_voltage"]
        # the server analysed the same files: the same numbers as the technician's laptop
        for key in ("delivered_ah", "time_to_end_s", "soh_pct", "capacity_pct", "resistance_mohm"):
            assert b[key] == mine[key], (key, b[key], mine[key])


# ----------------------------------------------------------------------------- the day

def test_a_field_day_on_a_virtual_site_gives_the_right_answers(tmp_path: Path) -> None:
    day = Day(tmp_path)
    shutil.copy(DATASHEET, tmp_path / "vrla-100ah.csv")
    servers: list[Server] = []
    t_start = time.perf_counter()
    try:
        _walk(day, tmp_path, servers)
    finally:
        for s in servers:
            s.stop()
        stop_sites(tmp_path)
        took = time.perf_counter() - t_start
        print(f"field day: {len(day.log)} commands in {took:.0f} s")
        for command, dt, rc in day.log:
            print(f"  {dt:6.1f} s  exit {rc}  {command}")
    # the user guide shows the day as it was walked here (the checks' own look-ups aside)
    shown = guide_commands()
    walked = [normalise(c) for c, _, _ in day.log if " --json" not in c]
    assert [c for c in walked if c not in shown] == []


def _walk(day: Day, cwd: Path, servers: list[Server]) -> None:
    logs, retest = cwd / "logs", cwd / "logs-retest"

    # ---- on site, no network: the test folder, the NFC walk, the discharge
    day.run("smartlogger sim site start site/ --blocks 6 --weak 1 --seed 3")
    truth0 = day.json("smartlogger sim site truth site/ --json")
    assert [b["position"] for b in truth0["blocks"] if b["weak"]] == [WEAK_POSITION]
    out = day.run(f'smartlogger test new logs/ --name "Annual capacity test" --test-id FD-1 {TEST_META}').stdout
    assert "created logs/test.json" in out and "String 1, 6 blocks" in out
    day.run("smartlogger nfc program --site site/ --profile vrla-12v --count 6 --test-id FD-1")
    st = day.json("smartlogger sim site status site/ --json")
    assert all(lg["test_id"] == "FD-1" and abs(lg["clock_offset_ms"]) < 1000 for lg in st["loggers"])
    # the backup cell of block 4's logger is flat: a moment without power resets its clock
    day.run(f"smartlogger sim site fault site/ --logger {RESET_POSITION} clock-reset")
    day.run("smartlogger sim site advance site/ 10min")
    day.run("smartlogger sim site load site/ 20A --cutoff 1.75")
    assert "switched off at its cutoff" in day.run("smartlogger sim site advance site/ 12h --until-load-off").stdout
    day.run("smartlogger sim site advance site/ 10min")
    # block 6's logger is knocked off and lost before the pull
    day.run(f"smartlogger sim site fault site/ --logger {LOST_POSITION} detach")

    # ---- the scan names every logger it reaches, where it is and its clock
    scan = day.run("smartlogger ble scan --site site/").stdout
    seen = {ln.split()[0]: ln.split() for ln in scan.splitlines() if ln.startswith("SIM-")}
    assert sorted(seen) == [f"SIM-000{i}" for i in range(1, 6)], scan
    for serial, cols in seen.items():
        assert cols[1] == str(int(serial[-4:])) and cols[2] == f"B00{serial[-1]}" and cols[3] == "FD-1", scan
    assert seen[f"SIM-000{RESET_POSITION}"][-2:] == ["-60", "d"], scan  # its clock is back at 2026-01-01
    assert all(abs(float(cols[-2])) < 2.0 and cols[-1] == "s" for s, cols in seen.items()
               if s != f"SIM-000{RESET_POSITION}"), scan

    # ---- the pull is interrupted (Ctrl-C) once the first logfile is saved, then run again
    pull = "smartlogger ble pull --site site/ --all -o logs/ -k 3"
    proc = day.popen(pull)
    try:
        wait_for(lambda: any(logs.glob("*.slog")) or proc.poll() is not None, 180, "the first logfile")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err)
    assert "Traceback" not in err, err  # no stack teardown noise for the technician
    first = sorted(p.name for p in logs.glob("*.slog"))
    assert 1 <= len(first) < 5, first
    out = day.run(pull)
    # the reset clock is named by the pull run again, whether or not the interrupted one pulled
    # that logger (a Ctrl-C right after its file was saved may stop it before it prints the line:
    # the pull run again judges the clock by the expectation saved with the file, not by itself)
    reset = f"SIM-000{RESET_POSITION}"
    assert re.search(f"{reset}: CLOCK DISAGREES: the logger's clock is 60 d behind", out.stderr), out.stderr
    names = sorted(p.name for p in logs.glob("*.slog"))
    # one file per logger, each from its first record: the resumed pull got the rest
    assert [n[:8] for n in names] == [f"SIM-000{i}" for i in range(1, 6)], names
    assert all(n[9:17] == "00000000" for n in names) and set(first) <= set(names)
    assert f"{5 - len(first)} with new records, {len(first)} with nothing new" in out.stdout, out.stdout
    # "to be sure": nothing new, no new file
    out = day.run(pull)
    assert "0 with new records, 5 with nothing new since the last pull (no file written)" in out.stdout
    assert f"{reset}: CLOCK DISAGREES" in out.stderr, out.stderr  # still off: said at every pull
    assert sorted(p.name for p in logs.glob("*.slog")) == names

    # ---- a damaged copy in the folder (a copy cut short)
    good = logs / names[2]
    damaged = logs / (good.stem + " (1).slog")
    damaged.write_bytes(good.read_bytes()[:3000])

    out = day.run("smartlogger logfile verify logs/ --allow-simulated", rc=4)
    assert f"UNREADABLE: logs/{damaged.name}" in out.stdout
    assert out.stdout.count("SIMULATED: logs/") == 5

    # ---- analyse, check against the truth, export
    out = day.run("smartlogger test analyze logs/").stdout
    truth = day.json("smartlogger sim site truth site/ --json")
    t1 = truth["test"]
    assert t1["end_reason"] == "cutoff" and len(truth["discharges"]) == 1
    result1 = json.loads((logs / "result.json").read_text())
    check_analysis(out, result1, t1, missing={LOST_POSITION}, clock_unsure=frozenset({RESET_POSITION}))
    assert f"excluded: {damaged.name} (unknown logger): unreadable" in out
    assert f"clock: SIM-000{RESET_POSITION} (block {RESET_POSITION}): clock observations disagree" in out
    assert "result kept in logs/result.json" in out

    out = day.run("smartlogger export xlsx --test logs/ -o report.xlsx").stdout
    assert "wrote report.xlsx" in out and f"{damaged.name} (unreadable)" in out
    _check_workbook(cwd / "report.xlsx", t1, result1, damaged.name)

    # ---- back at the office: the old server, then the company's new one
    servers.extend([Server(cwd / "server-old"), Server(cwd / "server-new")])
    old, new = servers
    for s in servers:
        wait_for(s.ready, 120, "smartlogger serve")
    out = day.run(f"smartlogger sync --api {old.api} --token {old.token} --dir logs/", rc=4)
    assert "uploaded 5, already there 0, tests 1, rejected 1, still queued 0" in out.stdout
    assert f"rejected {damaged.name}: HTTP 422" in out.stderr
    # the damaged copy goes out of the folder (the intact original is in it)
    (cwd / "damaged").mkdir()
    damaged.rename(cwd / "damaged" / damaged.name)
    out = day.run(f"smartlogger sync --api {new.api} --token {new.token} --dir logs/").stdout
    assert "uploaded 5, already there 0, tests 1, rejected 0, still queued 0" in out, out
    link = re.search(r"in the app: (\S+)/app/#/tests/(\d+)", out)
    assert link and link.group(1) + "/api" == new.api, out
    test_id = int(link.group(2))
    assert f"test {test_id} (.): 5 logfile(s) for 6 blocks; the server analyses it" in out
    out = day.run("smartlogger sync --status --dir logs/").stdout
    assert f"{old.api} (organisation '{ORG}'" in out and f"{new.api} (organisation '{ORG}'" in out
    assert out.count("5 on the server (5 uploaded, 0 were there already)") == 2, out

    wait_for(lambda: new.get(f"/tests/{test_id}")["status"] in ("analysed", "failed"), 180, "the server's analysis")
    assert new.get(f"/tests/{test_id}")["status"] == "analysed"
    check_server_result(new, test_id, result1, t1)

    # ---- two weeks later: the same string again, the lost logger found and clipped back on
    day.run("smartlogger sim site charger site/ on")
    day.run(f"smartlogger sim site fault site/ --logger {LOST_POSITION} attach")
    day.run("smartlogger sim site advance site/ 2w")
    day.run(f'smartlogger test new logs-retest/ --name "Re-test" --test-id FD-2 {TEST_META}')
    day.run("smartlogger nfc program --site site/ --profile vrla-12v --count 6 --test-id FD-2")
    st = day.json("smartlogger sim site status site/ --json")
    assert all(lg["test_id"] == "FD-2" and abs(lg["clock_offset_ms"]) < 1000 for lg in st["loggers"])
    day.run("smartlogger sim site advance site/ 10min")
    day.run("smartlogger sim site load site/ 20A --cutoff 1.75")
    day.run("smartlogger sim site advance site/ 12h --until-load-off")
    day.run("smartlogger sim site advance site/ 10min")
    out = day.run("smartlogger ble pull --site site/ --all -o logs-retest/ -k 3").stdout
    assert "6 pulled into logs-retest: 6 with new records; 0 failed" in out
    out = day.run("smartlogger test analyze logs-retest/").stdout
    truth = day.json("smartlogger sim site truth site/ --json")
    t2 = truth["test"]
    assert len(truth["discharges"]) == 2 and t2["start_utc_ms"] > t1["end_utc_ms"] + 13 * 86400_000
    result2 = json.loads((retest / "result.json").read_text())
    check_analysis(out, result2, t2, missing=set())
    # each logger's log holds both tests: the analysis takes this test's discharge, with its own
    # firmware events
    start_ev = [e for e in result2["discharge"]["evidence"] if e["what"] == "start" and e["source"] == "firmware_event"]
    assert start_ev and start_ev[0]["time_ms"] is not None and abs(start_ev[0]["time_ms"] - t2["start_utc_ms"]) < 60_000

    out = day.run("smartlogger test trend logs/ logs-retest/").stdout
    assert f"{BLOCKS} blocks over 2 tests" in out
    rows = {r[0]: r for r in table_rows(out)}
    for pos in range(1, BLOCKS + 1):
        serial = t2["blocks"][pos - 1]["serial"]
        r = rows[f"{serial}@pos {pos}"]
        both = [res for res in (result1, result2) if any(b["position"] == pos for b in res["blocks"])]
        assert r[1] == str(len(both)), r
        # the block's capacity did not change in two weeks (the truth: the same block): the
        # fitted change is within what the two printed values' rounding allows over 14 days
        if r[3] != "-":
            assert abs(float(r[3])) <= 0.2 / (14 / 365.25), r
        # a block below the replacement limit is below it since the first test, not a date
        # projected back before the tests
        weak = t2["blocks"][pos - 1]["reached_end_voltage"]
        assert r[5] == ("2026-03-02" if weak else "-"), r
        irs = [float(x) for x in r[6].split(",")]
        tests = [t1, t2] if len(both) == 2 else [t2]
        for res, t, ir in zip(both, tests, irs, strict=True):
            b = next(b for b in res["blocks"] if b["position"] == pos)
            assert ir == round(b["resistance_mohm"], 2)
            tb = t["blocks"][pos - 1]
            assert abs(ir - tb["step_resistance_mohm"]) <= 2.0 * b["resistance_uncertainty_mohm"] + 0.01, (r, tb)

    # the re-test goes to the same string on the new server
    out = day.run(f"smartlogger sync --api {new.api} --token {new.token} --dir logs-retest/").stdout
    assert "uploaded 6, already there 0, tests 1, rejected 0, still queued 0" in out, out
    tests = [t for t in new.get("/tests") if t["metadata"].get("string") == "String 1"]
    assert sorted(t["metadata"]["test_id"] for t in tests) == ["FD-1", "FD-2"]
    assert len({t["string_id"] for t in tests}) == 1


def guide_commands() -> set[str]:
    """The command lines of docs/USER_GUIDE.md's ``sh`` blocks (continuations joined, comments
    dropped, server and token as placeholders)."""
    text = (ROOT / "docs" / "USER_GUIDE.md").read_text(encoding="utf-8")
    out: set[str] = set()
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                out.add(normalise(" ".join(shlex.split(line, comments=True))))
    return out


def normalise(command: str) -> str:
    return re.sub(r"--api \S+ --token \S+", "--api API --token TOKEN", " ".join(shlex.split(command)))


def _check_workbook(path: Path, truth: dict[str, Any], result: dict[str, Any], damaged: str) -> None:
    """The string report's Summary: each block's delivered Ah and time to its end voltage against
    the truth, its capacity as analysed; the missing position and the damaged file named."""
    wb = load_workbook(path, read_only=True)
    try:
        rows = [list(row) for row in wb["Summary"].iter_rows(values_only=True)]
    finally:
        wb.close()
    text = [[str(c) if c is not None else "" for c in row] for row in rows]
    head = next(i for i, row in enumerate(text) if row[:2] in (["Pos.", "Serial"], ["Position", "Serial"]))
    cols = text[head]
    pos_col, serial_col, ah_col = 0, 1, cols.index("Delivered Ah")
    end_col, cap_col = cols.index("To end voltage"), cols.index("Capacity")
    blocks = {b["position"]: b for b in result["blocks"]}
    seen = 0
    for row in rows[head + 1:]:
        if len(row) <= ah_col or not isinstance(row[pos_col], int):
            break
        t = truth["blocks"][row[pos_col] - 1]
        assert row[serial_col] == t["serial"]
        assert abs(float(row[ah_col]) - t["delivered_ah"]) <= 0.01 * t["delivered_ah"]
        assert (row[end_col] != "not reached") == t["reached_end_voltage"], row
        if t["reached_end_voltage"]:
            end_s = seconds(str(row[end_col]))
            assert end_s is not None and abs(end_s - t["time_to_end_s"]) <= 0.01 * t["time_to_end_s"], row
        assert row[cap_col] == round(blocks[row[pos_col]]["capacity_pct"], 1), row
        seen += 1
    assert seen == BLOCKS - 1
    flat = " ".join(c for row in text for c in row)
    assert f"positions {LOST_POSITION} not logged" in flat
    assert damaged in flat and "unreadable" in flat
