"""The smartlogger GATT service and its log-transfer protocol: one definition for both ends.

Owns the service and characteristic UUIDs, the advertising payload, the
messages written to and notified on the CONTROL characteristic, the DATA chunk
layout, the transfer *image* (how a range of records is framed into one byte
stream) and the CRCs. Used by the device (``device.gatt``) and the field tool
(``field.ble``) alike. Does not own any I/O, the record encoding
(``logfile.records``) or the link-time model (``field.ble_virtual``).
Byte-exact description: docs/BLE.md.

All integers are little-endian. Two protocol versions exist:

- version 2 (generation-2 loggers): ranges of either stream, windowed
  acknowledgements, re-requested gaps, resume from an acknowledged offset,
  chunks of ``MTU - 3`` bytes with a 32-bit offset and a CRC-16, an END that
  carries the chain heads of both streams; a pull attestation is read from
  ATTEST.
- version 1 (generation-1 loggers): main stream only, 23-byte ATT MTU, chunks
  carry a 16-bit running index and no CRC, no acknowledgements, no resume
  (a broken transfer starts again), END carries only totals and a CRC-32.
"""

from __future__ import annotations

import binascii
import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Final

from smartlogger.errors import TransportError
from smartlogger.wire import ByteReader, leb128, read_leb128

# --------------------------------------------------------------------------- UUIDs

_BASE: Final = "5ca1e0{:02x}-b10c-4a11-8e55-0b5e12ab1e00"
SERVICE_UUID: Final = _BASE.format(0x00)
VERSION_UUID: Final = _BASE.format(0x01)  # read: VersionInfo
INFO_UUID: Final = _BASE.format(0x02)  # read: LoggerInfo (includes the device clock)
LIVE_UUID: Final = _BASE.format(0x03)  # read/notify: LiveValues
CONTROL_UUID: Final = _BASE.format(0x04)  # write (+ without response) / notify: commands, replies
DATA_UUID: Final = _BASE.format(0x05)  # notify: transfer chunks
ATTEST_UUID: Final = _BASE.format(0x06)  # read (long): pull attestation of the last END

PROTOCOL_V1: Final = 1
PROTOCOL_V2: Final = 2

ATT_MTU_V1: Final = 23  # the default (minimum) ATT MTU; gen-1 firmware never negotiates
ATT_MTU_V2: Final = 247  # fits one LL data PDU of 251 bytes (4 L2CAP + 247 ATT)
NOTIFY_OVERHEAD: Final = 3  # ATT opcode (1) + handle (2)

#: ``from_seq`` meaning "everything the device has not yet seen acknowledged by MARK_READ".
SINCE_LAST_READ: Final = 0xFFFFFFFF
#: ``end_seq`` meaning "up to the newest record at the time of START".
TO_NEWEST: Final = 0xFFFFFFFF

STREAM_MAIN: Final = 0
STREAM_SUMMARY: Final = 1

HASH_LEN: Final = 32


class ProtocolError(TransportError, ValueError):
    """A transfer message or chunk is malformed; ``offset`` is the byte offset in the message."""

    def __init__(self, message: str, *, offset: int | None = None, serial: str | None = None) -> None:
        self.offset = offset
        where = f"at byte {offset}: " if offset is not None else ""
        super().__init__(f"{where}{message}", serial=serial)


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise ProtocolError(f"{what} needs {size} bytes, got {len(data)}", offset=len(data))


# --------------------------------------------------------------------------- CRCs


