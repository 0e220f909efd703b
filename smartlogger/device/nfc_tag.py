"""The logger's NFC interface: an NFC Forum Type 2 tag (NTAG I2C 1k geometry), emulated.

Owns
- ``TagMemory``: the tag's page memory (NT3H1101 layout: 888 bytes of user
  memory in pages 4..225, capability container in page 3) with the page-level
  access rules of READ, FAST_READ and WRITE;
- ``LoggerTag``: the tag's command processor (ISO 14443-3A anticollision at any
  time, READ, FAST_READ, WRITE, GET_VERSION, SECTOR_SELECT, HALT, NAK and the
  IDLE state after a NAK) and the firmware's side of the NFC protocol: it
  publishes the logger's state as NDEF (``protocol.nfc``) whenever the RF field
  comes on, and once the reader stops writing (next non-WRITE command or field
  off) applies a config record, atomically and only if it is complete and
  valid, then publishes the ack;
- ``TagEmulator``: the tag on nfcpy's ``udp`` driver, presenting one logger
  after another on the same port (a walk along the string);
- the NTAG timing model used to state tag time per tap (``TagStats``).

Does not own the record format (``protocol.nfc``), the firmware's config gate
(``device.firmware.Logger.apply_config``) or anything about the phone.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from smartlogger.compat.nfcpy import listen_on_bound_socket, load_nfcpy
from smartlogger.device.firmware import Logger
from smartlogger.errors import ConfigError, TransportError
from smartlogger.model import Generation, LoggerConfig, LoggerIdentity, gen1_config
from smartlogger.protocol.nfc import (
    CFG_TYPE,
    DATA_AREA_START,
    KEY_TYPE,
    ConfigRecord,
    InvalidConfigValues,
    KeyRecord,
    LastTest,
    NfcRecordError,
    Reason,
    StatusRecord,
    TagState,
    capability_container,
    encode_state,
    encode_tlv,
    locate_ndef,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the firmware seam


class NfcHost(Protocol):
    """The firmware as the NFC task sees it (``device.firmware.Logger`` satisfies it).

    ``apply_config`` must be atomic and raise a ``ConfigError`` (the firmware's
    ``ConfigRejected`` with a short ``reason``) when it refuses. ``status()`` is
    read for ``mode``, ``last_mv``, ``last_dc``, ``record_count`` and
    ``last_discharge`` (``start_ms``, ``end_ms``, ``min_mv``) as
    ``firmware.LoggerStatus`` has them; missing ones publish as 0.
    """

    @property
    def identity(self) -> LoggerIdentity: ...

    @property
    def config(self) -> LoggerConfig: ...

    @property
    def config_seq(self) -> int: ...

    def now_ms(self) -> int: ...

    def apply_config(self, config: LoggerConfig, seq: int) -> None: ...

    def set_clock(self, new_ms: int) -> int: ...

    def status(self) -> Any: ...


# --------------------------------------------------------------------------- memory

#: GET_VERSION answer of an NTAG I2C 1k (NT3H1101): vendor NXP, type NTAG, subtype I2C,
#: storage size byte 0x13 (1k). nfcpy maps it to its ``NT3H1101`` class.
VERSION_NT3H1101 = bytes.fromhex("0004040502011303")

USER_FIRST_PAGE = 4
USER_LAST_PAGE = 0xE1  # 222 pages = 888 bytes of user memory
DYN_LOCK_PAGE = 0xE2
CONFIG_PAGES = (0xE8, 0xE9)  # NC_REG, LAST_NDEF_BLOCK, SRAM_MIRROR_BLOCK, WDT_LS | WDT_MS, I2C_CLOCK_STR, REG_LOCK, RFU
SESSION_PAGES = (0xF8, 0xF9)  # the same registers, volatile copy, in sector 3
USER_BYTES = (USER_LAST_PAGE - USER_FIRST_PAGE + 1) * 4
#: The NDEF data area the CC announces (0x6D * 8, as NXP ships the chip).
NDEF_AREA_BYTES = 0x6D * 8

ACK = 0x0A
NAK_INVALID = 0x00  # invalid argument (page address, command)
NAK_EEPROM = 0x05  # write refused (locked / read-only)

_CONFIG_REGS = bytes.fromhex("0100f848" "08010000")


def uid_for(serial: str) -> bytes:
    """A stable 7-byte NFCID1 for a logger: NXP manufacturer byte 0x04, then a serial hash."""
    return b"\x04" + hashlib.sha256(serial.encode()).digest()[:6]


class TagMemory:
    """Page memory of an NTAG I2C 1k, sector 0 (plus the config registers).

    ``writable=False`` models a locked tag (CC write access 0x0F, lock bits set):
    WRITE to user pages is NAKed.
    """

    def __init__(self, uid: bytes, *, writable: bool = True) -> None:
        if len(uid) != 7:
            raise ValueError("NTAG UID must be 7 bytes")
        self.uid = bytes(uid)
        self.writable = writable
        self.data = bytearray((DYN_LOCK_PAGE + 1) * 4)
        bcc0 = 0x88 ^ uid[0] ^ uid[1] ^ uid[2]
        bcc1 = uid[3] ^ uid[4] ^ uid[5] ^ uid[6]
        lock = b"\xff\xff" if not writable else b"\x00\x00"
        self.data[0:12] = uid[0:3] + bytes([bcc0]) + uid[3:7] + bytes([bcc1, 0x00]) + lock
        self.data[12:16] = capability_container(NDEF_AREA_BYTES, writable=writable)
        self.data[DYN_LOCK_PAGE * 4 : DYN_LOCK_PAGE * 4 + 4] = b"\xff\xff\xff\x00" if not writable else bytes(4)
        self.config_regs = bytearray(_CONFIG_REGS)

    def _page(self, page: int, sector: int) -> bytes | None:
        if sector == 0:
            if page <= DYN_LOCK_PAGE:
                return bytes(self.data[page * 4 : page * 4 + 4])
            if page in CONFIG_PAGES:
                i = (page - CONFIG_PAGES[0]) * 4
                return bytes(self.config_regs[i : i + 4])
        elif sector == 3 and page in SESSION_PAGES:
            i = (page - SESSION_PAGES[0]) * 4
            return bytes(self.config_regs[i : i + 4])
        return None

    def read(self, page: int, sector: int = 0) -> bytes | None:
        """READ: 16 bytes from ``page`` (None = NAK); pages past the end read as zeros."""
        if self._page(page, sector) is None:
            return None
        return b"".join(self._page(p, sector) or bytes(4) for p in range(page, page + 4))

    def fast_read(self, start: int, end: int, sector: int = 0) -> bytes | None:
        """FAST_READ: pages ``start..end`` inclusive (None = NAK on any invalid page)."""
        if start > end:
            return None
        pages = [self._page(p, sector) for p in range(start, end + 1)]
        if any(p is None for p in pages):
            return None
        return b"".join(p for p in pages if p is not None)

    def write(self, page: int, data: bytes, sector: int = 0) -> int:
        """WRITE one page; returns ACK or the NAK code."""
        if sector != 0:
            return NAK_INVALID
        if USER_FIRST_PAGE <= page <= USER_LAST_PAGE:
            if not self.writable:
                return NAK_EEPROM
            self.data[page * 4 : page * 4 + 4] = data
            return ACK
        if page in (2, 3, DYN_LOCK_PAGE):
            # Lock bytes and the CC are one-time programmable: bits can only be set.
            # On a writable logger we refuse them so no reader can lock it by accident.
            return NAK_EEPROM
        if page in CONFIG_PAGES:
            i = (page - CONFIG_PAGES[0]) * 4
            self.config_regs[i : i + 4] = data
            return ACK
        return NAK_INVALID

    def data_area(self) -> bytes:
        return bytes(self.data[DATA_AREA_START : DATA_AREA_START + USER_BYTES])

    def store_data_area(self, content: bytes) -> None:
        """Firmware-side write (over the chip's I2C port): the whole data area, zero-filled."""
        if len(content) > NDEF_AREA_BYTES:
            raise ValueError(f"{len(content)} bytes do not fit the {NDEF_AREA_BYTES}-byte NDEF area")
        padded = content + bytes(USER_BYTES - len(content))
        self.data[DATA_AREA_START : DATA_AREA_START + USER_BYTES] = padded


# --------------------------------------------------------------------------- timing model

#: NTAG timings at 106 kbit/s used to state the tag time of a tap (see docs/NFC.md).
#: One byte on air is 9 bits (8 + parity) = 84.9 us; a frame adds SOF/EOF, CRC and
#: the frame delay time. READ of 16 bytes ~1.9 ms, WRITE ~5 ms (EEPROM program ~4.1 ms).
T_ACTIVATION_S = 0.0025  # REQA/ATQA + two cascade levels of SDD/SEL for a 7-byte UID
T_FIELD_RESET_S = 0.0051  # RF off/on by the reader (ISO 14443-3 reset >= 5.1 ms)
T_READ_S = 0.0019  # READ: 16 bytes
T_FAST_READ_BASE_S = 0.0005  # FAST_READ command frame and turnaround
T_BYTE_S = 9 / 106_000  # one byte on air
T_WRITE_S = 0.005  # WRITE: one 4-byte page
T_SHORT_S = 0.001  # GET_VERSION, SECTOR_SELECT, a NAKed command


class Op(enum.StrEnum):
    READ = "READ"
    FAST_READ = "FAST_READ"
    WRITE = "WRITE"
    GET_VERSION = "GET_VERSION"
    SECTOR_SELECT = "SECTOR_SELECT"
    HALT = "HALT"
    ANTICOLLISION = "ANTICOLLISION"
    OTHER = "OTHER"


@dataclass
class TagStats:
    """Everything the tag did, for the timing model and the tear benchmark."""

    commands: list[tuple[Op, int, int]] = field(default_factory=list)  # (op, bytes in, bytes out)
    activations: int = 0  # complete anticollision + selection sequences
    field_resets: int = 0  # RF field off/on seen (RFOFF)
    naks: int = 0
    bytes_written: int = 0
    applied: int = 0  # config records applied
    rejected: int = 0  # config records refused by the firmware (acked with a reason)
    torn_ignored: int = 0  # config writes left incomplete or corrupt, ignored

    def modeled_time_s(self) -> float:
        """Tag time from the commands actually exchanged and NTAG timings."""
        t = self.activations * T_ACTIVATION_S + self.field_resets * T_FIELD_RESET_S
        for op, _, out in self.commands:
            if op is Op.READ:
                t += T_READ_S
            elif op is Op.FAST_READ:
                t += T_FAST_READ_BASE_S + (out + 2) * T_BYTE_S  # + 2 CRC bytes
            elif op is Op.WRITE:
                t += T_WRITE_S
            elif op is not Op.ANTICOLLISION:  # anticollision is counted in activations
                t += T_SHORT_S
        return t

    def snapshot(self) -> TagStats:
        return TagStats(list(self.commands), self.activations, self.field_resets, self.naks,
                        self.bytes_written, self.applied, self.rejected, self.torn_ignored)

    def since(self, before: TagStats) -> TagStats:
        """The activity between ``before`` (a snapshot) and now."""
        return TagStats(self.commands[len(before.commands):],
                        self.activations - before.activations,
                        self.field_resets - before.field_resets, self.naks - before.naks,
                        self.bytes_written - before.bytes_written, self.applied - before.applied,
                        self.rejected - before.rejected, self.torn_ignored - before.torn_ignored)


# --------------------------------------------------------------------------- the tag


class _State(enum.Enum):
    IDLE = "idle"  # powered, waiting for REQA/WUPA
    READY1 = "ready1"  # cascade level 1 anticollision
    READY2 = "ready2"  # cascade level 2 anticollision
    ACTIVE = "active"  # selected: memory commands accepted
    HALT = "halt"  # waiting for WUPA only


@dataclass(frozen=True)
class Ack:
    """The firmware's answer to the last config record it processed."""

    seq: int = 0
    reason: Reason = Reason.OK
    detail: str = ""


class LoggerTag:
    """A logger's Type 2 tag: memory, command processor and the firmware's NFC task.

    Pure logic (no I/O): ``TagEmulator`` feeds it frames. ``handle(frame)``
    returns the response frame or None for silence (ISO 14443 tags stay silent
    in IDLE/HALT and give a passive ACK to SECTOR_SELECT packet 2).
    """

    def __init__(self, host: NfcHost, *, uid: bytes | None = None) -> None:
        self.host = host
        gen1 = host.identity.generation is Generation.GEN1
        self.uid = uid if uid is not None else uid_for(host.identity.serial)
        self.memory = TagMemory(self.uid, writable=not gen1)
        self.stats = TagStats()
        self.ack = Ack()
        self.clock_old_ms = 0
        self.clock_new_ms = 0
        self._applied_phone_ms: dict[int, int] = {}  # seq -> phone clock of the record applied
        self._state = _State.IDLE
        self._field = False
        self._sector = 0
        self._sector_select_pending = False
        self._dirty = False  # the reader wrote to the data area since the last processing
        self.presentation_used = False  # a READ/WRITE happened since the field came on
        self._cl1 = bytes([0x88]) + self.uid[0:3]
        self._cl1 += bytes([self._cl1[0] ^ self._cl1[1] ^ self._cl1[2] ^ self._cl1[3]])
        cl2 = self.uid[3:7]
        self._cl2 = cl2 + bytes([cl2[0] ^ cl2[1] ^ cl2[2] ^ cl2[3]])
        self.publish()

    # ------------------------------------------------------------------ firmware side

    def firmware_state(self) -> dict[str, Any]:
        """What the firmware publishes besides its configuration (the last ack, the last
        clock set), as JSON data: a logger keeps it across a power cycle (it sits in the
        tag's EEPROM); a virtual site keeps it in its checkpoint."""
        return {"ack": [self.ack.seq, int(self.ack.reason), self.ack.detail],
                "clock_old_ms": self.clock_old_ms, "clock_new_ms": self.clock_new_ms,
                "applied_phone_ms": [[k, v] for k, v in self._applied_phone_ms.items()]}

    def restore_firmware_state(self, raw: dict[str, Any]) -> None:
        """Restore ``firmware_state`` and publish it (unreadable data leaves the tag as it is)."""
        try:
            seq, reason, detail = raw["ack"]
            ack = Ack(int(seq), Reason(int(reason)), str(detail))
            old, new = int(raw["clock_old_ms"]), int(raw["clock_new_ms"])
            applied = {int(k): int(v) for k, v in raw["applied_phone_ms"]}
        except (KeyError, TypeError, ValueError):
            log.warning("tag %s: unreadable saved state ignored", self.serial)
            return
        self.ack, self.clock_old_ms, self.clock_new_ms = ack, old, new
        self._applied_phone_ms = applied
        self.publish()

    @property
    def serial(self) -> str:
        return self.host.identity.serial

    def state(self) -> TagState:
        """The state the firmware publishes now."""
        host = self.host
        seq = host.config_seq
        phone_ms = self._applied_phone_ms.get(seq, 0)
        cfg = ConfigRecord(host.config, seq, phone_ms, set_clock=phone_ms != 0)
        st = host.status()
        last: LastTest | None = None
        d = getattr(st, "last_discharge", None)
        if d is not None and getattr(d, "end_ms", None) is not None:
            last = LastTest(int(d.start_ms), int(d.end_ms), int(d.min_mv),
                            int(getattr(d, "delivered_mah", 0) or 0))
        status = StatusRecord(
            device_ms=host.now_ms(),
            config_seq=seq,
            ack_seq=self.ack.seq,
            ack_reason=self.ack.reason,
            ack_detail=self.ack.detail,
            clock_old_ms=self.clock_old_ms,
            clock_new_ms=self.clock_new_ms,
            block_mv=int(getattr(st, "last_mv", None) or 0),
            block_dc=int(getattr(st, "last_dc", None) or 0),
            records=int(getattr(st, "record_count", 0) or 0),
            discharging=getattr(st, "mode", "") == "discharge",
            last_test=last,
        )
        return TagState(host.identity, cfg, status, int(getattr(host, "live_key_id", 0) or 0))

    def publish(self) -> None:
        """Write the current state into the tag's data area (the firmware's I2C side)."""
        self.memory.store_data_area(encode_tlv(encode_state(self.state())))
        self._dirty = False

    def field_on(self) -> None:
        """RF field appeared: the tag powers up and the firmware refreshes what it publishes."""
        self._field = True
        self._state = _State.IDLE
        self._sector = 0
        self._sector_select_pending = False
        self.presentation_used = False
        self.publish()

    def field_off(self) -> None:
        """RF field gone (tap over, or torn): finish what the reader left, then power down."""
        if self._field:
            self.stats.field_resets += 1
        self._field = False
        self._process_write()
        self._state = _State.IDLE

    def activated(self) -> None:
        """Anticollision and selection were completed for us (by nfcpy's listen loop)."""
        if not self._field:
            self.field_on()
        self.stats.activations += 1
        self._state = _State.ACTIVE
        self._sector = 0

    def _process_write(self) -> None:
        """Apply a config write the reader finished; ignore anything incomplete or foreign.

        A config write is an NDEF message of exactly one ``cfg`` record. The
        firmware looks only after the reader has stopped writing, so it never
        races the reader; a torn write fails the NDEF parse or the CRC and is
        ignored (the published state is restored at the next field-on).
        """
        if not self._dirty:
            return
        self._dirty = False
        area = self.memory.data_area()
        try:
            loc = locate_ndef(area)
        except NfcRecordError:
            loc = None
        if loc is None or loc.length == 0 or loc.end > NDEF_AREA_BYTES:
            self.stats.torn_ignored += 1
            return
        message = area[loc.value_offset : loc.end]
        write = _config_write(message)
        if write is None:
            self.stats.torn_ignored += 1
            return
        payload, key_payload = write
        key: KeyRecord | None = None
        if key_payload is not None:
            try:
                key = KeyRecord.from_payload(key_payload)
            except NfcRecordError:
                self.stats.torn_ignored += 1  # the key is the last record: a torn write
                return
        try:
            record = ConfigRecord.from_payload(payload)
        except InvalidConfigValues as err:
            seq = int.from_bytes(payload[2:6], "big") if len(payload) >= 6 else 0
            self._answer(Ack(seq, Reason.OUT_OF_RANGE, err.field))
            return
        except NfcRecordError as err:
            if "CRC" in err.message:
                self.stats.torn_ignored += 1
                return
            self._answer(Ack(0, Reason.BAD_RECORD, err.message[:32]))
            return
        self._apply(record, key)

    def _apply(self, record: ConfigRecord, key: KeyRecord | None = None) -> None:
        host = self.host
        if host.identity.generation is Generation.GEN1:
            self._answer(Ack(record.seq, Reason.GEN1, "fixed thresholds"))
            return
        if record.seq <= host.config_seq:
            self._answer(Ack(record.seq, Reason.STALE_SEQ, f"applied {host.config_seq}"))
            return
        try:
            host.apply_config(record.config, record.seq)
        except ConfigError as err:
            code = getattr(err, "reason", None)
            reason = Reason.from_firmware(code) if isinstance(code, str) else Reason.OUT_OF_RANGE
            detail = err.field if reason is Reason.OUT_OF_RANGE else (code or err.field)
            self._answer(Ack(record.seq, reason, str(detail)))
            return
        if record.set_clock:
            # After the config so a refused config leaves the clock alone too.
            self.clock_old_ms = host.set_clock(record.phone_ms)
            self.clock_new_ms = record.phone_ms
            self._applied_phone_ms = {record.seq: record.phone_ms}
        set_key = getattr(host, "set_live_key", None)
        if key is not None and set_key is not None:
            # After the clock: the live adverts count time from this tap (device.beacon).
            set_key(key.key)
        self.stats.applied += 1
        self._answer(Ack(record.seq, Reason.OK, ""))

    def _answer(self, ack: Ack) -> None:
        if ack.reason is not Reason.OK:
            self.stats.rejected += 1
        self.ack = ack
        self.publish()

    # ------------------------------------------------------------------ RF side

    def handle(self, frame: bytes) -> bytes | None:
        """Process one reader frame; returns the response or None (silence)."""
        frame = bytes(frame)
        if not frame:
            return None
        if not self._field:
            self.field_on()
        handled, reply = self._anticollision(frame)
        if handled:
            return reply
        if self._state is not _State.ACTIVE:
            return None  # IDLE/READY/HALT: everything else is ignored
        if self._sector_select_pending:
            return self._sector_select_2(frame)
        cmd = frame[0]
        if cmd != 0xA2:
            # The reader stopped writing: the firmware may now look at what it wrote.
            self._process_write()
        if cmd == 0x30 and len(frame) == 2:
            data = self.memory.read(frame[1], self._sector)
            self.presentation_used = True
            return self._log(Op.READ, frame, data)
        if cmd == 0x3A and len(frame) == 3:
            data = self.memory.fast_read(frame[1], frame[2], self._sector)
            self.presentation_used = True
            return self._log(Op.FAST_READ, frame, data)
        if cmd == 0xA2 and len(frame) == 6:
            code = self.memory.write(frame[1], frame[2:6], self._sector)
            self.presentation_used = True
            if code == ACK:
                self._dirty = True
                self.stats.bytes_written += 4
                self.stats.commands.append((Op.WRITE, len(frame), 1))
                return bytes([ACK])
            return self._nak(Op.WRITE, frame, code)
        if cmd == 0x60 and len(frame) == 1:
            return self._log(Op.GET_VERSION, frame, VERSION_NT3H1101)
        if cmd == 0x50 and len(frame) == 2:
            self.stats.commands.append((Op.HALT, len(frame), 0))
            self._state = _State.HALT
            return None
        if frame == b"\xc2\xff":
            self._sector_select_pending = True
            self.stats.commands.append((Op.SECTOR_SELECT, len(frame), 1))
            return bytes([ACK])
        # AUTHENTICATE (nfcpy probes it), COMPATIBILITY_WRITE, READ_SIG, ...: not an NTAG I2C 1k command.
        return self._nak(Op.OTHER, frame, NAK_INVALID)

    def _log(self, op: Op, frame: bytes, data: bytes | None) -> bytes:
        if data is None:
            return self._nak(op, frame, NAK_INVALID)
        self.stats.commands.append((op, len(frame), len(data)))
        return data

    def _nak(self, op: Op, frame: bytes, code: int) -> bytes:
        # After a NAK an NTAG returns to IDLE: the reader has to select it again.
        self.stats.commands.append((op, len(frame), 1))
        self.stats.naks += 1
        self._state = _State.IDLE
        return bytes([code])

    def _sector_select_2(self, frame: bytes) -> bytes | None:
        self._sector_select_pending = False
        if len(frame) == 4 and frame[0] in (0, 3):
            self._sector = frame[0]
            return None  # passive ACK: silence means done
        return self._nak(Op.SECTOR_SELECT, frame, NAK_INVALID)

    def _anticollision(self, frame: bytes) -> tuple[bool, bytes | None]:
        """ISO 14443-3A anticollision: ``(is an anticollision frame, response or None)``."""
        if frame in (b"\x26", b"\x52"):
            if frame == b"\x52" or self._state is not _State.HALT:  # REQA does not wake HALT
                self._state = _State.READY1
                self.stats.commands.append((Op.ANTICOLLISION, 1, 2))
                return True, b"\x44\x00"  # ATQA: double-size UID, bit-frame anticollision
            return True, None
        if self._state is _State.READY1:
            if frame == b"\x93\x20":
                return True, self._cl1
            if frame == b"\x93\x70" + self._cl1:
                self._state = _State.READY2
                return True, b"\x04"  # SAK: UID not complete
        if self._state is _State.READY2:
            if frame == b"\x95\x20":
                return True, self._cl2
            if frame == b"\x95\x70" + self._cl2:
                self._state = _State.ACTIVE
                self._sector = 0
                self.stats.activations += 1
                return True, b"\x00"  # SAK: Type 2 tag, UID complete
        if frame[:1] in (b"\x93", b"\x95", b"\x97") and len(frame) in (2, 7):
            return True, None  # anticollision for another tag or out of order: stay silent
        return False, None


def _single_cfg_payload(message: bytes) -> bytes | None:
    import ndef  # lazy: only the firmware's write check needs the NDEF parser, off the tag's import

    try:
        records = list(ndef.message_decoder(bytes(message)))
    except ndef.DecodeError:
        return None
    if len(records) != 1 or records[0].type != CFG_TYPE:
        return None
    return bytes(records[0].data)


def _config_write(message: bytes) -> tuple[bytes, bytes | None] | None:
    """(cfg payload, key payload or None) of a config write: a ``cfg`` record, optionally
    followed by a ``key`` record; None for anything else."""
    import ndef  # lazy: only the firmware's write check needs the NDEF parser, off the tag's import

    try:
        records = list(ndef.message_decoder(bytes(message)))
    except ndef.DecodeError:
        return None
    if len(records) == 2 and records[0].type == CFG_TYPE and records[1].type == KEY_TYPE:
        return bytes(records[0].data), bytes(records[1].data)
    payload = _single_cfg_payload(message)
    return None if payload is None else (payload, None)


# --------------------------------------------------------------------------- emulator over nfcpy udp


def _local_target(tag: LoggerTag) -> Any:
    nfc = load_nfcpy()  # lazy: nfcpy only when a tag is put on a radio (the tag model runs without it)

    target = nfc.clf.LocalTarget("106A")
    target.sens_res = bytearray.fromhex("4400")
    target.sel_res = bytearray.fromhex("00")
    target.sdd_res = bytearray(tag.uid)
    return target


class TagEmulator:
    """Logger tags on nfcpy's ``udp`` driver, presented one after another on one port.

    ``presentations`` is the walk along the string: each item is the tag that
    is in the reader's field next. A presentation ends when the reader turns
    its RF field off (nfcpy sends ``RFOFF`` when it senses again or closes)
    after having read or written the tag; RF resets during nfcpy's activation
    (its AUTHENTICATE probe and re-selection after a NAK) do not end it.

    A reader that goes quiet for ``idle_s`` counts as gone (a crashed reader
    sends no RFOFF). Run ``serve()`` in a thread; ``stop()`` ends it within
    about half a second (nfcpy's udp listen loop waits at least 0.5 s).
    """

    def __init__(self, presentations: Iterable[LoggerTag], *, host: str = "localhost",
                 port: int = 54321, poll_s: float = 0.2, idle_s: float = 3.0) -> None:
        self._presentations: Iterator[LoggerTag] = iter(presentations)
        self.path = f"udp:{host}:{port}"
        self.poll_s = poll_s
        self.idle_s = idle_s  # a selected tag with no command for this long is out of the field
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the port is bound
        self.presented: list[LoggerTag] = []
        self.on_presentation_end: Callable[[LoggerTag], None] | None = None
        self.error: TransportError | None = None  # why serve() could not start

    def stop(self) -> None:
        self._stop.set()

    def serve(self) -> int:
        """Serve until the presentations run out or ``stop()``; returns presentations served."""
        try:
            nfc = load_nfcpy()  # lazy: nfcpy only when the emulator serves (an ImportError is reported)

            clf = nfc.ContactlessFrontend(self.path)
        except (OSError, ImportError) as err:
            self.error = TransportError(f"cannot open NFC emulator on {self.path}: {err}")
            self.ready.set()
            raise self.error from err
        try:
            tag = next(self._presentations, None)
            # The first listen() binds the port; from then on the socket stays bound
            # and every (re)activation runs on it (see _reactivate).
            target = clf.listen(_local_target(tag), 0.01) if tag is not None else None
            self.ready.set()
            while tag is not None and not self._stop.is_set():
                if target is None:
                    target = self._reactivate(clf, tag)
                    if target is None:
                        continue
                tag.activated()
                ended = self._session(clf, tag, target)
                target = None
                if ended:
                    self.presented.append(tag)
                    if self.on_presentation_end is not None:
                        self.on_presentation_end(tag)
                    tag = next(self._presentations, None)
        finally:
            self.ready.set()
            clf.close()
        return len(self.presented)

    def _reactivate(self, clf: Any, tag: LoggerTag) -> Any:
        """Wait (up to ``poll_s``) to be selected as ``tag`` on the bound socket; None on timeout."""
        # A tag that stays in the field: nfcpy's public listen() would re-bind the socket and
        # lose the reader's next SENS_REQ (compat.nfcpy says why).
        return listen_on_bound_socket(clf, _local_target(tag), self.poll_s)

    def _session(self, clf: Any, tag: LoggerTag, target: Any) -> bool:
        """Answer commands until RF off. True if this ended the presentation."""
        nfc = load_nfcpy()  # lazy: see serve()

        cmd = target.tt2_cmd
        last_cmd = time.monotonic()
        while not self._stop.is_set():
            if cmd is not None and bytes(cmd) in (b"\x26", b"\x52"):
                # A REQA/WUPA inside a session comes from a reader that lost us without
                # RFOFF (e.g. it was restarted): answer it from the listen loop, which
                # knows its new address. This one frame is lost; the reader re-polls.
                break
            rsp = tag.handle(cmd) if cmd is not None else None
            try:
                cmd = clf.exchange(rsp, self.poll_s)
                last_cmd = time.monotonic()
            except nfc.clf.BrokenLinkError:
                break
            except nfc.clf.CommunicationError as err:  # timeout or a garbled frame
                if not isinstance(err, nfc.clf.TimeoutError):
                    log.debug("tag %s: %r", tag.serial, err)
                cmd = None
                if time.monotonic() - last_cmd > self.idle_s:
                    break  # the reader went quiet: as good as removed from the field
        used = tag.presentation_used or self._stop.is_set()
        tag.field_off()
        return used

def serve_in_thread(emulator: TagEmulator, *, wait_s: float = 60.0) -> threading.Thread:
    """Start ``emulator.serve()`` in a daemon thread and wait until its port is bound.

    The wait ends as soon as the port is bound; ``wait_s`` only bounds a start that hangs. It is
    generous because the first start imports nfcpy and opens its driver, which took over 5 s on a
    loaded two-core machine (tests failed with "did not start" while nothing was wrong)."""
    thread = threading.Thread(target=emulator.serve, name=f"nfc-tag {emulator.path}", daemon=True)
    thread.start()
    if not emulator.ready.wait(wait_s):
        raise TransportError(f"NFC emulator on {emulator.path} did not start")
    if emulator.error is not None:
        raise emulator.error
    return thread


# --------------------------------------------------------------------------- simulated kits


def simulated_logger_tag(serial: str, config: LoggerConfig, *, generation: Generation = Generation.GEN2,
                         seed: int = 0) -> LoggerTag:
    """A simulated logger (firmware model, SIMULATED identity) behind its tag."""
    identity = LoggerIdentity(serial, generation, "1.4.2" if generation is Generation.GEN1 else "2.0.0",
                              simulated=True)
    if generation is Generation.GEN1:
        config = gen1_config(config.rated_ah)
    return LoggerTag(Logger(identity, config, seed=seed))


def simulated_kit(count: int, factory: LoggerConfig, *, gen1_positions: Iterable[int] = (),
                  serial_prefix: str = "SIM") -> list[LoggerTag]:
    """``count`` simulated loggers in string order (1-based ``gen1_positions`` are generation 1),
    each with the factory configuration ``factory``."""
    gen1 = set(gen1_positions)
    return [
        simulated_logger_tag(f"{serial_prefix}-{i:04d}", factory,
                             generation=Generation.GEN1 if i in gen1 else Generation.GEN2, seed=i)
        for i in range(1, count + 1)
    ]
