"""The app's in-browser logfile reader (app_stub/js/slog.js) against the Python implementation.

slog.js runs in Node (the same ECMAScript the browser runs; it uses only DataView, BigInt and
TextDecoder) on real bytes: the example file printed in docs/LOGFILE_FORMAT.md, a simulated
capacity-test logfile, a generation-1 file and sample records with random values (hypothesis)
encoded by smartlogger.logfile. What it decodes must equal what read_logfile / load_samples /
config_history give; damaged files must fail with the field and the byte offset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartlogger.logfile import config_history, load_samples, read_logfile
from smartlogger.logfile.gen1 import write_gen1
from smartlogger.logfile.records import encode_record
from smartlogger.model import Event, EventKind, Generation, LoggerIdentity, SampleBlock
from smartlogger.testing.logfile_examples import example_file

SLOG_JS = Path(__file__).resolve().parents[1] / "app_stub" / "js" / "slog.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Reads jobs (JSON lines on stdin: {"kind": "file"|"record", "hex": ...}) and answers one JSON
# line each; errors come back as {"error": message, "field", "offset"}.
DRIVER = r"""
const fs = require('fs');
const vm = require('vm');
const ctx = {TextDecoder, DataView, Uint8Array, Float64Array, BigInt, Math, Number, JSON, Object, Error, Array};
ctx.self = ctx;
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[1], 'utf8'), ctx);
const SLog = ctx.SLog;
const lines = fs.readFileSync(0, 'utf8').split('\n').filter(Boolean);
const out = [];
for (const line of lines) {
  const job = JSON.parse(line);
  const bytes = Uint8Array.from(Buffer.from(job.hex, 'hex'));
  try {
    if (job.kind === 'record') {
      const r = SLog.readRecord(bytes, 0, bytes.length, true);
      out.push({type: r.type, start_ms: r.start_ms, interval_ms: r.interval_ms,
                mv: Array.from(r.mv || []), dc: Array.from(r.dc || [])});
    } else {
      const lf = SLog.read(bytes);
      const s = SLog.samplesOf(lf);
      out.push({serial: lf.serial, generation: lf.generation, firmware: lf.firmware, simulated: lf.simulated,
                label: lf.label, position: lf.position, test: lf.test, version: lf.version,
                configs: lf.configs.map(c => ({t_ms: c.t_ms === -Infinity ? null : c.t_ms, config: c.config})),
                t_ms: Array.from(s.t_ms), mv: Array.from(s.mv), dc: Array.from(s.dc),
                events: lf.events.map(e => [e.t_ms, e.kind])});
    }
  } catch (e) {
    out.push({error: e.message, field: e.field === undefined ? null : e.field,
              offset: e.offset === undefined ? null : e.offset});
  }
}
process.stdout.write(JSON.stringify(out));
"""


def run_js(jobs: list[dict[str, str]]) -> list[dict[str, Any]]:
    assert NODE is not None
    proc = subprocess.run([NODE, "-e", DRIVER, str(SLOG_JS)], input="\n".join(json.dumps(j) for j in jobs),
                          capture_output=True, text=True, timeout=60, check=True)
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def decode_file(data: bytes) -> dict[str, Any]:
    return run_js([{"kind": "file", "hex": data.hex()}])[0]


@pytest.fixture(scope="module")
def capacity_logfile() -> bytes:
    from smartlogger.testing.api import simulated_logfiles

    return simulated_logfiles(2, seed=3)[1]


def assert_same_as_python(data: bytes, js: dict[str, Any]) -> None:
    lf = read_logfile(data)
    assert "error" not in js, js
    assert (js["serial"], js["firmware"], js["simulated"]) == (lf.identity.serial, lf.identity.firmware,
                                                               lf.identity.simulated)
    t_ms, mv, dc = load_samples(data)
    assert js["t_ms"] == t_ms.tolist() and js["mv"] == mv.tolist() and js["dc"] == dc.tolist()
    history = config_history(data)
    assert len(js["configs"]) == len(history)
    for got, want in zip(js["configs"], history, strict=True):
        th = want.config.thresholds
        c = got["config"]
        assert [c["v_low_alarm_mv"], c["v_low_warn_mv"], c["v_high_warn_mv"], c["v_high_alarm_mv"]] == [
            th.v_low_alarm_mv, th.v_low_warn_mv, th.v_high_warn_mv, th.v_high_alarm_mv]
        assert [c["t_low_alarm_dc"], c["t_low_warn_dc"], c["t_high_warn_dc"], c["t_high_alarm_dc"]] == [
            th.t_low_alarm_dc, th.t_low_warn_dc, th.t_high_warn_dc, th.t_high_alarm_dc]


def test_spec_example_file() -> None:
    data = example_file()
    js = decode_file(data)
    assert_same_as_python(data, js)
    # The values the spec states for its example (docs/LOGFILE_FORMAT.md, "Example file").
    assert (js["label"], js["position"], js["test"]) == ("B07", 7, {"site": "Plant A"})
    assert js["mv"] == [12731, 12730, 12732, 12729, 12729] and js["dc"] == [215, 215, 216, 216, 216]
    assert js["configs"][0]["config"]["cells"] == 6 and js["configs"][0]["config"]["rated_ah"] == 100.0


def test_simulated_capacity_test_logfile(capacity_logfile: bytes) -> None:
    js = decode_file(capacity_logfile)
    assert_same_as_python(capacity_logfile, js)
    assert len(js["mv"]) > 1000 and js["position"] == 2


def test_generation_1_file() -> None:
    ident = LoggerIdentity("G1-00042", Generation.GEN1, "1.3")
    data = write_gen1(ident, [SampleBlock.of(1000, 10_000, [12800, 12799, 12798], [250, 250, 251]),
                              Event(100_000, EventKind.ENTER_ALARM, value=9900),
                              SampleBlock.of(110_000, 10_000, [12276], [251])])
    js = decode_file(data)
    assert (js["serial"], js["generation"], js["version"]) == ("G1-00042", 1, "1.0")
    assert js["t_ms"] == [1000, 11000, 21000, 110000] and js["mv"] == [12800, 12799, 12798, 12276]
    assert js["events"] == [[100000, int(EventKind.ENTER_ALARM)]]
    assert js["configs"][0]["config"]["v_low_warn_mv"] == 10800  # the fixed gen-1 levels


def test_damaged_files_name_field_and_offset(capacity_logfile: bytes) -> None:
    cut = len(capacity_logfile) // 2
    jobs = [
        {"kind": "file", "hex": b"PK\x03\x04 not a logfile".hex()},
        {"kind": "file", "hex": capacity_logfile[:cut].hex()},
        {"kind": "file", "hex": (capacity_logfile[:8] + b"\x03\x00\x00\x00").hex()},
    ]
    magic, truncated, newer = run_js(jobs)
    assert (magic["field"], magic["offset"]) == ("magic", 0)
    assert truncated["offset"] is not None and 12 <= truncated["offset"] <= cut
    assert "at byte" in truncated["error"]
    assert newer["field"] == "version" and "3.0" in newer["error"]


values = st.lists(st.integers(-(2**31), 2**31 - 1), min_size=0, max_size=200)
# Values within +-2^22: zig-zag deltas of up to 24 bits, the widest the decoder's fast path reads.
middle = st.lists(st.integers(-(2**22), 2**22), min_size=0, max_size=200)
smooth = st.lists(st.integers(-40, 40), min_size=0, max_size=300).map(
    lambda d: [12_000 + sum(d[:i]) for i in range(len(d))])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mv=st.one_of(values, middle, smooth), seed=st.integers(0, 2**16))
def test_random_sample_records_decode_like_python(mv: list[int], seed: int) -> None:
    # Random i32 values give deltas up to 33 bits (width mode 1); smooth ones give mode 0.
    dc = [(v * 7 + seed) % 2000 - 400 for v in mv]
    rec = SampleBlock(1_767_225_600_000 + seed, 1000, array("i", mv), array("i", dc))
    (js,) = run_js([{"kind": "record", "hex": encode_record(rec).hex()}])
    assert js == {"type": "SampleBlock", "start_ms": rec.start_ms, "interval_ms": 1000, "mv": mv, "dc": dc}