def crc16(data: bytes, init: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection), C-implemented."""
    return binascii.crc_hqx(data, init)


def crc32(data: bytes, init: int = 0) -> int:
    """CRC-32 (IEEE 802.3, as zlib)."""
    return binascii.crc32(data, init) & 0xFFFFFFFF


# --------------------------------------------------------------------------- read characteristics


@dataclass(frozen=True)
class VersionInfo:
    """VERSION characteristic: ``version:u8 | generation:u8 | max_mtu:u16``."""

    version: int  # PROTOCOL_V1 or PROTOCOL_V2
    generation: int  # 1 or 2
    max_mtu: int  # largest ATT MTU the device accepts, bytes

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BBH")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(self.version, self.generation, self.max_mtu)

    @classmethod
    def from_bytes(cls, data: bytes) -> VersionInfo:
        _need(data, cls._FMT.size, "VERSION")
        v, g, m = cls._FMT.unpack_from(data)
        if v not in (PROTOCOL_V1, PROTOCOL_V2):
            raise ProtocolError(f"unknown protocol version {v}", offset=0)
        return cls(v, g, m)


class InfoFlags(enum.IntFlag):
    SIMULATED = 1  # identity carries the SIMULATED marker
    REPLAYED = 2
    SIGNED = 4  # the device can attest pulls (has credentials)


@dataclass(frozen=True)
class LoggerInfo:
    """INFO characteristic (read; v1 devices serve it too, by long read).

    ``device_ms:u64 | flags:u8 | main_next:u32 | main_oldest:u32 | read_up_to:u32 |
    summary_next:u32 | summary_oldest:u32 | config_seq:u32 | serial_len:u8 | serial |
    fw_len:u8 | firmware`` and, from generation-2 firmware that knows its place in a string,
    the placement tail ``position:u16 | label_len:u8 | label | test_id_len:u8 | test_id``
    (block position 0 = not set; the label and test id as the NFC configuration gave them).
    A reader that finds no tail reports the placement as unknown (``position`` None); one
    written before the tail existed ignores it.
    """

    device_ms: int  # device RTC, ms since the Unix epoch
    flags: InfoFlags
    main_next: int  # next sequence number of the main stream
    main_oldest: int  # oldest main-stream record still held
    read_up_to: int  # everything below this was pulled and verified (MARK_READ)
    summary_next: int
    summary_oldest: int
    config_seq: int  # NFC configuration sequence number in force
    serial: str
    firmware: str
    position: int | None = None  # block position in the string, 0 = not set; None: not told
    label: str = ""  # block label, at most 16 bytes
    test_id: str = ""  # capacity test id, at most 32 bytes

    _FMT: ClassVar[struct.Struct] = struct.Struct("<QBIIIIII")

    def to_bytes(self) -> bytes:
        s, f = self.serial.encode("ascii"), self.firmware.encode("utf-8")
        out = (
            self._FMT.pack(self.device_ms, int(self.flags), self.main_next, self.main_oldest,
                           self.read_up_to, self.summary_next, self.summary_oldest, self.config_seq)
            + bytes([len(s)]) + s + bytes([len(f)]) + f
        )
        if self.position is not None:
            label, test = self.label.encode("utf-8")[:16], self.test_id.encode("utf-8")[:32]
            out += struct.pack("<H", self.position) + bytes([len(label)]) + label + bytes([len(test)]) + test
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> LoggerInfo:
        n = cls._FMT.size
        _need(data, n + 1, "INFO")
        ms, fl, mn, mo, ru, sn, so, cs = cls._FMT.unpack_from(data)
        sl = data[n]
        _need(data, n + 2 + sl, "INFO serial")
        serial = data[n + 1:n + 1 + sl].decode("ascii", "replace")
        fl_len = data[n + 1 + sl]
        _need(data, n + 2 + sl + fl_len, "INFO firmware")
        fw = data[n + 2 + sl:n + 2 + sl + fl_len].decode("utf-8", "replace")
        pos = n + 2 + sl + fl_len
        if len(data) == pos:
            return cls(ms, InfoFlags(fl), mn, mo, ru, sn, so, cs, serial, fw)
        _need(data, pos + 3, "INFO placement")
        (position,) = struct.unpack_from("<H", data, pos)
        ll = data[pos + 2]
        _need(data, pos + 4 + ll, "INFO label")
        label = data[pos + 3:pos + 3 + ll].decode("utf-8", "replace")
        tl = data[pos + 3 + ll]
        _need(data, pos + 4 + ll + tl, "INFO test id")
        test_id = data[pos + 4 + ll:pos + 4 + ll + tl].decode("utf-8", "replace")
        return cls(ms, InfoFlags(fl), mn, mo, ru, sn, so, cs, serial, fw, position, label, test_id)


@dataclass(frozen=True)
class LiveValues:
    """LIVE characteristic: ``device_ms:u64 | mv:i32 | dc:i16`` (newest sample; mV, 0.1 C)."""

    device_ms: int
    mv: int
    dc: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<Qih")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(self.device_ms, self.mv, self.dc)

    @classmethod
    def from_bytes(cls, data: bytes) -> LiveValues:
        _need(data, cls._FMT.size, "LIVE")
        return cls(*cls._FMT.unpack_from(data))


# --------------------------------------------------------------------------- CONTROL: client -> device


class Op(enum.IntEnum):
    """First byte of every CONTROL message."""

    START = 0x01
    ACK = 0x02
    RESEND = 0x03
    MARK_READ = 0x04
    RESET = 0x05
    ABORT = 0x06
    START_V1 = 0x11
    HEADER = 0x81
    END = 0x82
    ERROR = 0x83
    RESULT = 0x84
    HEADER_V1 = 0x91
    END_V1 = 0x92


@dataclass(frozen=True)
class Start:
    """Ask for a range of one stream (v2).

    ``op | stream:u8 | from_seq:u32 | end_seq:u32 | resume_offset:u32 | image_crc:u32 |
    window:u16 | credit:u8 | nonce:16`` (37 bytes). ``image_crc`` is 0 for a fresh
    transfer; when resuming it is the HEADER's ``image_crc`` and ``from_seq``/``end_seq``
    are the HEADER's, so the device rebuilds exactly the same image.
    """

    stream: int
    from_seq: int  # or SINCE_LAST_READ
    end_seq: int  # exclusive, or TO_NEWEST
    resume_offset: int = 0  # image byte offset to continue from (acknowledged by the client)
    image_crc: int = 0
    window: int = 64  # chunks per acknowledgement window
    credit: int = 3  # windows the device may have unacknowledged in flight
    nonce: bytes = bytes(16)  # bound into the pull attestation

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BBIIIIHB16s")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.START, self.stream, self.from_seq, self.end_seq,
                              self.resume_offset, self.image_crc, self.window, self.credit,
                              self.nonce)

    @classmethod
    def from_bytes(cls, data: bytes) -> Start:
        _need(data, cls._FMT.size, "START")
        _, st, fs, es, ro, ic, w, c, n = cls._FMT.unpack_from(data)
        if st not in (STREAM_MAIN, STREAM_SUMMARY):
            raise ProtocolError(f"stream {st} is not 0 or 1", offset=1)
        if w == 0 or c == 0:
            raise ProtocolError("window and credit must be positive", offset=18)
        return cls(st, fs, es, ro, ic, w, c, n)


@dataclass(frozen=True)
class Ack:
    """Acknowledge a window: every image byte below ``next_offset`` arrived intact.

    ``op | transfer_id:u32 | next_offset:u32`` (9 bytes), write without response.
    """

    transfer_id: int
    next_offset: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BII")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.ACK, self.transfer_id, self.next_offset)

    @classmethod
    def from_bytes(cls, data: bytes) -> Ack:
        _need(data, cls._FMT.size, "ACK")
        _, t, o = cls._FMT.unpack_from(data)
        return cls(t, o)


@dataclass(frozen=True)
class Resend:
    """Re-request a gap: ``op | transfer_id:u32 | offset:u32 | length:u32`` (13 bytes)."""

    transfer_id: int
    offset: int
    length: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BIII")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.RESEND, self.transfer_id, self.offset, self.length)

    @classmethod
    def from_bytes(cls, data: bytes) -> Resend:
        _need(data, cls._FMT.size, "RESEND")
        _, t, o, n = cls._FMT.unpack_from(data)
        return cls(t, o, n)


@dataclass(frozen=True)
class MarkRead:
    """Everything of the main stream below ``up_to_seq`` was pulled and verified.

    ``op | up_to_seq:u32 | chain:32`` (37 bytes). ``chain`` is the chain value after
    record ``up_to_seq - 1`` as the client computed it; the device refuses if it
    differs from its own (the client did not hold what it claims to have verified).
    """

    up_to_seq: int
    chain: bytes

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BI32s")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.MARK_READ, self.up_to_seq, self.chain)

    @classmethod
    def from_bytes(cls, data: bytes) -> MarkRead:
        _need(data, cls._FMT.size, "MARK_READ")
        _, s, c = cls._FMT.unpack_from(data)
        return cls(s, c)


@dataclass(frozen=True)
class Reset:
    """Reset for reuse: ``op | phone_ms:u64`` (9 bytes). Refused unless all was read."""

    phone_ms: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BQ")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.RESET, self.phone_ms)

    @classmethod
    def from_bytes(cls, data: bytes) -> Reset:
        _need(data, cls._FMT.size, "RESET")
        return cls(cls._FMT.unpack_from(data)[1])


@dataclass(frozen=True)
class StartV1:
    """Generation-1 START: ``op | from_seq:u32`` (5 bytes); the main stream to the newest record."""

    from_seq: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BI")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.START_V1, self.from_seq)

    @classmethod
    def from_bytes(cls, data: bytes) -> StartV1:
        _need(data, cls._FMT.size, "START_V1")
        return cls(cls._FMT.unpack_from(data)[1])


# --------------------------------------------------------------------------- CONTROL: device -> client


@dataclass(frozen=True)
class Header:
    """Notified after START (v2).

    ``op | transfer_id:u32 | stream:u8 | first_seq:u32 | end_seq:u32 | total_len:u32 |
    image_crc:u32 | record_count:u32 | chunk_payload:u16 | start_offset:u32 |
    device_ms:u64 | anchor:32`` (72 bytes). ``anchor`` is the chain value before
    ``first_seq`` so the client can chain the records it receives.
    """

    transfer_id: int
    stream: int
    first_seq: int
    end_seq: int  # exclusive
    total_len: int  # image bytes
    image_crc: int  # CRC-32 of the whole image
    record_count: int
    chunk_payload: int  # image bytes per DATA chunk (MTU - 3 - 6)
    start_offset: int  # where streaming begins (the resume offset)
    device_ms: int
    anchor: bytes

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BIBIIIIIHIQ32s")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.HEADER, self.transfer_id, self.stream, self.first_seq,
                              self.end_seq, self.total_len, self.image_crc, self.record_count,
                              self.chunk_payload, self.start_offset, self.device_ms, self.anchor)

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        _need(data, cls._FMT.size, "HEADER")
        return cls(*cls._FMT.unpack_from(data)[1:])


@dataclass(frozen=True)
class ChainHead:
    """A stream's head: ``next_seq:u32 | hash:32`` (chain value after record next_seq-1)."""

    next_seq: int
    hash: bytes


