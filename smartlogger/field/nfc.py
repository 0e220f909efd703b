"""Programming loggers by NFC tap, through nfcpy only.

Owns the phone side of the NFC protocol (``protocol.nfc``): per tap, read the
logger's published state, write a config record with the NFC Forum Type 2 tag
NDEF write procedure, let the logger set its clock from the phone's, read back
and confirm the ack; and the kit session that programs a string of loggers in
tap order with a live list (rich) of programmed and failed loggers.

The reader is an ``nfc.ContactlessFrontend`` opened on an nfcpy path moniker:
``usb``, ``tty:...`` or ``udp:HOST:PORT`` (the emulated loggers of
``smartlogger nfc emulate``). The same code runs on all of them; tag commands
go through ``nfc.tag.tt2.Type2Tag.transceive``.

Does not own the record format (``protocol.nfc``), the profiles
(``field.profiles``) or anything on the logger.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from smartlogger.compat.nfcpy import load_nfcpy
from smartlogger.errors import TransportError
from smartlogger.field.profiles import Profile, describe_thresholds
from smartlogger.model import Generation, LoggerConfig
from smartlogger.protocol.live import KitKey
from smartlogger.protocol.nfc import (
    DATA_AREA_START,
    PAGE_SIZE,
    ConfigRecord,
    NdefLocation,
    NfcRecordError,
    Reason,
    TagState,
    decode_state,
    encode_config_write,
    locate_ndef,
    tlv_header_size,
)

#: Seconds to wait for one tag response. Real readers time out in the chip; over
#: loopback UDP a busy machine needs slack. No retries: a late answer to a retried
#: command would be taken for the answer to the next one.
COMMAND_TIMEOUT_S = 0.25

#: First read of a tap: CC plus this many data bytes (covers a published state).
FIRST_READ_BYTES = 240

Clock = Callable[[], int]


def phone_clock_ms() -> int:
    """The phone's clock: ms since the Unix epoch."""
    return time.time_ns() // 1_000_000


class TagLostError(TransportError):
    """The tag stopped answering (moved out of the field) during a tap."""


class NotALoggerError(TransportError):
    """The tag in the field is not a smartlogger (no or foreign NDEF state)."""


# --------------------------------------------------------------------------- page access


