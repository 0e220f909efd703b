"""Companion app benchmark: the in-browser logfile decoder and the phone's time to a result.

Prints ONE JSON object:

- ``decode_*``: app_stub/js/slog.js in Node (V8, as in Chrome) on an unsigned logfile of a logger
  on float charge at 1 sample/min for ``years`` years (10; 1 with ``--quick``): file size, decode
  time (SLog.read + samplesOf, best of 3), samples per second; ``python_decode_ms`` is
  smartlogger.logfile.read_logfile + load_samples on the same bytes for comparison.
- ``grid_*``/``chart_ms``: headless Debian chromium (phone viewport) against a live
  ``smartlogger serve`` holding an analysed N-block simulated test (24; 6 with ``--quick``):
  ``grid_cold_ms`` from navigation to the block grid on first visit (service worker not yet
  installed), ``grid_warm_ms`` the same navigation again (shell from the service worker cache),
  ``chart_ms`` from tapping the weakest block to its voltage chart with threshold lines (logfile
  download + decode + draw). Warm and chart figures are medians of 3.

Usage: ``python benchmarks/app.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SLOG_JS = ROOT / "app_stub" / "js" / "slog.js"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

NODE_DECODE = r"""
const fs = require('fs'); const vm = require('vm');
const ctx = {TextDecoder, DataView, Uint8Array, Float64Array, BigInt, Math, Number, JSON, Object, Error, Array};
ctx.self = ctx; vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[1], 'utf8'), ctx);
const bytes = new Uint8Array(fs.readFileSync(process.argv[2]));
let best = Infinity, n = 0;
for (let i = 0; i < 3; i++) {
  const t0 = process.hrtime.bigint();
  const lf = ctx.SLog.read(bytes); const s = ctx.SLog.samplesOf(lf);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  best = Math.min(best, ms); n = s.mv.length;
}
process.stdout.write(JSON.stringify({ms: best, samples: n}));
"""


def float_logfile(years: int) -> bytes:
    """An unsigned logfile: config change, then ``years`` of 1-min float samples in daily blocks."""
    from smartlogger.logfile import LogfileMetadata
    from smartlogger.model import ConfigChange
    from smartlogger.testing.logfile_examples import (
        EPOCH_2026_MS,
        ChainedLog,
        example_config,
        example_identity,
        float_trace,
        sample_blocks,
    )

    ident = example_identity("SIM-BENCH")
    log = ChainedLog(ident.serial)
    log.append(ConfigChange(EPOCH_2026_MS, example_config(), 1))
    mv, dc = float_trace(years * 365 * 1440)
    for block in sample_blocks(EPOCH_2026_MS + 60_000, 60_000, mv, dc, 1440):
        log.append(block)
    return log.logfile(ident, None, [], LogfileMetadata("B07", 7, {}, EPOCH_2026_MS))


def bench_decode(years: int, work: Path) -> dict[str, Any]:
    from smartlogger.logfile import load_samples, read_logfile

    data = float_logfile(years)
    path = work / "float.slog"
    path.write_bytes(data)
    node = shutil.which("node")
    out: dict[str, Any] = {"decode_years": years, "decode_file_bytes": len(data)}
    if node:
        r = json.loads(subprocess.run([node, "-e", NODE_DECODE, str(SLOG_JS), str(path)], check=True,
                                      capture_output=True, text=True, timeout=600).stdout)
        out.update(decode_samples=r["samples"], decode_ms=round(r["ms"], 1),
                   decode_samples_per_s=round(r["samples"] / r["ms"] * 1000))
    t0 = time.perf_counter()
    load_samples(read_logfile(data))
    out["python_decode_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(base: str, token: str, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def bench_browser(blocks: int, work: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from smartlogger.api.admin import Admin
    from smartlogger.testing.api import simulated_logfiles

    admin = Admin(f"sqlite:///{work / 'smartlogger.db'}")
    admin.create_org("Bench")
    admin.create_user("Bench", "bench@example.org", "technician")
    token = admin.issue_token("bench@example.org").token
    admin.close()
    port = _free_port()
    exe = shutil.which("smartlogger")
    head = [exe] if exe else [sys.executable, "-c", "from smartlogger.cli import main; main()"]
    proc = subprocess.Popen([*head, "serve", "--data", str(work), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        test = _api(base, token, "POST", "/api/tests", {"name": "bench", "load": "50A", "rated_time": "2h",
                                                        "blocks": blocks})
        for blob in simulated_logfiles(blocks, seed=5):
            _api(base, token, "POST", f"/api/logfiles?test_id={test['id']}", blob, "application/octet-stream")
        deadline = time.monotonic() + 600
        while _api(base, token, "GET", f"/api/tests/{test['id']}")["status"] != "analysed":
            if time.monotonic() > deadline:
                raise TimeoutError("analysis did not finish")
            time.sleep(0.2)
        result = _api(base, token, "GET", f"/api/tests/{test['id']}/results")["result"]
        weakest = result["ranking"][0]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            page = ctx.new_page()
            page.goto(base + "/app/#/signin")
            page.fill("#token", token)
            page.click("#signin")
            page.locator("#sites, .empty").first.wait_for()
            page.goto("about:blank")
            t0 = time.perf_counter()
            page.goto(f"{base}/app/#/tests/{test['id']}")
            page.locator("#grid .block").first.wait_for()
            cold = (time.perf_counter() - t0) * 1000
            page.locator("html[data-sw=ready]").wait_for(state="attached")
            warm, chart = [], []
            for _ in range(3):  # medians: the machine's 2 cores are shared
                page.goto("about:blank")
                t0 = time.perf_counter()
                page.goto(f"{base}/app/#/tests/{test['id']}")
                page.locator("#grid .block").first.wait_for()
                warm.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                page.locator(f"#grid .block[data-serial='{weakest}']").click()
                page.locator("#chart-voltage line.threshold").first.wait_for(state="attached")
                chart.append((time.perf_counter() - t0) * 1000)
            browser.close()
        return {"grid_blocks": blocks, "grid_cold_ms": round(cold), "grid_warm_ms": round(statistics.median(warm)),
                "chart_ms": round(statistics.median(chart))}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 year of float, a 6-block test")
    args = parser.parse_args()
    out: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="sl-app-bench-") as d:
        out.update(bench_decode(1 if args.quick else 10, Path(d)))
        if Path(CHROMIUM).exists():
            serve = Path(d) / "serve"
            serve.mkdir()
            out.update(bench_browser(6 if args.quick else 24, serve))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
