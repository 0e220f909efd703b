"""The companion web app (app_stub/) in a real browser against a live ``smartlogger serve``.

Debian's chromium (never a downloaded browser) is driven by Playwright on a phone-sized viewport.
The module starts ``smartlogger serve`` on a free loopback port with a temporary data directory,
creates the organisation, user and token with the API's admin functions, builds a site -> system
-> string -> capacity test through the API and uploads simulated, signed logfiles (firmware model +
logfile writer) whose thresholds give green, yellow and red blocks. The tests then use the app as
a technician would and compare what it shows with the API's own answers. The main views are
photographed on every run (and checked to fit the phone); they replace docs/img/app_*.png (shown
in docs/APP.md) only when asked, so an ordinary run leaves the tree as it was:
``SMARTLOGGER_UPDATE_SCREENSHOTS=1 python -m pytest tests/test_app_browser.py``.

The tests run in file order and share one browser context (sign-in once, the service worker
installed once), as the app is used on one phone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}  # CSS px, a common phone viewport
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
#: Write the screenshots over docs/img/app_*.png (the documentation's images) only when asked.
UPDATE_SCREENSHOTS = os.environ.get("SMARTLOGGER_UPDATE_SCREENSHOTS") == "1"
# Severity -> block background in app.css (--green-bg, --yellow-bg, --red-bg), as computed RGB.
BACKGROUND = {"green": "rgb(215, 240, 222)", "yellow": "rgb(255, 241, 168)", "red": "rgb(249, 211, 208)"}
WARNING_STROKE, ALARM_STROKE = "#d35400", "#c0392b"  # chart.js COLOURS: orange, red

if not Path(CHROMIUM).exists():  # pragma: no cover - depends on the machine
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


# ----------------------------------------------------------------------------- logfiles


def thresholds() -> Any:
    """Levels that split the simulated string into green, yellow and red blocks.

    Seed 1 (six 12 V blocks, one weak, 50 A): the weak block falls through the low alarm (red);
    the others end between 11.25 and 11.30 V and 26-29.4 degC, so a low warning at 11.25 V and a
    high temperature warning at 29.0 degC catch exactly one of them briefly (yellow).
    """
    from smartlogger.model import Thresholds

    return Thresholds(v_low_alarm_mv=10500, v_low_warn_mv=11250, v_high_warn_mv=14100, v_high_alarm_mv=14700,
                      t_low_alarm_dc=0, t_low_warn_dc=50, t_high_warn_dc=290, t_high_alarm_dc=400)


def make_logfiles(n_blocks: int, seed: int, test_id: str) -> list[bytes]:
    """Signed logfiles of a simulated capacity test, one per logger, as the field tool pulls them."""
    from smartlogger.device.sim import simulate_string_test
    from smartlogger.device.store import MemoryStore
    from smartlogger.logfile import LogfileMetadata, pull_logfile, simulated_credentials

    st = simulate_string_test(n_blocks, weak=1, load="50A", rest_before_s=60, rest_after_s=60, seed=seed,
                              thresholds=thresholds(), test_id=test_id,
                              store_factory=lambda ident: MemoryStore(serial=ident.serial))
    out = []
    for lg in st.loggers:
        meta = LogfileMetadata(block_label=lg.config.block_label, block_position=lg.config.block_position,
                               test={"load": "50A", "test_id": test_id})
        out.append(pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store,
                                device_ms=lg.now_ms(), nonce=bytes(16), metadata=meta))
    return out


def tampered_copy(logfiles: list[bytes]) -> bytes:
    """The file of the logger with the lowest voltage, every sample shifted by +400 mV (rebuilt)."""
    from smartlogger.logfile import load_samples, read_logfile
    from smartlogger.logfile.records import encode_record
    from smartlogger.model import SampleBlock
    from smartlogger.testing.tamper import rebuild

    weakest = min(logfiles, key=lambda b: int(load_samples(read_logfile(b))[1].min()))
    lf = read_logfile(weakest)
    streams = [[(r.seq, encode_record(SampleBlock.of(r.record.start_ms, r.record.interval_ms,
                                                     [v + 400 for v in r.record.mv], list(r.record.dc)))
                 if isinstance(r.record, SampleBlock) else r.data) for r in st.records] for st in lf.streams]
    return rebuild(lf, streams)


# ----------------------------------------------------------------------------- live server


@dataclass
class Live:
    base: str
    token: str
    test_id: int
    spare_test_id: int
    logfiles: list[bytes]
    spare: list[bytes]
    files: Path
    string_id: int = 0
    tampered: bytes = b""

    def api(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
            ctype: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def wait(self, path: str, ok: Any, timeout: float = 60.0) -> Any:
        """Poll ``path`` until ``ok(json)``: the server's background jobs finish on their own time."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.api("GET", path)
            if status == 200 and ok(body):
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: {status} {body}")
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command(data: Path, port: int) -> list[str]:
    exe = shutil.which("smartlogger")
    head = [exe] if exe else [sys.executable, "-c", "from smartlogger.cli import main; main()"]
    return [*head, "serve", "--data", str(data), "--host", "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from smartlogger.api.admin import Admin

    data = tmp_path_factory.mktemp("serve-data")
    admin = Admin(f"sqlite:///{data / 'smartlogger.db'}")
    admin.create_org("Acme Service")
    admin.create_user("Acme Service", "tech@acme.example", "technician", name="Tina Technician")
    token = admin.issue_token("tech@acme.example", label="browser test").token
    admin.close()

    port = _free_port()
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(_serve_command(data, port), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "SMARTLOGGER_RATE_LIMIT_PER_MINUTE": "0"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: the server answers its health probe
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("smartlogger serve did not start: "
                                       + (data / "serve.log").read_text(errors="replace")) from None
                time.sleep(0.1)
        with urllib.request.urlopen(base + "/app/", timeout=5) as resp:
            assert resp.status == 200, "the API does not serve app_stub/ at /app/"

        logfiles = make_logfiles(6, seed=1, test_id="T-2026-11")
        spare = make_logfiles(2, seed=2, test_id="T-SPARE")
        files = data / "phone-files"
        files.mkdir()
        live = Live(base, token, 0, 0, logfiles, spare, files)
        _, site = live.api("POST", "/api/sites", {"name": "Plant North", "address": "Basement B2, Hall 3"})
        _, system = live.api("POST", "/api/systems", {"site_id": site["id"], "name": "UPS A", "kind": "UPS"})
        _, string = live.api("POST", "/api/strings", {"system_id": system["id"], "name": "String 1", "blocks": 6,
                                                      "block_voltage_v": 12.0, "rated_ah": 100.0})
        _, test = live.api("POST", "/api/tests", {"string_id": string["id"], "name": "Annual capacity test",
                                                  "load": "50A", "rated_time": "2h"})
        _, spare_test = live.api("POST", "/api/tests", {"string_id": string["id"], "name": "Spot check",
                                                        "load": "50A", "blocks": 2})
        # A test on another string: the string view must not list it (GET /api/tests?string_id=).
        _, other = live.api("POST", "/api/strings", {"system_id": system["id"], "name": "String 2", "blocks": 6,
                                                     "block_voltage_v": 12.0, "rated_ah": 100.0})
        live.api("POST", "/api/tests", {"string_id": other["id"], "name": "Test on string 2", "load": "50A"})
        live.test_id, live.spare_test_id, live.string_id = test["id"], spare_test["id"], string["id"]
        # A tampered copy of the weakest logger's file (+400 mV, CRCs and footer recomputed) goes in
        # first: stored as evidence of something, excluded from the analysis and named by the app.
        live.tampered = tampered_copy(logfiles)
        status, body = live.api("POST", f"/api/logfiles?test_id={test['id']}", live.tampered,
                                "application/octet-stream")
        assert status == 201 and body["verification_status"] == "tampered", body
        for blob in logfiles:
            status, body = live.api("POST", f"/api/logfiles?test_id={test['id']}", blob, "application/octet-stream")
            assert status == 201, body
        live.wait(f"/api/tests/{test['id']}/report", lambda b: b["status"] == "ready")
        yield live
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = b.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True,
                            accept_downloads=True)
        ctx.set_default_timeout(15000)
        yield ctx
        ctx.close()
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, live: Live) -> Iterator[Any]:
    p = browser.new_page()
    problems: list[str] = []
    p.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: problems.append(str(e)))
    p.problems = problems
    yield p


