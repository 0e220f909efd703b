"""The record codec (smartlogger.logfile.records): a table of real bytes, round-trips, bad input."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.errors import LogfileError
from smartlogger.logfile.records import (
    RecordEncodeError,
    decode_record,
    decode_record_prefix,
    encode_record,
)
from smartlogger.model import (
    BlockType,
    Chemistry,
    ClockSet,
    ConfigChange,
    DailySummary,
    DischargeSummary,
    Event,
    EventKind,
    LoggerConfig,
    Quantity,
    Record,
    SampleBlock,
    Side,
    Thresholds,
)

CONFIG = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0).with_changes(
    block_label="B07", block_position=7, test_id="T-1")

# Each row: a record and its exact canonical bytes (hex, spaces for reading only).
TABLE: list[tuple[Record, str]] = [
    (SampleBlock.of(1_700_000_000_000, 1000, [12800, 12801, 12799], [250, 250, 251]),
     "01 0068e5cf8b010000 e8030000"
     " 01 03000000 00320000 00 02 0e fa000000 00 02 08"),
    (SampleBlock.of(0, 60_000, [], []),
     "01 0000000000000000 60ea0000 01 00000000"),
    (Event(1_700_000_000_000, EventKind.ENTER_ALARM, Quantity.VOLTAGE, Side.LOW, 10500),
     "02 0068e5cf8b010000 03 01 01 0429000000000000"),
    (Event(-1, EventKind.POWER_ON),
     "02 ffffffffffffffff 08 00 00 0000000000000000"),
    (Event(5, EventKind.LEAVE_WARNING, Quantity.TEMPERATURE, Side.HIGH, -3),
     "02 0500000000000000 02 02 02 fdffffffffffffff"),
    (ConfigChange(5, CONFIG, 3),
     "03 0500000000000000 03000000"
     " 01 06 ac260000 302a0000 14370000 6c390000 0000 3200 5e01 c201"
     " 0000000000005940 3c000000 01000000 0700 03 423037 03 542d31"),
    (ClockSet(1, 2), "04 0100000000000000 0200000000000000"),
    (DailySummary(86_400_000, 1440, 13480, 13500, 13520, 180, 230, 275),
     "05 005c260500000000 a0050000 a8340000 bc340000 d0340000 b4000000 e6000000 13010000"),
    (DischargeSummary(1000, 37_001_000, 10512, 98_250),
     "06 e803000000000000 2897340200000000 10290000 ca7f0100"),
]


@pytest.mark.parametrize(("record", "hexbytes"), TABLE, ids=[type(r).__name__ for r, _ in TABLE])
def test_decode_table(record: Record, hexbytes: str) -> None:
    assert decode_record(bytes.fromhex(hexbytes)) == record


@pytest.mark.parametrize(("record", "hexbytes"), TABLE, ids=[type(r).__name__ for r, _ in TABLE])
def test_encode_table(record: Record, hexbytes: str) -> None:
    assert encode_record(record) == bytes.fromhex(hexbytes)


def test_records_concatenate_and_decode_by_prefix() -> None:
    blob = b"".join(encode_record(r) for r, _ in TABLE)
    pos = 0
    out = []
    while pos < len(blob):
        rec, pos = decode_record_prefix(blob, offset=pos)
        out.append(rec)
    assert out == [r for r, _ in TABLE]


def test_decode_inside_a_larger_buffer_with_length() -> None:
    raw = encode_record(ClockSet(10, 20))
    buf = b"\x00" * 5 + raw + b"\xff" * 3
    assert decode_record(buf, offset=5, length=len(raw)) == ClockSet(10, 20)
    with pytest.raises(LogfileError) as err:
        decode_record(buf, offset=5)
    assert err.value.offset == 5 + len(raw)
    assert "unexpected bytes" in str(err.value)


# --------------------------------------------------------------------------- property tests

i64 = st.integers(-(2**63), 2**63 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
# Short texts of any characters (up to 4 UTF-8 bytes each), within the label's 16-byte limit.
texts = st.text(max_size=5).filter(lambda t: len(t.encode()) <= 16)


@st.composite
def configs(draw: st.DrawFn) -> LoggerConfig:
    block = draw(st.sampled_from([BlockType.lead_acid(12), BlockType.lead_acid(2),
                                  BlockType(Chemistry.NICD, 10), BlockType(Chemistry.LIFEPO4, 4)]))
    base = Thresholds.default_for(block)
    rated = draw(st.floats(0.1, 20000, allow_nan=False))
    fr = draw(st.integers(1, 86400))
    dr = draw(st.integers(1, fr))
    return LoggerConfig(block, base, rated, fr, dr, draw(texts), draw(st.integers(0, 65535)),
                        draw(texts))


records = st.one_of(
    st.builds(lambda s, i, p: SampleBlock.of(s, i, [a for a, _ in p], [b for _, b in p]),
              i64, st.integers(1, 2**32 - 1), st.lists(st.tuples(i32, i32), max_size=80)),
    st.builds(Event, i64, st.sampled_from(EventKind), st.sampled_from([None, *Quantity]),
              st.sampled_from([None, *Side]), i64),
    st.builds(ConfigChange, i64, configs(), u32),
    st.builds(ClockSet, i64, i64),
    st.builds(DailySummary, i64, u32, i32, i32, i32, i32, i32, i32),
    st.builds(DischargeSummary, i64, i64, i32, i32),
)


@settings(max_examples=300, deadline=None)
@given(records)
def test_round_trip(record: Record) -> None:
    raw = encode_record(record)
    assert decode_record(raw) == record
    assert encode_record(decode_record(raw)) == raw  # canonical


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_give_logfile_error_or_a_record(data: bytes) -> None:
    try:
        rec = decode_record(data)
    except LogfileError as err:
        assert err.offset is not None and 0 <= err.offset <= len(data)
    else:
        assert encode_record(rec) == data or isinstance(rec, ConfigChange)


@settings(max_examples=300, deadline=None)
@given(records, st.data())
def test_truncation_and_bit_flips_never_crash(record: Record, data: st.DataObject) -> None:
    raw = encode_record(record)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(LogfileError):
        decode_record(raw[:cut])
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        rec = decode_record(bytes(flipped))
    except LogfileError:
        return
    assert rec != record or isinstance(rec, ConfigChange)  # float rated_ah: -0.0/NaN-free flips


# --------------------------------------------------------------------------- bad input, by name


@pytest.mark.parametrize(
    ("hexbytes", "offset", "needle"),
    [
        ("", 0, "no bytes"),
        ("7f", 0, "unknown record type 0x7f"),
        ("02 0000000000000000 63 00 00 0000000000000000", 9, "Event kind 99"),
        ("02 0000000000000000 01 03 00 0000000000000000", 10, "quantity code 3"),
        ("02 0000000000000000 01 00 09 0000000000000000", 11, "side code 9"),
        ("04 0100000000000000 02", 1, "ClockSet needs 16 bytes, 9 left"),
        ("01 0000000000000000 00000000 01 00000000", 9, "interval_ms is 0"),
        ("03 0000000000000000 00000000 09", 13, "LoggerConfig needs"),
    ],
)
def test_bad_records_name_what_and_where(hexbytes: str, offset: int, needle: str) -> None:
    with pytest.raises(LogfileError) as err:
        decode_record(bytes.fromhex(hexbytes))
    assert needle in str(err.value)
    assert err.value.offset == offset


def _config_bytes_with(pos: int, value: bytes) -> bytes:
    raw = bytearray(encode_record(ConfigChange(0, CONFIG, 0)))
    raw[pos:pos + len(value)] = value
    return bytes(raw)


def test_invalid_config_is_a_logfile_error_naming_the_field() -> None:
    # swap low alarm (offset 15) above low warning: the model's validation names the field
    raw = _config_bytes_with(15, (11000).to_bytes(4, "little"))
    with pytest.raises(LogfileError) as err:
        decode_record(raw)
    assert "thresholds.v_low_warn_mv" in str(err.value)
    assert err.value.offset == 13


def test_bad_text_lengths_and_utf8() -> None:
    raw = encode_record(ConfigChange(0, CONFIG, 0))
    label_at = raw.index(b"\x03B07")
    bad_len = raw[:label_at] + b"\x11" + raw[label_at + 1:]
    with pytest.raises(LogfileError, match="block_label length 17") as err:
        decode_record(bad_len)
    assert err.value.offset == label_at
    bad_utf8 = raw[:label_at + 1] + b"\xff" + raw[label_at + 2:]
    with pytest.raises(LogfileError, match="not UTF-8") as err:
        decode_record(bad_utf8)
    assert err.value.offset == label_at + 1


def test_encode_rejects_values_outside_their_fields() -> None:
    with pytest.raises(RecordEncodeError, match="Event"):
        encode_record(Event(2**63, EventKind.GAP))
    with pytest.raises(RecordEncodeError, match="DischargeSummary"):
        encode_record(DischargeSummary(0, 1, 2, 2**31))
    with pytest.raises(RecordEncodeError, match="int32"):
        encode_record(SampleBlock(0, 1, array("q", [2**40]), array("q", [0])))
    with pytest.raises(RecordEncodeError, match="SampleBlock"):
        encode_record(SampleBlock.of(0, 2**32, [1], [1]))  # interval beyond u32 ms
