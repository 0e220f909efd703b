"""The NFC wire format shared by the logger's Type 2 tag and the field tool.

Owns, byte-exact and in one place (docs/NFC.md mirrors it):

- the NDEF records a logger publishes and a phone writes, as NFC Forum
  external type records (``urn:nfc:ext:smartlogger.io:<name>``) encoded with
  ndeflib: ``cfg`` (a configuration with its sequence number and the phone's
  clock), ``id`` (who the logger is) and ``st`` (status, the config ack, the
  last test summary);
- the reason codes of the config ack;
- the Type 2 tag memory layout around them: the capability container and the
  NDEF message TLV in the data area.

Every payload starts with a version byte and ends with a CRC-32 (zlib/IEEE
802.3 polynomial, big-endian) over all payload bytes before it, so a record
torn by a phone pulled away mid-write fails to decode instead of being
misread. All integers are big-endian.

Does not own any I/O: the tag emulation (``device.nfc_tag``) and the nfcpy
reader (``field.nfc``) both call into this module.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

import ndef

from smartlogger.errors import ConfigError, SmartLoggerError
from smartlogger.model import (
    BlockType,
    Chemistry,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    Thresholds,
)
from smartlogger.protocol.live import KitKey
from smartlogger.wire import ByteReader, str8

# --------------------------------------------------------------------------- errors


class NfcRecordError(SmartLoggerError, ValueError):
    """An NFC record, NDEF message or TLV area cannot be decoded.

    ``record`` names the record (``cfg``, ``id``, ``st``, ``tlv``, ``ndef``) and
    ``offset`` the byte offset inside its payload (or area) where it went wrong.
    """

    exit_code = 4

    def __init__(self, record: str, message: str, *, offset: int | None = None) -> None:
        self.record = record
        self.offset = offset
        self.message = message
        where = f"{record} record" if offset is None else f"{record} record at byte {offset}"
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------- record types

#: NFC Forum external type domain of all smartlogger records.
DOMAIN = "smartlogger.io"
CFG_TYPE = f"urn:nfc:ext:{DOMAIN}:cfg"
ID_TYPE = f"urn:nfc:ext:{DOMAIN}:id"
STATUS_TYPE = f"urn:nfc:ext:{DOMAIN}:st"
KEY_TYPE = f"urn:nfc:ext:{DOMAIN}:key"
KEY_ID_TYPE = f"urn:nfc:ext:{DOMAIN}:lk"

#: Payload format version written by this code; decoders refuse other versions.
RECORD_VERSION = 1

_CRC = struct.Struct(">I")


def _seal(body: bytes) -> bytes:
    return body + _CRC.pack(zlib.crc32(body))


def _unseal(record: str, payload: bytes) -> bytes:
    """Check version and CRC; return the body (payload without the CRC)."""
    if len(payload) < 1 + _CRC.size:
        raise NfcRecordError(record, f"payload of {len(payload)} bytes is too short", offset=0)
    body, crc = payload[:-4], _CRC.unpack(payload[-4:])[0]
    if zlib.crc32(body) != crc:
        raise NfcRecordError(
            record, f"CRC mismatch (stored {crc:08x}, computed {zlib.crc32(body):08x}): torn or corrupt",
            offset=len(body),
        )
    if body[0] != RECORD_VERSION:
        raise NfcRecordError(record, f"payload version {body[0]} is not {RECORD_VERSION}", offset=0)
    return body


def _reader(record: str, body: bytes) -> ByteReader:
    """The one byte cursor (``wire.ByteReader``) over a record body; errors name the record."""
    return ByteReader(body, error=lambda message, offset: NfcRecordError(record, message, offset=offset))


# --------------------------------------------------------------------------- config record

#: Chemistry codes on the wire (stable; never renumber).
CHEMISTRY_CODES: dict[Chemistry, int] = {
    Chemistry.VRLA: 1,
    Chemistry.FLOODED: 2,
    Chemistry.NICD: 3,
    Chemistry.LIFEPO4: 4,
}
_CHEMISTRY_BY_CODE = {v: k for k, v in CHEMISTRY_CODES.items()}

CFG_FLAG_SET_CLOCK = 0x01  # phone_ms is valid: set the logger's clock to it on apply

# version u8, flags u8, seq u32, phone_ms i64, chemistry u8, cells u8, rated mAh u32,
# 4 x voltage u16 mV, 4 x temperature i16 dC, float rate u32 s, discharge rate u32 s,
# block position u16; then label and test id as (u8 length, UTF-8 bytes).
_CFG_FIXED = struct.Struct(">BBIqBBI4H4hIIH")

#: Largest ``cfg`` payload: fixed part, 1 + 16 label bytes, 1 + 32 test id bytes, CRC.
CFG_MAX_PAYLOAD = _CFG_FIXED.size + 1 + 16 + 1 + 32 + 4


@dataclass(frozen=True)
class ConfigRecord:
    """A configuration as carried over NFC: written by the phone, published by the logger.

    ``seq`` is the config sequence number (the firmware applies only a record
    whose ``seq`` is above its current ``config_seq``); ``phone_ms`` is the
    phone's clock (ms since the Unix epoch) when it encoded the record, used to
    set the logger's clock when ``set_clock`` is true.
    """

    config: LoggerConfig
    seq: int
    phone_ms: int = 0
    set_clock: bool = False

    def to_payload(self) -> bytes:
        c = self.config
        t = c.thresholds
        if not 0 <= self.seq <= 0xFFFFFFFF:
            raise ConfigError("seq", f"{self.seq} is outside 0..2^32-1")
        rated_mah = round(c.rated_ah * 1000)  # resolution 1 mAh
        fixed = _CFG_FIXED.pack(
            RECORD_VERSION,
            CFG_FLAG_SET_CLOCK if self.set_clock else 0,
            self.seq,
            self.phone_ms,  # ms since the Unix epoch, phone clock
            CHEMISTRY_CODES[c.block_type.chemistry],
            c.block_type.cells,
            rated_mah,  # mAh
            t.v_low_alarm_mv, t.v_low_warn_mv, t.v_high_warn_mv, t.v_high_alarm_mv,  # mV
            t.t_low_alarm_dc, t.t_low_warn_dc, t.t_high_warn_dc, t.t_high_alarm_dc,  # 0.1 C
            c.float_rate_s,  # s between samples in float charge
            c.discharge_rate_s,  # s between samples during a discharge
            c.block_position,  # 1-based position in the string, 0 = not set
        )
        return _seal(fixed + str8(c.block_label, "block_label") + str8(c.test_id, "test_id"))

    @classmethod
    def from_payload(cls, payload: bytes) -> ConfigRecord:
        body = _unseal("cfg", bytes(payload))
        r = _reader("cfg", body)
        (_, flags, seq, phone_ms, chem, cells, rated_mah,
         vla, vlw, vhw, vha, tla, tlw, thw, tha, float_s, dis_s, position) = r.unpack(_CFG_FIXED, "cfg fields")
        label = r.str8("block_label", 16)
        test_id = r.str8("test_id", 32)
        r.expect_end("the payload")
        if chem not in _CHEMISTRY_BY_CODE:
            raise NfcRecordError("cfg", f"unknown chemistry code {chem}", offset=14)
        try:
            block = BlockType(_CHEMISTRY_BY_CODE[chem], cells)
            config = LoggerConfig(
                block_type=block,
                thresholds=Thresholds(vla, vlw, vhw, vha, tla, tlw, thw, tha),
                rated_ah=rated_mah / 1000,
                float_rate_s=float_s,
                discharge_rate_s=dis_s,
                block_label=label,
                block_position=position,
                test_id=test_id,
            )
        except ConfigError as err:
            # The bytes are intact (CRC passed) but the values are not a valid
            # configuration: keep the field name for the ack.
            raise InvalidConfigValues(err.field, err.message) from err
        return cls(config, seq, phone_ms, bool(flags & CFG_FLAG_SET_CLOCK))

    def to_ndef(self) -> ndef.Record:
        return ndef.Record(CFG_TYPE, "", self.to_payload())


class InvalidConfigValues(ConfigError):
    """A ``cfg`` record decoded intact but holds values ``LoggerConfig`` rejects."""


# --------------------------------------------------------------------------- identity record

ID_FLAG_SIMULATED = 0x01
ID_FLAG_REPLAYED = 0x02

# version u8, generation u8, flags u8; then serial and firmware as (u8 length, UTF-8).
_ID_FIXED = struct.Struct(">BBB")


@dataclass(frozen=True)
class IdentityRecord:
    """Who the logger is (``model.LoggerIdentity`` on the wire)."""

    identity: LoggerIdentity

    def to_payload(self) -> bytes:
        i = self.identity
        flags = (ID_FLAG_SIMULATED if i.simulated else 0) | (ID_FLAG_REPLAYED if i.replayed else 0)
        return _seal(_ID_FIXED.pack(RECORD_VERSION, int(i.generation), flags)
                     + str8(i.serial, "serial") + str8(i.firmware, "firmware"))

    @classmethod
    def from_payload(cls, payload: bytes) -> IdentityRecord:
        body = _unseal("id", bytes(payload))
        r = _reader("id", body)
        _, generation, flags = r.unpack(_ID_FIXED, "id fields")
        serial = r.str8("serial", 32)
        firmware = r.str8("firmware", 32)
        r.expect_end("the payload")
        try:
            identity = LoggerIdentity(serial, Generation(generation), firmware,
                                      simulated=bool(flags & ID_FLAG_SIMULATED),
                                      replayed=bool(flags & ID_FLAG_REPLAYED))
        except ValueError as err:
            raise NfcRecordError("id", str(err), offset=1) from None
        return cls(identity)

    def to_ndef(self) -> ndef.Record:
        return ndef.Record(ID_TYPE, "", self.to_payload())


# --------------------------------------------------------------------------- status record


class Reason(enum.IntEnum):
    """Config ack reason codes (stable wire values)."""

    OK = 0  # applied
    BAD_RECORD = 1  # intact frame, but the record could not be decoded (version, layout)
    STALE_SEQ = 2  # seq not above the logger's current config_seq
    OUT_OF_RANGE = 3  # a value outside what the logger accepts (detail names the field)
    BLOCK_TYPE = 4  # block type does not fit this logger's measuring class
    GEN1 = 5  # generation-1 logger: fixed thresholds and log rate, not programmable
    REJECTED = 6  # any other firmware refusal (detail carries the firmware's reason)

    @classmethod
    def from_firmware(cls, reason: str) -> Reason:
        """Map a firmware ``ConfigRejected.reason`` code onto a wire reason."""
        key = reason.strip().lower().replace("-", "_")
        table = {
            "gen1": cls.GEN1,
            "stale": cls.STALE_SEQ, "stale_seq": cls.STALE_SEQ, "seq": cls.STALE_SEQ,
            "range": cls.OUT_OF_RANGE, "out_of_range": cls.OUT_OF_RANGE, "invalid": cls.OUT_OF_RANGE,
            "block_type": cls.BLOCK_TYPE, "wrong_block_type": cls.BLOCK_TYPE,
            "measuring_range": cls.BLOCK_TYPE,
        }
        return table.get(key, cls.REJECTED)


ST_FLAG_DISCHARGING = 0x01  # the logger is in a discharge (fast log rate)
ST_FLAG_HAS_TEST = 0x02  # the last-test fields are valid

# version u8, flags u8, device_ms i64, config_seq u32, ack_seq u32, ack reason u8,
# clock_old_ms i64, clock_new_ms i64, block mV u16, temperature dC i16, records u32,
# last test: start_ms i64, end_ms i64, min mV u16, delivered mAh u32;
# then the ack detail as (u8 length, UTF-8 <= 32).
_ST_FIXED = struct.Struct(">BBqIIBqqHhIqqHI")


@dataclass(frozen=True)
class LastTest:
    """The last discharge the logger saw (from its summary history)."""

    start_ms: int  # device ms
    end_ms: int  # device ms
    min_mv: int  # mV
    delivered_mah: int  # mAh, 0 if unknown


@dataclass(frozen=True)
class StatusRecord:
    """What the logger says about itself now, and its answer to the last config write.

    ``device_ms`` is the logger's clock when it published this record (at field
    on, and again right after applying a config). ``ack_seq`` is the sequence
    number of the last config record the firmware processed and ``ack_reason``
    its verdict; ``clock_old_ms``/``clock_new_ms`` describe the last clock set
    done over NFC (0 if none since power-up).
    """

    device_ms: int
    config_seq: int
    ack_seq: int = 0
    ack_reason: Reason = Reason.OK
    ack_detail: str = ""
    clock_old_ms: int = 0
    clock_new_ms: int = 0
    block_mv: int = 0
    block_dc: int = 0
    records: int = 0
    discharging: bool = False
    last_test: LastTest | None = None

    def to_payload(self) -> bytes:
        lt = self.last_test or LastTest(0, 0, 0, 0)
        flags = (ST_FLAG_DISCHARGING if self.discharging else 0) | (
            ST_FLAG_HAS_TEST if self.last_test else 0)
        detail = self.ack_detail.encode("utf-8")[:32].decode("utf-8", "ignore")
        fixed = _ST_FIXED.pack(
            RECORD_VERSION, flags,
            self.device_ms,  # ms since the Unix epoch, logger clock
            self.config_seq, self.ack_seq, int(self.ack_reason),
            self.clock_old_ms, self.clock_new_ms,  # ms, logger clock before/after the set
            max(0, min(self.block_mv, 0xFFFF)),  # mV, last sample
            max(-0x8000, min(self.block_dc, 0x7FFF)),  # 0.1 C, last sample
            max(0, min(self.records, 0xFFFFFFFF)),  # records in the main log stream
            lt.start_ms, lt.end_ms,  # ms, logger clock
            max(0, min(lt.min_mv, 0xFFFF)),  # mV
            max(0, min(lt.delivered_mah, 0xFFFFFFFF)),  # mAh
        )
        return _seal(fixed + str8(detail, "ack_detail"))

    @classmethod
    def from_payload(cls, payload: bytes) -> StatusRecord:
        body = _unseal("st", bytes(payload))
        r = _reader("st", body)
        (_, flags, device_ms, config_seq, ack_seq, reason, old_ms, new_ms, mv, dc, records,
         t0, t1, min_mv, mah) = r.unpack(_ST_FIXED, "st fields")
        detail = r.str8("ack_detail", 32)
        r.expect_end("the payload")
        try:
            ack_reason = Reason(reason)
        except ValueError:
            raise NfcRecordError("st", f"unknown ack reason {reason}", offset=18) from None
        last = LastTest(t0, t1, min_mv, mah) if flags & ST_FLAG_HAS_TEST else None
        return cls(device_ms, config_seq, ack_seq, ack_reason, detail, old_ms, new_ms, mv, dc,
                   records, bool(flags & ST_FLAG_DISCHARGING), last)

    def to_ndef(self) -> ndef.Record:
        return ndef.Record(STATUS_TYPE, "", self.to_payload())


# --------------------------------------------------------------------------- live-advert key records

# version u8, key id u16, key (16 bytes).
_KEY_FIXED = struct.Struct(">BH16s")
# version u8, key id u16 (0: the logger holds no key).
_KEY_ID_FIXED = struct.Struct(">BH")


@dataclass(frozen=True)
class KeyRecord:
    """The kit key for the live adverts (``protocol.live``), written by the phone next to a
    ``cfg`` record and applied with it. The logger never publishes it (only its id, ``lk``)."""

    key: KitKey

    def to_payload(self) -> bytes:
        return _seal(_KEY_FIXED.pack(RECORD_VERSION, self.key.key_id, self.key.key))

    @classmethod
    def from_payload(cls, payload: bytes) -> KeyRecord:
        body = _unseal("key", bytes(payload))
        r = _reader("key", body)
        _, key_id, key = r.unpack(_KEY_FIXED, "key fields")
        r.expect_end("the payload")
        kit = KitKey(bytes(key))
        if kit.key_id != key_id:
            raise NfcRecordError("key", f"key id {key_id} does not match the key ({kit.key_id})",
                                 offset=1)
        return cls(kit)

    def to_ndef(self) -> ndef.Record:
        return ndef.Record(KEY_TYPE, "", self.to_payload())


@dataclass(frozen=True)
class KeyIdRecord:
    """Which kit key a logger holds (``lk``, published; 0 = none): the phone gives the key
    again only to a logger that lacks it."""

    key_id: int

    def to_payload(self) -> bytes:
        return _seal(_KEY_ID_FIXED.pack(RECORD_VERSION, self.key_id))

    @classmethod
    def from_payload(cls, payload: bytes) -> KeyIdRecord:
        body = _unseal("lk", bytes(payload))
        r = _reader("lk", body)
        _, key_id = r.unpack(_KEY_ID_FIXED, "lk fields")
        r.expect_end("the payload")
        return cls(key_id)

    def to_ndef(self) -> ndef.Record:
        return ndef.Record(KEY_ID_TYPE, "", self.to_payload())


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class TagState:
    """A logger's published NDEF message, decoded."""

    identity: LoggerIdentity
    config: ConfigRecord
    status: StatusRecord
    live_key_id: int = 0  # the kit key id the logger holds for its live adverts (0: none)