def shot(page: Any, name: str, at: str | None = None) -> None:
    """Photograph what the phone's screen shows (the viewport), scrolled to ``at`` if given;
    saved as docs/img/app_NAME.png with SMARTLOGGER_UPDATE_SCREENSHOTS=1."""
    if at:
        page.locator(at).scroll_into_view_if_needed()
        page.evaluate("sel => document.querySelector(sel).scrollIntoView({block: 'start'})", at)
    png = page.screenshot()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", name
    if UPDATE_SCREENSHOTS:
        IMG.mkdir(parents=True, exist_ok=True)
        (IMG / f"app_{name}.png").write_bytes(png)
    # Mobile-first: no view may be wider than the phone (no sideways scrolling).
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name


def severity(block: dict[str, Any]) -> str:
    """The worst exceedance class of a block of the API's result."""
    return "red" if block["red"] else "yellow" if block["yellow"] else "green"


def small_targets(page: Any, selector: str) -> list[str]:
    """Visible elements matching ``selector`` smaller than 44 x 44 CSS px (touch target minimum)."""
    found = page.eval_on_selector_all(selector, """els => els.filter(e => e.offsetParent !== null).map(e => {
        const r = e.getBoundingClientRect();
        return [e.textContent.trim().slice(0, 30), r.width, r.height];
    })""")
    return [f"{t!r} {w:.0f}x{h:.0f}" for t, w, h in found if w < 44 or h < 44]


