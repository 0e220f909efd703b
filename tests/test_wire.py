"""The primitive wire encodings (``smartlogger.wire``): one LEB128 and one byte cursor for
every format (logfile container, records, NFC records, BLE transfer image).

Table of real bytes used for both decode and encode, hypothesis round trips, the fast
decoder against the checked one, and the errors each format gets from the same cursor."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartlogger.errors import LogfileError
from smartlogger.protocol.ble import ProtocolError, decode_image, encode_image
from smartlogger.protocol.nfc import IdentityRecord, NfcRecordError
from smartlogger.wire import MAX_LEB128_BYTES, ByteReader, leb128, read_leb128, str8

#: (value, canonical LEB128 bytes): the DWARF / protobuf varint examples and the u64 limit.
LEB128 = [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16_383, "ff7f"),
    (16_384, "808001"), (624_485, "e58e26"), ((1 << 64) - 1, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize(("value", "hexbytes"), LEB128)
def test_leb128_table_decodes_and_encodes(value: int, hexbytes: str) -> None:
    data = bytes.fromhex(hexbytes)
    assert leb128(value) == data
    assert read_leb128(data, 0, len(data)) == (value, len(data))
    r = ByteReader(data + b"\xaa")
    assert r.leb128("value") == value and r.pos == len(data)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1), st.binary(max_size=4))
def test_leb128_round_trip(value: int, tail: bytes) -> None:
    data = leb128(value) + tail
    assert read_leb128(data, 0, len(data)) == (value, len(data) - len(tail))


@given(st.binary(max_size=14))
def test_the_fast_decoder_agrees_with_the_checked_one(data: bytes) -> None:
    """Differential: where the fast decoder finds a value the checked reader finds the same;
    where it finds none the checked reader raises (never a different value)."""
    value, pos = read_leb128(data, 0, len(data))
    r = ByteReader(data)
    if value >= 0:
        assert r.leb128("v") == value and r.pos == pos
    else:
        with pytest.raises(LogfileError):
            r.leb128("v")


@pytest.mark.parametrize(("data", "message", "offset"), [
    (b"\x80\x00", "v: over-long LEB128 encoding", 0),
    (b"\x85\x80\x00", "v: over-long LEB128 encoding", 0),
    (b"\x80\x80", "v needs 1 bytes, 0 left", 2),
    (b"", "v needs 1 bytes, 0 left", 0),
    (b"\xff" * 12, f"v: LEB128 longer than {MAX_LEB128_BYTES} bytes", 0),
    (b"\xff" * MAX_LEB128_BYTES, f"v: LEB128 longer than {MAX_LEB128_BYTES} bytes", 0),
])
def test_a_bad_leb128_is_named_with_its_offset(data: bytes, message: str, offset: int) -> None:
    with pytest.raises(LogfileError) as err:
        ByteReader(b"\x00" + data, 1).leb128("v")
    assert err.value.message == message and err.value.offset == offset + 1


def test_the_cursor_checks_bounds_before_it_reads_and_names_the_field() -> None:
    r = ByteReader(b"\x01\x02\x03\x04\x05", 1, 4)
    assert r.unpack(struct.Struct(">H"), "be16") == (0x0203,)
    with pytest.raises(LogfileError, match="u32 needs 4 bytes, 1 left") as err:
        r.u32("u32")
    assert err.value.offset == 3
    with pytest.raises(LogfileError, match="2 unexpected bytes at the end of the record"):
        ByteReader(b"\x00\x00\x00", 1).expect_end("the record")
    assert str8("Block 7") == b"\x07Block 7" and ByteReader(str8("Block 7")).str8("label") == "Block 7"
    with pytest.raises(LogfileError, match="label length 9 exceeds 8 bytes"):
        ByteReader(str8("Block 007")).str8("label", 8)


def test_each_format_gets_its_own_error_from_the_one_cursor() -> None:
    """The NFC records and the BLE transfer image read with ``wire.ByteReader`` too, and
    their errors name the record (NFC) or the transfer (BLE)."""
    from smartlogger.model import Generation, LoggerIdentity

    payload = IdentityRecord(LoggerIdentity("SIM-0001", Generation.GEN2, "2.0.0", simulated=True)).to_payload()
    body = payload[:-4][:8]  # the serial's length byte says 8, only 4 of its bytes are there
    with pytest.raises(NfcRecordError) as err:
        IdentityRecord.from_payload(body + struct.pack(">I", zlib.crc32(body)))
    assert err.value.record == "id" and err.value.offset == 4 and "serial needs 8 bytes, 4 left" in str(err.value)
    image, _ = encode_image([(5, b"ab"), (9, b"xyz")], 5)
    assert list(decode_image(image, 5)) == [(5, b"ab"), (9, b"xyz")]
    for bad, what in ((b"\x80", "frame length needs 1 bytes"), (b"\x80\x00", "frame length: over-long"),
                      (b"\x03", "frame gap needs 1 bytes")):
        with pytest.raises(ProtocolError, match=what):
            list(decode_image(bad, 0))