def encode_message(records: list[ndef.Record]) -> bytes:
    return b"".join(ndef.message_encoder(records))


def encode_state(state: TagState) -> bytes:
    """The NDEF message a logger publishes: ``id``, ``cfg``, ``st`` in that order, then ``lk``
    when the logger holds a kit key."""
    records = [IdentityRecord(state.identity).to_ndef(), state.config.to_ndef(),
               state.status.to_ndef()]
    if state.live_key_id:
        records.append(KeyIdRecord(state.live_key_id).to_ndef())
    return encode_message(records)


def encode_config_write(record: ConfigRecord, key: KitKey | None = None) -> bytes:
    """The NDEF message a phone writes to program a logger: one ``cfg`` record, followed by
    the kit key (``key``) when the logger is to get it."""
    records = [record.to_ndef()]
    if key is not None:
        records.append(KeyRecord(key).to_ndef())
    return encode_message(records)


def _records(message: bytes) -> list[ndef.Record]:
    try:
        return list(ndef.message_decoder(bytes(message)))
    except ndef.DecodeError as err:
        raise NfcRecordError("ndef", str(err)) from None


def decode_state(message: bytes) -> TagState:
    """Decode a published message; every one of ``id``, ``cfg``, ``st`` must be present."""
    found: dict[str, bytes] = {}
    for rec in _records(message):
        if rec.type in (ID_TYPE, CFG_TYPE, STATUS_TYPE, KEY_ID_TYPE):
            found[rec.type] = bytes(rec.data)
    for need, name in ((ID_TYPE, "id"), (CFG_TYPE, "cfg"), (STATUS_TYPE, "st")):
        if need not in found:
            raise NfcRecordError(name, "missing from the logger's NDEF message")
    return TagState(IdentityRecord.from_payload(found[ID_TYPE]).identity,
                    ConfigRecord.from_payload(found[CFG_TYPE]),
                    StatusRecord.from_payload(found[STATUS_TYPE]),
                    KeyIdRecord.from_payload(found[KEY_ID_TYPE]).key_id if KEY_ID_TYPE in found else 0)


def find_key_write(message: bytes) -> bytes | None:
    """The payload of the first ``key`` record in ``message`` (None if there is none)."""
    for rec in _records(message):
        if rec.type == KEY_TYPE:
            return bytes(rec.data)
    return None


def find_config_write(message: bytes) -> bytes | None:
    """The payload of the first ``cfg`` record in ``message`` (None if there is none)."""
    for rec in _records(message):
        if rec.type == CFG_TYPE:
            return bytes(rec.data)
    return None


# --------------------------------------------------------------------------- Type 2 tag memory

PAGE_SIZE = 4  # bytes per Type 2 tag page
DATA_AREA_START = 16  # byte address of page 4, where the TLV area begins
NDEF_TLV = 0x03
TERMINATOR_TLV = 0xFE
NULL_TLV = 0x00


def capability_container(data_area_bytes: int, *, writable: bool = True) -> bytes:
    """CC (page 3): magic E1, mapping version 1.0, data area size / 8, access byte."""
    return bytes([0xE1, 0x10, data_area_bytes // 8, 0x00 if writable else 0x0F])


def encode_tlv(message: bytes) -> bytes:
    """NDEF message TLV (1- or 3-byte length form) followed by a Terminator TLV."""
    n = len(message)
    head = bytes([NDEF_TLV, n]) if n < 0xFF else bytes([NDEF_TLV, 0xFF]) + n.to_bytes(2, "big")
    return head + message + bytes([TERMINATOR_TLV])


def tlv_header_size(length: int) -> int:
    return 2 if length < 0xFF else 4


@dataclass(frozen=True)
class NdefLocation:
    """Where the NDEF message TLV sits in the data area (offsets from byte 16)."""

    tlv_offset: int  # offset of the 0x03 tag byte
    length: int  # message length in bytes (0 = empty)

    @property
    def value_offset(self) -> int:
        return self.tlv_offset + tlv_header_size(self.length)

    @property
    def end(self) -> int:
        return self.value_offset + self.length


def locate_ndef(area: bytes) -> NdefLocation | None:
    """Find the NDEF message TLV in a data area prefix; None if more bytes are needed.

    Skips NULL TLVs and Lock/Memory control TLVs; raises ``NfcRecordError``
    if the area holds no NDEF TLV before a terminator.
    """
    pos = 0
    while pos < len(area):
        t = area[pos]
        if t == NULL_TLV:
            pos += 1
            continue
        if t == TERMINATOR_TLV:
            raise NfcRecordError("tlv", "terminator before any NDEF message TLV", offset=pos)
        if pos + 1 >= len(area):
            return None
        n = area[pos + 1]
        if n == 0xFF:
            if pos + 3 >= len(area):
                return None
            n = int.from_bytes(area[pos + 2 : pos + 4], "big")
        if t == NDEF_TLV:
            return NdefLocation(pos, n)
        pos += tlv_header_size(n) + n  # lock/memory control or proprietary TLV
    return None