@dataclass(frozen=True)
class End:
    """Notified when every image byte was acknowledged (v2).

    ``op | transfer_id:u32 | total_len:u32 | record_count:u32 | image_crc:u32 |
    device_ms:u64 | main_next:u32 | main_hash:32 | summary_next:u32 | summary_hash:32 |
    signed:u8`` (98 bytes). ``signed`` = 1 when the logger can sign: reading ATTEST then
    returns its certificate and a signature over both heads and the START nonce.
    """

    transfer_id: int
    total_len: int
    record_count: int
    image_crc: int
    device_ms: int
    main: ChainHead
    summary: ChainHead
    signed: bool

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BIIIIQI32sI32sB")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.END, self.transfer_id, self.total_len, self.record_count,
                              self.image_crc, self.device_ms, self.main.next_seq, self.main.hash,
                              self.summary.next_seq, self.summary.hash, int(self.signed))

    @classmethod
    def from_bytes(cls, data: bytes) -> End:
        _need(data, cls._FMT.size, "END")
        _, t, n, c, crc, ms, mn, mh, sn, sh, sg = cls._FMT.unpack_from(data)
        return cls(t, n, c, crc, ms, ChainHead(mn, mh), ChainHead(sn, sh), bool(sg))


class ErrorCode(enum.IntEnum):
    BAD_REQUEST = 1
    RANGE_GONE = 2  # asked-for records were overwritten (ring) or reset
    IMAGE_CHANGED = 3  # resume refused: the rebuilt image differs
    BUSY = 4  # another transfer runs on this connection
    UNSUPPORTED = 5


@dataclass(frozen=True)
class ErrorReply:
    """``op | code:u8 | reason (UTF-8, rest of the message)``."""

    code: ErrorCode
    reason: str

    def to_bytes(self) -> bytes:
        return bytes([Op.ERROR, self.code]) + self.reason.encode()[:200]

    @classmethod
    def from_bytes(cls, data: bytes) -> ErrorReply:
        _need(data, 2, "ERROR")
        try:
            code = ErrorCode(data[1])
        except ValueError:
            raise ProtocolError(f"unknown error code {data[1]}", offset=1) from None
        return cls(code, data[2:].decode("utf-8", "replace"))


@dataclass(frozen=True)
class Result:
    """Outcome of MARK_READ or RESET: ``op | for_op:u8 | ok:u8 | reason (UTF-8)``."""

    for_op: Op
    ok: bool
    reason: str = ""

    def to_bytes(self) -> bytes:
        return bytes([Op.RESULT, self.for_op, int(self.ok)]) + self.reason.encode()[:200]

    @classmethod
    def from_bytes(cls, data: bytes) -> Result:
        _need(data, 3, "RESULT")
        try:
            op = Op(data[1])
        except ValueError:
            raise ProtocolError(f"RESULT for unknown op 0x{data[1]:02x}", offset=1) from None
        return cls(op, bool(data[2]), data[3:].decode("utf-8", "replace"))


