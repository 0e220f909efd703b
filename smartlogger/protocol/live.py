"""Live values in a logger's BLE advertisements: one definition for the logger and the watcher.

Owns, byte-exact (docs/LIVE.md mirrors it):

- ``LiveAdvert``: the manufacturer-specific advertising payload a logger broadcasts during a
  discharge (and, slower, on float): its voltage, temperature, state, a sequence number and
  the time of the sample since the last NFC tap, sealed with a truncated HMAC keyed per kit;
- ``KitKey``: the kit's 16-byte key and its key id (derived from the key), given to every
  logger at the NFC tap (``protocol.nfc.KeyRecord``) and held by the watcher;
- the advertising data around the payload (one manufacturer-specific AD structure) and the
  advertising intervals chosen from the airtime budget (``ADV_INTERVAL_*``, docs/LIVE.md).

All integers little-endian, as everywhere in BLE. Does not own any I/O: the firmware's
beacon (``device.beacon``) builds adverts, the watcher (``field.live``) checks them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import Final

from smartlogger.errors import SmartLoggerError

#: Bluetooth SIG company identifier of the manufacturer-specific data. 0xFFFF is the value
#: the SIG reserves for tests before a company id is assigned; a shipping logger must use the
#: manufacturer's own (docs/LIVE.md).
COMPANY_ID: Final = 0xFFFF
#: Payload format version (byte 0). A watcher ignores payloads of other versions.
LIVE_VERSION: Final = 1
#: Bytes of the truncated HMAC-SHA256 at the end of the payload.
MAC_LEN: Final = 4
#: Key length of a kit key, bytes.
KEY_LEN: Final = 16
#: Domain separation of the MAC input (never changes within a version).
_MAC_LABEL: Final = b"smartlogger-live-v1"

#: Advertising interval of the live broadcast during a discharge and on float (ms). Chosen
#: from the airtime budget of 240 loggers in one room (docs/LIVE.md, benchmarks/live.py).
ADV_INTERVAL_DISCHARGE_MS: Final = 500
ADV_INTERVAL_FLOAT_MS: Final = 10000

# version u8, flags u8, key_id u16, test_tag u16, position u16, seq u32, t_ds u32,
# mv u16, dc i16; then the MAC (4 bytes).
_BODY = struct.Struct("<BBHHHIIHh")
BODY_LEN: Final = _BODY.size  # 20
PAYLOAD_LEN: Final = BODY_LEN + MAC_LEN  # 24
AD_MANUFACTURER: Final = 0xFF
#: The whole AD structure: length, type, company id (2), payload.
AD_LEN: Final = 2 + 2 + PAYLOAD_LEN  # 28 of the 31 bytes of a legacy advertising PDU

_STATE_MASK: Final = 0x03
_FLAG_WARNING: Final = 0x04
_FLAGS_KNOWN: Final = _STATE_MASK | _FLAG_WARNING


class LiveState(enum.IntEnum):
    """The logger's state as advertised (bits 0-1 of ``flags``; stable wire values)."""

    FLOAT = 0  # no discharge detected (float charge, rest)
    DISCHARGE = 1  # in a discharge, logging at the fast rate
    ALARM = 2  # in a discharge with a voltage alarm threshold crossed (low or high)


class LiveFormatError(SmartLoggerError, ValueError):
    """A live payload cannot be decoded; ``offset`` is the byte offset where it went wrong."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.offset = offset
        super().__init__(f"live advert{'' if offset is None else f' at byte {offset}'}: {message}")


def key_id_for(key: bytes) -> int:
    """The key id of a kit key: 16 bits of its SHA-256 (never 0, which means "no key")."""
    kid = int.from_bytes(hashlib.sha256(b"smartlogger-kit-key-id\x00" + key).digest()[:2], "little")
    return kid or 1


def tag_for_test(test_id: str) -> int:
    """The 16-bit tag of a test id (0 for none): lets a watcher follow one test of a kit."""
    if not test_id:
        return 0
    return int.from_bytes(hashlib.sha256(test_id.encode("utf-8")).digest()[:2], "little") or 1


@dataclass(frozen=True)
class KitKey:
    """A kit's live-advert key: given to each logger at the NFC tap, held by the watcher."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN:
            raise LiveFormatError(f"a kit key is {KEY_LEN} bytes, not {len(self.key)}")

    @property
    def key_id(self) -> int:
        return key_id_for(self.key)

    @classmethod
    def generate(cls) -> KitKey:
        return cls(secrets.token_bytes(KEY_LEN))

    def mac(self, body: bytes) -> bytes:
        msg = _MAC_LABEL + COMPANY_ID.to_bytes(2, "little") + body
        return hmac.new(self.key, msg, hashlib.sha256).digest()[:MAC_LEN]


