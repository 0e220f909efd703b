"""The virtual site: its pieces in process (battery, firmware RAM, live flash, the world) and
the site process through the CLI, in separate processes, with its bad-input and crash cases."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from site_support import SMARTLOGGER, cleanup, cli, site_pid, wait_for

from smartlogger.device.battery import build_string
from smartlogger.device.blackbox import BlackboxStore
from smartlogger.device.clock import DEFAULT_EPOCH_MS
from smartlogger.device.firmware import Logger
from smartlogger.device.flash import NorFlash
from smartlogger.device.live_string import BlockSignal, LiveString
from smartlogger.device.load import ConstantCurrent
from smartlogger.device.sensors import TraceSource
from smartlogger.device.sim import prepare_string_test
from smartlogger.device.site.state import SiteDir, SiteError, SiteSpec
from smartlogger.device.site.walk import SlotHost
from smartlogger.device.site.world import World
from smartlogger.logfile import chain
from smartlogger.logfile.records import encode_record
from smartlogger.model import BlockType, ClockSet, Event, EventKind, LoggerConfig, Thresholds

# --------------------------------------------------------------------------- pieces in process


def test_live_string_steps_exactly_like_the_whole_discharge() -> None:
    """The site's battery, stepped piecewise with a JSON round trip in the middle of the load,
    gives the same discharge as ``StringModel.discharge`` in one go."""
    bt = BlockType.lead_acid(12)
    # the site connects its load at 300 s: its first loaded point is one step later (301 s),
    # which is the whole run's load-on with 301 s of float before it
    whole = build_string(6, bt, 100.0, weak=1, seed=5).discharge(
        ConstantCurrent(25.0), rest_before_s=301, rest_after_s=600)
    model = build_string(6, bt, 100.0, weak=1, seed=5)
    live = LiveString(model, ambient_c=25.0)
    live.run(300)
    live.connect_load(ConstantCurrent(25.0), cutoff_v_per_cell=1.75)
    live.run(2000.5)
    live = LiveString.from_json(model, json.loads(json.dumps(live.to_json())), ambient_c=25.0)
    while live.load is not None:
        live.run(live.t_s + 97)  # odd steps; the history keeps the last 300 s
    d = live.discharges[-1]
    assert (d.start_s, d.end_s, d.end_reason) == (whole.load_on_s, whole.load_off_s, "cutoff")
    for truth in whole.truth:
        assert d.block_end_s[truth.index] == truth.time_to_end_s
        assert d.block_delivered_ah[truth.index] == pytest.approx(truth.delivered_ah, abs=1e-9)
    # the load switching on and off: the same instants, currents and step resistances
    assert [(st["t_s"], st["current_before_a"], st["current_after_a"]) for st in d.steps] == \
        [(st.t_s, st.current_before_a, st.current_after_a) for st in whole.steps]
    for mine, theirs in zip(d.steps, whole.steps, strict=True):
        assert mine["resistance_mohm"] == pytest.approx(theirs.resistance_mohm.tolist())
    # what the loggers sample around the switch-off: a step, exactly as the whole run's source
    source = TraceSource(whole.t_s, whole.block_v[0], whole.block_temp_c[0], jumps=whole.jumps(0))
    t = np.array([d.end_s - 0.5, d.end_s, d.end_s + 0.3, d.end_s + 0.8])
    live.run(max(live.t_s, d.end_s + 2))
    assert BlockSignal(live, 0).at(t)[0] == pytest.approx(source.at(t)[0])
    # a weak block's capacity at the test's rate is what it delivered to its end voltage
    weak = next(t.index for t in whole.truth if t.weak)
    assert live.capacity_at_test_rate(d)[weak] == pytest.approx(d.block_delivered_ah[weak], abs=0.1)


def test_firmware_resumes_from_its_ram_snapshot_without_a_trace() -> None:
    """A paused site keeps each logger's RAM: resuming logs exactly what running on would."""
    a, b = prepare_string_test(2, weak=1, seed=3), prepare_string_test(2, weak=1, seed=3)
    a.tap_all()
    b.tap_all()
    la, lb = a.loggers[1], b.loggers[1]
    end = float(a.trace.t_s[-1])
    for t in (700.0, 1500.3, 4000.0, end - 100):
        la.run_until(t)
        snap = json.loads(json.dumps(la.snapshot()))
        la = Logger.resume(la.identity, snap, store=la.store, sensor=la.sensor, source=la.source,
                           seed=la.seed)
    la.run_until(end)
    lb.run_until(end)
    la.flush()
    lb.flush()
    assert [encode_record(r) for _, r in la.store.records()] == \
        [encode_record(r) for _, r in lb.store.records()]