@dataclass(frozen=True)
class HeaderV1:
    """Generation-1 header: ``op | first_seq:u32 | total_len:u32 | record_count:u32`` (13 bytes)."""

    first_seq: int
    total_len: int
    record_count: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BIII")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.HEADER_V1, self.first_seq, self.total_len, self.record_count)

    @classmethod
    def from_bytes(cls, data: bytes) -> HeaderV1:
        _need(data, cls._FMT.size, "HEADER_V1")
        return cls(*cls._FMT.unpack_from(data)[1:])


@dataclass(frozen=True)
class EndV1:
    """Generation-1 end: ``op | total_len:u32 | image_crc:u32 | device_ms:u64`` (17 bytes)."""

    total_len: int
    image_crc: int
    device_ms: int

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BIIQ")

    def to_bytes(self) -> bytes:
        return self._FMT.pack(Op.END_V1, self.total_len, self.image_crc, self.device_ms)

    @classmethod
    def from_bytes(cls, data: bytes) -> EndV1:
        _need(data, cls._FMT.size, "END_V1")
        return cls(*cls._FMT.unpack_from(data)[1:])


DeviceMessage = Header | End | ErrorReply | Result | HeaderV1 | EndV1

_DEVICE_MESSAGES: dict[int, type[Header] | type[End] | type[ErrorReply] | type[Result]
                       | type[HeaderV1] | type[EndV1]] = {
    Op.HEADER: Header, Op.END: End, Op.ERROR: ErrorReply, Op.RESULT: Result,
    Op.HEADER_V1: HeaderV1, Op.END_V1: EndV1,
}

ClientMessage = Start | Ack | Resend | MarkRead | Reset | StartV1

_CLIENT_MESSAGES: dict[int, type[Start] | type[Ack] | type[Resend] | type[MarkRead]
                       | type[Reset] | type[StartV1]] = {
    Op.START: Start, Op.ACK: Ack, Op.RESEND: Resend, Op.MARK_READ: MarkRead,
    Op.RESET: Reset, Op.START_V1: StartV1,
}


def parse_device_message(data: bytes) -> DeviceMessage:
    """Decode a CONTROL notification by its first byte."""
    _need(data, 1, "CONTROL notification")
    cls = _DEVICE_MESSAGES.get(data[0])
    if cls is None:
        raise ProtocolError(f"unknown device message 0x{data[0]:02x}", offset=0)
    return cls.from_bytes(data)


def parse_client_message(data: bytes) -> ClientMessage:
    """Decode a CONTROL write by its first byte."""
    _need(data, 1, "CONTROL write")
    cls = _CLIENT_MESSAGES.get(data[0])
    if cls is None:
        raise ProtocolError(f"unknown client message 0x{data[0]:02x}", offset=0)
    return cls.from_bytes(data)


# --------------------------------------------------------------------------- DATA chunks

