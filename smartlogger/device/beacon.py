"""The logger's live broadcast: the kit key it got at the tap and the adverts it seals with it.

Owns ``LiveBeacon``, the firmware's part of the live adverts (``protocol.live``): the kit key
given at the last NFC tap that carried one, when that tap was (the adverts count the
sample's time from the last tap), the advert sequence number and its reservation, and the
choice of the advertising interval (fast during a discharge, slow on float). The firmware
(``device.firmware.Logger``) holds one; the radio (``device.gatt``, ``device.site.radio``)
puts its bytes on the air. Does not own the payload layout (``protocol.live``).

Sequence numbers are never reused, even across a power loss: like a counter in flash, the
beacon persists a *reservation* (``RESERVE`` numbers ahead) and a rebooted logger starts
at the reserved mark, so a watcher that rejects old sequence numbers (a replay) never
rejects a logger that rebooted. The key and the reservation live in the logger's key store
(``to_json``): a site keeps it per logger in its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from smartlogger.protocol.live import (
    ADV_INTERVAL_DISCHARGE_MS,
    ADV_INTERVAL_FLOAT_MS,
    KitKey,
    LiveAdvert,
    LiveState,
    tag_for_test,
)

#: Sequence numbers reserved per write of the key store.
RESERVE: Final = 4096
_SEQ_MAX: Final = 0xFFFFFFFF


@dataclass(frozen=True)
class LiveSource:
    """What the firmware gives its beacon: the newest sample and the state around it."""

    sample_ms: int | None  # device clock of the newest sample
    mv: int  # mV
    dc: int  # 0.1 degC
    discharging: bool
    voltage_alarm: bool  # a voltage alarm threshold is crossed
    warning: bool  # any warning threshold is crossed
    position: int  # configured block position (0: not set)
    test_id: str  # configured test id


class LiveBeacon:
    """The live-advert state of one logger (see the module docstring)."""

    def __init__(self, key: KitKey | None = None, *, tap_ms: int | None = None, seq: int = 0,
                 reserved: int | None = None) -> None:
        self.key = key
        self.tap_ms = tap_ms  # device clock (ms) at the last NFC tap
        self.seq = seq  # last sequence number used
        self.reserved = seq if reserved is None else reserved  # persisted high-water mark
        self._cache: tuple[tuple[Any, ...], LiveAdvert] | None = None

    @property
    def key_id(self) -> int:
        return 0 if self.key is None else self.key.key_id

    def provision(self, key: KitKey, now_ms: int) -> None:
        """A tap gave the logger the kit key (at device time ``now_ms``)."""
        self.key = key
        self.tapped(now_ms)

    def tapped(self, now_ms: int) -> None:
        """An NFC tap set the clock or the configuration: time since the tap restarts."""
        self.tap_ms = int(now_ms)
        self._cache = None

    def interval_ms(self, discharging: bool) -> int:
        return ADV_INTERVAL_DISCHARGE_MS if discharging else ADV_INTERVAL_FLOAT_MS

    def advert(self, src: LiveSource) -> LiveAdvert | None:
        """The sealed advert of the logger's newest sample, or None (no key, no sample yet, or
        the clock went back past the tap: a lost clock waits for the next tap). A new sample
        gets the next sequence number; the same sample is the same advert."""
        if self.key is None or self.tap_ms is None or src.sample_ms is None:
            return None
        t_ds = (src.sample_ms - self.tap_ms) // 100
        if t_ds < 0 or t_ds > _SEQ_MAX:
            return None
        state = (LiveState.ALARM if src.discharging and src.voltage_alarm
                 else LiveState.DISCHARGE if src.discharging else LiveState.FLOAT)
        ident = (src.sample_ms, src.mv, src.dc, state, src.warning, src.position, src.test_id,
                 self.key.key_id, self.tap_ms)
        if self._cache is not None and self._cache[0] == ident:
            return self._cache[1]
        if self.seq >= _SEQ_MAX:
            return None  # exhausted (2^32 samples: centuries at the fast rate)
        self.seq += 1
        if self.seq > self.reserved:
            self.reserved = min(_SEQ_MAX, self.seq + RESERVE)  # the key store is written
        adv = LiveAdvert(state, src.warning, self.key.key_id, tag_for_test(src.test_id),
                         src.position, self.seq, t_ds, max(0, min(src.mv, 0xFFFF)),
                         max(-0x8000, min(src.dc, 0x7FFF))).sealed(self.key)
        self._cache = (ident, adv)
        return adv

    # ------------------------------------------------------------------ key store

    def to_json(self) -> dict[str, Any]:
        """The key store (what survives a power loss): the key, the tap, the reservation."""
        return {"key": None if self.key is None else self.key.key.hex(), "tap_ms": self.tap_ms,
                "reserved": self.reserved}

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> LiveBeacon:
        """A beacon after a boot: sequence numbers continue at the reservation."""
        if not raw:
            return cls()
        key = raw.get("key")
        reserved = int(raw.get("reserved", 0))
        tap = raw.get("tap_ms")
        return cls(None if key is None else KitKey(bytes.fromhex(str(key))),
                   tap_ms=None if tap is None else int(tap), seq=reserved, reserved=reserved)
