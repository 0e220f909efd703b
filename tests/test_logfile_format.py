"""The .slog container (smartlogger.logfile.format): round trips, versions and bad input."""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartlogger.errors import LogfileError
from smartlogger.logfile.chain import stream_genesis
from smartlogger.logfile.container import LogfileMetadata, record_crc
from smartlogger.logfile.format import (
    MAGIC,
    MAX_FILE_BYTES,
    build_logfile,
    read_logfile,
    write_logfile,
)
from smartlogger.logfile.records import encode_record
from smartlogger.model import ConfigChange, Event, EventKind, Generation, LoggerIdentity
from smartlogger.testing.logfile_examples import example_pulls


@lru_cache(maxsize=1)
def latest() -> bytes:
    return example_pulls("SIM-0001")[1]


def test_round_trip_keeps_records_verbatim_and_metadata() -> None:
    _, data, log = example_pulls("SIM-0001")
    lf = read_logfile(data)
    assert lf.version == (2, 0) and lf.signed and lf.footer_ok
    assert lf.identity.serial == "SIM-0001" and lf.identity.simulated
    assert lf.metadata.block_label == "B07" and lf.metadata.block_position == 7
    assert lf.metadata.test == {"site": "example"}
    for s in (0, 1):
        assert [(r.seq, r.data) for r in lf.streams[s].records] == [
            (seq, raw) for seq, raw, _ in log.streams[s]]
        assert all(r.crc_ok for r in lf.streams[s].records)
        assert all(encode_record(r.record) == r.data for r in lf.streams[s].records)
    assert [a.counter for a in lf.attestations] == [1, 2]
    assert [c.seq for c in lf.config_history] == [1]


def test_minimal_unsigned_file_bytes() -> None:
    ident = LoggerIdentity("SIM-0009", Generation.GEN2, "2.1.0", simulated=True)
    genesis = [stream_genesis("SIM-0009", 0), stream_genesis("SIM-0009", 1)]
    rec = Event(1000, EventKind.POWER_ON)
    data = build_logfile(ident, None, [[(0, rec)], []], [(0, genesis[0]), (0, genesis[1])], [],
                         LogfileMetadata(created_ms=5))
    assert data[:12] == MAGIC + b"\x02\x00\x00\x00"
    lf = read_logfile(data)
    assert lf.records(0) == [(0, rec)] and not lf.signed and lf.metadata.created_ms == 5
    # header section: type 1, then identity serial str8 "SIM-0009"
    assert data[12] == 1 and data[17:26] == b"\x08SIM-0009"
    assert data[-49] == 0xFF and struct.unpack_from("<III", data, len(data) - 44) == (1, 0, 0)


def test_config_history_from_records_when_not_given() -> None:
    ident = LoggerIdentity("SIM-0009", Generation.GEN2, "2.1.0", simulated=True)
    from smartlogger.testing.logfile_examples import example_config

    change = ConfigChange(5, example_config(), 4)
    anchors = [(0, stream_genesis("SIM-0009", 0)), (0, stream_genesis("SIM-0009", 1))]
    lf = read_logfile(build_logfile(ident, None, [[(0, change)], [(0, change)]], anchors))
    assert lf.metadata.config_history == [change] == lf.config_history


def test_write_logfile_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "x.slog"
    write_logfile(path, latest())
    assert read_logfile(path).identity.serial == "SIM-0001"
    assert not (tmp_path / "x.slog.part").exists()


def _err(data: bytes) -> LogfileError:
    with pytest.raises(LogfileError) as info:
        read_logfile(data)
    return info.value


def test_bad_files_name_what_and_where() -> None:
    data = latest()
    assert "empty file" in str(_err(b""))
    assert "not a smartlogger logfile" in str(_err(b"PK\x03\x04 zip"))
    future = bytearray(data)
    future[8] = 3
    err = _err(bytes(future))
    assert "newer than this reader" in err.message and err.offset == 8
    assert "damaged magic" in str(_err(b"\x89SLOX\r\n\x1a" + data[8:]))
    err = _err(data[:-1])
    assert "declares 44 bytes" in err.message
    err = _err(data[: len(data) - 45])
    assert err.offset is not None and err.offset <= len(data)
    assert "after the footer" in str(_err(data + b"\x00"))
    flipped = bytearray(data)
    flipped[200] ^= 4
    assert "SHA-256" in str(_err(bytes(flipped)))
    assert read_logfile(bytes(flipped), check_hash=False).footer_ok is False


def test_huge_declared_lengths_fail_before_allocating() -> None:
    data = bytearray(latest())
    # first section (header) claims 4 GiB
    data[13:17] = struct.pack("<I", 0xFFFFFFFF)
    err = _err(bytes(data))
    assert "declares 4294967295 bytes" in err.message and err.offset == 13


def test_unknown_sections_are_skipped_by_minor_version_rules() -> None:
    data = latest()
    footer_at = len(data) - 49
    extra = bytes([0x42]) + struct.pack("<I", 3) + b"new"
    body = bytearray(data[:footer_at] + extra)
    body[9] = 7  # minor version 7
    counts = data[footer_at + 5:footer_at + 17]
    newer = bytes(body) + bytes([0xFF]) + struct.pack("<I", 44) + counts + hashlib.sha256(body).digest()
    lf = read_logfile(bytes(newer))
    assert lf.version == (2, 7) and lf.footer_ok