def test_a_live_flash_image_keeps_every_committed_record_when_the_process_is_killed(
        tmp_path: Path) -> None:
    """The chip is the file: SIGKILL at any moment loses nothing the blackbox committed."""
    image = tmp_path / "chip.nor"
    code = textwrap.dedent(f"""
        import os, signal, sys
        from smartlogger.device.blackbox import BlackboxStore
        from smartlogger.device.flash import NorFlash, W25Q64
        from smartlogger.model import Event, EventKind, Generation, LoggerIdentity
        ident = LoggerIdentity("SIM-0042", Generation.GEN2, "2.0.0-sim", simulated=True)
        store = BlackboxStore.create(ident, flash=NorFlash.open_live({str(image)!r}, geometry=W25Q64))
        for i in range(3000):
            seq = store.append(Event(1_800_000_000_000 + i, EventKind.GAP, value=i))
            print(seq, flush=True)  # committed: append returned
            if i == 2345:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    committed = [int(x) for x in proc.stdout.split()]
    store = BlackboxStore.mount(NorFlash.open_live(image))
    assert store.next_seq >= committed[-1] + 1
    records = list(store.records())
    assert [seq for seq, _ in records][: len(committed)] == committed
    h = chain.genesis("SIM-0042")
    for seq, rec in records:
        h = chain.chain_next(h, seq, encode_record(rec))
    assert h == store.chain_head(0)[1]
    # the image reads as an ordinary flash image too (device flash-info)
    assert NorFlash.load(image).read(0, 64) == store.flash.read(0, 64)


def _world(tmp_path: Path, blocks: int = 3) -> World:
    sdir = SiteDir(tmp_path / "site")
    spec = SiteSpec(blocks=blocks, weak=1, seed=2)
    sdir.prepare(spec)
    world = World.create(sdir, spec)
    world.checkpoint()
    sdir.write_spec(spec)
    return world


def _events(world: World, index: int) -> list[Event]:
    return [r for _, r in world.slots[index].store.records() if isinstance(r, Event)]


def test_faults_follow_the_physics_of_clips_and_backup_cells(tmp_path: Path) -> None:
    world = _world(tmp_path)
    host = SlotHost(world, world.slots[0])
    cfg = LoggerConfig(world.spec.block_type, Thresholds.default_for(world.spec.block_type), 100.0,
                       block_position=1, block_label="B1", test_id="T")
    host.apply_config(cfg, 1)
    host.set_clock(world.utc_ms())
    world.step(600.0)
    world.run_loggers(world.slots)
    # clock-reset: the logger reboots at once and its clock reads its epoch
    entry = world.fault("1", "clock-reset")
    assert entry["kind"] == "clock-reset" and entry["serial"] == "SIM-0001"
    assert abs(world.slots[0].logger.now_ms() - DEFAULT_EPOCH_MS) < 1000  # type: ignore[union-attr]
    power_ons = [e for e in _events(world, 0) if e.kind is EventKind.POWER_ON]
    assert len(power_ons) == 2
    # it boots with the configuration it had committed, with its sequence number
    assert world.slots[0].logger.config_seq == 1  # type: ignore[union-attr]
    assert world.slots[0].logger.config.test_id == "T"  # type: ignore[union-attr]
    # detach: unpowered, off the string; attach on another block only if it is free
    world.fault("SIM-0002", "detach")
    assert world.slots[1].logger is None and world.slots[1].position is None
    with pytest.raises(SiteError, match="already carries SIM-0003"):
        world.fault("SIM-0002", "attach", to_position=3)
    world.fault("3", "detach")
    world.fault("2", "attach", to_position=3)  # "2": the block SIM-0002 was last on
    assert world.slots[1].position == 3 and world.slots[1].logger is not None
    with pytest.raises(SiteError, match="block 9 does not exist"):
        world.fault("9", "detach")
    with pytest.raises(SiteError, match="unknown fault"):
        world.fault("1", "melt")
    kinds = [f["kind"] for f in world.sdir.faults()]
    assert kinds == ["clock-reset", "detach", "detach", "attach"]
    # the walk presents only loggers on the string, in block order
    world.set_walk(2)
    assert world.walk_slot() is world.slots[1]  # SIM-0002, now on block 3
    world.close()


def test_a_crash_costs_the_loggers_their_ram_but_nothing_they_committed(tmp_path: Path) -> None:
    world = _world(tmp_path)
    world.connect_load(ConstantCurrent(20.0), cutoff_v_per_cell=1.75)
    world.checkpoint()
    for t in (300.0, 600.0, 900.0):  # steps after the last checkpoint, as a killed process left them
        world.note_step(t)
        world.step(t)
        world.run_loggers(world.slots)
    committed = [(s.store.next_seq, s.store.chain_head(0)) for s in world.slots]
    for slot in world.slots:  # the process dies: files stay, RAM is gone
        slot.flash.close()
    sdir, spec = world.sdir, world.spec
    again, note = World.resume(sdir, spec)
    assert note is not None and "recovered from a crash" in note
    assert again.t_s == 900.0  # the world moved on to where the killed process may have got
    assert again.string.load is not None  # the load bank is still connected
    for slot, (next_seq, (head_seq, head)) in zip(again.slots, committed, strict=True):
        assert slot.store.next_seq == next_seq + 2  # POWER_ON and the committed configuration
        h = chain.genesis(slot.serial)  # the chain over what was committed ends at the old head
        for seq, rec in slot.store.records():
            if seq == head_seq:
                break
            h = chain.chain_next(h, seq, encode_record(rec))
        assert h == head
        events = [r for _, r in slot.store.records(head_seq) if isinstance(r, Event)]
        assert events[0].kind is EventKind.POWER_ON
    again.close()


def test_an_nfc_tap_between_checkpoints_keeps_its_clock_after_a_crash(tmp_path: Path) -> None:
    world = _world(tmp_path, blocks=2)
    host = SlotHost(world, world.slots[1])
    cfg = LoggerConfig(world.spec.block_type, Thresholds.default_for(world.spec.block_type), 100.0)
    host.apply_config(cfg, 1)
    host.set_clock(world.utc_ms())  # journaled, not checkpointed
    for slot in world.slots:
        slot.flash.close()
    again, _ = World.resume(world.sdir, world.spec)
    assert abs(again.slots[1].logger.now_ms() - again.utc_ms()) < 5  # type: ignore[union-attr]
    assert any(isinstance(r, ClockSet) for _, r in again.slots[1].store.records())
    assert abs(again.slots[0].logger.now_ms() - again.utc_ms()) > 86_400_000  # never set  # type: ignore[union-attr]
    again.close()


# --------------------------------------------------------------------------- the process


def _busy_port(kind: int) -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s, s.getsockname()[1]


def test_site_commands_refuse_bad_input_with_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    other = tmp_path / "other"
    with cleanup(site, other):
        cli("sim", "site", "start", str(site), "--blocks", "3", "--weak", "1")
        st = json.loads(cli("sim", "site", "status", str(site), "--json").stdout)
        assert st["nfc_device"].startswith("udp:127.0.0.1:") and len(st["loggers"]) == 3
        assert st["ble_transport"].startswith("tcp-client:127.0.0.1:")

        def refused(*args: str, code: int = 3) -> str:
            proc = cli(*args, check=False)
            assert proc.returncode == code, (args, proc.stdout, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
            return lines[0]

        assert "already running (pid" in refused("sim", "site", "start", str(site))
        assert "does not exist" in refused("sim", "site", "fault", str(site), "--logger", "7", "detach")
        assert "is not a load" in refused("sim", "site", "load", str(site), "20X")
        assert "not a duration" in refused("sim", "site", "advance", str(site), "soon")
        assert "no load bank" in refused("sim", "site", "advance", str(site), "1h", "--until-load-off")
        port = st["nfc_device"].rsplit(":", 1)[1]
        assert "NFC port" in refused("sim", "site", "start", str(other), "--nfc-port", port)
        assert not other.exists()  # a start that failed leaves nothing behind
        with _busy_port(socket.SOCK_STREAM)[0] as busy:
            assert "BLE port" in refused("sim", "site", "start", str(other), "--ble-port",
                                         str(busy.getsockname()[1]))
        junk = tmp_path / "junk"
        junk.mkdir()
        (junk / "notes.txt").write_text("mine")
        assert "is not a site" in refused("sim", "site", "start", str(junk))
        assert (junk / "notes.txt").read_text() == "mine"
        assert "is not a virtual site" in refused("sim", "site", "status", str(junk))
        assert "cannot apply" in refused("sim", "site", "start", str(site), "--blocks", "5")
        cli("sim", "site", "stop", str(site))
        assert "is not running" in refused("sim", "site", "advance", str(site), "1h")
        assert "is not running" in refused("ble", "scan", "--site", str(site))
        # a crashed site: the stale lock is named, and start recovers it
        cli("sim", "site", "start", str(site))
        pid = site_pid(site)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _dead(pid), what="the killed site to go")
        assert "stale lock" in refused("sim", "site", "status", str(site))
        out = cli("sim", "site", "start", str(site)).stdout
        assert "recovered from a crash" in out


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of ours? reap it if it is our child (it is not: the site has its own session)
    return False


def test_a_site_killed_mid_advance_loses_nothing_its_loggers_committed(tmp_path: Path) -> None:
    """Program, discharge, pull; kill the site with SIGKILL while it advances; restart; the
    next incremental pull continues every logger's chain from the first pull's head."""
    site, logs = tmp_path / "site", tmp_path / "logs"
    with cleanup(site):
        cli("sim", "site", "start", str(site), "--blocks", "3", "--weak", "1")
        cli("nfc", "program", "--site", str(site), "--count", "3", "--test-id", "KILL", "--json")
        cli("sim", "site", "load", str(site), "20A", "--cutoff", "1.75")
        cli("sim", "site", "advance", str(site), "1h")
        first = json.loads(cli("ble", "pull", "--site", str(site), "--all", "-o", str(logs),
                               "--scan-timeout", "1", "--json").stdout)
        # simulated loggers: intact and marked read ("simulated"), never hardware evidence
        assert all(v["transfer_complete"] and v["status"] == "simulated" and v["marked_read"]
                   for v in first["pulled"].values()) and len(first["pulled"]) == 3
        state = {s: json.loads((logs / f"{s}.pull.json").read_text()) for s in first["pulled"]}
        advance = subprocess.Popen([SMARTLOGGER, "sim", "site", "advance", str(site), "20h"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        step = site / "step.json"
        t0 = json.loads((site / "state.json").read_text())["string"]["t_s"]
        wait_for(lambda: step.exists() and json.loads(step.read_text())["to_s"] > t0 + 3 * 3600,
                 what="the advance to get going")
        pid = site_pid(site)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        advance.wait(timeout=60)
        assert advance.returncode != 0  # the advance saw its site die
        cli("sim", "site", "start", str(site))
        second = json.loads(cli("ble", "pull", "--site", str(site), "--all", "-o", str(logs),
                                "--scan-timeout", "1", "--json").stdout)
        for serial, got in second["pulled"].items():
            # chained on from the first pull's head: nothing lost
            assert got["transfer_complete"] and got["status"] == "simulated", serial
            assert got["records"] > 0
            before = state[serial]["next_seq"]["0"]
            files = sorted(logs.glob(f"{serial}-*.slog"))
            assert files[-1].name.startswith(f"{serial}-{before:08d}-")