# ----------------------------------------------------------------------------- tests


def test_sign_in_and_walk_sites_strings_tests(page: Any, live: Live) -> None:
    page.goto(live.base + "/app/")
    page.wait_for_url("**/app/#/signin")
    shot(page, "signin")
    page.fill("#token", "slt_not-a-real-token")
    page.click("#signin")
    expect(page.locator(".form-error")).to_contain_text("unknown token")
    page.fill("#token", live.token)
    page.click("#signin")
    page.locator("#sites").get_by_text("Plant North").click()
    page.get_by_role("heading", name="UPS A").wait_for()
    shot(page, "site")
    with page.expect_request(lambda r: f"/api/tests?string_id={live.string_id}&" in r.url):
        page.get_by_text("String 1").click()  # one request for the string's tests, not all tests
    page.get_by_text("Annual capacity test").wait_for()
    assert page.get_by_text("Spot check").is_visible()
    assert page.get_by_text("Test on string 2").count() == 0
    shot(page, "string")
    page.get_by_text("Annual capacity test").click()
    page.locator("#grid .block").first.wait_for()
    expect(page.locator(".crumbs")).to_have_text("Sites›Plant North›String 1›Annual capacity test")
    assert not small_targets(page, ".block, .tabs a, button, .crumbs a, .row")
    # Registered service worker: the rest of the tests rely on it.
    page.locator("html[data-sw=ready]").wait_for(state="attached")


def test_grid_colours_match_the_api_results(page: Any, live: Live) -> None:
    _, res = live.api("GET", f"/api/tests/{live.test_id}/results")
    blocks = res["result"]["blocks"]
    expected = {b["serial"]: severity(b) for b in blocks}
    assert set(expected.values()) == {"green", "yellow", "red"}, expected  # the fixture covers all classes
    page.goto(f"{live.base}/app/#/tests/{live.test_id}")
    page.locator("#grid .block").first.wait_for()
    page.click("button[data-sort=position]")
    cells = page.eval_on_selector_all("#grid .block", """els => els.map(e => ({
        serial: e.dataset.serial, sev: e.dataset.severity, text: e.innerText,
        bg: getComputedStyle(e).backgroundColor}))""")
    assert [c["serial"] for c in cells] == [b["serial"] for b in sorted(blocks, key=lambda b: b["position"])]
    words = {"green": "OK", "yellow": "Warning", "red": "Alarm"}
    icons = {"green": "✔", "yellow": "⚠", "red": "✖"}
    for c in cells:
        sev = expected[c["serial"]]
        assert c["sev"] == sev and c["bg"] == BACKGROUND[sev], c
        # never colour alone: the icon and the word are in the cell
        assert words[sev] in c["text"] and icons[sev] in c["text"], c
        api_block = next(b for b in blocks if b["serial"] == c["serial"])
        assert f"{api_block['capacity_pct']:.0f} %" in c["text"]
    # What the result rests on: the API's evidence statement, not verified-only (simulated loggers),
    # each tile marked "simulated", and the tampered file named as excluded.
    ev = res["result"]["evidence"]
    assert page.inner_text("#evidence-statement") == ev["statement"]
    assert page.get_attribute("#evidence", "data-verified-only") == "false"
    assert {c["evidence"] for c in page.eval_on_selector_all(
        "#grid .block", "els => els.map(e => ({evidence: e.dataset.evidence}))")} == {"simulated"}
    assert all("simulated" in c["text"].lower() for c in cells)
    excluded = page.eval_on_selector_all("#excluded li", "els => els.map(e => [e.dataset.reason, e.innerText])")
    assert [e[0] for e in excluded] == ["tampered"] == [f["reason"] for f in res["result"]["excluded"]]
    assert res["result"]["excluded"][0]["file"] in excluded[0][1]
    # The analysis' warnings are shown as they are (how the test ended, bounds, missing loggers).
    notes = page.locator("#analysis-notes li").all_inner_texts()
    assert res["result"]["warnings"] and [n.lstrip("⚠ ").strip() for n in notes] == res["result"]["warnings"]
    shot(page, "grid")
    page.click("button[data-sort=capacity]")
    weakest = page.eval_on_selector_all("#grid .block", "els => els.map(e => e.dataset.serial)")
    # "Weakest first" is the analysis' one ranking (lower bounds never compared by their number), shown in words.
    assert weakest == [b["serial"] for b in sorted(blocks, key=lambda b: (b["rank"] or 10**9, b["position"]))]
    assert page.inner_text("#ranking-rule") == res["result"]["verdict"]["ranking_rule"]
    # The verdict first, in the API's words.
    assert page.inner_text("#verdict-sentence") == res["result"]["verdict"]["sentence"]
    assert page.get_attribute("#verdict", "data-outcome") == res["result"]["verdict"]["outcome"]
    page.click("button[data-sort=severity]")
    worst = page.eval_on_selector_all("#grid .block", "els => els.map(e => e.dataset.severity)")
    assert worst[0] == "red" and worst[-1] == "green"
    page.click("button[data-sort=position]")


