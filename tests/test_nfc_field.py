"""The field tool against emulated loggers, through nfcpy's udp driver on both sides (no mocks)."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from smartlogger.cli import main
from smartlogger.device.nfc_tag import (
    LoggerTag,
    TagEmulator,
    serve_in_thread,
    simulated_kit,
    simulated_logger_tag,
)
from smartlogger.field.nfc import (
    KitSession,
    Outcome,
    Type2Link,
    connect_tag,
    open_reader,
    program,
    read_state,
)
from smartlogger.field.profiles import load_profile
from smartlogger.model import Generation
from smartlogger.protocol.nfc import Reason

PROFILE = load_profile("vrla-12v")
FACTORY = PROFILE.config


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulating(presentations: object) -> Iterator[tuple[TagEmulator, str]]:
    port = free_udp_port()
    emulator = TagEmulator(presentations, port=port)  # type: ignore[arg-type]
    thread = serve_in_thread(emulator)
    try:
        yield emulator, f"udp:localhost:{port}"
    finally:
        emulator.stop()
        thread.join(5)
        assert not thread.is_alive()


def test_kit_session_programs_in_tap_order_with_retap_and_gen1() -> None:
    tags = simulated_kit(4, FACTORY, gen1_positions=[3])
    walk = [tags[0], tags[1], tags[2], tags[1], tags[3]]  # the technician goes back to logger 2
    session = KitSession(PROFILE, count=4, start_position=11, test_id="T-2026-11")
    with emulating(walk) as (emulator, path):
        rows = session.run(path, timeout_s=30)
    assert [r.position for r in rows] == [11, 12, 13, 14]
    assert [r.result.outcome for r in rows] == [
        Outcome.PROGRAMMED, Outcome.PROGRAMMED, Outcome.NOT_PROGRAMMABLE, Outcome.PROGRAMMED]
    retaps = [t for t in session.taps if t.serial == "SIM-0002" and t.outcome is Outcome.UNCHANGED]
    assert retaps and all(t.counters.writes == 0 for t in retaps)  # the re-tap wrote nothing
    assert rows[1].taps == 2
    for tag, pos in zip((tags[0], tags[1], tags[3]), (11, 12, 14), strict=True):
        cfg = tag.host.config
        assert (cfg.block_position, cfg.block_label, cfg.test_id) == (pos, f"B{pos:03d}", "T-2026-11")
        assert cfg.thresholds == FACTORY.thresholds and tag.host.config_seq == 1
        assert tag.stats.applied == 1
        # the logger's clock was set from the phone's: now within seconds of it
        assert abs(tag.host.now_ms() - time.time() * 1000) < 10_000
    gen1 = rows[2].result
    assert gen1.reason is Reason.GEN1 and "9.90" in gen1.message
    assert tags[2].host.config_seq == 0 and tags[2].stats.bytes_written == 0
    assert rows[0].result.clock_offset_ms is not None and rows[0].result.clock_offset_ms < -86_400_000
    assert abs(rows[0].result.clock_offset_after_ms or 0) < 10_000
    assert emulator.presented == walk


def test_logger_still_in_the_field_is_not_a_new_tap() -> None:
    tags = simulated_kit(2, FACTORY)
    walk = [tags[0], tags[0], tags[0], tags[1]]  # the phone lingers over logger 1
    session = KitSession(PROFILE, count=2)
    with emulating(walk) as (emulator, path):
        rows = session.run(path, timeout_s=20)
    assert [r.result.outcome for r in rows] == [Outcome.PROGRAMMED, Outcome.PROGRAMMED]
    assert [r.position for r in rows] == [1, 2] and len(session.taps) == 2
    assert emulator.presented == walk and tags[0].stats.applied == 1


def test_changed_settings_are_written_again_on_retap() -> None:
    tag = simulated_kit(1, FACTORY)[0]
    with emulating(itertools.repeat(tag)) as (_, path):
        first = KitSession(PROFILE, count=1, test_id="A")
        first.run(path, timeout_s=20)
        again = KitSession(PROFILE, count=1, test_id="A")
        again.run(path, timeout_s=20)
        changed = KitSession(PROFILE, count=1, test_id="B")
        changed.run(path, timeout_s=20)
    assert [s.taps[-1].outcome for s in (first, again, changed)] == [
        Outcome.PROGRAMMED, Outcome.UNCHANGED, Outcome.PROGRAMMED]
    assert tag.host.config.test_id == "B" and tag.host.config_seq == 2


def test_refused_config_is_reported_and_not_rewritten_while_the_phone_lingers() -> None:
    twelve = simulated_kit(2, FACTORY)
    two_volt = simulated_logger_tag("SIM-2V01", load_profile("vrla-2v").config)
    walk = [twelve[0], two_volt, two_volt, twelve[1]]  # a 2 V cell logger in a 12 V kit
    session = KitSession(PROFILE, count=3)
    with emulating(walk) as (_, path):
        rows = session.run(path, timeout_s=20)
    assert [r.result.outcome for r in rows] == [Outcome.PROGRAMMED, Outcome.REJECTED, Outcome.PROGRAMMED]
    refused = rows[1].result
    assert refused.reason is Reason.BLOCK_TYPE and "block_type" in refused.message
    assert two_volt.host.config_seq == 0 and two_volt.stats.rejected == 1  # written once only
    assert len(session.taps) == 3


def test_tearing_at_every_command_leaves_old_or_new_config() -> None:
    """Field removed before each command of a programming exchange, then re-tapped."""
    tag = simulated_kit(1, FACTORY)[0]
    configs = [FACTORY.with_changes(test_id="EVEN"), FACTORY.with_changes(test_id="ODD")]
    failures: list[str] = []
    with emulating(itertools.repeat(tag)) as (_, path):
        clf = open_reader(path)
        try:
            t = connect_tag(clf, lambda: False)
            full = program(Type2Link(t), configs[1])
            assert full.outcome is Outcome.PROGRAMMED
            n_commands = full.counters.commands
            assert n_commands > 20
            for cut in range(n_commands):
                old, old_seq = tag.host.config, tag.host.config_seq
                new = configs[cut % 2]
                t = connect_tag(clf, lambda: False)
                torn = program(Type2Link(t, cut_after=cut), new)
                t = connect_tag(clf, lambda: False)  # re-tap: the tag saw the field go off
                held = (tag.host.config, tag.host.config_seq)
                if held not in ((old, old_seq), (new, old_seq + 1)):
                    failures.append(f"cut {cut}: logger holds {held}")
                seen = read_state(Type2Link(t))  # published state is whole and true
                if (seen.state.config.config, seen.state.config.seq) != held:
                    failures.append(f"cut {cut}: published {seen.state.config} != {held}")
                if torn.outcome is Outcome.PROGRAMMED and cut < n_commands:
                    failures.append(f"cut {cut}: a torn tap reported success")
                done = program(Type2Link(t), new, first=seen)
                if done.outcome not in (Outcome.PROGRAMMED, Outcome.UNCHANGED) or tag.host.config != new:
                    failures.append(f"cut {cut}: re-tap gave {done.outcome} {done.message}")
        finally:
            clf.close()
    assert failures == []


def test_cli_program_and_emulate_help() -> None:
    tags = simulated_kit(2, FACTORY, gen1_positions=[2])
    with emulating(tags) as (_, path):
        res = CliRunner().invoke(main, ["nfc", "program", "--device", path, "--count", "2",
                                        "--test-id", "CLI-1", "--json", "--timeout", "20"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [x["outcome"] for x in doc["loggers"]] == ["programmed", "not programmable"]
    assert doc["loggers"][0]["serial"] == "SIM-0001" and doc["loggers"][0]["simulated"]
    assert tags[0].host.config.test_id == "CLI-1"
    assert tags[1].host.identity.generation is Generation.GEN1
    res = CliRunner().invoke(main, ["nfc", "emulate", "--help"])
    assert res.exit_code == 0 and "udp:HOST:PORT" in res.output


def test_cli_reports_a_bad_profile_by_field(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.toml"
    bad.write_text('[block]\nchemistry = "vrla"\ncells = 6\n[voltage]\nlow_warning = 9.5\n')
    res = CliRunner().invoke(main, ["nfc", "program", "--profile", str(bad), "--device", "udp:localhost:9"])
    assert res.exit_code == 2
    assert "voltage.low_warning" in res.output


def test_emulator_serves_until_walk_ends() -> None:
    tags: list[LoggerTag] = simulated_kit(2, FACTORY)
    port = free_udp_port()
    emulator = TagEmulator(tags, port=port)
    thread = threading.Thread(target=emulator.serve, daemon=True)
    thread.start()
    assert emulator.ready.wait(5)
    session = KitSession(PROFILE, count=2)
    session.run(f"udp:localhost:{port}", timeout_s=20)
    thread.join(5)  # the reader's close() turned the field off after the last logger
    assert not thread.is_alive() and emulator.presented == tags


@pytest.mark.parametrize("count", [1])
def test_read_command(count: int) -> None:
    tags = simulated_kit(count, FACTORY)
    with emulating(itertools.repeat(tags[0])) as (_, path):
        res = CliRunner().invoke(main, ["nfc", "read", "--device", path, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["serial"] == "SIM-0001" and doc["config_seq"] == 0 and doc["writable"]
    assert "9.90" in doc["thresholds"]


def test_nfcpys_own_ndef_api_reads_and_programs_a_logger() -> None:
    """Any NFC Forum Type 2 writer works: nfcpy's generic NDEF read and write, no smartlogger code."""
    import ndef

    from smartlogger.protocol.nfc import ConfigRecord, decode_state, encode_message

    tag = simulated_kit(1, FACTORY)[0]
    new = FACTORY.with_changes(test_id="NDEF-API", block_position=3)
    with emulating(itertools.repeat(tag)) as (_, path):
        clf = open_reader(path)
        try:
            t = connect_tag(clf, lambda: False)
            assert t.product == "NTAG I2C 1K (NT3H1101)" and t.ndef.is_writeable
            state = decode_state(encode_message(t.ndef.records))
            assert state.identity.serial == "SIM-0001"
            t.ndef.records = [ConfigRecord(new, state.config.seq + 1).to_ndef()]
            t = connect_tag(clf, lambda: False)
            after = decode_state(b"".join(ndef.message_encoder(t.ndef.records)))
        finally:
            clf.close()
    assert tag.host.config == new and after.config.config == new
    assert after.status.ack_seq == 1 and after.status.ack_reason is Reason.OK


def test_cli_program_live_list_and_exit_code_on_refusal() -> None:
    two_volt = simulated_logger_tag("SIM-2V02", load_profile("vrla-2v").config)
    tags = [*simulated_kit(1, FACTORY), two_volt]
    with emulating(tags) as (_, path):
        res = CliRunner().invoke(main, ["nfc", "program", "--device", path, "--count", "2",
                                        "--timeout", "20"])
    assert res.exit_code == 3, res.output  # one logger refused the profile
    assert "programmed" in res.output and "rejected" in res.output and "SIM-2V02" in res.output
