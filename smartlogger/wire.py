"""The primitive wire encodings every byte format shares: one bounded cursor, LEB128, strings.

Owns ``ByteReader`` (the one cursor over untrusted bytes: fixed-size integers, LEB128,
length-prefixed UTF-8 strings, any ``struct`` layout), the LEB128 rule (``leb128`` to
encode; ``read_leb128`` and ``ByteReader.leb128`` to decode: unsigned, 7 bits per byte,
low group first, canonical, at most ``MAX_LEB128_BYTES``), the string writers (``str8``,
``str16``) and the rule that every read is checked against the end of the data *before*
anything is allocated, so a hostile length can never claim memory.

Used by the logfile container, records, certificates and attestations (``logfile``), the
NFC records (``protocol.nfc``) and the BLE transfer image (``protocol.ble``): the device
and the field tool read and write these fields with this code, and nothing else. Errors
name the field and its absolute byte offset; they are ``LogfileError`` unless the reader
is given another error (``ByteReader(..., error=...)``: e.g. ``NfcRecordError`` naming the
NFC record, ``ProtocolError`` for a transfer). Does not own any particular layout.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from smartlogger.errors import LogfileError, SmartLoggerError

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")

#: LEB128 values longer than this are rejected (enough for any u64).
MAX_LEB128_BYTES: Final = 10

#: Makes the error a reader raises from a message and the absolute byte offset of the field.
ErrorFactory = Callable[[str, int], SmartLoggerError]


def _logfile_error(message: str, offset: int) -> SmartLoggerError:
    return LogfileError(message, offset=offset)


def read_leb128(data: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """``(value, next pos)`` of the canonical LEB128 at ``pos`` (before ``end``); value -1 if
    there is none (truncated, over-long or longer than ``MAX_LEB128_BYTES``).

    The fast path for the hot loops (a record head, a transfer frame): no error text is built;
    on -1 the caller re-reads with ``ByteReader.leb128`` for the message naming the problem.
    """
    value = shift = 0
    while pos < end and shift < 7 * MAX_LEB128_BYTES:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (-1 if shift and byte == 0 else value), pos
        shift += 7
    return -1, pos


class ByteReader:
    """Reads fields from ``data[start:end]``; ``pos`` is an absolute offset in ``data``.

    ``error(message, offset)`` makes the error for a field that is short, over-long or
    invalid (default: ``LogfileError``).
    """

    def __init__(self, data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None, *,
                 error: ErrorFactory = _logfile_error) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.error = error

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise self.error(f"{what} needs {n} bytes, {max(0, self.remaining)} left", self.pos)

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def _fixed(self, st: struct.Struct, what: str) -> int:
        self.need(st.size, what)
        (value,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return int(value)

    def unpack(self, st: struct.Struct, what: str) -> tuple[int, ...]:
        """The fields of ``st`` (any byte order) at the cursor."""
        self.need(st.size, what)
        values = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return tuple(values)

    def u8(self, what: str) -> int:
        return self._fixed(_U8, what)

    def u16(self, what: str) -> int:
        return self._fixed(_U16, what)

    def u32(self, what: str) -> int:
        return self._fixed(_U32, what)

    def u64(self, what: str) -> int:
        return self._fixed(_U64, what)

    def i32(self, what: str) -> int:
        return self._fixed(_I32, what)

    def i64(self, what: str) -> int:
        return self._fixed(_I64, what)

    def leb128(self, what: str) -> int:
        """Unsigned LEB128 (``read_leb128``), or the error naming why there is none."""
        start = self.pos
        value, pos = read_leb128(self.data, start, self.end)
        if value >= 0:
            self.pos = pos
            return value
        more = pos > start and self.data[pos - 1] >= 0x80  # the last byte read says "more follows"
        if more and pos - start >= MAX_LEB128_BYTES:
            raise self.error(f"{what}: LEB128 longer than {MAX_LEB128_BYTES} bytes", start)
        if more or pos == start:  # the data ends inside the value
            self.pos = pos
            self.need(1, what)
        raise self.error(f"{what}: over-long LEB128 encoding", start)

    def str8(self, what: str, max_len: int = 255) -> str:
        """A UTF-8 string prefixed by its byte length as u8."""
        at = self.pos
        n = self.u8(f"{what} length")
        if n > max_len:
            raise self.error(f"{what} length {n} exceeds {max_len} bytes", at)
        return self._utf8(n, what)

    def str16(self, what: str, max_len: int = 65535) -> str:
        """A UTF-8 string prefixed by its byte length as u16."""
        at = self.pos
        n = self.u16(f"{what} length")
        if n > max_len:
            raise self.error(f"{what} length {n} exceeds {max_len} bytes", at)
        return self._utf8(n, what)

    def _utf8(self, n: int, what: str) -> str:
        at = self.pos
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(f"{what} is not UTF-8", at + err.start) from None

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise self.error(f"{self.end - self.pos} unexpected bytes at the end of {what}", self.pos)


def leb128(value: int) -> bytes:
    """Unsigned LEB128 bytes of ``value >= 0``."""
    if value < 0:
        raise ValueError("LEB128 values are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def str8(text: str, what: str = "text") -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{what} is longer than 255 bytes")
    return bytes([len(raw)]) + raw


def str16(text: str, what: str = "text") -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 65535:
        raise ValueError(f"{what} is longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw
