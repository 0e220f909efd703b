"""The record codec: canonical bytes for every ``model.Record`` and back.

Owns the byte layout of one log record, the unit the device appends to its
log, the hash chain is computed over (``logfile.chain``) and the logfile
carries verbatim. Does not own the framing around records (flash sectors,
BLE messages, the logfile container) nor the sample payload layout
(``logfile.samples``).

Every record starts with its type byte and is self-delimiting: its length
follows from its own fields, so a record decodes with only its own bytes.
All integers are little-endian; byte-exact layouts are in
docs/LOGFILE_FORMAT.md ("Records").

    0x01 SampleBlock        start_ms:i64 interval_ms:u32 sample payload (logfile.samples)
    0x02 Event              t_ms:i64 kind:u8 quantity:u8 side:u8 value:i64
    0x03 ConfigChange       t_ms:i64 seq:u32 config (see _CONFIG)
    0x04 ClockSet           old_ms:i64 new_ms:i64
    0x05 DailySummary       day_start_ms:i64 count:u32 mv min/mean/max:i32 dc min/mean/max:i32
    0x06 DischargeSummary   start_ms:i64 end_ms:i64 min_mv:i32 ah_estimate_mah:i32

The encoding is canonical: one record has exactly one encoding, so the bytes
the device hashed can be re-derived from the decoded record.
"""

from __future__ import annotations

import enum
import struct
from array import array
from typing import Final

from smartlogger.errors import ConfigError, LogfileError
from smartlogger.logfile import samples
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
from smartlogger.wire import ByteReader, str8

_Bytes = bytes | bytearray | memoryview


class RecordType(enum.IntEnum):
    """First byte of every record. Values are stable: they are on flash and in logfiles."""

    SAMPLE_BLOCK = 0x01
    EVENT = 0x02
    CONFIG_CHANGE = 0x03
    CLOCK_SET = 0x04
    DAILY_SUMMARY = 0x05
    DISCHARGE_SUMMARY = 0x06


