"""The compact sample encoding (smartlogger.logfile.samples): real bytes, round-trips, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.errors import LogfileError
from smartlogger.logfile.samples import (
    GROUP,
    MAX_BLOCK_SAMPLES,
    decode_samples,
    encode_samples,
)

# Each row: (mv, dc, exact payload bytes). Decoded for the decode test, encoded for the encode test.
TABLE: list[tuple[list[int], list[int], str]] = [
    # no samples: codec 1, count 0, no channels
    ([], [], "01 00000000"),
    # one sample: first values only, mode 0, empty width table and bit stream
    ([12800], [250], "01 01000000  00320000 00  fa000000 00"),
    # +1, -2 -> zig-zag 2, 3 -> width 2: nibble 02; bits 10 11 -> 0b1110 = 0e
    ([12800, 12801, 12799], [250, 250, 251], "01 03000000  00320000 00 02 0e  fa000000 00 02 08"),
    # a steady temperature costs only its zero width nibble
    ([-5, -5, -5, -5], [0, 0, 0, 0], "01 04000000  fbffffff 00 00  00000000 00 00"),
    # int32 extremes: delta 2**32-1 -> zig-zag 2**33-2, 33 bits -> byte-wide width table (mode 1)
    ([-(2**31), 2**31 - 1], [0, 0],
     "01 02000000  00000080 01 21 feffffff01  00000000 00 00"),
]


@pytest.mark.parametrize(("mv", "dc", "hexbytes"), TABLE)
def test_decode_table(mv: list[int], dc: list[int], hexbytes: str) -> None:
    data = bytes.fromhex(hexbytes)
    got_mv, got_dc, end = decode_samples(data)
    assert got_mv.tolist() == mv
    assert got_dc.tolist() == dc
    assert got_mv.dtype == np.int32 and got_dc.dtype == np.int32
    assert end == len(data)


@pytest.mark.parametrize(("mv", "dc", "hexbytes"), TABLE)
def test_encode_table(mv: list[int], dc: list[int], hexbytes: str) -> None:
    assert encode_samples(mv, dc) == bytes.fromhex(hexbytes)


def test_group_boundary_uses_one_width_per_group() -> None:
    # 33 deltas: a full group of 0/-1 (zig-zag 0/1, width 1) and a last group with +4 (zz 8, width 4).
    mv = np.cumsum([0] + [0, -1] * 16 + [4]).tolist()
    data = encode_samples(mv, [0] * len(mv))
    assert data[10] == 0x41  # nibbles: group 0 width 1 (low), group 1 width 4 (high)
    # header 5 | mv: first 4, mode 1, table 1, 36 bits -> 5 | dc: first 4, mode 1, table 1, 0 bits
    assert len(data) == 5 + (4 + 1 + 1 + 5) + (4 + 1 + 1)
    assert data[11:16] == bytes.fromhex("aaaaaaaa08")
    mv2, _, _ = decode_samples(data)
    assert mv2.tolist() == mv


def test_float_charge_is_compact() -> None:
    # A day at 1 min in float: 13.5 V with 1 mV ADC noise, temperature drifting slowly.
    rng = np.random.default_rng(7)
    n = 1440
    mv = np.round(13500 + rng.normal(0, 1.0, n)).astype(np.int32)
    dc = np.round(230 + 20 * np.sin(np.arange(n) / n * 2 * np.pi) + rng.normal(0, 0.3, n)).astype(np.int32)
    data = encode_samples(mv, dc)
    assert len(data) / n <= 1.0
    got_mv, got_dc, _ = decode_samples(data)
    assert np.array_equal(got_mv, mv) and np.array_equal(got_dc, dc)


def test_discharge_is_compact() -> None:
    # 1 h at 1 Hz of a 12 V block falling 12.6 -> 11.9 V with noise and a warming block.
    rng = np.random.default_rng(8)
    n = 3600
    t = np.arange(n)
    mv = np.round(12600 - 700 * (t / n) ** 1.5 + rng.normal(0, 1.5, n)).astype(np.int32)
    dc = np.round(250 + 30 * t / n + rng.normal(0, 0.3, n)).astype(np.int32)
    data = encode_samples(mv, dc)
    assert len(data) / n <= 1.5
    got_mv, got_dc, _ = decode_samples(data)
    assert np.array_equal(got_mv, mv) and np.array_equal(got_dc, dc)


int32 = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(int32, int32), max_size=3 * GROUP + 5))
def test_round_trip_any_int32(pairs: list[tuple[int, int]]) -> None:
    mv = [p[0] for p in pairs]
    dc = [p[1] for p in pairs]
    data = encode_samples(mv, dc)
    got_mv, got_dc, end = decode_samples(data)
    assert got_mv.tolist() == mv and got_dc.tolist() == dc and end == len(data)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 20000), st.lists(st.integers(-40, 40), max_size=200), st.integers(-350, 850))
def test_round_trip_realistic_walks(start: int, steps: list[int], dc0: int) -> None:
    mv = np.cumsum([start, *steps])
    dc = np.full(mv.size, dc0)
    got_mv, got_dc, _ = decode_samples(encode_samples(mv, dc))
    assert np.array_equal(got_mv, mv) and np.array_equal(got_dc, dc)


def test_decode_at_offset_reports_absolute_offsets() -> None:
    data = b"\xaa" * 7 + encode_samples([1, 2, 3], [4, 5, 6])
    mv, _, end = decode_samples(data, 7)
    assert mv.tolist() == [1, 2, 3] and end == len(data)
    with pytest.raises(LogfileError) as err:
        decode_samples(data[:-1], 7)
    assert err.value.offset is not None and err.value.offset >= 7


@pytest.mark.parametrize(
    ("hexbytes", "offset", "needle"),
    [
        ("", 0, "header"),
        ("02 01000000", 0, "codec"),
        ("01 ffffffff", 1, "limit"),
        ("01 02000000 0000", 5, "mv channel header"),
        ("01 02000000 00000000 07 00", 9, "mode"),
        ("01 03000000 00000000 00", 10, "width table"),
        ("01 03000000 00000000 00 f2 00", 10, "unused last nibble"),
        ("01 03000000 00000000 01 22", 10, "bit width 34"),
        ("01 03000000 00000000 00 04", 11, "packed deltas"),
        ("01 02000000 00000000 00 01 03", 11, "padding"),
        # canonical only: byte-wide widths that all fit a nibble, and a width wider than needed
        ("01 02000000 00000000 01 02 02 00000000 00 00", 9, "not canonical"),
        ("01 02000000 00000000 00 03 02 00000000 00 00", 10, "declares width 3"),
        # 0x7fffffff + 1 leaves int32
        ("01 02000000 ffffff7f 00 02 02  00000000 00 00", 5, "outside int32"),
    ],
)
def test_bad_payloads_name_what_and_where(hexbytes: str, offset: int, needle: str) -> None:
    with pytest.raises(LogfileError) as err:
        decode_samples(bytes.fromhex(hexbytes))
    assert needle in str(err.value)
    assert err.value.offset == offset


def test_huge_declared_count_fails_before_allocating() -> None:
    # MAX_BLOCK_SAMPLES samples need a width table of 16 KiB: 20 bytes cannot hold it.
    data = bytes([1]) + MAX_BLOCK_SAMPLES.to_bytes(4, "little") + bytes(15)
    with pytest.raises(LogfileError, match="width table"):
        decode_samples(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        mv, dc, end = decode_samples(data)
    except LogfileError as err:
        assert err.offset is not None and 0 <= err.offset <= len(data)
    else:
        assert mv.size == dc.size and end <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4000), min_size=2, max_size=100), st.data())
def test_bit_flips_are_never_silent(mv: list[int], data: st.DataObject) -> None:
    raw = bytearray(encode_samples(mv, [0] * len(mv)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        got_mv, got_dc, end = decode_samples(bytes(raw))
    except LogfileError:
        return
    # A flip that still decodes must change the samples or the payload length: never silent.
    assert end != len(raw) or got_mv.tolist() != mv or got_dc.tolist() != [0] * len(mv)


def test_encode_rejects_mismatched_or_out_of_range() -> None:
    with pytest.raises(ValueError, match="samples"):
        encode_samples([1, 2], [1])
    with pytest.raises(ValueError, match="int32"):
        encode_samples([2**31], [0])


# --------------------------------------------------------------------------- many payloads at once


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(int32, st.integers(-400, 900)), max_size=70), max_size=6))
def test_decode_many_equals_one_by_one(blocks: list[list[tuple[int, int]]]) -> None:
    from smartlogger.logfile.samples import decode_many

    buf = b"\x00\x07"  # payloads need not start at 0
    offsets = []
    for pairs in blocks:
        offsets.append(len(buf))
        buf += encode_samples([p[0] for p in pairs], [p[1] for p in pairs])
    mv, dc, counts, ends = decode_many(buf, offsets)
    assert counts.tolist() == [len(b) for b in blocks]
    assert mv.tolist() == [p[0] for b in blocks for p in b]
    assert dc.tolist() == [p[1] for b in blocks for p in b]
    assert ends == [*offsets[1:], len(buf)][: len(offsets)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4000), min_size=1, max_size=80), st.data())
def test_decode_many_rejects_exactly_what_decode_samples_rejects(mv: list[int], data: st.DataObject) -> None:
    from smartlogger.logfile.samples import decode_many

    raw = bytearray(encode_samples(mv, [0] * len(mv)))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        one = decode_samples(bytes(raw))
    except LogfileError as err:
        with pytest.raises(LogfileError):
            decode_many(bytes(raw), [0])
        assert err.offset is not None
        return
    many = decode_many(bytes(raw), [0])
    assert many[0].tolist() == one[0].tolist() and many[1].tolist() == one[1].tolist()
    assert many[3] == [one[2]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=300), st.integers(0, 3),
       st.integers(1, 4), st.data())
def test_decode_in_pieces_gives_what_decode_samples_gives(mv: list[int], damage: int, chunk_groups: int,
                                                          data: st.DataObject) -> None:
    """``decode_samples_chunked`` (a large block, a few bit-width groups at a time) returns the same
    values, or raises the same error at the same offset, as ``decode_samples``."""
    from smartlogger.logfile.samples import decode_samples_chunked

    raw = bytearray(encode_samples(mv, [7] * len(mv)))
    for _ in range(damage):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))

    def outcome(decode: object) -> tuple[object, ...]:
        try:
            got_mv, got_dc, end = decode(bytes(raw))  # type: ignore[operator]
        except LogfileError as err:
            return ("error", err.message, err.offset)
        return ("ok", got_mv.tolist(), got_dc.tolist(), end)

    assert outcome(lambda b: decode_samples_chunked(b, chunk_groups=chunk_groups)) == outcome(decode_samples)