def test_block_chart_shows_the_loggers_threshold_lines(page: Any, live: Live) -> None:
    from smartlogger.logfile import config_history, read_logfile

    _, res = live.api("GET", f"/api/tests/{live.test_id}/results")
    red = next(b for b in res["result"]["blocks"] if b["red"])
    page.goto(f"{live.base}/app/#/tests/{live.test_id}")
    urls: list[str] = []

    def seen(request: Any) -> None:
        urls.append(request.url)

    page.on("request", seen)
    # The discharge window's series, reduced by the server: the logfile itself is not downloaded.
    with page.expect_request(lambda r: "/series?max_points=" in r.url and "from_ms=" in r.url) as first:
        page.locator(f"#grid .block[data-serial='{red['serial']}']").click()
    # ... of a logfile the analysis used: never the tampered copy of this logger's file.
    _, attached = live.api("GET", f"/api/tests/{live.test_id}/logfiles")
    used = {f["sha256"] for f in red["evidence"]["files"] if f["used"]}
    charted = next(lf for lf in attached if f"/api/logfiles/{lf['id']}/series" in first.value.url)
    assert charted["sha256"] in used and charted["verification_status"] == "simulated"
    assert {"tampered"} == {f["status"] for f in red["evidence"]["files"] if not f["used"]}
    expect(page.locator("#block-files .evidence-file.excluded")).to_have_count(1)
    page.locator("#chart-voltage line.threshold").first.wait_for(state="attached")
    blob = next(b for b in live.logfiles if read_logfile(b).identity.serial == red["serial"])
    th = config_history(blob)[-1].config.thresholds
    volts = page.eval_on_selector_all("#chart-voltage line.threshold", """els => els.map(e => [
        e.dataset.kind, e.dataset.side, e.dataset.value, e.getAttribute('stroke')])""")
    assert sorted(volts) == sorted([
        ["alarm", "low", f"{th.v_low_alarm_mv / 1000:.2f}", ALARM_STROKE],
        ["warning", "low", f"{th.v_low_warn_mv / 1000:.2f}", WARNING_STROKE],
        ["warning", "high", f"{th.v_high_warn_mv / 1000:.2f}", WARNING_STROKE],
        ["alarm", "high", f"{th.v_high_alarm_mv / 1000:.2f}", ALARM_STROKE]])
    temps = page.eval_on_selector_all("#chart-temperature line.threshold",
                                      "els => els.map(e => [e.dataset.kind, e.dataset.value])")
    assert sorted(temps) == sorted([["alarm", f"{th.t_low_alarm_dc / 10:.1f}"], ["warning", f"{th.t_low_warn_dc / 10:.1f}"],
                                    ["warning", f"{th.t_high_warn_dc / 10:.1f}"], ["alarm", f"{th.t_high_alarm_dc / 10:.1f}"]])
    # The lines are inside the plot and the measured series is drawn (min/max reduced, not empty).
    points = int(page.get_attribute("#chart-voltage polyline.series", "data-points") or 0)
    assert points > 100
    # The red exceedance of the analysis is listed with its icon and word, and shaded on the chart.
    assert "Alarm" in page.locator("#exceedances .sev-red").first.inner_text()
    # The block's internal resistance as the API's result has it, with its uncertainty.
    ir = page.locator(".figures div", has_text="Internal resistance").locator("dd").inner_text()
    assert f"{red['resistance_mohm']:.2f} m\u03a9 \u00b1 {red['resistance_uncertainty_mohm']:.2f}" in ir, ir
    assert red["resistance_status"] in ir  # judged against the string's median block
    assert page.locator("#chart-voltage rect.span-red").count() >= 1
    shot(page, "block")
    shot(page, "block_charts", at="#charts")
    # The whole log on demand: one more series request (the whole range), drawn the same way.
    with page.expect_request(lambda r: "/series?max_points=" in r.url and "from_ms=" not in r.url):
        page.click("#window-toggle")
    expect(page.locator("#window-toggle")).to_have_text("Show the discharge")
    expect(page.locator("#series-note")).to_contain_text("samples")
    assert int(page.get_attribute("#chart-voltage polyline.series", "data-points") or 0) > 100
    assert not [u for u in urls if "/content" in u]
    page.click("#window-toggle")
    expect(page.locator("#window-toggle")).to_have_text("Show the whole log")
    page.remove_listener("request", seen)


