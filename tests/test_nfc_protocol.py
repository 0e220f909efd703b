"""The NFC record format (protocol.nfc) on specified bytes, round trips and torn input."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.model import BlockType, Generation, LoggerConfig, LoggerIdentity, Thresholds
from smartlogger.protocol.nfc import (
    ConfigRecord,
    IdentityRecord,
    InvalidConfigValues,
    LastTest,
    NfcRecordError,
    Reason,
    StatusRecord,
    TagState,
    capability_container,
    decode_state,
    encode_config_write,
    encode_state,
    encode_tlv,
    find_config_write,
    locate_ndef,
)

VRLA12 = BlockType.lead_acid(12)
CONFIG = LoggerConfig.default_for(VRLA12, 100.0).with_changes(
    block_label="B001", block_position=1, test_id="T-1")

# Each row: the record and its payload, field by field as docs/NFC.md specifies them.
CFG_TABLE = [
    (
        ConfigRecord(CONFIG, 5, 1763700000000, True),
        "01"  # version 1
        "01"  # flags: set clock
        "00000005"  # seq 5
        "0000019aa4b64500"  # phone_ms 1763700000000
        "01" "06"  # chemistry vrla, 6 cells
        "000186a0"  # rated 100000 mAh
        "26ac" "2a30" "3714" "396c"  # 9900, 10800, 14100, 14700 mV
        "0000" "0032" "015e" "01c2"  # 0.0, 5.0, 35.0, 45.0 C in 0.1 C
        "0000003c" "00000001"  # float 60 s, discharge 1 s
        "0001"  # position 1
        "04" "42303031"  # label "B001"
        "03" "542d31",  # test id "T-1"
    ),
    (
        ConfigRecord(LoggerConfig(BlockType.lead_acid(2), Thresholds(1800, 1900, 2350, 2450, -100, 0, 400, 500),
                                  1500.5, float_rate_s=1200, discharge_rate_s=2), 70000),
        "01" "00" "00011170" "0000000000000000"
        "01" "01" "0016e554"  # 1 cell, 1500500 mAh
        "0708" "076c" "092e" "0992"
        "ff9c" "0000" "0190" "01f4"  # -10.0 C is ff9c
        "000004b0" "00000002" "0000" "00" "00",
    ),
]


@pytest.mark.parametrize(("record", "body_hex"), CFG_TABLE)
def test_config_record_bytes(record: ConfigRecord, body_hex: str) -> None:
    body = bytes.fromhex(body_hex)
    payload = body + zlib.crc32(body).to_bytes(4, "big")
    assert record.to_payload() == payload
    assert ConfigRecord.from_payload(payload) == record


def test_config_write_is_one_external_record() -> None:
    record = CFG_TABLE[0][0]
    message = encode_config_write(record)
    payload = record.to_payload()
    # MB|ME|SR, TNF 4 (external), type length 18, payload length, type, payload
    assert message == bytes([0xD4, 18, len(payload)]) + b"smartlogger.io:cfg" + payload
    assert find_config_write(message) == payload


def test_every_truncation_and_bit_flip_of_a_config_record_is_refused() -> None:
    payload = CFG_TABLE[0][0].to_payload()
    for n in range(len(payload)):
        with pytest.raises(NfcRecordError):
            ConfigRecord.from_payload(payload[:n])
    for i in range(len(payload)):
        for bit in range(8):
            torn = bytearray(payload)
            torn[i] ^= 1 << bit
            with pytest.raises(NfcRecordError):
                ConfigRecord.from_payload(bytes(torn))


def test_intact_record_with_invalid_values_names_the_field() -> None:
    record = ConfigRecord(CONFIG, 1)
    body = bytearray(record.to_payload()[:-4])
    body[22:24] = (9000).to_bytes(2, "big")  # v_low_warn below the 12 V class range
    payload = bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "big")
    with pytest.raises(InvalidConfigValues) as info:
        ConfigRecord.from_payload(payload)
    assert info.value.field == "thresholds.v_low_warn_mv"


def test_other_version_is_refused() -> None:
    body = bytearray(CFG_TABLE[0][0].to_payload()[:-4])
    body[0] = 2
    payload = bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "big")
    with pytest.raises(NfcRecordError, match="version 2"):
        ConfigRecord.from_payload(payload)


def test_identity_record_bytes() -> None:
    ident = LoggerIdentity("SL2-0001", Generation.GEN2, "2.0.0", simulated=True)
    body = bytes.fromhex("01" "02" "01" "08") + b"SL2-0001" + b"\x05" + b"2.0.0"
    payload = body + zlib.crc32(body).to_bytes(4, "big")
    assert IdentityRecord(ident).to_payload() == payload
    assert IdentityRecord.from_payload(payload).identity == ident


def test_status_record_round_trip_and_size() -> None:
    status = StatusRecord(1763700000000, 5, 5, Reason.BLOCK_TYPE, "block_type", 1, 2, 12800, -55,
                          1000, True, LastTest(10, 20, 10500, 90000))
    payload = status.to_payload()
    assert len(payload) == 65 + 1 + len("block_type") + 4  # fixed part, detail, CRC
    assert StatusRecord.from_payload(payload) == status


def test_state_message_and_tlv() -> None:
    ident = LoggerIdentity("SL2-0001", Generation.GEN2, "2.0.0")
    state = TagState(ident, ConfigRecord(CONFIG, 3), StatusRecord(1, 3))
    message = encode_state(state)
    assert decode_state(message) == state
    tlv = encode_tlv(message)
    assert tlv[:2] == bytes([0x03, len(message)]) and tlv[-1] == 0xFE
    loc = locate_ndef(tlv)
    assert loc is not None and loc.length == len(message) and loc.value_offset == 2
    long_tlv = encode_tlv(bytes(300))
    assert long_tlv[:4] == bytes([0x03, 0xFF, 0x01, 0x2C])
    assert locate_ndef(long_tlv[:3]) is None  # needs more bytes
    assert capability_container(872) == bytes.fromhex("e1106d00")
    assert capability_container(872, writable=False) == bytes.fromhex("e1106d0f")


def test_state_without_status_names_the_missing_record() -> None:
    message = encode_config_write(ConfigRecord(CONFIG, 1))
    with pytest.raises(NfcRecordError, match="id record"):
        decode_state(message)


thresholds_12v = st.tuples(
    st.integers(9700, 10999), st.integers(11000, 11999), st.integers(12001, 15000), st.integers(15001, 17000),
    st.integers(-350, -1), st.integers(0, 199), st.integers(201, 500), st.integers(501, 850),
)


@settings(max_examples=150, deadline=None)
@given(th=thresholds_12v, seq=st.integers(0, 2**32 - 1), phone=st.integers(0, 2**62),
       label=st.text(max_size=16).filter(lambda s: len(s.encode()) <= 16),
       test_id=st.text(max_size=32).filter(lambda s: len(s.encode()) <= 32),
       mah=st.integers(100, 20_000_000), rates=st.tuples(st.integers(1, 86400), st.integers(1, 86400)))
def test_config_record_round_trips(th: tuple[int, ...], seq: int, phone: int, label: str,
                                   test_id: str, mah: int, rates: tuple[int, int]) -> None:
    config = LoggerConfig(VRLA12, Thresholds(*th), mah / 1000, float_rate_s=max(rates),
                          discharge_rate_s=min(rates), block_label=label, test_id=test_id)
    record = ConfigRecord(config, seq, phone, True)
    assert ConfigRecord.from_payload(record.to_payload()) == record


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash_the_decoders(data: bytes) -> None:
    # Decoders either return a value or raise one of the two typed errors, nothing else.
    for decode in (ConfigRecord.from_payload, StatusRecord.from_payload, IdentityRecord.from_payload,
                   decode_state):
        with contextlib.suppress(NfcRecordError, InvalidConfigValues):
            decode(data)
