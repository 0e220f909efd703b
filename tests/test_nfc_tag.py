"""The emulated Type 2 tag (device.nfc_tag) frame by frame, with the real firmware behind it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.device.firmware import Logger
from smartlogger.device.nfc_tag import (
    ACK,
    NAK_EEPROM,
    NAK_INVALID,
    VERSION_NT3H1101,
    LoggerTag,
    Op,
    simulated_logger_tag,
)
from smartlogger.model import BlockType, Generation, LoggerConfig, LoggerIdentity
from smartlogger.protocol.nfc import (
    ConfigRecord,
    Reason,
    decode_state,
    encode_config_write,
    encode_tlv,
    locate_ndef,
)

FACTORY = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0)
NEW = FACTORY.with_changes(block_label="B007", block_position=7, test_id="T-9",
                           thresholds=FACTORY.thresholds.__class__(11500, 11800, 14100, 14700, 0, 50, 350, 450))


def make_tag(serial: str = "SL2-0001", generation: Generation = Generation.GEN2) -> LoggerTag:
    return simulated_logger_tag(serial, FACTORY, generation=generation)


def selected(tag: LoggerTag) -> LoggerTag:
    """Run the ISO 14443-3A anticollision through the tag's own handler."""
    assert tag.handle(b"\x26") == b"\x44\x00"
    cl1 = tag.handle(b"\x93\x20")
    assert cl1 is not None and cl1[0] == 0x88 and cl1[4] == cl1[0] ^ cl1[1] ^ cl1[2] ^ cl1[3]
    assert tag.handle(b"\x93\x70" + cl1) == b"\x04"  # cascade: UID not complete
    cl2 = tag.handle(b"\x95\x20")
    assert cl2 is not None
    assert tag.handle(b"\x95\x70" + cl2) == b"\x00"  # Type 2 tag, complete
    assert cl1[1:4] + cl2[:4] == tag.uid
    return tag


def read_message(tag: LoggerTag) -> bytes:
    data = tag.handle(bytes([0x3A, 4, 4 + 63]))
    assert data is not None
    loc = locate_ndef(data)
    assert loc is not None
    return data[loc.value_offset : loc.end]