def test_the_test_page_follows_a_watch_live(page: Any, live: Live) -> None:
    path = f"/api/tests/{live.spare_test_id}/live"
    blocks = [{"position": p, "v": v, "c": 22.0, "state": "discharge", "warning": p == 2, "stale": False,
               "min_v": v, "age_s": 0.5, "to_end_s": t}
              for p, v, t in ((1, 11.95, 5400.0), (2, 11.62, 2700.0))]
    snap = {"now_ms": 1_780_000_000_000, "string_v": 23.57, "blocks_expected": 2, "blocks_seen": 2,
            "elapsed_s": 1800.0, "delivered_ah": 25.0, "predicted_end_ms": 1_780_000_000_000 + 2_700_000,
            "predicted_first_block": 2, "warning_blocks": [2], "alarm_blocks": [], "blocks": blocks}
    page.goto(f"{live.base}/app/#/tests/{live.spare_test_id}")
    page.locator("#no-result").wait_for()
    assert page.locator("#live").is_hidden()  # nothing posted yet
    assert live.api("PUT", path, snap)[0] == 200
    expect(page.locator("#live")).to_be_visible(timeout=10000)  # the page polls
    fig = page.locator("#live-figures")
    expect(fig.locator("[data-key='String voltage'] dd")).to_have_text("23.57\u00a0V")
    expect(fig.locator("[data-key='Ah so far'] dd")).to_have_text("25.0\u00a0Ah")
    expect(fig.locator("[data-key='Elapsed'] dd")).to_have_text("30 min")
    expect(fig.locator("[data-key='Predicted end'] dd")).to_contain_text("(block 2)")
    expect(fig.locator("[data-key='Warning'] dd")).to_have_text("2")
    assert page.eval_on_selector_all("#live-lowest tbody tr", "rs => rs.map(r => r.dataset.position)") == ["2", "1"]
    assert page.get_attribute("#live", "data-stale") == "false"
    shot(page, "live", at="#live")
    alarm = {"position": 2, "v": 10.49, "alarm_v": 10.5, "sample_ms": snap["now_ms"] + 2000,
             "fired_ms": snap["now_ms"] + 2100, "elapsed_s": 1802.0}
    assert live.api("PUT", path, {**snap, "now_ms": snap["now_ms"] + 3000, "string_v": 22.41, "alarm": alarm,
                                  "alarm_blocks": [2]})[0] == 200
    expect(page.locator("#live-alarm")).to_have_text("\u2716 End alarm: block 2 at 10.490\u00a0V "
                                                     "(alarm at 10.500\u00a0V)", timeout=10000)
    expect(fig.locator("[data-key='String voltage'] dd")).to_have_text("22.41\u00a0V")
    # the watcher went quiet: its last state ages on the server, is marked stale, then no longer shown
    import datetime as dt
    import sqlite3

    def received(ago_s: float) -> None:
        db = sqlite3.connect(live.files.parent / "smartlogger.db")
        with db:
            (old,) = db.execute("SELECT received_at FROM live_snapshots WHERE test_id = ?",
                                (live.spare_test_id,)).fetchone()
            t = dt.datetime.fromisoformat(old) - dt.timedelta(seconds=ago_s)
            db.execute("UPDATE live_snapshots SET received_at = ? WHERE test_id = ?",
                       (t.isoformat(sep=" "), live.spare_test_id))
        db.close()

    received(150)
    expect(page.locator("#live")).to_have_attribute("data-stale", "true", timeout=10000)
    expect(page.locator("#live-age")).to_contain_text("Not updated for 2 min")
    received(7200)
    expect(page.locator("#live")).to_be_hidden(timeout=10000)


