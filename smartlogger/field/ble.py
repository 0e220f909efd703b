"""Pulling logs over Bluetooth LE through bleak's public API.

Owns the field side of the log-transfer protocol (``protocol.ble``): scanning
for loggers, pulling one logger (protocol v2 with windowed acknowledgements,
gap re-requests and resume from the last acknowledged offset; protocol v1 for
generation-1 loggers), pulling many with at most K concurrent connections and
retries with backoff, the per-serial pull state that makes pulls incremental
("since my last pull"), recording the device clock against the phone clock,
MARK_READ after a verified pull and the reset for reuse.

"Pulled and verified" (the rule behind a reset for reuse): MARK_READ is sent only
after the pull's logfile is on disk and ``logfile.verify`` found its content intact
(``verified``, ``simulated`` or ``unsigned``; never ``tampered``); until then the logger
keeps refusing a reset. The commit is the ``commit`` hook of ``pull_one``
(``pull_many`` writes and verifies there, on the still-open connection).

Talks to loggers only through ``bleak.BleakScanner``/``bleak.BleakClient``; the
``backend`` argument selects the transport (``None``: bleak's platform backend
unchanged; ``field.ble_virtual.VirtualBleakClient``: the virtual radio).
Does not own the logfile format: results go to the logfile helper's writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError

from smartlogger.errors import TransportError
from smartlogger.logfile import chain
from smartlogger.logfile.container import LogfileMetadata
from smartlogger.logfile.evidence import Certificate, PullAttestation
from smartlogger.logfile.format import build_logfile
from smartlogger.logfile.format import write_logfile as write_bytes
from smartlogger.logfile.records import RecordType, decode_record
from smartlogger.logfile.verify import verify_logfile
from smartlogger.model import ClockSet, Generation, LoggerIdentity
from smartlogger.protocol import ble as p

if TYPE_CHECKING:
    from smartlogger.logfile.evidence import Authority

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 3
DEFAULT_WINDOW = 64  # chunks per acknowledgement window (64 x 238 B = 15 kB)
DEFAULT_CREDIT = 3  # windows in flight: keeps the device queue full while an ACK travels
STALL_S = 2.0  # wall seconds to wait for a reply to a request
GAP_S = 0.2  # wall seconds without progress in a transfer before the rest is re-requested


class PullError(TransportError):
    """A pull failed; ``serial`` names the logger, ``reason`` is a short code."""

    def __init__(self, message: str, *, serial: str | None = None, reason: str = "failed") -> None:
        self.reason = reason
        super().__init__(message, serial=serial)


class ResetDenied(TransportError):
    """The logger refused a reset for reuse; ``reason`` is the device's reason."""

    def __init__(self, reason: str, *, serial: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"reset refused by the logger: {reason}", serial=serial)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClockObservation:
    """The device clock read against the phone clock (both ms since the epoch).

    ``offset_ms`` = device - phone at the midpoint of the read; ``uncertainty_ms`` is
    half the round trip.
    """

    phone_before_ms: int
    device_ms: int
    phone_after_ms: int

    @property
    def offset_ms(self) -> float:
        return self.device_ms - (self.phone_before_ms + self.phone_after_ms) / 2

    @property
    def uncertainty_ms(self) -> float:
        return (self.phone_after_ms - self.phone_before_ms) / 2


@dataclass
class StreamPull:
    """What one stream delivered: ``records`` are ``(seq, canonical bytes)``."""

    stream: int
    anchor: bytes  # chain value before the first record received
    anchor_seq: int  # seq of the first record the device could offer (oldest held)
    requested_from: int  # where the client asked to start
    records: list[tuple[int, bytes]] = field(default_factory=list)
    head: p.ChainHead | None = None  # device-reported head at the last END
    chain_ok: bool = False  # records chain from anchor to head

    @property
    def missed(self) -> tuple[int, int] | None:
        """(first, last) seqs asked for but overwritten on the device before the pull."""
        first = self.records[0][0] if self.records else self.anchor_seq
        if first > self.requested_from:
            return (self.requested_from, first - 1)
        return None


@dataclass
class PullResult:
    serial: str
    address: str
    info: p.LoggerInfo
    version: int
    streams: dict[int, StreamPull]
    clocks: list[ClockObservation]
    attestation: bytes = b""
    nonce: bytes = b""
    end: p.End | None = None
    connections: int = 1
    image_bytes: int = 0  # transfer image bytes received (including re-sent ones)
    certificate: bytes = b""  # the logger's certificate (logfile.evidence.Certificate bytes)
    attested_at_ms: int | None = None  # phone clock when the attestation was read
    path: Path | None = None  # the logfile written for this pull (by the commit hook)
    status: str = ""  # logfile.verify status of that file: verified, simulated, unsigned, tampered, ...
    marked_read: bool = False  # the logger was told the pulled records are safe (enables a reset)
    clock_check: ClockCheck | None = None  # the logger's clock against the phone's (recorded in the file)

    @property
    def verified(self) -> bool:
        """The transfer is complete: every stream chained to its reported head (v1: CRC only).

        Not evidence: ``status`` is the verdict on the written logfile (``logfile.verify``)."""
        return all(s.chain_ok for s in self.streams.values())


# --------------------------------------------------------------------------- pull state


