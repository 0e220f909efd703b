"""A bounded cursor over untrusted bytes, and the matching writer helpers.

Owns the primitive field encodings of the logfile container, the certificate
and the pull attestation (little-endian integers, LEB128, length-prefixed
UTF-8 strings) and the rule that every read is checked against the end of the
data *before* anything is allocated, so a hostile length can never claim
memory. Errors are ``LogfileError`` with the absolute byte offset of the field.
Does not own any particular layout (``format``, ``evidence``, ``gen1`` do).
"""

from __future__ import annotations

import struct
from typing import Final

from smartlogger.errors import LogfileError

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")

#: LEB128 values longer than this are rejected (enough for any u64).
MAX_LEB128_BYTES: Final = 10


class ByteReader:
    """Reads fields from ``data[start:end]``; ``pos`` is an absolute offset in ``data``."""

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise LogfileError(f"{what} needs {n} bytes, {max(0, self.remaining)} left",
                               offset=self.pos)

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

    def u8(self, what: str) -> int:
        return self._fixed(_U8, what)

    def u16(self, what: str) -> int:
        return self._fixed(_U16, what)

    def u32(self, what: str) -> int:
        return self._fixed(_U32, what)

    def u64(self, what: str) -> int:
        return self._fixed(_U64, what)

    def i16(self, what: str) -> int:
        return self._fixed(_I16, what)

    def i32(self, what: str) -> int:
        return self._fixed(_I32, what)

    def i64(self, what: str) -> int:
        return self._fixed(_I64, what)

    def leb128(self, what: str) -> int:
        """Unsigned LEB128 (7 bits per byte, low group first, high bit = more follows)."""
        start = self.pos
        value = 0
        for i in range(MAX_LEB128_BYTES):
            self.need(1, what)
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i and byte == 0:
                    raise LogfileError(f"{what}: over-long LEB128 encoding", offset=start)
                return value
        raise LogfileError(f"{what}: LEB128 longer than {MAX_LEB128_BYTES} bytes", offset=start)

    def str8(self, what: str, max_len: int = 255) -> str:
        """A UTF-8 string prefixed by its byte length as u8."""
        at = self.pos
        n = self.u8(f"{what} length")
        if n > max_len:
            raise LogfileError(f"{what} length {n} exceeds {max_len} bytes", offset=at)
        return self._utf8(n, what)

    def str16(self, what: str, max_len: int = 65535) -> str:
        """A UTF-8 string prefixed by its byte length as u16."""
        at = self.pos
        n = self.u16(f"{what} length")
        if n > max_len:
            raise LogfileError(f"{what} length {n} exceeds {max_len} bytes", offset=at)
        return self._utf8(n, what)

    def _utf8(self, n: int, what: str) -> str:
        at = self.pos
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise LogfileError(f"{what} is not UTF-8", offset=at + err.start) from None

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise LogfileError(f"{self.end - self.pos} unexpected bytes at the end of {what}",
                               offset=self.pos)


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