def write_pages(tag: LoggerTag, start_page: int, blob: bytes) -> None:
    blob += bytes(-len(blob) % 4)
    for i in range(0, len(blob), 4):
        assert tag.handle(bytes([0xA2, start_page + i // 4]) + blob[i : i + 4]) == bytes([ACK])


def test_memory_layout_version_and_cc() -> None:
    tag = selected(make_tag())
    assert tag.handle(b"\x60") == VERSION_NT3H1101
    page0 = tag.handle(b"\x30\x00")
    assert page0 is not None and len(page0) == 16
    assert page0[0:3] == tag.uid[0:3] and page0[4:8] == tag.uid[3:7]
    assert page0[12:16] == bytes.fromhex("e1106d00")  # CC: NDEF 1.0, 872 bytes, read/write
    assert tag.handle(b"\x3a\x00\x03") == page0
    state = decode_state(read_message(tag))
    assert state.identity.serial == "SL2-0001" and state.identity.simulated
    assert state.config.config == FACTORY and state.config.seq == 0
    assert state.status.device_ms == tag.host.now_ms()


def test_nak_sends_the_tag_to_idle_until_selected_again() -> None:
    tag = selected(make_tag())
    assert tag.handle(b"\x30\xf0") == bytes([NAK_INVALID])  # no such page
    assert tag.handle(b"\x30\x04") is None  # IDLE: silent
    selected(tag)
    assert tag.handle(b"\x30\x04") is not None
    assert tag.handle(b"\x1a\x00") == bytes([NAK_INVALID])  # AUTHENTICATE is not an NTAG I2C command
    assert tag.handle(b"\x3a\x05\x04") is None  # still IDLE after that NAK
    selected(tag)
    assert tag.handle(b"\x3a\x05\x04") == bytes([NAK_INVALID])  # start after end


def test_halt_needs_wupa() -> None:
    tag = selected(make_tag())
    assert tag.handle(b"\x50\x00") is None
    assert tag.handle(b"\x26") is None  # REQA does not wake a halted tag
    assert tag.handle(b"\x52") == b"\x44\x00"


def test_sector_select_passive_ack() -> None:
    tag = selected(make_tag())
    assert tag.handle(b"\xc2\xff") == bytes([ACK])
    assert tag.handle(b"\x03\x00\x00\x00") is None  # passive ACK: sector 3 selected
    assert tag.handle(b"\x30\xf8") is not None  # session registers
    assert tag.handle(b"\xc2\xff") == bytes([ACK])
    assert tag.handle(b"\x01\x00\x00\x00") == bytes([NAK_INVALID])  # no sector 1 on a 1k


def program_frames(tag: LoggerTag, record: ConfigRecord) -> None:
    """Write ``record`` the T2T way (length 0, data, length) and read once (ends the write)."""
    tlv = encode_tlv(encode_config_write(record))
    write_pages(tag, 4, bytes([0x03, 0x00]) + tlv[2:4])
    write_pages(tag, 5, tlv[4:])
    write_pages(tag, 4, tlv[:4])


def test_config_write_is_applied_after_the_reader_stops_writing() -> None:
    tag = selected(make_tag())
    before = tag.host.status().record_count
    program_frames(tag, ConfigRecord(NEW, 1, 1_800_000_000_000, True))
    assert tag.host.config == FACTORY  # nothing applied while the reader is still writing
    state = decode_state(read_message(tag))  # the READ ends the write
    assert tag.host.config == NEW and tag.host.config_seq == 1
    assert state.config.config == NEW and state.config.seq == 1
    assert state.status.ack_seq == 1 and state.status.ack_reason is Reason.OK
    assert state.status.clock_new_ms == 1_800_000_000_000
    assert abs(tag.host.now_ms() - 1_800_000_000_000) < 1000
    assert tag.host.status().record_count > before  # ConfigChange and ClockSet were logged
    assert tag.stats.applied == 1


def test_stale_sequence_is_refused_with_a_reason() -> None:
    tag = selected(make_tag())
    program_frames(tag, ConfigRecord(NEW, 4))
    read_message(tag)
    program_frames(tag, ConfigRecord(FACTORY, 4))
    state = decode_state(read_message(tag))
    assert tag.host.config == NEW
    assert (state.status.ack_seq, state.status.ack_reason) == (4, Reason.STALE_SEQ)


def test_wrong_block_type_is_refused_by_the_firmware() -> None:
    tag = selected(make_tag())
    two_volt = LoggerConfig.default_for(BlockType.lead_acid(2), 1000.0)
    program_frames(tag, ConfigRecord(two_volt, 1))
    state = decode_state(read_message(tag))
    assert tag.host.config == FACTORY and tag.host.config_seq == 0
    assert state.status.ack_reason is Reason.BLOCK_TYPE and state.status.ack_seq == 1


def test_gen1_tag_is_write_protected_and_publishes_fixed_thresholds() -> None:
    tag = selected(make_tag("SL1-0001", Generation.GEN1))
    page0 = tag.handle(b"\x30\x00")
    assert page0 is not None and page0[15] == 0x0F  # CC: no write access
    state = decode_state(read_message(tag))
    assert state.identity.generation is Generation.GEN1
    assert state.config.config.thresholds.v_low_alarm_mv == 9900
    selected(tag)
    assert tag.handle(b"\xa2\x04\x03\x00\x00\x00") == bytes([NAK_EEPROM])


def test_every_tear_point_leaves_old_or_new_never_a_mix() -> None:
    record = ConfigRecord(NEW, 1, 1_800_000_000_000, True)
    tlv = encode_tlv(encode_config_write(record))
    frames = [bytes([0xA2, 4, 0x03, 0x00]) + tlv[2:4]]
    padded = tlv[4:] + bytes(-len(tlv[4:]) % 4)
    frames += [bytes([0xA2, 5 + i // 4]) + padded[i : i + 4] for i in range(0, len(padded), 4)]
    frames.append(bytes([0xA2, 4]) + tlv[:4])
    for cut in range(len(frames) + 1):
        tag = selected(make_tag())
        for frame in frames[:cut]:
            assert tag.handle(frame) == bytes([ACK])
        tag.field_off()  # phone pulled away
        complete = cut == len(frames)
        assert (tag.host.config, tag.host.config_seq) == ((NEW, 1) if complete else (FACTORY, 0)), cut
        tag.activated()  # next tap: the published state is whole again
        state = decode_state(read_message(tag))
        assert state.config.config == tag.host.config


def test_a_foreign_ndef_message_is_ignored() -> None:
    tag = selected(make_tag())
    uri = bytes.fromhex("d1010b55036578616d706c652e636f6d")  # URI record http://example.com
    write_pages(tag, 4, encode_tlv(uri))
    assert tag.handle(b"\x30\x04") is not None
    assert tag.host.config_seq == 0 and tag.stats.torn_ignored == 1
    tag.field_off()
    tag.activated()
    assert decode_state(read_message(tag)).config.seq == 0


def test_timing_model_counts_the_exchanged_commands() -> None:
    tag = selected(make_tag())
    tag.handle(b"\x30\x04")
    tag.handle(bytes([0xA2, 4, 0, 0, 0, 0]))
    ops = [op for op, _, _ in tag.stats.commands]
    assert ops[-2:] == [Op.READ, Op.WRITE]
    assert tag.stats.activations == 1
    assert tag.stats.modeled_time_s() == pytest.approx(0.0025 + 0.0019 + 0.005, abs=1e-3)


def test_logger_tag_wraps_the_firmware_logger() -> None:
    # LoggerTag takes anything shaped like NfcHost; the firmware Logger is the reference host.
    ident = LoggerIdentity("SL2-0100", Generation.GEN2, "2.0.0", simulated=True)
    tag = LoggerTag(Logger(ident, FACTORY))
    assert tag.serial == "SL2-0100" and tag.uid[0] == 0x04


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.binary(min_size=0, max_size=20), max_size=30))
def test_arbitrary_frames_never_break_the_tag(frames: list[bytes]) -> None:
    tag = selected(make_tag())
    for frame in frames:
        rsp = tag.handle(frame)
        assert rsp is None or 1 <= len(rsp) <= 256
    tag.field_off()
    assert tag.host.config_seq == 0  # random frames never make a config
    tag.activated()
    assert decode_state(read_message(tag)).config.config == FACTORY
