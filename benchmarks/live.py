"""Benchmark of the live watch on a virtual site, and the airtime model of the live adverts.

Starts a virtual site (``--blocks``, default 8, one weak block in 8) running on its own at
``--speed`` times real time, programs every logger with a kit key (``nfc program --site
--kit-key``), starts ``smartlogger test watch --json`` in its own process and a keyless
spoofer (``smartlogger.testing.spoofer``) on the air, connects a ``--load`` and watches until
the end alarm (and ``--after`` more virtual seconds). Prints ONE JSON object:

- ``update_age_s_p95``: age of the values on screen (phone clock minus the sample's time,
  over every block of every update line during the discharge), in *site seconds divided by
  the speed* (the wall-time equivalent: the site's radio runs on wall time); also
  ``update_age_virtual_s_p95`` as measured;
- ``end_alarm_latency_s``: from the first block crossing its end voltage (ground truth,
  ``sim site truth``) to the watcher's alarm, site seconds divided by the speed (and
  ``end_alarm_latency_virtual_s``);
- ``prediction_error_pct``: |predicted - actual| / actual time to the end voltage, predicted
  in the update line nearest to half the discharge time (the first block's time to end),
  max over the blocks that reached their end voltage while watched (``prediction_blocks``);
  a block without a prediction then counts as ``null`` and is listed in ``unpredicted``;
- ``spoofed_updates_accepted``: update lines in which the spoofed block shows the forgery
  (its sequence number or voltage) or a sequence number older than before;
- ``airtime``: the modeled airtime of 240 loggers (and of ``--blocks``) in one room
  (``airtime_model``; docs/LIVE.md), with the modeled p95 age of a value on real air.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from smartlogger.protocol.live import AD_LEN, ADV_INTERVAL_DISCHARGE_MS, ADV_INTERVAL_FLOAT_MS

SMARTLOGGER = shutil.which("smartlogger", path=str(Path(sys.executable).parent)) or "smartlogger"

#: LE 1M PHY: preamble 1 + access address 4 + header 2 + AdvA 6 + data + CRC 3, 8 us per byte.
PDU_OVERHEAD_BYTES = 1 + 4 + 2 + 6 + 3
US_PER_BYTE = 8.0
#: The connectable advert (service UUID + name, docs/BLE.md) during a test, assumed 2 s.
CONNECTABLE_AD_LEN = 31
CONNECTABLE_INTERVAL_MS = 2000.0
#: advDelay: 0..10 ms random delay added to every advertising event (Core spec Vol 6 B 4.4.2.2.1).
ADV_DELAY_MEAN_MS = 5.0
#: The loggers' sample interval during a discharge (ms).
SAMPLE_MS = 1000.0


def pdu_us(ad_len: int) -> float:
    return (PDU_OVERHEAD_BYTES + ad_len) * US_PER_BYTE


def airtime_model(n: int, *, interval_ms: float = ADV_INTERVAL_DISCHARGE_MS, seed: int = 1) -> dict[str, Any]:
    """Channel occupancy and collisions of ``n`` loggers, each sending its live advert every
    ``interval_ms`` (+ advDelay) and its connectable advert every ``CONNECTABLE_INTERVAL_MS``
    on all three advertising channels; a scanner listening continuously (one channel at a
    time) hears a live PDU unless another PDU overlaps it (unslotted ALOHA). The p95 age of a
    value on screen (at a random moment) is sampled by Monte Carlo: the age of the sample an
    event carries (events locked to the 1 s samples), the events lost in a row, and the time
    since the last event."""
    live_us, conn_us = pdu_us(AD_LEN), pdu_us(CONNECTABLE_AD_LEN)
    t_live = (interval_ms + ADV_DELAY_MEAN_MS) / 1000.0
    t_conn = (CONNECTABLE_INTERVAL_MS + ADV_DELAY_MEAN_MS) / 1000.0
    share = n * (live_us / t_live + conn_us / t_conn) / 1e6  # of one channel's time
    # a live PDU survives if no other PDU starts within (its length + the other's) before/after
    rate_live, rate_conn = n / t_live, n / t_conn
    vuln_s = (rate_live * 2 * live_us + rate_conn * (live_us + conn_us)) / 1e6
    p_ok = math.exp(-vuln_s)
    rng = random.Random(seed)
    ages = []
    for _ in range(20000):
        # the events are locked to the samples (an event right after each sample, + advDelay;
        # a shorter interval repeats the sample): the age of the sample an event carries ...
        per = max(1, round(SAMPLE_MS / interval_ms))
        age = (rng.randrange(per) * interval_ms) % SAMPLE_MS / 1000.0
        age += rng.random() * ADV_DELAY_MEAN_MS * 2 / 1000.0
        # ... plus the events lost in a row, plus where in the interval the screen is looked at
        while rng.random() > p_ok:
            age += t_live
        ages.append(age + rng.random() * t_live)
    ages.sort()
    return {"loggers": n, "interval_ms": interval_ms, "payload_bytes": AD_LEN, "pdu_us": round(live_us),
            "channel_share": round(share, 4), "p_received": round(p_ok, 4),
            "update_age_s_p95": round(ages[int(0.95 * len(ages))], 2),
            "float_interval_ms": ADV_INTERVAL_FLOAT_MS,
            "float_channel_share": round(n * (live_us / (ADV_INTERVAL_FLOAT_MS / 1000.0)
                                              + conn_us / t_conn) / 1e6, 4)}


def _cli(*args: str) -> str:
    p = subprocess.run([SMARTLOGGER, *args], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"smartlogger {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _p95(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))]


def run_site(blocks: int, speed: float, load: str, after_s: float, workdir: Path) -> dict[str, Any]:
    site, kit, folder = workdir / "site", workdir / "kit.key", workdir / "test"
    weak = max(1, blocks // 8)
    _cli("sim", "site", "start", str(site), "--blocks", str(blocks), "--weak", str(weak),
         "--speed", str(speed))
    watcher = spoofer = None
    watch_err = (workdir / "watch.err").open("w")
    spoof_err = (workdir / "spoofer.err").open("w")
    try:
        t0 = time.perf_counter()
        _cli("nfc", "program", "--site", str(site), "--count", str(blocks), "--test-id", "BENCH",
             "--kit-key", str(kit), "--json")
        program_s = time.perf_counter() - t0
        status = json.loads(_cli("sim", "site", "status", str(site), "--json"))
        truth0 = json.loads(_cli("sim", "site", "truth", str(site), "--json"))
        healthy = next(b["position"] for b in truth0["blocks"] if not b["weak"])
        watcher = subprocess.Popen(
            [SMARTLOGGER, "test", "watch", "--site", str(site), "--kit-key", str(kit), "--test-id", "BENCH",
             "--end-voltage", "1.75V/cell", "--cells", "6", "--load", load, "--blocks", str(blocks),
             "--json", "--folder", str(folder)], stdout=subprocess.PIPE, stderr=watch_err, text=True)
        assert watcher.stdout is not None
        q = _lines(watcher.stdout)
        deadline = time.monotonic() + 300
        while True:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise SystemExit("the watcher ended before it saw every block")
            if json.loads(line).get("blocks_seen", 0) >= blocks:
                break
        spoofer = subprocess.Popen([sys.executable, "-m", "smartlogger.testing.spoofer",
                                    status["ble_transport"], "--position", str(healthy),
                                    "--duration", "3600", "--interval-ms", "500"],
                                   stdout=subprocess.PIPE, stderr=spoof_err, text=True)
        assert spoofer.stdout is not None
        first = spoofer.stdout.readline()
        if not first:
            raise SystemExit(f"the spoofer ended: {(workdir / 'spoofer.err').read_text()[-2000:]}")
        ready = json.loads(first)
        _cli("sim", "site", "load", str(site), load)
        updates: list[dict[str, Any]] = []
        alarm: dict[str, Any] | None = None
        stop_at: float | None = None
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            line = q.get(timeout=600)
            if line is None:
                tail = (workdir / "watch.err").read_text()[-2000:]
                raise SystemExit(f"the watcher ended (exit {watcher.wait()}): {tail}")
            msg = json.loads(line)
            if msg["type"] == "alarm":
                alarm = msg
                stop_at = msg["fired_ms"] + after_s * 1000
                continue
            updates.append(msg)
            if stop_at is not None and msg["now_ms"] >= stop_at:
                break
        truth = json.loads(_cli("sim", "site", "truth", str(site), "--json"))["test"]
    finally:
        for proc in (watcher, spoofer):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        subprocess.run([SMARTLOGGER, "sim", "site", "stop", str(site), "--timeout", "120"],
                       capture_output=True, timeout=300)
        watch_err.close()
        spoof_err.close()
    start = truth["start_utc_ms"]
    ends = {b["position"]: b["time_to_end_s"] for b in truth["blocks"] if b["time_to_end_s"] is not None}
    first_pos = min(ends, key=lambda p: ends[p]) if ends else None
    ages = [b["age_s"] for u in updates if u["now_ms"] > start for b in u["blocks"]
            if b["state"] != "float"]
    out: dict[str, Any] = {"blocks": blocks, "weak": weak, "speed": speed, "load": load,
                           "program_wall_s": round(program_s, 1), "update_lines": len(updates)}
    a95 = _p95(ages)
    out["update_age_virtual_s_p95"] = a95
    out["update_age_s_p95"] = None if a95 is None else round(a95 / speed, 2)
    if alarm is not None and first_pos is not None:
        crossed = start + ends[first_pos] * 1000
        lat = (alarm["fired_ms"] - crossed) / 1000.0
        out.update(alarm_block=alarm["position"], first_block_truth=first_pos,
                   alarm_right_block=alarm["position"] == first_pos,
                   end_alarm_latency_virtual_s=round(lat, 1), end_alarm_latency_s=round(lat / speed, 2))
    else:
        out.update(alarm_block=None, end_alarm_latency_s=None)
    # predictions at half the discharge time (the first block's time to end)
    if first_pos is not None and updates:
        half_ms = start + ends[first_pos] * 500
        at_half = min(updates, key=lambda u: abs(u["now_ms"] - half_ms))
        errs: dict[str, float | None] = {}
        for b in at_half["blocks"]:
            if b["position"] not in ends:
                continue
            actual = start + ends[b["position"]] * 1000
            pred = b["predicted_end_ms"]
            errs[str(b["position"])] = None if pred is None else round(
                abs(pred - actual) / (actual - start) * 100, 2)
        known = [e for e in errs.values() if e is not None]
        out.update(prediction_at_s=round((at_half["now_ms"] - start) / 1000), prediction_blocks=errs,
                   prediction_error_pct=max(known) if known and len(known) == len(errs) else None,
                   unpredicted=[p for p, e in errs.items() if e is None])
    # spoofed values on screen
    seen_seq = -1
    accepted = 0
    for u in updates:
        row = next((b for b in u["blocks"] if b["position"] == healthy), None)
        if row is None:
            continue
        if row["seq"] >= ready["forged_seq"] or row["v"] <= 5.0 or row["seq"] < seen_seq:
            accepted += 1
        seen_seq = max(seen_seq, row["seq"])
    out["spoofed_updates_accepted"] = accepted
    out["rejected"] = updates[-1]["rejected"] if updates else {}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--speed", type=float, default=60.0, help="site speed (x real time)")
    ap.add_argument("--load", default="20A", help="load bank (constant current)")
    ap.add_argument("--after", type=float, default=60.0, help="site seconds watched after the alarm")
    ap.add_argument("--airtime-only", action="store_true", help="only the airtime model")
    args = ap.parse_args()
    out: dict[str, Any] = {"benchmark": "live",
                           "airtime": {"room_240": airtime_model(240), "blocks": airtime_model(args.blocks)}}
    out["airtime_share_240"] = out["airtime"]["room_240"]["channel_share"]
    if not args.airtime_only:
        with tempfile.TemporaryDirectory(prefix="smartlogger-live-") as tmp:
            out.update(run_site(args.blocks, args.speed, args.load, args.after, Path(tmp)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