@dataclass(frozen=True)
class LiveAdvert:
    """One live payload (the manufacturer data after the company id)."""

    state: LiveState
    warning: bool  # a warning threshold (voltage or temperature) is crossed
    key_id: int  # the kit key this payload is sealed with
    test_tag: int  # ``tag_for_test(test id)`` of the configuration in force, 0 = none
    position: int  # block position in the string (configured at the tap), 0 = not set
    seq: int  # advert sequence number: +1 for every new sample advertised, never reused
    t_ds: int  # when the sample was measured, 0.1 s since the last NFC tap (logger clock)
    mv: int  # block voltage, mV
    dc: int  # temperature, 0.1 degC
    mac: bytes = b""  # truncated HMAC over the body (set by ``sealed``)

    @property
    def t_s(self) -> float:
        return self.t_ds / 10.0

    def body(self) -> bytes:
        flags = int(self.state) | (_FLAG_WARNING if self.warning else 0)
        try:
            return _BODY.pack(LIVE_VERSION, flags, self.key_id, self.test_tag, self.position,
                              self.seq, self.t_ds, self.mv, self.dc)
        except struct.error as err:
            raise LiveFormatError(f"a field is out of range: {err}") from None

    def sealed(self, key: KitKey) -> LiveAdvert:
        """This advert with its MAC computed with ``key`` (whose id it must carry)."""
        if key.key_id != self.key_id:
            raise LiveFormatError(f"key id {self.key_id} is not the key's ({key.key_id})")
        return LiveAdvert(self.state, self.warning, self.key_id, self.test_tag, self.position,
                          self.seq, self.t_ds, self.mv, self.dc, key.mac(self.body()))

    def to_bytes(self) -> bytes:
        if len(self.mac) != MAC_LEN:
            raise LiveFormatError("an unsealed advert has no MAC (seal it with the kit key)")
        return self.body() + self.mac

    @classmethod
    def from_bytes(cls, data: bytes) -> LiveAdvert:
        data = bytes(data)
        if len(data) < 1:
            raise LiveFormatError("empty payload", offset=0)
        if data[0] != LIVE_VERSION:
            raise LiveFormatError(f"version {data[0]} is not {LIVE_VERSION}", offset=0)
        if len(data) != PAYLOAD_LEN:
            raise LiveFormatError(f"payload of {len(data)} bytes, version 1 has {PAYLOAD_LEN}",
                                  offset=min(len(data), PAYLOAD_LEN))
        (_, flags, key_id, tag, pos, seq, t_ds, mv, dc) = _BODY.unpack_from(data)
        if flags & ~_FLAGS_KNOWN:
            raise LiveFormatError(f"unknown flag bits {flags & ~_FLAGS_KNOWN:#04x}", offset=1)
        try:
            state = LiveState(flags & _STATE_MASK)
        except ValueError:
            raise LiveFormatError(f"unknown state {flags & _STATE_MASK}", offset=1) from None
        return cls(state, bool(flags & _FLAG_WARNING), key_id, tag, pos, seq, t_ds, mv, dc,
                   data[BODY_LEN:])

    def verify(self, key: KitKey) -> bool:
        """True if the MAC is this body's under ``key`` (constant-time compare)."""
        return key.key_id == self.key_id and hmac.compare_digest(key.mac(self.body()), self.mac)


def advertising_data(advert: LiveAdvert) -> bytes:
    """The legacy advertising data of the live broadcast: one manufacturer-specific AD."""
    payload = advert.to_bytes()
    return bytes([AD_LEN - 1, AD_MANUFACTURER]) + COMPANY_ID.to_bytes(2, "little") + payload


def from_manufacturer_data(manufacturer_data: dict[int, bytes]) -> LiveAdvert | None:
    """The live payload in bleak's ``AdvertisementData.manufacturer_data`` (None if there is
    none under ``COMPANY_ID``). ``LiveFormatError`` if there is one and it is malformed."""
    raw = manufacturer_data.get(COMPANY_ID)
    if raw is None:
        return None
    return LiveAdvert.from_bytes(raw)