@dataclass
class PullState:
    """What the phone already holds of one logger (``<serial>.pull.json`` in the output dir)."""

    serial: str
    next_seq: dict[int, int] = field(default_factory=dict)  # stream -> next seq to ask for
    chain: dict[int, str] = field(default_factory=dict)  # stream -> chain value before it (hex)
    partial: dict[str, Any] | None = None  # an interrupted transfer (header + acked bytes)
    #: the logger's clock at the last pull: {"device_ms", "offset_ms" (device - phone)}; when it
    #: was off, also "check": "disagrees" and what it was checked against ("expected_offset_ms",
    #: "plausible_ms", "reference", "reference_device_ms"), so the next pull says so again
    clock: dict[str, Any] | None = None

    @staticmethod
    def path(out_dir: Path, serial: str) -> Path:
        return out_dir / f"{serial}.pull.json"

    @classmethod
    def load(cls, out_dir: Path, serial: str) -> PullState:
        path = cls.path(out_dir, serial)
        if not path.exists():
            return cls(serial)
        raw = json.loads(path.read_text())
        return cls(raw["serial"], {int(k): v for k, v in raw["next_seq"].items()},
                   {int(k): v for k, v in raw["chain"].items()}, raw.get("partial"), raw.get("clock"))

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(out_dir, self.serial)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)  # atomic: a crash leaves the old state, never half a file


# --------------------------------------------------------------------------- the clock at the pull

#: How close the tap sets the logger's clock to the phone's (ms), and a pull reads it.
CLOCK_SET_WITHIN_MS = 2000.0
#: Drift a logger's clock may show (ppm): twice the +/-50 ppm of its crystal, for age and cold.
PLAUSIBLE_DRIFT_PPM = 100.0
#: With no record of the clock ever being set or pulled, an offset up to this (ms) is a clock
#: that was set from another phone a while ago; more is a clock that was never set or was reset.
UNREFERENCED_WITHIN_MS = 10 * 60_000.0


@dataclass(frozen=True)
class ClockCheck:
    """The logger's clock against the phone's at a pull, and what it should have been.

    ``offset_ms`` = device - phone. ``reference`` says what the expectation rests on:
    ``nfc_set`` (the last NFC tap set the clock to a phone's time, ``reference_ms`` device time
    after the set), ``previous_pull`` (the offset seen at the previous pull of this folder), or
    ``none``. ``plausible_ms`` is how far the offset may be from the expected one.
    """

    offset_ms: float
    expected_ms: float
    plausible_ms: float
    reference: str
    reference_ms: int | None

    @property
    def ok(self) -> bool:
        return abs(self.offset_ms - self.expected_ms) <= self.plausible_ms

    def describe(self, serial: str) -> str:
        """One line for the technician (a named condition when not ok)."""
        off = _span(self.offset_ms)
        side = "ahead of" if self.offset_ms >= 0 else "behind"
        if self.ok:
            return f"{serial}: clock {off} {side} the phone's (ok)"
        since = {"nfc_set": "since an NFC tap set it",
                 "previous_pull": "since the previous pull"}.get(self.reference, "")
        plaus = (f"{since} it should be within {_span(self.plausible_ms)} of "
                 f"{_span(self.expected_ms)}" if self.reference != "none"
                 else f"no record of it being set, and more than {_span(self.plausible_ms)} off")
        return (f"{serial}: CLOCK DISAGREES: the logger's clock is {off} {side} the phone's; {plaus}. "
                "Reset by a power loss, or set or pulled by a phone with a wrong clock? The analysis "
                "places the block by the tap and pull observations that agree with the string, or "
                "leaves it out with the reason")

    def metadata(self) -> dict[str, str]:
        """The logfile's test metadata keys for this check (docs/BLE.md)."""
        out = {"ble.clock.check": "ok" if self.ok else "disagrees",
               "ble.clock.expected_offset_ms": f"{self.expected_ms:.1f}",
               "ble.clock.plausible_ms": f"{self.plausible_ms:.1f}",
               "ble.clock.reference": self.reference}
        if self.reference_ms is not None:
            out["ble.clock.reference_device_ms"] = str(self.reference_ms)
        return out


def _span(ms: float) -> str:
    a = abs(ms) / 1000.0
    if a < 60:
        return f"{a:.1f} s"
    if a < 2 * 86400:
        h, rem = divmod(round(a), 3600)
        return f"{h}:{rem // 60:02d}:{rem % 60:02d} h"
    return f"{a / 86400:.0f} d"


def _last_clock_set(result: PullResult) -> tuple[int, int] | None:
    """(seq-order key, new_ms) of the newest ClockSet the pull brought (either stream)."""
    best: tuple[int, int] | None = None
    for sp in result.streams.values():
        for seq, data in sp.records:
            if data[:1] == bytes([RecordType.CLOCK_SET]):
                rec = decode_record(data)
                if not isinstance(rec, ClockSet):
                    continue
                new_ms = int(rec.new_ms)
                if best is None or new_ms >= best[1]:
                    best = (seq, new_ms)
    return best


