"""Byte-exact tests of the BLE log-transfer messages (protocol.ble), table-driven + properties."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartlogger.protocol import ble as p

NONCE = bytes(range(16))
H = bytes(range(32))

# (message, exact bytes): the decode table is reused for encode.
TABLE: list[tuple[object, bytes]] = [
    (p.Start(0, 5, p.TO_NEWEST, 0, 0, 64, 3, NONCE),
     bytes.fromhex("01 00 05000000 ffffffff 00000000 00000000 4000 03") + NONCE),
    (p.Start(1, p.SINCE_LAST_READ, 9, 4760, 0xDEADBEEF, 32, 2, NONCE),
     bytes.fromhex("01 01 ffffffff 09000000 98120000 efbeadde 2000 02") + NONCE),
    (p.Ack(0x01020304, 15232), bytes.fromhex("02 04030201 803b0000")),
    (p.Resend(7, 238, 476), bytes.fromhex("03 07000000 ee000000 dc010000")),
    (p.MarkRead(61, H), bytes.fromhex("04 3d000000") + H),
    (p.Reset(1_790_000_000_000), bytes.fromhex("05") + struct.pack("<Q", 1_790_000_000_000)),
    (p.StartV1(3), bytes.fromhex("11 03000000")),
    (p.HeaderV1(3, 1000, 4), bytes.fromhex("91 03000000 e8030000 04000000")),
    (p.EndV1(1000, 0xCAFEBABE, 42), bytes.fromhex("92 e8030000 bebafeca 2a00000000000000")),
    (p.ErrorReply(p.ErrorCode.RANGE_GONE, "gone"), bytes.fromhex("83 02") + b"gone"),
    (p.Result(p.Op.RESET, False, "unread"), bytes.fromhex("84 05 00") + b"unread"),
]


@pytest.mark.parametrize(("msg", "raw"), TABLE)
def test_message_bytes_are_exact(msg: object, raw: bytes) -> None:
    assert msg.to_bytes() == raw  # type: ignore[attr-defined]
    if raw[0] >= 0x80:
        assert p.parse_device_message(raw) == msg
    else:
        assert p.parse_client_message(raw) == msg


def test_header_and_end_layout() -> None:
    h = p.Header(9, 0, 10, 71, 5000, 0x11223344, 61, 238, 476, 1_790_000_000_123, H)
    raw = h.to_bytes()
    assert len(raw) == 72 and raw[0] == p.Op.HEADER
    assert struct.unpack_from("<I", raw, 1)[0] == 9
    assert raw[5] == 0  # stream
    assert raw[-32:] == H
    assert p.parse_device_message(raw) == h
    e = p.End(9, 5000, 61, 0x11223344, 7, p.ChainHead(71, H), p.ChainHead(0, bytes(32)), True)
    raw = e.to_bytes()
    assert len(raw) == 98 and raw[-1] == 1
    assert p.parse_device_message(raw) == e


def test_messages_fit_their_mtu() -> None:
    # v2 replies must fit one notification at MTU 247, v1 ones at the default MTU 23.
    assert len(p.End(0, 0, 0, 0, 0, p.ChainHead(0, H), p.ChainHead(0, H), True).to_bytes()) <= 244
    assert len(p.Header(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, H).to_bytes()) <= 244
    assert len(p.HeaderV1(0, 0, 0).to_bytes()) <= 20
    assert len(p.EndV1(0, 0, 0).to_bytes()) <= 20
    assert len(p.StartV1(0).to_bytes()) <= 20
    assert p.chunk_payload_size(247) == 238
    assert p.chunk_payload_size(23, p.PROTOCOL_V1) == 18


def test_chunk_crc_covers_offset_and_payload() -> None:
    raw = p.Chunk(476, b"abc").to_bytes()
    assert raw[:4] == struct.pack("<I", 476) and raw[4:7] == b"abc"
    assert struct.unpack("<H", raw[-2:])[0] == p.crc16(raw[:-2])
    assert p.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert p.Chunk.from_bytes(raw) == p.Chunk(476, b"abc")
    moved = struct.pack("<I", 714) + raw[4:]  # same payload claimed at another offset
    with pytest.raises(p.ProtocolError, match="CRC"):
        p.Chunk.from_bytes(moved)
    flipped = raw[:5] + bytes([raw[5] ^ 0x40]) + raw[6:]
    with pytest.raises(p.ProtocolError, match="CRC") as err:
        p.Chunk.from_bytes(flipped)
    assert err.value.offset == len(raw) - 2


def test_image_framing_is_exact_and_marks_gaps() -> None:
    image, count = p.encode_image([(10, b"ab"), (11, b""), (14, b"x" * 70)], 10)
    assert count == 3
    # len<<1: 4 | "ab" ; 0 ; gap: (70<<1|1)=141 -> varint 8d 01, skipped 2
    assert image == bytes([4]) + b"ab" + bytes([0]) + bytes([0x8D, 0x01, 2]) + b"x" * 70
    assert list(p.decode_image(image, 10)) == [(10, b"ab"), (11, b""), (14, b"x" * 70)]
    with pytest.raises(p.ProtocolError) as err:
        list(p.decode_image(image[:-1], 10))
    assert err.value.offset == 4


@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=300)), max_size=30),
       st.integers(0, 2**31))
def test_image_roundtrip(items: list[tuple[int, bytes]], first: int) -> None:
    seq = first
    records = []
    for skip, data in items:
        seq += skip
        records.append((seq, data))
        seq += 1
    image, count = p.encode_image(records, first)
    assert count == len(records)
    assert list(p.decode_image(image, first)) == records


@given(st.one_of(st.binary(max_size=64),
                 st.builds(lambda op, rest: bytes([op]) + rest,
                           st.sampled_from([int(o) for o in p.Op]), st.binary(max_size=120))))
def test_parsers_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (p.parse_client_message, p.parse_device_message, p.Chunk.from_bytes,
                  p.LoggerInfo.from_bytes, p.VersionInfo.from_bytes):
        with contextlib.suppress(p.ProtocolError):
            parse(data)


def test_info_and_advertising_roundtrip() -> None:
    info = p.LoggerInfo(1_790_000_000_000, p.InfoFlags.SIMULATED | p.InfoFlags.SIGNED, 61, 0, 0,
                        3, 0, 2, "SL2-00001", "2.0.0")
    assert p.LoggerInfo.from_bytes(info.to_bytes()) == info
    adv = p.advertising_data("SL2-00001")
    assert len(adv) <= 31
    assert p.parse_advertising(adv) == ([p.SERVICE_UUID], "SL2-00001", True)
    long = p.advertising_data("SL2-A-VERY-LONG-SERIAL-0001")
    assert len(long) == 31
    uuids, name, complete = p.parse_advertising(long)
    assert uuids == [p.SERVICE_UUID] and name == "SL2-A-VERY-" and not complete


def test_attest_reply() -> None:
    r = p.AttestReply(b"cert", b"att")
    assert r.to_bytes() == b"\x04\x00certatt"
    assert p.AttestReply.from_bytes(r.to_bytes()) == r
    assert p.AttestReply.from_bytes(b"") is None
    with pytest.raises(p.ProtocolError):
        p.AttestReply.from_bytes(b"\x09\x00ab")