CHUNK_OVERHEAD_V2: Final = 6  # offset:u32 + crc:u16
CHUNK_OVERHEAD_V1: Final = 2  # index:u16


def chunk_payload_size(mtu: int, version: int = PROTOCOL_V2) -> int:
    """Image bytes per DATA notification at a negotiated ATT MTU."""
    over = CHUNK_OVERHEAD_V2 if version == PROTOCOL_V2 else CHUNK_OVERHEAD_V1
    size = mtu - NOTIFY_OVERHEAD - over
    if size <= 0:
        raise ProtocolError(f"ATT MTU {mtu} leaves no room for chunk data")
    return size


@dataclass(frozen=True)
class Chunk:
    """DATA notification (v2): ``offset:u32 | payload | crc:u16``.

    ``crc`` is CRC-16/CCITT-FALSE over the offset bytes and the payload, so a chunk
    delivered at the wrong offset fails as surely as one with flipped bits.
    """

    offset: int  # image byte offset of payload[0]
    payload: bytes

    def to_bytes(self) -> bytes:
        head = struct.pack("<I", self.offset)
        return head + self.payload + struct.pack("<H", crc16(head + self.payload))

    @classmethod
    def from_bytes(cls, data: bytes) -> Chunk:
        if len(data) < CHUNK_OVERHEAD_V2:
            raise ProtocolError(f"chunk of {len(data)} bytes is shorter than its 6-byte frame",
                                offset=len(data))
        (expect,) = struct.unpack_from("<H", data, len(data) - 2)
        body = bytes(data[:-2])
        got = crc16(body)
        if got != expect:
            raise ProtocolError(f"chunk CRC 0x{got:04x} != 0x{expect:04x}", offset=len(data) - 2)
        return cls(struct.unpack_from("<I", body)[0], body[4:])


def encode_chunk_v1(index: int, payload: bytes) -> bytes:
    """DATA notification (v1): ``index:u16 (running, wraps) | payload``."""
    return struct.pack("<H", index & 0xFFFF) + payload


def decode_chunk_v1(data: bytes) -> tuple[int, bytes]:
    _need(data, CHUNK_OVERHEAD_V1, "v1 chunk")
    return struct.unpack_from("<H", data)[0], bytes(data[2:])


# --------------------------------------------------------------------------- transfer image


def encode_image(records: Iterable[tuple[int, bytes]], first_seq: int) -> tuple[bytes, int]:
    """Frame records ``(seq, canonical bytes)`` into a transfer image; returns (image, count).

    Each frame is ``LEB128(len << 1 | gap) [LEB128(skipped)] | record bytes`` (``wire.leb128``,
    the one LEB128 of every format); ``gap``
    marks that ``skipped`` sequence numbers precede this record (the store holds
    none of them), so the sequence numbers stay implicit and cost nothing.
    """
    out = bytearray()
    expect = first_seq
    count = 0
    for seq, data in records:
        if seq < expect:
            raise ProtocolError(f"record {seq} out of order (expected >= {expect})")
        if seq > expect:
            out += leb128(len(data) << 1 | 1) + leb128(seq - expect)
        else:
            out += leb128(len(data) << 1)
        out += data
        expect = seq + 1
        count += 1
    return bytes(out), count


def decode_image(image: bytes, first_seq: int) -> Iterator[tuple[int, bytes]]:
    """Inverse of ``encode_image``; ``ProtocolError(offset=...)`` on a truncated or malformed frame."""
    pos, seq, n = 0, first_seq, len(image)
    while pos < n:
        start = pos
        word, pos = _frame_leb128(image, pos, "frame length")
        if word & 1:
            skipped, pos = _frame_leb128(image, pos, "frame gap")
            seq += skipped
        size = word >> 1
        if pos + size > n:
            raise ProtocolError(f"record {seq} of {size} bytes runs past the image end", offset=start)
        yield seq, image[pos:pos + size]
        pos += size
        seq += 1