def check_clock(result: PullResult, previous: dict[str, Any] | None) -> ClockCheck | None:
    """How the logger's clock compares with the phone's at this pull (None: not read)."""
    if not result.clocks:
        return None
    obs = result.clocks[-1]
    device_now = obs.device_ms
    offset = obs.offset_ms
    slack = CLOCK_SET_WITHIN_MS + obs.uncertainty_ms
    clock_set = _last_clock_set(result)
    if clock_set is not None:
        ref_ms = clock_set[1]
        plausible = slack + PLAUSIBLE_DRIFT_PPM * 1e-6 * max(0.0, device_now - ref_ms)
        return ClockCheck(offset, 0.0, plausible, "nfc_set", ref_ms)
    if previous and previous.get("check") == "disagrees" and previous.get("expected_offset_ms") is not None:
        # The previous pull of this folder found the clock off (and may have been stopped before it
        # said so): the same expectation holds until a tap sets the clock, so the pull says it again.
        ref = previous.get("reference_device_ms")
        ref_ms = int(ref) if ref is not None else int(previous["device_ms"])
        plausible = float(previous["plausible_ms"]) + PLAUSIBLE_DRIFT_PPM * 1e-6 * abs(device_now - ref_ms)
        return ClockCheck(offset, float(previous["expected_offset_ms"]), plausible, str(previous["reference"]),
                          int(ref) if ref is not None else None)
    if previous and previous.get("device_ms") is not None and previous.get("offset_ms") is not None:
        ref_ms = int(previous["device_ms"])
        plausible = slack + PLAUSIBLE_DRIFT_PPM * 1e-6 * abs(device_now - ref_ms)
        return ClockCheck(offset, float(previous["offset_ms"]), plausible, "previous_pull", ref_ms)
    return ClockCheck(offset, 0.0, UNREFERENCED_WITHIN_MS, "none", None)


# --------------------------------------------------------------------------- one transfer


#: The phone's clock (ms since the epoch). Real pulls use the system clock; a simulation
#: whose loggers live on virtual time sets the virtual phone clock with ``phone_clock``.
_PHONE_CLOCK: contextvars.ContextVar[Callable[[], int] | None] = contextvars.ContextVar(
    "smartlogger_phone_clock", default=None)


def _phone_ms() -> int:
    clock = _PHONE_CLOCK.get()
    return clock() if clock is not None else time.time_ns() // 1_000_000


@contextlib.contextmanager
def phone_clock(clock: Callable[[], int]) -> Iterator[None]:
    """Use ``clock`` as the phone's clock for pulls started inside this block (and their tasks)."""
    token = _PHONE_CLOCK.set(clock)
    try:
        yield
    finally:
        _PHONE_CLOCK.reset(token)