def test_report_request_shows_progress_and_downloads(page: Any, browser: Any, live: Live, tmp_path: Path) -> None:
    # The server built this report right after the analysis, so it answers "ready" at once. To see
    # the app follow a job, its first two answers are the real ones with the status of a job
    # still waiting and then running (a state a live server cannot be held in on demand).
    answers: list[str] = []

    def job_in_progress(route: Any, request: Any) -> None:
        real = route.fetch()
        body = real.json()
        if len(answers) < 2:
            body["status"] = body["job"]["status"] = ("queued", "running")[len(answers)]
            body["download"] = body["id"] = body["sha256"] = body["size"] = None
        answers.append(f"{request.method} {body['status']}")
        route.fulfill(response=real, json=body)

    browser.route(f"**/api/tests/{live.test_id}/report", job_in_progress)
    page.goto(f"{live.base}/app/#/tests/{live.test_id}")
    page.locator("#report-button").wait_for()
    with page.expect_download() as info:
        page.click("#report-button")
        page.locator("#report-steps", has_text="Waiting for a worker").wait_for()
        page.locator("#report-steps", has_text="Building the workbook").wait_for()
        assert page.locator("#report-progress").get_attribute("value") is None  # indeterminate while the job runs
        shot(page, "report_running", at="#report-button")
    browser.unroute(f"**/api/tests/{live.test_id}/report")
    assert answers == ["POST queued", "GET running", "GET ready"]
    download = info.value
    assert download.suggested_filename == f"test-{live.test_id}-report.xlsx"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    data = target.read_bytes()
    _, state = live.api("GET", f"/api/tests/{live.test_id}/report")
    assert hashlib.sha256(data).hexdigest() == state["sha256"]
    assert "xl/workbook.xml" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    page.locator("#report-status", has_text="Report saved").wait_for()
    assert page.locator("#report-steps .step-done").count() == 3
    shot(page, "report", at="#report-button")


def test_upload_made_offline_completes_when_back_online(page: Any, browser: Any, live: Live) -> None:
    blob = live.spare[0]
    sha = hashlib.sha256(blob).hexdigest()
    path = live.files / "B1-spot-check.slog"
    path.write_bytes(blob)
    page.goto(f"{live.base}/app/#/uploads?test={live.spare_test_id}")
    page.locator("html[data-sw=ready]").wait_for(state="attached")
    page.locator(f"#upload-test option[value='{live.spare_test_id}']").wait_for(state="attached")
    assert page.input_value("#upload-test") == str(live.spare_test_id)
    browser.set_offline(True)
    try:
        page.locator("#net.net-off").wait_for()
        page.set_input_files("#file-input", str(path))
        item = page.locator("#upload-list li[data-name='B1-spot-check.slog']")
        item.wait_for()
        assert item.get_attribute("data-state") == "queued"
        assert "Waiting" in item.inner_text() and "SIM-0001" in item.inner_text()
        expect(page.locator("#upload-badge")).to_have_text("1")
        # Chromium has Background Sync: the worker is asked to retry on its own, even if the page closes.
        assert "sl-upload" in page.evaluate("navigator.serviceWorker.ready.then(r => r.sync.getTags())")
        # A file that is not a logfile is refused on the phone, before it is queued.
        junk = live.files / "photo.jpg"
        junk.write_bytes(b"\xff\xd8\xff\xe0 not a logfile")
        page.set_input_files("#file-input", str(junk))
        page.locator("#upload-message", has_text="photo.jpg").wait_for()
        assert "not a smartlogger logfile" in page.locator("#upload-message").inner_text()
        assert page.locator("#upload-list li[data-name='photo.jpg']").count() == 0
        _, found = live.api("GET", f"/api/logfiles?sha256={sha}")
        assert found == []  # nothing reached the server while offline
        shot(page, "uploads_offline")
        # The queue outlives the page: reopened offline (shell from the service worker), it is still there.
        page.reload()
        page.locator("#upload-list li[data-name='B1-spot-check.slog'][data-state=queued]").wait_for()
    finally:
        browser.set_offline(False)
    page.locator("#upload-list li[data-name='B1-spot-check.slog'][data-state=done]").wait_for()
    _, found = live.api("GET", f"/api/logfiles?sha256={sha}")
    assert len(found) == 1 and found[0]["test_id"] == live.spare_test_id
    # The server's verdict as the app shows it: status, who certified the logger, what it claims.
    expect(page.locator("#upload-list li[data-name='B1-spot-check.slog'] .upload-verification")).to_have_text(
        "verification: simulated · TEST authority · SIMULATED")
    assert found[0]["authority"] == "test" and found[0]["markers"] == ["SIMULATED"] and found[0]["custody"] == []
    expect(page.locator("#upload-badge")).to_be_hidden()
    shot(page, "uploads_done")