def _frame_leb128(image: bytes, pos: int, what: str) -> tuple[int, int]:
    value, after = read_leb128(image, pos, len(image))
    if value < 0:  # re-read with the checked reader for the message (truncated, over-long, ...)
        r = ByteReader(image, pos, error=lambda message, offset: ProtocolError(message, offset=offset))
        r.leb128(what)
        raise ProtocolError(f"{what}: not a LEB128 value", offset=pos)  # (leb128 raised already)
    return value, after


def transfer_id(stream: int, first_seq: int, end_seq: int, image_crc: int) -> int:
    """A 32-bit name for one image: equal for a resumed transfer of the same range."""
    return crc32(struct.pack("<BIII", stream, first_seq, end_seq, image_crc))


# --------------------------------------------------------------------------- advertising

AD_COMPLETE_128_BIT_UUIDS: Final = 0x07
AD_SHORTENED_LOCAL_NAME: Final = 0x08
AD_COMPLETE_LOCAL_NAME: Final = 0x09
AD_MANUFACTURER_SPECIFIC: Final = 0xFF
_ADV_MAX: Final = 31


def advertising_data(serial: str) -> bytes:
    """Legacy advertising payload: the service UUID and the serial as local name.

    ``18 bytes: len=17 | 0x07 | UUID (little-endian)`` then the name AD. 31 bytes leave
    11 for the name: longer serials are sent shortened (AD type 0x08) and the client
    reads the full serial from INFO.
    """
    uuid = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
    out = bytes([17, AD_COMPLETE_128_BIT_UUIDS]) + uuid
    name = serial.encode("ascii")
    room = _ADV_MAX - len(out) - 2
    kind = AD_COMPLETE_LOCAL_NAME if len(name) <= room else AD_SHORTENED_LOCAL_NAME
    name = name[:room]
    return out + bytes([len(name) + 1, kind]) + name


def ad_structures(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(AD type, body)`` of each AD structure of an advertising payload, up to the first
    malformed one (a zero length or one that runs past the end)."""
    pos = 0
    while pos < len(data):
        n = data[pos]
        if n == 0 or pos + 1 + n > len(data):
            return
        yield data[pos + 1], bytes(data[pos + 2:pos + 1 + n])
        pos += 1 + n


def parse_advertising(data: bytes) -> tuple[list[str], str | None, bool]:
    """(128-bit service UUIDs, local name, name is complete) from an advertising payload."""
    uuids: list[str] = []
    name: str | None = None
    complete = False
    for kind, body in ad_structures(data):
        if kind in (0x06, AD_COMPLETE_128_BIT_UUIDS):
            for i in range(0, len(body) - 15, 16):
                h = body[i:i + 16][::-1].hex()
                uuids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        elif kind in (AD_SHORTENED_LOCAL_NAME, AD_COMPLETE_LOCAL_NAME):
            name = body.decode("ascii", "replace")
            complete = kind == AD_COMPLETE_LOCAL_NAME
    return uuids, name, complete


def parse_manufacturer_data(data: bytes) -> dict[int, bytes]:
    """The manufacturer-specific data (AD type 0xFF) of an advertising payload, by company id
    (as bleak's ``AdvertisementData.manufacturer_data`` has it; the last one of a company wins)."""
    return {int.from_bytes(body[:2], "little"): body[2:] for kind, body in ad_structures(data)
            if kind == AD_MANUFACTURER_SPECIFIC and len(body) >= 2}


# --------------------------------------------------------------------------- ATTEST


@dataclass(frozen=True)
class AttestReply:
    """ATTEST characteristic (long read): ``cert_len:u16 | certificate | attestation``.

    Both parts are opaque here (``logfile.evidence.Certificate`` and ``PullAttestation``
    bytes). Reading ATTEST makes the device sign a pull over its current chain heads,
    the nonce of the last START on this connection and its clock; an unsigned logger
    answers with zero bytes.
    """

    certificate: bytes
    attestation: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("<H", len(self.certificate)) + self.certificate + self.attestation

    @classmethod
    def from_bytes(cls, data: bytes) -> AttestReply | None:
        if not data:
            return None
        _need(data, 2, "ATTEST")
        (n,) = struct.unpack_from("<H", data)
        _need(data, 2 + n, "ATTEST certificate")
        return cls(bytes(data[2:2 + n]), bytes(data[2 + n:]))