class _Partial:
    """A v2 transfer being received: image buffer, chunk bitmap, contiguous ACK point."""

    def __init__(self, header: p.Header, image: bytes = b"") -> None:
        self.header = header
        self.size = header.chunk_payload
        self.buf = bytearray(header.total_len)
        self.buf[:len(image)] = image
        self.acked = header.start_offset  # contiguous bytes held
        n = -(-header.total_len // self.size) if self.size else 0
        self.have = bytearray(n)
        for i in range(self.acked // self.size):
            self.have[i] = 1
        self.bad = 0
        self.received = 0

    def put(self, chunk: p.Chunk) -> bool:
        """Store a chunk; True if the contiguous point moved."""
        off = chunk.offset
        if off % self.size or off >= len(self.buf) or off + len(chunk.payload) > len(self.buf):
            self.bad += 1
            return False
        i = off // self.size
        self.received += len(chunk.payload)
        if not self.have[i]:
            self.buf[off:off + len(chunk.payload)] = chunk.payload
            self.have[i] = 1
        moved = False
        while self.acked < len(self.buf) and self.have[self.acked // self.size]:
            self.acked = min(self.acked + self.size, len(self.buf))
            moved = True
        return moved

    def first_hole_end(self) -> int:
        """End of the gap starting at the contiguous point (the next chunk we do hold)."""
        i = self.acked // self.size
        while i < len(self.have) and not self.have[i]:
            i += 1
        return min(i * self.size, len(self.buf))


class _Link:
    """One bleak connection to a logger, with the CONTROL/DATA plumbing."""

    def __init__(self, client: BleakClient, serial: str) -> None:
        self.client = client
        self.serial = serial
        self.control: asyncio.Queue[p.DeviceMessage | BaseException] = asyncio.Queue()
        self.on_data: Callable[[bytes], None] = lambda data: None
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.client.start_notify(p.CONTROL_UUID, self._on_control)
        await self.client.start_notify(p.DATA_UUID, lambda _c, data: self.on_data(bytes(data)))
        self.writer = asyncio.get_running_loop().create_task(self._write_loop())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.cancel()

    def _on_control(self, _char: Any, data: bytearray) -> None:
        try:
            self.control.put_nowait(p.parse_device_message(bytes(data)))
        except p.ProtocolError as err:
            self.control.put_nowait(err)

    async def _write_loop(self) -> None:
        # ACK/RESEND go out as writes without response, in order, from one task.
        while True:
            data = await self.outbox.get()
            try:
                await self.client.write_gatt_char(p.CONTROL_UUID, data, response=False)
            except (BleakError, OSError) as err:
                self.control.put_nowait(err)
                return

    def send(self, msg: p.Ack | p.Resend) -> None:
        self.outbox.put_nowait(msg.to_bytes())

    async def request(self, msg: p.ClientMessage) -> None:
        await self.client.write_gatt_char(p.CONTROL_UUID, msg.to_bytes(), response=True)

    async def reply(self, timeout: float) -> p.DeviceMessage:
        try:
            msg = await asyncio.wait_for(self.control.get(), timeout)
        except TimeoutError:
            raise PullError("no reply from the logger", serial=self.serial,
                            reason="timeout") from None
        if isinstance(msg, BaseException):
            raise PullError(f"link failed: {msg}", serial=self.serial, reason="link") from msg
        return msg


async def _read_clock(client: BleakClient) -> tuple[p.LoggerInfo, ClockObservation]:
    before = _phone_ms()
    info = p.LoggerInfo.from_bytes(bytes(await client.read_gatt_char(p.INFO_UUID)))
    after = _phone_ms()
    return info, ClockObservation(before, info.device_ms, after)


async def _transfer_v2(link: _Link, start: p.Start, partial: _Partial | None,
                       progress: Callable[[int, int], None],
                       keep: Callable[[_Partial], None]) -> tuple[_Partial, p.End]:
    """Run one START..END exchange. ``keep`` gets the receive state as soon as it exists,
    so that a broken link leaves it to the caller for the resume."""
    early: list[bytes] = []  # chunks that overtake the HEADER (different characteristic)
    link.on_data = early.append
    await link.request(start)
    msg = await link.reply(STALL_S * 5)
    if isinstance(msg, p.ErrorReply):
        raise PullError(f"logger refused the transfer: {msg.reason}", serial=link.serial,
                        reason=msg.code.name.lower())
    if not isinstance(msg, p.Header):
        raise PullError(f"expected HEADER, got {type(msg).__name__}", serial=link.serial)
    if partial is not None and partial.header.transfer_id == msg.transfer_id:
        if partial.size == msg.chunk_payload:
            partial.header = msg
        else:  # another MTU this time: keep the contiguous bytes, re-chunk the rest
            partial = _Partial(msg, bytes(partial.buf[:msg.start_offset]))
    else:
        partial = _Partial(msg)
    part = partial
    keep(part)
    window_bytes = start.window * msg.chunk_payload
    state = {"next_ack": (part.acked // window_bytes + 1) * window_bytes, "resent_to": 0}
    done = asyncio.Event()

    def on_data(data: bytes) -> None:
        try:
            chunk = p.Chunk.from_bytes(data)
        except p.ProtocolError:
            part.bad += 1  # the gap shows up when the next good chunk arrives
            return
        moved = part.put(chunk)
        if chunk.offset > part.acked and state["resent_to"] <= part.acked:
            hole_end = part.first_hole_end()
            link.send(p.Resend(msg.transfer_id, part.acked, hole_end - part.acked))
            state["resent_to"] = hole_end
        if moved:
            progress(part.acked, msg.total_len)
            if part.acked >= state["next_ack"] or part.acked >= msg.total_len:
                link.send(p.Ack(msg.transfer_id, part.acked))
                state["next_ack"] = (part.acked // window_bytes + 1) * window_bytes
            if part.acked >= msg.total_len:
                done.set()

    link.on_data = on_data
    for data in early:
        on_data(data)
    if part.acked >= msg.total_len:
        link.send(p.Ack(msg.transfer_id, part.acked))
    last = part.acked
    while True:
        try:
            reply = await link.reply(GAP_S)
        except PullError as err:
            if err.reason != "timeout":
                raise
            if part.acked == last:
                if not link.client.is_connected:
                    raise PullError("link lost", serial=link.serial, reason="link") from None
                # Nothing moved: re-request everything after the contiguous point once more.
                state["resent_to"] = 0
                link.send(p.Resend(msg.transfer_id, part.acked, msg.total_len - part.acked))
                link.send(p.Ack(msg.transfer_id, part.acked))
            last = part.acked
            continue
        if isinstance(reply, p.End):
            if reply.transfer_id != msg.transfer_id:
                continue
            return part, reply
        if isinstance(reply, p.ErrorReply):
            raise PullError(f"logger aborted the transfer: {reply.reason}", serial=link.serial,
                            reason=reply.code.name.lower())


async def _transfer_v1(link: _Link, from_seq: int,
                       progress: Callable[[int, int], None]) -> tuple[p.HeaderV1, bytes, p.EndV1]:
    buf = bytearray()
    expect = {"index": 0, "broken": False}

    def on_data(data: bytes) -> None:
        index, payload = p.decode_chunk_v1(data)
        if index != expect["index"] & 0xFFFF:
            expect["broken"] = True  # v1 has no re-request: the whole transfer is retried
        expect["index"] = int(expect["index"]) + 1
        buf.extend(payload)

    link.on_data = on_data
    await link.request(p.StartV1(from_seq))
    header = await link.reply(STALL_S * 5)
    if not isinstance(header, p.HeaderV1):
        raise PullError(f"expected HEADER_V1, got {type(header).__name__}", serial=link.serial)
    while True:
        n = len(buf)
        try:
            end = await link.reply(STALL_S)
        except PullError as err:
            if err.reason == "timeout" and len(buf) > n:
                continue
            raise
        if isinstance(end, p.EndV1):
            break
    progress(len(buf), header.total_len)
    image = bytes(buf)
    if expect["broken"] or len(image) != end.total_len or p.crc32(image) != end.image_crc:
        raise PullError("generation-1 transfer arrived damaged", serial=link.serial, reason="crc")
    return header, image, end


def _attested_heads(attestation: bytes) -> list[tuple[int, bytes]]:
    att = PullAttestation.from_bytes(attestation)
    return [(st.next_seq, st.head) for st in att.streams]


def _chain(anchor: bytes, records: Iterable[tuple[int, bytes]]) -> bytes:
    h = anchor
    for seq, data in records:
        h = chain.chain_next(h, seq, data)
    return h


# --------------------------------------------------------------------------- pull one


@dataclass
class PullOptions:
    full: bool = False  # the whole blackbox instead of "since my last pull"
    retries: int = 4
    backoff_s: float = 0.05  # first retry delay; doubles, with jitter
    connect_timeout_s: float = 10.0
    window: int = DEFAULT_WINDOW
    credit: int = DEFAULT_CREDIT
    mark_read: bool = True  # tell the logger what was saved and verified (enables a later reset)
    trust: Sequence[Authority] | None = None  # trust list for verifying the written logfile
    backend: type[BaseBleakClient] | None = None
    backend_kwargs: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]
"""progress(serial, bytes done, bytes total) for the current stream."""

Commit = Callable[["PullResult"], bool]
"""commit(result) -> keep: save the pull (and verify it) before the logger is told it was read."""


async def pull_one(device: BLEDevice | str, state: PullState, options: PullOptions,
                   progress: Progress | None = None, *, commit: Commit | None = None) -> PullResult:
    """Pull one logger with retries; resumes an interrupted transfer from its last ACK.

    ``commit(result)`` runs while the logger is still connected, after every record and the
    signed attestation arrived: it saves the pull and returns whether its content is intact.
    Only then is MARK_READ sent (``options.mark_read``). Without ``commit`` nothing was saved,
    so nothing is marked read and the logger keeps refusing a reset.
    """
    attempt = 0
    session = _PullSession(device, state, options, progress, commit)
    while True:
        try:
            return await session.run()
        except (PullError, BleakError, TimeoutError, OSError) as err:
            attempt += 1
            session.connections += 1
            if attempt > options.retries:
                save_partial(state, session.partial)
                raise PullError(f"gave up after {attempt} attempts: {err}",
                                serial=state.serial, reason="retries") from err
            delay = options.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.info("%s: attempt %d failed (%s); retrying in %.2f s", state.serial, attempt,
                     err, delay)
            await asyncio.sleep(delay)


class _PullSession:
    """The state of pulling one logger across reconnects."""

    def __init__(self, device: BLEDevice | str, state: PullState, options: PullOptions,
                 progress: Progress | None, commit: Commit | None = None) -> None:
        self.device = device
        self.state = state
        self.options = options
        self.progress = progress
        self.commit = commit
        self.connections = 1
        self.streams: dict[int, StreamPull] = {}
        self.clocks: list[ClockObservation] = []
        self.partial: _Partial | None = None
        self.nonce = secrets.token_bytes(16)
        self.image_bytes = 0
        self.attestation = b""
        self.certificate = b""
        self.attested_at_ms: int | None = None
        self.end: p.End | None = None
        self.info: p.LoggerInfo | None = None
        self.done_streams: set[int] = set()
        if state.partial is not None:
            self.partial = _load_partial(state.partial)

    def _keep(self, part: _Partial) -> None:
        self.partial = part

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.state.serial, done, total)

    async def run(self) -> PullResult:
        address = self.device.address if isinstance(self.device, BLEDevice) else self.device
        lost: list[_Link] = []

        def on_disconnect(_client: BleakClient) -> None:
            # Wake whoever waits for a reply: the link is gone, resume on a new one.
            for lk in lost:
                lk.control.put_nowait(ConnectionError("link lost"))

        client = BleakClient(self.device, on_disconnect, services=[p.SERVICE_UUID],
                             backend=self.options.backend,
                             timeout=self.options.connect_timeout_s, **self.options.backend_kwargs)
        await client.connect()
        link = _Link(client, self.state.serial)
        lost.append(link)
        try:
            version = p.VersionInfo.from_bytes(bytes(await client.read_gatt_char(p.VERSION_UUID)))
            info, clock = await _read_clock(client)
            self.info = info
            self.clocks.append(clock)
            await link.open()
            if version.version == p.PROTOCOL_V1:
                await self._pull_v1(link, info)
            else:
                await self._pull_v2(link, client, info)
            # The closing clock read brackets the transfer: drift over the pull is visible.
            _, clock = await _read_clock(client)
            self.clocks.append(clock)
            result = PullResult(self.state.serial, address, info, version.version, self.streams,
                                self.clocks, self.attestation, self.nonce, self.end, self.connections,
                                self.image_bytes, self.certificate, self.attested_at_ms)
            # Saved and verified first, then MARK_READ: a crash in between leaves the records
            # unread on the logger (a reset stays refused), never read but lost.
            keep = self.commit(result) if self.commit is not None else False
            main = self.streams.get(p.STREAM_MAIN)
            if (keep and version.version != p.PROTOCOL_V1 and self.options.mark_read
                    and main is not None and main.chain_ok and main.head is not None):
                result.marked_read = await self._mark_read(link, main.head)
            elif self.commit is not None and not keep:
                log.warning("%s: the pulled logfile is %s: not marked read, the logger keeps its "
                            "records and refuses a reset", self.state.serial, result.status or "not saved")
        finally:
            link.close()
            with contextlib.suppress(Exception):
                await client.disconnect()
        self.state.partial = None
        return result

    async def _pull_v2(self, link: _Link, client: BleakClient, info: p.LoggerInfo) -> None:
        for _round in range(3):
            for stream in (p.STREAM_MAIN, p.STREAM_SUMMARY):
                if stream not in self.done_streams:
                    await self._pull_stream(link, stream, info)
                    self.done_streams.add(stream)
            if self.end is None or not self.end.signed:
                break
            reply = p.AttestReply.from_bytes(bytes(await client.read_gatt_char(p.ATTEST_UUID)))
            if reply is None:
                break
            self.certificate, self.attestation = reply.certificate, reply.attestation
            self.attested_at_ms = _phone_ms()
            heads = _attested_heads(reply.attestation)
            held = [self.streams[st].head for st in (p.STREAM_MAIN, p.STREAM_SUMMARY)]
            if heads == [(h.next_seq, h.hash) for h in held if h is not None]:
                break
            # The logger logged on while we pulled: fetch the new records and sign again.
            self.done_streams.clear()

    def _from_seq(self, stream: int) -> int:
        if self.options.full:
            return 0
        return self.state.next_seq.get(stream, 0)

    async def _pull_stream(self, link: _Link, stream: int, info: p.LoggerInfo) -> None:
        sp = self.streams.get(stream)
        from_seq = self._from_seq(stream) if sp is None else (
            sp.records[-1][0] + 1 if sp.records else sp.anchor_seq)
        while True:
            part = self.partial if (self.partial is not None
                                    and self.partial.header.stream == stream) else None
            if part is not None:
                h = part.header
                start = p.Start(stream, h.first_seq, h.end_seq, part.acked, h.image_crc,
                                self.options.window, self.options.credit, self.nonce)
            else:
                start = p.Start(stream, from_seq, p.TO_NEWEST, 0, 0, self.options.window,
                                self.options.credit, self.nonce)
            try:
                part, end = await _transfer_v2(link, start, part, self._report, self._keep)
            except PullError as err:
                if err.reason in ("range_gone", "image_changed"):
                    self.partial = None  # start this range afresh
                    continue
                raise
            self.partial = None
            self.image_bytes += part.received
            h = part.header
            image = bytes(part.buf)
            if p.crc32(image) != end.image_crc:
                raise PullError("image CRC mismatch at END", serial=self.state.serial, reason="crc")
            records = list(p.decode_image(image, h.first_seq))
            if sp is None:
                sp = StreamPull(stream, h.anchor, h.first_seq, from_seq)
                self.streams[stream] = sp
            elif not sp.records:
                sp.anchor, sp.anchor_seq = h.anchor, h.first_seq
            elif h.first_seq != sp.records[-1][0] + 1:
                sp.records.clear()  # overwritten in between: restart the chain at this anchor
                sp.anchor, sp.anchor_seq = h.anchor, h.first_seq
            sp.records.extend(records)
            head = end.main if stream == p.STREAM_MAIN else end.summary
            sp.head = head
            self.end = end
            if h.end_seq >= head.next_seq:
                sp.chain_ok = _chain(sp.anchor, sp.records) == head.hash
                if sp.chain_ok:
                    self.state.next_seq[stream] = head.next_seq
                    self.state.chain[stream] = head.hash.hex()
                return
            from_seq = h.end_seq  # a resumed older range: fetch what came after it

    async def _pull_v1(self, link: _Link, info: p.LoggerInfo) -> None:
        from_seq = self._from_seq(p.STREAM_MAIN)
        header, image, _end = await _transfer_v1(link, from_seq,
                                                 lambda d, t: self._report(d, t))
        self.image_bytes += len(image)
        records = list(p.decode_image(image, header.first_seq))
        sp = StreamPull(p.STREAM_MAIN, b"", header.first_seq, from_seq, records)
        # Generation 1 is unsigned and unchained: the CRC-32 over the image is all it offers.
        sp.chain_ok = True
        next_seq = records[-1][0] + 1 if records else header.first_seq
        sp.head = p.ChainHead(next_seq, b"")
        self.streams[p.STREAM_MAIN] = sp
        self.state.next_seq[p.STREAM_MAIN] = next_seq

    async def _mark_read(self, link: _Link, head: p.ChainHead) -> bool:
        await link.request(p.MarkRead(head.next_seq, head.hash))
        reply = await link.reply(STALL_S * 5)
        if isinstance(reply, p.Result) and not reply.ok:
            log.warning("%s: logger refused MARK_READ: %s", self.state.serial, reply.reason)
            return False
        return isinstance(reply, p.Result)


def _load_partial(raw: dict[str, Any]) -> _Partial | None:
    try:
        header = p.Header.from_bytes(bytes.fromhex(raw["header"]))
        image = bytes.fromhex(raw["image"])
    except (KeyError, ValueError, p.ProtocolError):
        return None
    header = p.Header(header.transfer_id, header.stream, header.first_seq, header.end_seq,
                      header.total_len, header.image_crc, header.record_count,
                      header.chunk_payload, len(image), header.device_ms, header.anchor)
    return _Partial(header, image)


def save_partial(state: PullState, part: _Partial | None) -> None:
    """Keep an interrupted transfer in the pull state so a later run resumes it."""
    if part is not None:
        state.partial = {"header": part.header.to_bytes().hex(),
                         "image": bytes(part.buf[:part.acked]).hex()}


# --------------------------------------------------------------------------- scanning and many


@dataclass(frozen=True)
class FoundLogger:
    address: str
    name: str | None
    device: BLEDevice
    rssi: int | None = None  # signal strength of the latest advertisement, dBm


async def scan(timeout_s: float = 2.0, *, backend: type[BaseBleakScanner] | None = None,
               backend_kwargs: dict[str, Any] | None = None,
               until_count: int | None = None, until_name: str | None = None,
               ) -> list[FoundLogger]:
    """Loggers advertising the smartlogger service, sorted by name.

    Returns early once ``until_count`` distinct loggers, or one named ``until_name``,
    were seen.
    """
    found: dict[str, FoundLogger] = {}
    enough = asyncio.Event()

    def seen(device: BLEDevice, adv: Any) -> None:
        found[device.address] = FoundLogger(device.address, adv.local_name, device,
                                            getattr(adv, "rssi", None))
        if (until_count is not None and len(found) >= until_count) or (
                until_name is not None and adv.local_name == until_name):
            enough.set()

    try:
        async with BleakScanner(seen, service_uuids=[p.SERVICE_UUID], backend=backend,
                                **(backend_kwargs or {})):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), timeout_s)
    except (BleakError, OSError) as err:
        # e.g. no BlueZ/D-Bus on this machine: say so in one line instead of a traceback.
        raise TransportError(f"Bluetooth LE scan failed ({type(err).__name__}: {err}); "
                             "is an adapter available? (--virtual uses the simulated radio)"
                             ) from err
    return sorted(found.values(), key=lambda f: (f.name or "", f.address))


@dataclass(frozen=True)
class LoggerSighting:
    """What ``ble scan`` learns of one logger: its advertisement and its INFO read.

    ``info`` is None when the INFO read failed (``error`` says why); ``clock`` compares the
    logger's clock with the phone's at that read.
    """

    found: FoundLogger
    info: p.LoggerInfo | None
    clock: ClockObservation | None
    error: str = ""

    @property
    def unpulled(self) -> int | None:
        """Main-stream records not yet pulled and verified (since the last MARK_READ)."""
        return None if self.info is None else self.info.main_next - self.info.read_up_to


async def read_infos(loggers: Iterable[FoundLogger], *, backend: type[BaseBleakClient] | None = None,
                     backend_kwargs: dict[str, Any] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                     connect_timeout_s: float = 10.0) -> list[LoggerSighting]:
    """Connect to each logger (at most ``concurrency`` at once), read INFO, disconnect.

    A logger that cannot be read is still listed, with the error.
    """
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(found: FoundLogger) -> LoggerSighting:
        async with sem:
            try:
                async with BleakClient(found.device, services=[p.SERVICE_UUID], backend=backend,
                                       timeout=connect_timeout_s, **(backend_kwargs or {})) as client:
                    info, clock = await _read_clock(client)
                return LoggerSighting(found, info, clock)
            except (BleakError, TimeoutError, OSError, p.ProtocolError) as err:
                return LoggerSighting(found, None, None, f"{type(err).__name__}: {err}")

    return list(await asyncio.gather(*(one(f) for f in loggers)))


@dataclass
class FleetOutcome:
    results: dict[str, PullResult] = field(default_factory=dict)  # serial -> result
    failures: dict[str, str] = field(default_factory=dict)  # name/address -> why
    written: dict[str, Path] = field(default_factory=dict)  # serial -> the logfile of this pull
    nothing_new: list[str] = field(default_factory=list)  # serials pulled with no new record: no file


def has_new_records(result: PullResult) -> bool:
    """The pull brought at least one record (main or summary stream) the phone did not hold."""
    return any(sp.records for sp in result.streams.values())


LogfileWriter = Callable[[PullResult, Path], Path]


async def pull_many(loggers: Iterable[FoundLogger], out_dir: Path, options: PullOptions, *,
                    concurrency: int = DEFAULT_CONCURRENCY,
                    write: LogfileWriter | None = None,
                    progress: Progress | None = None,
                    on_done: Callable[[str, PullResult | None, str | None], None] | None = None,
                    ) -> FleetOutcome:
    """Pull every logger with at most ``concurrency`` connections at once.

    Each result is written by ``write(result, out_dir)`` (default: ``write_logfile``) and
    verified (``logfile.verify`` with ``options.trust``) before the logger is told its records
    were read; the per-serial pull state is saved only after the logfile is on disk. A pull that
    brought no new record writes no file (``FleetOutcome.nothing_new``): a repeated pull "to be
    sure" leaves the folder as it was (the earlier pulls there hold everything up to the head).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    writer = write if write is not None else write_logfile
    sem = asyncio.Semaphore(concurrency)
    outcome = FleetOutcome()

    previous_clock: dict[str, dict[str, Any] | None] = {}
    states: dict[str, PullState] = {}

    def commit(result: PullResult) -> bool:
        result.clock_check = check_clock(result, previous_clock.get(result.serial))
        if not has_new_records(result):
            # Asked from the state's next seq and got nothing: the folder's earlier pulls hold
            # every record up to the head already.
            result.status = "nothing new"
            return True
        result.path = writer(result, out_dir)
        report = verify_logfile(result.path, trust=options.trust)
        result.status = report.status
        state = states.get(result.serial)
        if report.intact and state is not None:
            # The file is on disk and intact: the state that says so is saved with it at once,
            # so a pull interrupted after this point (Ctrl-C before the logger was told) does
            # not fetch the same range again next time.
            state.partial = None
            _note_clock(state, result)
            state.save(out_dir)
        return report.intact

    async def one(found: FoundLogger) -> None:
        serial = found.name or found.address
        async with sem:
            state = PullState.load(out_dir, serial)
            previous_clock[serial] = state.clock
            states[serial] = state
            try:
                result = await pull_one(found.device, state, options, progress, commit=commit)
            except PullError as err:
                outcome.failures[serial] = str(err)
                state.save(out_dir)
                if on_done:
                    on_done(serial, None, str(err))
                return
            if result.path is not None:
                outcome.written[result.serial] = result.path
            else:
                outcome.nothing_new.append(result.serial)
            _note_clock(state, result)
            state.save(out_dir)
            outcome.results[result.serial] = result
            if on_done:
                on_done(result.serial, result, None)

    await asyncio.gather(*(one(f) for f in loggers))
    return outcome


def _note_clock(state: PullState, result: PullResult) -> None:
    """The logger's clock at this pull and what it was checked against, for the next pull's check
    (a clock found off stays off for the next pull until a tap sets it)."""
    if result.clocks:
        state.clock = {"device_ms": result.clocks[-1].device_ms, "offset_ms": result.clocks[-1].offset_ms}
        chk = result.clock_check
        if chk is not None and not chk.ok:
            state.clock.update(check="disagrees", expected_offset_ms=chk.expected_ms,
                               plausible_ms=chk.plausible_ms, reference=chk.reference,
                               reference_device_ms=chk.reference_ms)


# --------------------------------------------------------------------------- reset


async def reset_logger(device: BLEDevice | str, *, backend: type[BaseBleakClient] | None = None,
                       backend_kwargs: dict[str, Any] | None = None, serial: str | None = None,
                       ) -> None:
    """Ask a logger to reset for reuse; ``ResetDenied`` with the device's reason if it refuses."""
    async with BleakClient(device, backend=backend, **(backend_kwargs or {})) as client:
        link = _Link(client, serial or str(device))
        await link.open()
        try:
            await link.request(p.Reset(_phone_ms()))
            reply = await link.reply(STALL_S * 5)
        finally:
            link.close()
        if isinstance(reply, p.ErrorReply):
            raise ResetDenied(reply.reason, serial=serial)
        if not isinstance(reply, p.Result) or not reply.ok:
            raise ResetDenied(reply.reason if isinstance(reply, p.Result) else "no result",
                              serial=serial)


# --------------------------------------------------------------------------- output


def logfile_name(result: PullResult) -> str:
    """``<serial>-<first>-<next>.slog``: one file per pull, the main-stream range in the name
    (a second pull of the same range is written as ``...-2.slog``)."""
    main = result.streams[p.STREAM_MAIN]
    first = main.records[0][0] if main.records else main.anchor_seq
    nxt = main.head.next_seq if main.head is not None else first
    return f"{result.serial}-{first:08d}-{nxt:08d}.slog"


def write_logfile(result: PullResult, out_dir: Path) -> Path:
    """Write one logfile for a pull with the logfile helper's ``build_logfile``.

    The pull's clock observations go into the test metadata (``ble.clock.*``); the
    attestation carries the signed device clock and, unsigned, the phone clock at
    which it was read.
    """
    info = result.info
    identity = LoggerIdentity(
        result.serial, Generation.GEN2 if result.version == p.PROTOCOL_V2 else Generation.GEN1,
        info.firmware or "unknown", simulated=bool(info.flags & p.InfoFlags.SIMULATED),
        replayed=bool(info.flags & p.InfoFlags.REPLAYED))
    cert = Certificate.from_bytes(result.certificate) if result.certificate else None
    attestations = []
    if result.attestation:
        att = PullAttestation.from_bytes(result.attestation)
        attestations.append(replace(att, phone_ms=result.attested_at_ms))
    streams: list[list[tuple[int, bytes]]] = []
    anchors: list[tuple[int, bytes]] = []
    for st in (p.STREAM_MAIN, p.STREAM_SUMMARY):
        sp = result.streams.get(st)
        if sp is None:
            streams.append([])
            anchors.append((0, chain.stream_genesis(result.serial, st)))
            continue
        streams.append(list(sp.records))
        anchor = sp.anchor
        if not anchor:  # generation 1 sends no anchor: only a pull from seq 0 has a known one
            anchor = chain.stream_genesis(result.serial, st) if sp.anchor_seq == 0 else bytes(32)
        anchors.append((sp.anchor_seq, anchor))
    test: dict[str, str] = {"ble.protocol": str(result.version),
                            "ble.connections": str(result.connections)}
    for i, c in enumerate(result.clocks):
        test[f"ble.clock.{i}.phone_before_ms"] = str(c.phone_before_ms)
        test[f"ble.clock.{i}.device_ms"] = str(c.device_ms)
        test[f"ble.clock.{i}.phone_after_ms"] = str(c.phone_after_ms)
    if result.clocks:
        test["ble.clock.offset_ms"] = f"{result.clocks[-1].offset_ms:.1f}"
    if result.clock_check is not None:
        test.update(result.clock_check.metadata())
    data = build_logfile(identity, cert, streams, anchors, attestations,
                         LogfileMetadata(test=test, created_ms=_phone_ms()))
    out_dir.mkdir(parents=True, exist_ok=True)
    return _write_new(out_dir, logfile_name(result), data, write_bytes)


def _write_new(out_dir: Path, name: str, data: bytes, write: Callable[[Path, bytes], None]) -> Path:
    """Write ``data`` as ``name``, or as ``<stem>-2.slog``, ``-3``, ... when ``name`` holds another
    pull already (a repeated full pull covers the same range): a pull never replaces another,
    both are evidence. The same bytes again are left as they are."""
    stem, suffix = name.rsplit(".", 1)
    for k in range(1, 10_000):
        path = out_dir / (name if k == 1 else f"{stem}-{k}.{suffix}")
        if not path.exists():
            write(path, data)
            return path
        if path.read_bytes() == data:
            return path
    raise PullError(f"{out_dir}: 9999 pulls named {name} already", reason="output")