def test_shared_logfile_goes_through_the_share_target(page: Any, live: Live) -> None:
    blob = live.spare[1]
    sha = hashlib.sha256(blob).hexdigest()
    path = live.files / "shared-B2.slog"
    path.write_bytes(blob)
    manifest = page.evaluate("fetch('manifest.webmanifest').then(r => r.json())")
    target = manifest["share_target"]
    # What the phone's share sheet does: a multipart POST navigation to the share target.
    page.evaluate("""t => {
        const f = document.createElement('form');
        f.method = t.method; f.enctype = t.enctype; f.action = t.action; f.id = 'share-form';
        const i = document.createElement('input'); i.type = 'file'; i.name = t.params.files[0].name; i.id = 'share-file';
        f.appendChild(i); document.body.appendChild(f);
    }""", target)
    page.set_input_files("#share-file", str(path))
    page.evaluate("document.getElementById('share-form').submit()")
    page.wait_for_url("**/app/#/uploads?shared=1")
    page.locator("#upload-list li[data-name='shared-B2.slog'][data-state=done]").wait_for()
    assert "shared to the app" in page.locator("#upload-list li[data-name='shared-B2.slog']").inner_text()
    _, found = live.api("GET", f"/api/logfiles?sha256={sha}")
    assert len(found) == 1


def test_damaged_logfile_is_rejected_with_the_servers_reason(page: Any, live: Live) -> None:
    blob = live.spare[0]
    path = live.files / "B1-damaged.slog"
    path.write_bytes(blob[: len(blob) // 2])  # right magic bytes, cut in the middle (a broken transfer)
    page.goto(f"{live.base}/app/#/uploads")
    page.set_input_files("#file-input", str(path))
    expect(page.locator("#upload-message")).to_contain_text("the server will decide")
    item = page.locator("#upload-list li[data-name='B1-damaged.slog'][data-state=rejected]")
    item.wait_for()
    status, body = live.api("POST", "/api/logfiles", blob[: len(blob) // 2], "application/octet-stream")
    assert status == 422
    text = item.inner_text()
    assert "Rejected" in text and body["error"]["message"] in text and "HTTP 422" in text
    item.get_by_role("button", name="Remove").click()
    expect(page.locator("#upload-list li[data-name='B1-damaged.slog']")).to_have_count(0)


def test_what_was_loaded_works_offline(page: Any, browser: Any, live: Live) -> None:
    browser.set_offline(True)
    try:
        page.goto(f"{live.base}/app/#/tests/{live.test_id}")  # the shell comes from the service worker
        page.locator("#grid .block").first.wait_for()
        expect(page.locator(".notice-saved")).to_be_visible()
        expect(page.locator("#net")).to_have_text("○ Offline")
        assert page.locator("#grid .block").count() == 6
        shot(page, "offline")
        _, res = live.api("GET", f"/api/tests/{live.test_id}/results")
        serial = next(b["serial"] for b in res["result"]["blocks"] if b["red"])
        page.locator(f"#grid .block[data-serial='{serial}']").click()
        page.locator("#chart-voltage line.threshold").first.wait_for(state="attached")  # the series from the cache
    finally:
        browser.set_offline(False)


def test_sign_out_forgets_the_token_and_the_saved_answers(page: Any, live: Live) -> None:
    page.goto(f"{live.base}/app/#/account")
    expect(page.locator("#me-email")).to_have_text("tech@acme.example")
    shot(page, "account")
    assert page.evaluate("caches.has('sl-api-v1')")
    page.click("#signout")
    page.wait_for_url("**/app/#/signin")
    assert not page.evaluate("caches.has('sl-api-v1')")
    page.goto(f"{live.base}/app/#/tests/{live.test_id}")
    page.wait_for_url("**/app/#/signin")  # nothing of the test without a token
    assert page.locator("#grid").count() == 0


def test_no_console_errors_or_csp_violations(page: Any) -> None:
    # Offline fetches that the app answered from its cache are logged by chromium as failed loads.
    real = [p for p in page.problems if "net::ERR_INTERNET_DISCONNECTED" not in p and "Failed to load resource" not in p]
    assert real == []