@dataclass
class LinkCounters:
    commands: int = 0
    reads: int = 0  # READ commands
    fast_reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class Type2Link:
    """READ / FAST_READ / WRITE to an activated nfcpy ``Type2Tag``, counted.

    ``cut_after`` injects a tear: the field is "removed" before command number
    ``cut_after`` (0-based), i.e. exactly that many commands reach the tag.
    """

    def __init__(self, tag: Any, *, timeout_s: float = COMMAND_TIMEOUT_S,
                 cut_after: int | None = None) -> None:
        nfc = load_nfcpy()  # lazy: nfcpy (and its USB stack) only once a reader is used

        if not isinstance(tag, nfc.tag.tt2.Type2Tag):
            raise NotALoggerError(f"{tag} is not an NFC Forum Type 2 tag")
        self.tag = tag
        self.timeout_s = timeout_s
        self.cut_after = cut_after
        self.counters = LinkCounters()
        # NTAG21x and NTAG I2C answer FAST_READ; read as many pages per frame as the
        # reader can take (4 bytes per page, 2 CRC bytes).
        self.fast_read_ok = isinstance(tag, nfc.tag.tt2_nxp.NTAG21x | nfc.tag.tt2_nxp.NTAGI2C)
        try:
            max_recv = int(tag.clf.max_recv_data_size)
        except (AttributeError, TypeError, OSError):
            max_recv = 64
        self.max_fast_pages = max(4, min(64, (max_recv - 2) // PAGE_SIZE))

    @property
    def uid(self) -> str:
        return bytes(self.tag.identifier).hex().upper()

    def _send(self, frame: bytes, what: str) -> bytes:
        nfc = load_nfcpy()  # lazy: nfcpy only once a reader is used

        if self.cut_after is not None and self.counters.commands >= self.cut_after:
            raise TagLostError(f"field removed before command {self.counters.commands} ({what})")
        self.counters.commands += 1
        try:
            return bytes(self.tag.transceive(frame, timeout=self.timeout_s, retries=0))
        except nfc.tag.TagCommandError as err:
            raise TagLostError(f"no answer to {what}: {err}") from None

    def read(self, page: int) -> bytes:
        data = self._send(bytes([0x30, page & 0xFF]), f"READ page {page}")
        if len(data) != 16:
            raise TagLostError(f"READ page {page} answered {data.hex() or 'nothing'} (NAK?)")
        self.counters.reads += 1
        self.counters.bytes_read += 16
        return data

    def fast_read(self, start: int, end: int) -> bytes:
        data = self._send(bytes([0x3A, start & 0xFF, end & 0xFF]), f"FAST_READ {start}-{end}")
        want = (end - start + 1) * PAGE_SIZE
        if len(data) != want:
            raise TagLostError(f"FAST_READ {start}-{end} answered {len(data)} bytes, not {want}")
        self.counters.fast_reads += 1
        self.counters.bytes_read += want
        return data

    def read_bytes(self, start: int, count: int) -> bytes:
        """``count`` bytes from byte address ``start`` (page aligned)."""
        if start % PAGE_SIZE:
            raise ValueError("start must be page aligned")
        first, out = start // PAGE_SIZE, bytearray()
        last = (start + count - 1) // PAGE_SIZE
        page = first
        while page <= last:
            if self.fast_read_ok:
                end = min(last, page + self.max_fast_pages - 1)
                out += self.fast_read(page, end)
                page = end + 1
            else:
                out += self.read(page)
                page += 4
        return bytes(out[:count])

    def write(self, page: int, data: bytes) -> None:
        if len(data) != PAGE_SIZE:
            raise ValueError("a page is 4 bytes")
        rsp = self._send(bytes([0xA2, page & 0xFF]) + data, f"WRITE page {page}")
        if rsp != b"\x0a":
            raise TagLostError(f"WRITE page {page} refused ({rsp.hex() or 'no ACK'})")
        self.counters.writes += 1
        self.counters.bytes_written += PAGE_SIZE


# --------------------------------------------------------------------------- NDEF on a Type 2 tag


@dataclass(frozen=True)
class TagRead:
    """What one read of a logger's tag gave."""

    cc: bytes  # capability container (page 3)
    location: NdefLocation  # NDEF TLV in the data area
    state: TagState
    phone_ms: int  # phone clock when the read finished

    @property
    def writable(self) -> bool:
        return self.cc[3] & 0x0F == 0x00

    @property
    def offset_ms(self) -> int:
        """Logger clock minus phone clock, as seen at this read."""
        return self.state.status.device_ms - self.phone_ms


def read_state(link: Type2Link, clock: Clock = phone_clock_ms) -> TagRead:
    """Read CC and the published NDEF message; decode the logger's state."""
    head = link.read_bytes(12, 4 + (FIRST_READ_BYTES if link.fast_read_ok else 12))
    cc, area = head[:4], bytearray(head[4:])
    if cc[0] != 0xE1 or cc[1] >> 4 != 1:
        raise NotALoggerError(f"tag {link.uid} has no NDEF capability container ({cc.hex()})")
    area_size = cc[2] * 8
    loc = locate_ndef(bytes(area))
    while loc is None or loc.end > len(area):
        if len(area) >= area_size:
            raise NotALoggerError(f"tag {link.uid}: NDEF message runs past the data area")
        need = (loc.end if loc is not None else len(area) + 16) - len(area)
        area += link.read_bytes(DATA_AREA_START + len(area), max(need, 16))
        loc = locate_ndef(bytes(area))
    if loc.length == 0:
        raise NotALoggerError(f"tag {link.uid} holds an empty NDEF message")
    message = bytes(area[loc.value_offset : loc.end])
    try:
        state = decode_state(message)
    except NfcRecordError as err:
        raise NotALoggerError(f"tag {link.uid}: {err}") from None
    return TagRead(cc, loc, state, clock())


def write_message(link: Type2Link, location: NdefLocation, message: bytes) -> None:
    """NFC Forum T2T NDEF write: length 0 first, then the message and terminator, length last.

    Until the last WRITE the TLV announces an empty message, so a tag torn away
    at any command holds either its old content or an empty/garbled message,
    never a wrong complete one (and the record CRC catches what is left).
    """
    n = len(message)
    head = bytes([0x03, n]) if n < 0xFF else bytes([0x03, 0xFF]) + n.to_bytes(2, "big")
    tlv = head + message + b"\xfe"
    start = location.tlv_offset
    # Pad in front to the page boundary with NULL TLVs (only if the TLV is not page aligned).
    lead = start % PAGE_SIZE
    blob = bytes(lead) + tlv
    blob += bytes(-len(blob) % PAGE_SIZE)
    first_page = (DATA_AREA_START + start - lead) // PAGE_SIZE
    pages = [blob[i : i + PAGE_SIZE] for i in range(0, len(blob), PAGE_SIZE)]
    len_field = range(lead + 1, lead + tlv_header_size(n))  # bytes of the length field in blob
    last_len_page = max(len_field) // PAGE_SIZE
    empty = bytearray(blob[: (last_len_page + 1) * PAGE_SIZE])
    for i in len_field:
        empty[i] = 0x00
    empty[lead + 1] = 0x00  # length 0 in the one-byte form
    for p in range(last_len_page + 1):
        link.write(first_page + p, bytes(empty[p * PAGE_SIZE : (p + 1) * PAGE_SIZE]))
    for p in range(last_len_page + 1, len(pages)):
        link.write(first_page + p, pages[p])
    for p in range(last_len_page + 1):
        link.write(first_page + p, pages[p])


# --------------------------------------------------------------------------- one tap


class Outcome(enum.StrEnum):
    PROGRAMMED = "programmed"  # new settings applied and confirmed
    UNCHANGED = "unchanged"  # already had these settings: nothing written
    NOT_PROGRAMMABLE = "not programmable"  # generation-1 or locked logger
    REJECTED = "rejected"  # the logger refused the settings (reason code)
    FAILED = "failed"  # communication failed: tap again


@dataclass(frozen=True)
class TapResult:
    """What happened at one tap."""

    outcome: Outcome
    uid: str
    serial: str | None = None
    generation: int | None = None
    simulated: bool = False
    position: int = 0
    label: str = ""
    seq: int | None = None  # config sequence the logger holds after the tap
    config: LoggerConfig | None = None  # the logger's configuration after the tap
    reason: Reason | None = None
    message: str = ""
    clock_offset_ms: int | None = None  # logger minus phone clock, seen before any change
    clock_offset_after_ms: int | None = None  # the same after the clock set (read-back)
    counters: LinkCounters = field(default_factory=LinkCounters)
    wall_s: float = 0.0

    @property
    def done(self) -> bool:
        """Another tap would not change anything (a refusal repeats itself): the logger is settled."""
        return self.outcome is not Outcome.FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value, "uid": self.uid, "serial": self.serial,
            "generation": self.generation, "simulated": self.simulated,
            "position": self.position, "label": self.label, "seq": self.seq,
            "reason": self.reason.name.lower() if self.reason is not None else None,
            "message": self.message, "clock_offset_ms": self.clock_offset_ms,
            "clock_offset_after_ms": self.clock_offset_after_ms,
            "commands": self.counters.commands, "bytes_written": self.counters.bytes_written,
            "bytes_read": self.counters.bytes_read, "wall_s": round(self.wall_s, 4),
            "thresholds": describe_thresholds(self.config) if self.config else None,
        }


def program(link: Type2Link, desired: LoggerConfig | Callable[[TagRead], LoggerConfig], *,
            clock: Clock = phone_clock_ms, first: TagRead | None = None,
            kit_key: KitKey | None = None) -> TapResult:
    """One tap: read state, write ``desired`` if it differs, set the clock, read back, confirm.

    ``desired`` may be a function of what was read (the kit session numbers
    blocks by the serial it finds). Raises nothing for tag-level problems: a
    lost tag or a foreign tag is a ``FAILED`` result.
    """
    started = time.perf_counter()
    result: TapResult
    try:
        result = _program(link, desired, clock, first, kit_key)
    except TransportError as err:
        result = TapResult(Outcome.FAILED, link.uid, message=f"{err}: tap again")
    return _with(result, counters=link.counters, wall_s=time.perf_counter() - started)


def _with(result: TapResult, **changes: Any) -> TapResult:
    return replace(result, **changes)


def _program(link: Type2Link, desired_in: LoggerConfig | Callable[[TagRead], LoggerConfig],
             clock: Clock, first: TagRead | None, kit_key: KitKey | None = None) -> TapResult:
    before = first if first is not None else read_state(link, clock)
    ident = before.state.identity
    current = before.state.config
    desired = desired_in(before) if callable(desired_in) else desired_in
    base = TapResult(Outcome.FAILED, link.uid, serial=ident.serial, generation=int(ident.generation),
                     simulated=ident.simulated, position=desired.block_position,
                     label=desired.block_label, seq=current.seq, config=current.config,
                     clock_offset_ms=before.offset_ms)
    if ident.generation is Generation.GEN1:
        return _with(base, outcome=Outcome.NOT_PROGRAMMABLE, reason=Reason.GEN1,
                     message=f"gen-1, fixed: {describe_thresholds(current.config)}")
    if not before.writable:
        return _with(base, outcome=Outcome.NOT_PROGRAMMABLE, message="tag is write-protected")
    # The kit key of the live adverts goes with a config write, to a logger that lacks it.
    give_key = kit_key if kit_key is not None and before.state.live_key_id != kit_key.key_id else None
    if current.config == desired and give_key is None:
        return _with(base, outcome=Outcome.UNCHANGED, message=f"already programmed (seq {current.seq})")

    seq = max(current.seq, before.state.status.config_seq, before.state.status.ack_seq) + 1
    record = ConfigRecord(desired, seq, phone_ms=clock(), set_clock=True)
    write_message(link, before.location, encode_config_write(record, give_key))
    after = read_state(link, clock)
    st = after.state.status
    if st.ack_seq != seq:
        return _with(base, message=f"logger did not acknowledge seq {seq} (ack {st.ack_seq}): tap again")
    if st.ack_reason is not Reason.OK:
        detail = f" ({st.ack_detail})" if st.ack_detail else ""
        return _with(base, outcome=Outcome.REJECTED, reason=st.ack_reason,
                     seq=after.state.config.seq, config=after.state.config.config,
                     message=f"logger refused: {st.ack_reason.name.lower()}{detail}")
    if after.state.config.seq != seq or after.state.config.config != desired:
        return _with(base, message="read-back differs from what was written: tap again",
                     seq=after.state.config.seq, config=after.state.config.config)
    if give_key is not None and after.state.live_key_id != give_key.key_id:
        return _with(base, message="the logger did not take the kit key (live adverts): tap again",
                     seq=seq, config=desired)
    return _with(base, outcome=Outcome.PROGRAMMED, reason=Reason.OK, seq=seq, config=desired,
                 clock_offset_after_ms=after.offset_ms,
                 message=f"programmed seq {seq}, clock set (was {format_offset(before.offset_ms)})")


def format_offset(ms: int) -> str:
    """Logger-minus-phone clock offset for people: ``+0.012 s``, ``-324 d 07:28:15``."""
    sign = "+" if ms >= 0 else "-"
    a = abs(ms)
    if a < 60_000:
        return f"{sign}{a / 1000:.3f} s"
    s = a // 1000
    d, s = divmod(s, 86_400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{sign}{d} d {h:02d}:{m:02d}:{s:02d}" if d else f"{sign}{h:02d}:{m:02d}:{s:02d}"


# --------------------------------------------------------------------------- reader


def open_reader(path: str) -> Any:
    """``nfc.ContactlessFrontend`` on ``usb``, ``tty:...`` or ``udp:HOST:PORT``."""
    nfc = load_nfcpy()  # lazy: nfcpy (and its USB stack) only when a reader is opened

    try:
        return nfc.ContactlessFrontend(path)
    except OSError as err:
        raise TransportError(f"no NFC reader at {path!r}: {err}") from err


def connect_tag(clf: Any, terminate: Callable[[], bool]) -> Any:
    """Block until a Type A tag is in the field (or ``terminate()``); the activated tag or None."""
    tag = clf.connect(
        rdwr={"targets": ["106A"], "on-connect": lambda tag: False, "beep-on-connect": False,
              "iterations": 1, "interval": 0.05},
        terminate=terminate,
    )
    if tag is False:
        # nfcpy's connect() swallows Ctrl-C and reader I/O errors and returns False.
        raise TransportError(f"NFC reader {clf} stopped (interrupted or device error)")
    return tag


#: Pause between RF polls when no tag, or the logger just done, is in the field, s.
POLL_INTERVAL_S = 0.05


def sense_tag(clf: Any) -> tuple[Any, bytes | None]:
    """One RF poll for a Type A tag: ``(activated tag or None, UID seen or None)``."""
    nfc = load_nfcpy()  # lazy: nfcpy only once a reader is used

    target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
    if target is None or target.sdd_res is None:
        return None, None
    uid = bytes(target.sdd_res)
    return nfc.tag.activate(clf, target), uid


# --------------------------------------------------------------------------- kit session


@dataclass
class KitRow:
    """One logger in the session list."""

    position: int
    serial: str
    result: TapResult
    taps: int = 1


class KitSession:
    """Program a kit by tapping along the string: tap order numbers the blocks.

    Each distinct logger gets the next position (``start_position``, ...) the
    first time it is seen, and keeps it on re-taps. The session ends when
    ``count`` loggers are settled (programmed, unchanged, not programmable, or
    refused by the logger); a failed tap is retried by tapping again.
    ``on_update`` is called after every tap (for a live list).
    """

    def __init__(self, profile: Profile, *, count: int, start_position: int = 1,
                 test_id: str = "", label_prefix: str = "B", clock: Clock = phone_clock_ms,
                 on_update: Callable[[KitSession, TapResult], None] | None = None,
                 kit_key: KitKey | None = None) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.profile = profile
        self.count = count
        self.start_position = start_position
        self.test_id = test_id
        self.label_prefix = label_prefix
        self.clock = clock
        self.on_update = on_update
        self.kit_key = kit_key  # given to each logger for its live adverts (protocol.live)
        self.rows: dict[str, KitRow] = {}
        self.taps: list[TapResult] = []
        self._serial_by_uid: dict[str, str] = {}

    def desired_for(self, serial: str) -> LoggerConfig:
        row = self.rows.get(serial)
        position = row.position if row else self.start_position + len(self.rows)
        label = f"{self.label_prefix}{position:03d}"
        return self.profile.for_block(position, label=label, test_id=self.test_id)

    @property
    def done(self) -> int:
        return sum(1 for r in self.rows.values() if r.result.done)

    def tap(self, tag: Any, *, cut_after: int | None = None, still_there: bool = False) -> TapResult:
        """Handle one activated tag.

        ``still_there``: the tag was not out of the field since its last finished
        tap; if nothing needs changing, this is not recorded as a tap.
        """
        link = Type2Link(tag, cut_after=cut_after)
        known = self.rows.get(self._serial_by_uid.get(link.uid, ""))
        if still_there and known is not None and known.result.outcome is Outcome.REJECTED:
            # Refused a moment ago and still under the phone: do not write it again
            # and again; a read shows the logger that we saw it.
            with contextlib.suppress(TransportError):
                read_state(link, self.clock)
            return known.result
        result = program(link, lambda read: self.desired_for(read.state.identity.serial),
                         clock=self.clock, kit_key=self.kit_key)
        if result.serial is not None:
            self._serial_by_uid[link.uid] = result.serial
        if still_there and result.outcome is Outcome.UNCHANGED:
            return result
        self.taps.append(result)
        if result.serial is not None:
            row = self.rows.get(result.serial)
            if row is None:
                self.rows[result.serial] = KitRow(result.position, result.serial, result)
            else:
                # A re-tap that fails or finds nothing to change does not hide that the
                # logger was programmed in this session.
                keep = row.result.outcome is Outcome.PROGRAMMED and result.outcome in (
                    Outcome.FAILED, Outcome.UNCHANGED)
                if not keep:
                    row.result = result
                row.taps += 1
        if self.on_update is not None:
            self.on_update(self, result)
        return result

    def run(self, device: str, *, terminate: Callable[[], bool] | None = None,
            timeout_s: float | None = None) -> list[KitRow]:
        """Open the reader at ``device`` and program until ``count`` loggers are done."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def stop() -> bool:
            if terminate is not None and terminate():
                return True
            return deadline is not None and time.monotonic() > deadline

        clf = open_reader(device)
        # After a finished tap the phone is usually still over that logger and the next
        # poll finds it again: such a read that finds nothing to change is not a new tap.
        last: bytes | None = None
        try:
            while self.done < self.count and not stop():
                tag, uid = sense_tag(clf)
                if tag is None:
                    if uid is None:
                        last = None
                    time.sleep(POLL_INTERVAL_S)
                    continue
                try:
                    result = self.tap(tag, still_there=uid is not None and uid == last)
                except NotALoggerError as err:  # not a Type 2 tag at all
                    result = TapResult(Outcome.FAILED, bytes(tag.identifier).hex().upper(),
                                       message=str(err))
                    self.taps.append(result)
                    if self.on_update is not None:
                        self.on_update(self, result)
                if uid == last and result.outcome in (Outcome.UNCHANGED, Outcome.REJECTED):
                    time.sleep(POLL_INTERVAL_S)
                last = uid if result.done else None
        finally:
            clf.close()
        return self.ordered_rows()

    def ordered_rows(self) -> list[KitRow]:
        return sorted(self.rows.values(), key=lambda r: r.position)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name, "test_id": self.test_id, "count": self.count,
            "done": self.done,
            "loggers": [dict(r.result.to_json(), taps=r.taps) for r in self.ordered_rows()],
            "taps": len(self.taps),
        }


_STYLE = {
    Outcome.PROGRAMMED: "green", Outcome.UNCHANGED: "cyan", Outcome.NOT_PROGRAMMABLE: "yellow",
    Outcome.REJECTED: "red", Outcome.FAILED: "red",
}


def render_kit(session: KitSession) -> Any:
    """A rich table of the session: one line per logger in string order."""
    from rich.table import Table  # lazy: rich only when the session is shown on a terminal

    table = Table(title=f"{session.profile.name}: {session.done}/{session.count} loggers done"
                        + (f" - test {session.test_id}" if session.test_id else ""))
    for col in ("pos", "label", "serial", "status", "seq", "clock", "detail"):
        table.add_column(col)
    for row in session.ordered_rows():
        r = row.result
        serial = r.serial or "?"
        if r.simulated:
            serial += " [SIMULATED]"
        clock = "" if r.clock_offset_ms is None else format_offset(r.clock_offset_ms)
        table.add_row(str(row.position), r.label, serial,
                      f"[{_STYLE[r.outcome]}]{r.outcome.value}[/]",
                      "" if r.seq is None else str(r.seq), clock, r.message)
    failures = [t for t in session.taps if t.serial is None]
    for t in failures[-3:]:
        table.add_row("", "", t.uid, f"[red]{t.outcome.value}[/]", "", "", t.message)
    return table