class RecordEncodeError(LogfileError):
    """A record holds a value its wire field cannot carry (``field`` names it)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"cannot encode {field}: {message}")


# --- fixed parts (after the type byte); every field: unit, resolution
SAMPLE_HEAD = struct.Struct("<qI")  # start_ms: ms device time (1 ms); interval_ms: ms (1 ms)
_SAMPLE_HEAD = SAMPLE_HEAD
_EVENT = struct.Struct("<qBBBq")  # t_ms (1 ms); kind; quantity; side; value (mV, dC, s or count)
_CONFIG_HEAD = struct.Struct("<qI")  # t_ms (1 ms); seq: NFC config sequence number
# chemistry code; cells; 4 voltage thresholds: mV (1 mV); 4 temperature thresholds: dC (0.1 C);
# rated_ah: Ah as IEEE-754 binary64 (lossless); float/discharge rate: s (1 s); block_position (1-based)
_CONFIG = struct.Struct("<BBiiiihhhhdIIH")
_CLOCK = struct.Struct("<qq")  # old_ms, new_ms: ms device time (1 ms)
_DAILY = struct.Struct("<qIiiiiii")  # day_start_ms (1 ms); count; mV min/mean/max (1 mV); dC x3 (0.1 C)
_DISCHARGE = struct.Struct("<qqii")  # start_ms, end_ms (1 ms); min_mv (1 mV); ah_estimate_mah (1 mAh)

_CHEMISTRY_CODE: Final = {Chemistry.VRLA: 1, Chemistry.FLOODED: 2, Chemistry.NICD: 3,
                          Chemistry.LIFEPO4: 4}
_CHEMISTRY_OF: Final = {v: k for k, v in _CHEMISTRY_CODE.items()}
_QUANTITY_CODE: Final = {None: 0, Quantity.VOLTAGE: 1, Quantity.TEMPERATURE: 2}
_QUANTITY_OF: Final = {v: k for k, v in _QUANTITY_CODE.items()}
_SIDE_CODE: Final = {None: 0, Side.LOW: 1, Side.HIGH: 2}
_SIDE_OF: Final = {v: k for k, v in _SIDE_CODE.items()}
_TEXT_MAX: Final = {"block_label": 16, "test_id": 32}


# --------------------------------------------------------------------------- encode


def encode_record(record: Record) -> bytes:
    """The canonical bytes of ``record`` (first byte: its ``RecordType``)."""
    try:
        if isinstance(record, SampleBlock):
            payload = samples.encode_samples(record.mv, record.dc)
            return bytes([RecordType.SAMPLE_BLOCK]) + _SAMPLE_HEAD.pack(
                record.start_ms, record.interval_ms) + payload
        if isinstance(record, Event):
            return bytes([RecordType.EVENT]) + _EVENT.pack(
                record.t_ms, int(record.kind), _QUANTITY_CODE[record.quantity],
                _SIDE_CODE[record.side], record.value)
        if isinstance(record, ConfigChange):
            return (bytes([RecordType.CONFIG_CHANGE]) + _CONFIG_HEAD.pack(record.t_ms, record.seq)
                    + encode_config(record.config))
        if isinstance(record, ClockSet):
            return bytes([RecordType.CLOCK_SET]) + _CLOCK.pack(record.old_ms, record.new_ms)
        if isinstance(record, DailySummary):
            return bytes([RecordType.DAILY_SUMMARY]) + _DAILY.pack(
                record.day_start_ms, record.count, record.mv_min, record.mv_mean, record.mv_max,
                record.dc_min, record.dc_mean, record.dc_max)
        if isinstance(record, DischargeSummary):
            return bytes([RecordType.DISCHARGE_SUMMARY]) + _DISCHARGE.pack(
                record.start_ms, record.end_ms, record.min_mv, record.ah_estimate_mah)
    except struct.error as err:
        raise RecordEncodeError(type(record).__name__, f"a field is out of its wire range ({err})") \
            from None
    except ValueError as err:
        raise RecordEncodeError(type(record).__name__, str(err)) from None
    raise RecordEncodeError("record", f"{type(record).__name__} is not a log record type")


def encode_config(config: LoggerConfig) -> bytes:
    """The canonical bytes of a full ``LoggerConfig`` (also used in the logfile header)."""
    th = config.thresholds
    bt = config.block_type
    fixed = _CONFIG.pack(
        _CHEMISTRY_CODE[bt.chemistry], bt.cells,
        th.v_low_alarm_mv, th.v_low_warn_mv, th.v_high_warn_mv, th.v_high_alarm_mv,
        th.t_low_alarm_dc, th.t_low_warn_dc, th.t_high_warn_dc, th.t_high_alarm_dc,
        float(config.rated_ah), config.float_rate_s, config.discharge_rate_s, config.block_position)
    return fixed + str8(config.block_label, "block_label") + str8(config.test_id, "test_id")


# --------------------------------------------------------------------------- decode


def decode_record(data: _Bytes, *, offset: int = 0, length: int | None = None) -> Record:
    """Decode the one record that fills ``data[offset:]`` (or ``data[offset:offset+length]``).

    Raises ``LogfileError`` whose ``offset`` is the absolute byte offset in ``data``
    of the first bad field, including trailing bytes after the record.
    """
    end_limit = len(data) if length is None else offset + length
    if length is not None and (length < 0 or end_limit > len(data)):
        raise LogfileError(f"record length {length} runs past the end of the data ({len(data)} bytes)",
                           offset=offset)
    view = data if length is None else memoryview(data)[:end_limit]
    record, end = decode_record_prefix(view, offset=offset)
    if end != end_limit:
        raise LogfileError(f"{end_limit - end} unexpected bytes after a {type(record).__name__} record",
                           offset=end)
    return record


def decode_record_prefix(data: _Bytes, *, offset: int = 0) -> tuple[Record, int]:
    """Decode the record starting at ``offset``; return it and the offset just after it."""
    size = len(data)
    if offset < 0 or offset >= size:
        raise LogfileError("record expected, but no bytes are left", offset=offset)
    rtype = data[offset]
    r = ByteReader(data, offset + 1)
    if rtype == RecordType.SAMPLE_BLOCK:
        start_ms, interval_ms = r.unpack(_SAMPLE_HEAD, "SampleBlock header")
        if interval_ms == 0:
            raise LogfileError("SampleBlock interval_ms is 0", offset=r.pos - 4)
        mv, dc, end = samples.decode_samples(data, r.pos)
        block = SampleBlock(start_ms, interval_ms, array("i", mv.tobytes()), array("i", dc.tobytes()))
        return block, end
    if rtype == RecordType.EVENT:
        at = r.pos
        t_ms, kind, q, s, value = r.unpack(_EVENT, "Event")
        try:
            ekind = EventKind(kind)
        except ValueError:
            raise LogfileError(f"Event kind {kind} is unknown", offset=at + 8) from None
        if q not in _QUANTITY_OF:
            raise LogfileError(f"Event quantity code {q} is not 0, 1 or 2", offset=at + 9)
        if s not in _SIDE_OF:
            raise LogfileError(f"Event side code {s} is not 0, 1 or 2", offset=at + 10)
        return Event(t_ms, ekind, _QUANTITY_OF[q], _SIDE_OF[s], value), r.pos
    if rtype == RecordType.CONFIG_CHANGE:
        t_ms, seq = r.unpack(_CONFIG_HEAD, "ConfigChange header")
        config, end = decode_config(data, offset=r.pos)
        return ConfigChange(t_ms, config, seq), end
    if rtype == RecordType.CLOCK_SET:
        old_ms, new_ms = r.unpack(_CLOCK, "ClockSet")
        return ClockSet(old_ms, new_ms), r.pos
    if rtype == RecordType.DAILY_SUMMARY:
        return DailySummary(*r.unpack(_DAILY, "DailySummary")), r.pos
    if rtype == RecordType.DISCHARGE_SUMMARY:
        return DischargeSummary(*r.unpack(_DISCHARGE, "DischargeSummary")), r.pos
    raise LogfileError(f"unknown record type 0x{rtype:02x}", offset=offset)


def decode_config(data: _Bytes, *, offset: int = 0) -> tuple[LoggerConfig, int]:
    """Decode a ``LoggerConfig`` at ``offset``; return it and the offset after it.

    A configuration the model rejects (``ConfigError``) becomes a ``LogfileError``
    naming the field, so a reader never trusts an invalid configuration.
    """
    r = ByteReader(data, offset)
    (chem, cells, vla, vlw, vhw, vha, tla, tlw, thw, tha, rated_ah, float_rate, dis_rate,
     position) = r.unpack(_CONFIG, "LoggerConfig")
    if chem not in _CHEMISTRY_OF:
        raise LogfileError(f"LoggerConfig chemistry code {chem} is unknown", offset=offset)
    label = r.str8("block_label", _TEXT_MAX["block_label"])
    test_id = r.str8("test_id", _TEXT_MAX["test_id"])
    try:
        config = LoggerConfig(
            block_type=BlockType(_CHEMISTRY_OF[chem], cells),
            thresholds=Thresholds(vla, vlw, vhw, vha, tla, tlw, thw, tha),
            rated_ah=rated_ah, float_rate_s=float_rate, discharge_rate_s=dis_rate,
            block_label=label, block_position=position, test_id=test_id)
    except ConfigError as err:
        raise LogfileError(f"LoggerConfig is invalid: {err}", offset=offset) from None
    return config, r.pos