def test_huge_file_path_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.slog"
    with open(path, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(LogfileError, match="more than") as info:
        read_logfile(path)
    assert info.value.path == str(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncation_anywhere_is_a_logfile_error(data: st.DataObject) -> None:
    raw = latest()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(LogfileError) as info:
        read_logfile(raw[:cut])
    assert info.value.offset is not None and 0 <= info.value.offset <= cut


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_damage_never_crashes(data: st.DataObject) -> None:
    raw = bytearray(latest())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        lf = read_logfile(bytes(raw), check_hash=False)
    except LogfileError as err:
        assert err.offset is not None and 0 <= err.offset <= len(raw)
    else:
        assert len(lf.streams) == 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_the_magic_never_crash(tail: bytes) -> None:
    try:
        read_logfile(MAGIC + b"\x02\x00\x00\x00" + tail)
    except LogfileError as err:
        assert err.offset is not None


def test_lazy_sample_decoding_matches_eager() -> None:
    data = latest()
    eager = read_logfile(data)
    lazy = read_logfile(data, decode=False)
    assert all(r.decoded is None for r in lazy.streams[0].records if r.record_type == 0x01)
    assert lazy.records(0) == eager.records(0) and lazy.records(1) == eager.records(1)


def test_bad_sample_payload_is_named_by_record_and_file_offset() -> None:
    lf = read_logfile(latest())
    target = next(r for r in lf.streams[0].records if r.record_type == 0x01)
    damaged = bytearray(latest())
    damaged[target.offset + 13] = 9  # the sample codec byte
    with pytest.raises(LogfileError) as info:
        read_logfile(bytes(damaged), check_hash=False)
    assert f"record seq {target.seq}" in info.value.message and "codec 9" in info.value.message
    assert info.value.offset == target.offset + 13


def test_sample_bombs_are_refused_before_decoding() -> None:
    from smartlogger.logfile.format import MAX_FILE_SAMPLES
    from smartlogger.logfile.samples import MAX_BLOCK_SAMPLES

    # a flat block of the maximum size costs ~32 KiB but decodes to 1 M samples
    n = MAX_BLOCK_SAMPLES
    ngroups = -(-(n - 1) // 32)
    channel = struct.pack("<iB", 12000, 0) + bytes((ngroups + 1) // 2)
    payload = bytes([1]) + struct.pack("<I", n) + channel + channel
    record = bytes([1]) + struct.pack("<qI", 0, 1000) + payload
    count = MAX_FILE_SAMPLES // n + 1
    ident = LoggerIdentity("SIM-0009", Generation.GEN2, "2.1.0", simulated=True)
    anchors = [(0, stream_genesis("SIM-0009", 0)), (0, stream_genesis("SIM-0009", 1))]
    data = build_logfile(ident, None, [[(i, record) for i in range(count)], []], anchors)
    assert len(data) < 3_000_000
    with pytest.raises(LogfileError, match="more than the 67108864"):
        read_logfile(data)
    assert read_logfile(data, decode=False).streams[0].records[0].record_type == 1


def _stream_section(heads_and_bodies: list[bytes], count: int | None = None, anchor: int = 5) -> bytes:
    body = b"".join(heads_and_bodies)
    n = len(heads_and_bodies) if count is None else count
    return bytes([0]) + struct.pack("<Q", anchor) + bytes(32) + struct.pack("<I", n) + body


def _read_section(section: bytes) -> object:
    from smartlogger.logfile.format import _read_stream
    from smartlogger.wire import ByteReader

    return _read_stream(ByteReader(section), 0, 0, False)


def test_record_heads_fast_path_and_checked_reader_agree() -> None:
    """Record heads are parsed without per-field error text when well formed; anything else is
    re-read by the checked reader, which names the field and its offset."""
    from smartlogger.logfile.format import MAX_RECORD_BYTES
    from smartlogger.logfile.records import RecordType
    from smartlogger.wire import leb128

    head_at = 1 + 8 + 32 + 4
    rec = bytes([RecordType.SAMPLE_BLOCK]) + bytes(range(200))  # a 2-byte LEB128 length
    # Well formed, with multi-byte seq deltas and lengths: parsed, seq and CRC kept.
    ok = [leb128(0) + leb128(len(rec)) + struct.pack("<I", record_crc(5, rec)) + rec,
          leb128(70_000) + leb128(len(rec)) + struct.pack("<I", 7) + rec]
    stream = _read_section(_stream_section(ok))
    assert [(r.seq, r.offset, r.crc) for r in stream.records] == [  # type: ignore[attr-defined]
        (5, head_at + 7, record_crc(5, rec)), (70_005, head_at + len(ok[0]) + 3 + 2 + 4, 7)]
    cases = {
        "over-long seq delta": (b"\x81\x00" + leb128(1) + bytes(5),
                                "stream 0 record 0 seq delta: over-long LEB128 encoding", head_at),
        "over-long length": (leb128(1) + b"\x85\x80\x00" + bytes(5),
                             "stream 0 record 0 length: over-long LEB128 encoding", head_at + 1),
        "endless LEB128": (b"\xff" * 12, "stream 0 record 0 seq delta: LEB128 longer than 10 bytes", head_at),
        "huge length": (leb128(1) + leb128(MAX_RECORD_BYTES + 1) + bytes(5),
                        f"declares {MAX_RECORD_BYTES + 1} bytes", None),
        "truncated body": (leb128(1) + leb128(10) + bytes(4) + b"abc",
                           "stream 0 record 0 (seq 6) needs 10 bytes, 3 left", head_at + 6),
        "truncated crc": (ok[0] + leb128(1) + leb128(1) + b"\x00\x00",
                          "stream 0 record 1 crc needs 4 bytes, 2 left", head_at + len(ok[0]) + 2),
    }
    for name, (records, message, offset) in cases.items():
        with pytest.raises(LogfileError) as info:
            _read_section(_stream_section([records], count=2 if records.startswith(ok[0]) else 1))
        assert message in info.value.message, name
        if offset is not None:
            assert info.value.offset == offset, name
