"""The logger's Bluetooth LE side: a Bumble GATT server serving one logger.

Owns the smartlogger GATT service on the device (VERSION, INFO, LIVE, CONTROL,
DATA, ATTEST; UUIDs and messages from ``protocol.ble``), the transfer engine
that streams a range of the log as MTU-sized DATA notifications with windowed
acknowledgements, gap re-sends and resume, MARK_READ and the guarded reset for
reuse, and advertising. Protocol version 2 for generation-2 loggers, version 1
(23-byte MTU, no resume, unsigned) for generation-1 loggers.

Does not own the radio: ``LoggerPeripheral.attach(air)`` puts the logger on a
virtual air (``compat.bumble.Air``: the field tool's in-process radio hands one out,
a virtual site owns its own), so ``device`` never imports ``field``. Uses Bumble's
public API plus ``smartlogger.compat.bumble`` for the controller. Does not own the
record encoding (``logfile.records``) or the chain (``logfile.chain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bumble import gatt
from bumble.device import (
    AdvertisingEventProperties,
    AdvertisingParameters,
    AdvertisingSet,
    Connection,
    Device,
)
from bumble.hci import Address, OwnAddressType
from bumble.host import Host

from smartlogger.compat.bumble import Air, Controller, new_controller

if TYPE_CHECKING:
    from smartlogger.device.firmware import Logger

from smartlogger.device.store import LogStore
from smartlogger.errors import ResetRefused
from smartlogger.logfile import chain
from smartlogger.logfile.evidence import DeviceCredentials, sign_pull, simulated_credentials
from smartlogger.logfile.records import encode_record
from smartlogger.model import Generation, LoggerIdentity, Record
from smartlogger.protocol import ble as p

log = logging.getLogger(__name__)

#: Outgoing LE ACL buffers of the logger's controller (nRF52-class SoftDevices have a handful).
CONTROLLER_ACL_BUFFERS = 8

#: Advertising interval, ms. Short so the virtual central connects quickly; real firmware uses
#: a longer one (battery), see docs/BLE.md.
ADVERTISING_INTERVAL_MS = 20.0

def address_for(serial: str) -> str:
    """A deterministic random static address for a logger (two top bits set, as the spec wants)."""
    raw = bytearray(hashlib.sha256(b"smartlogger-ble\x00" + serial.encode()).digest()[:6])
    raw[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in raw)


def live_address_for(serial: str) -> str:
    """The random static address of a logger's live broadcast (``protocol.live``): its own
    advertising set, apart from the connectable one, so a phone connecting to the logger
    never lands on the broadcast set."""
    return address_for(serial + "\x00live")


def make_bumble_device(air: Air, name: str, address: str) -> Device:
    """A Bumble device on its own virtual controller, with LE data length 251 (DLE) and a
    logger-class controller's few outgoing ACL buffers."""
    return _device_and_controller(air, name, address)[0]


def _device_and_controller(air: Air, name: str, address: str) -> tuple[Device, Controller]:
    controller = new_controller(name, air, acl_buffers=CONTROLLER_ACL_BUFFERS)
    return Device(name, Address(address), host=Host(controller, controller)), controller


# --------------------------------------------------------------------------- the log as seen over BLE


class LogView:
    """The two streams of a logger's store as ``(seq, canonical bytes)`` plus their chains.

    Uses the ``LogStore`` contract (``records``/``summary_records``, ``chain_anchor``,
    ``chain_head``). ``encode`` is the record codec (generation-1 loggers may use
    their own).
    """

    def __init__(self, identity: LoggerIdentity, store: LogStore,
                 encode: Callable[[Record], bytes] | None = None) -> None:
        if encode is None:
            encode = encode_record
        self.identity = identity
        self.store = store
        self.encode = encode
        bind = getattr(store, "bind_serial", None)
        if bind is not None:
            bind(identity.serial)  # the chain of a logger's store starts at its serial

    def next_seq(self, stream: int) -> int:
        return self.store.chain_head(stream)[0]

    def oldest_seq(self, stream: int) -> int:
        return self.store.chain_anchor(stream)[0]

    def records(self, stream: int, from_seq: int, end_seq: int) -> Iterator[tuple[int, bytes]]:
        raw = getattr(self.store, "raw_records", None)
        if raw is not None and self.encode is encode_record:
            # A blackbox keeps each record in its canonical encoding (what the chain covers):
            # served as stored, not decoded and encoded again (a transfer's main cost).
            for seq, data in raw(stream, from_seq):
                if seq >= end_seq:
                    return
                yield seq, data
            return
        it = (self.store.records(from_seq) if stream == p.STREAM_MAIN
              else self.store.summary_records(from_seq))
        for seq, rec in it:
            if seq >= end_seq:
                return
            yield seq, self.encode(rec)

    def chain_at(self, stream: int, seq: int) -> bytes:
        """The chain value before record ``seq`` (walks forward from the anchor)."""
        start, h = self.store.chain_anchor(stream)
        if seq <= start:
            return bytes(h)
        for s, data in self.records(stream, start, seq):
            h = chain.chain_next(h, s, data)
        return bytes(h)

    def head(self, stream: int) -> p.ChainHead:
        seq, h = self.store.chain_head(stream)
        return p.ChainHead(seq, bytes(h))


# --------------------------------------------------------------------------- a transfer in progress


@dataclass
class _Transfer:
    header: p.Header
    image: bytes
    version: int
    window: int
    credit: int
    nonce: bytes
    acked: int = 0  # image bytes acknowledged (v2)
    sent: int = 0  # next image byte to send for the first time
    resend: deque[tuple[int, int]] = field(default_factory=deque)


@dataclass
class _Session:
    connection: Connection
    transfer: _Transfer | None = None
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    image_bytes_sent: int = 0  # this connection, for the drop-after fault
    nonce: bytes = bytes(16)  # of the last START: bound into the attestation
    from_seqs: dict[int, int] = field(default_factory=dict)  # stream -> first seq sent
    attest_cache: tuple[object, bytes] | None = None
    drop_roll: bool = False  # this connection was chosen to drop (Faults.drop_chance)
    drop_at: int | None = None  # image bytes sent on this connection at which it drops


@dataclass
class Faults:
    """Faults a real peer cannot produce on demand (used by tests and the fleet benchmark).

    ``drop_after_bytes``: the device disconnects once it has sent this many image
    bytes on one connection (then the fault clears). ``drop_chance``: every
    connection is dropped with this probability, at a point drawn uniformly from the
    image bytes still to send when its transfer starts (``rng`` seeds it).
    ``corrupt_offsets``: the first chunk sent at each of these image offsets has one
    payload bit flipped (once).
    """

    drop_after_bytes: int | None = None
    drop_chance: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    corrupt_offsets: set[int] = field(default_factory=set)
    drops: int = 0  # how many drops were injected

    def arm(self, s: _Session, remaining: int) -> None:
        """Decide at a transfer's start whether and where this connection will drop."""
        if self.drop_after_bytes is not None:
            s.drop_at = self.drop_after_bytes
            self.drop_after_bytes = None
        elif s.drop_at is None and s.drop_roll and remaining > 1:
            s.drop_at = s.image_bytes_sent + self.rng.randrange(1, remaining)

    async def check(self, s: _Session) -> bool:
        """Drop the connection if its point is reached; True if dropped."""
        if s.drop_at is None or s.image_bytes_sent < s.drop_at:
            return False
        s.drop_at = None
        s.drop_roll = False
        self.drops += 1
        await s.connection.disconnect()
        return True


class LoggerPeripheral:
    """A logger's GATT server on a Bumble device.

    ``clock_ms`` reads the device RTC (ms since the epoch). ``live`` returns the newest
    sample, or None. ``credentials`` (generation 2) sign pulls; without them END says
    ``signed = 0`` and ATTEST reads empty. ``lock`` (a re-entrant lock) is held around
    every access to the store and the clock. ``flush`` commits the firmware's RAM to the
    store; it is called when a pull reads INFO and when a transfer starts.
    """

    def __init__(
        self,
        identity: LoggerIdentity,
        store: LogStore,
        *,
        clock_ms: Callable[[], int],
        config_seq: Callable[[], int] = lambda: 0,
        placement: Callable[[], tuple[int, str, str]] | None = None,
        live: Callable[[], p.LiveValues | None] | None = None,
        credentials: DeviceCredentials | None = None,
        encode: Callable[[Record], bytes] | None = None,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.identity = identity
        # The firmware commits what it holds in RAM (its open sample block) when a pull
        # begins, so the phone gets everything measured up to now.
        self.flush = flush
        # Held around every use of the store and the clock: at a virtual site the NFC
        # side and the firmware's stepping touch the same logger from another thread.
        self.lock: contextlib.AbstractContextManager[Any] = (
            lock if lock is not None else contextlib.nullcontext())
        self.view = LogView(identity, store, encode)
        self.clock_ms = clock_ms
        self.config_seq = config_seq
        self.placement = placement  # (block position, label, test id) of the configuration in force
        self.live = live
        self.credentials = credentials if identity.generation is Generation.GEN2 else None
        self.version = p.PROTOCOL_V2 if identity.generation is Generation.GEN2 else p.PROTOCOL_V1
        self.max_mtu = p.ATT_MTU_V2 if self.version == p.PROTOCOL_V2 else p.ATT_MTU_V1
        self.faults = Faults()
        self.device: Device | None = None
        self._air: tuple[Air, Controller] | None = None
        self.address = address_for(identity.serial)
        self.live_address = live_address_for(identity.serial)
        self._live_set: AdvertisingSet | None = None
        self._live_data: bytes | None = None
        self._live_interval: float | None = None
        self._sessions: dict[int, _Session] = {}
        self._images: dict[tuple[int, int, int], tuple[bytes, int]] = {}
        self._pull_froms: dict[bytes, dict[int, int]] = {}
        self._build_service()

    @classmethod
    def for_logger(cls, logger: Logger, **kwargs: Any) -> LoggerPeripheral:
        """Serve a firmware ``Logger``: its store, RTC, config sequence and newest sample."""

        def live() -> p.LiveValues | None:
            st = logger.status()
            if st.last_sample_ms is None or st.last_mv is None or st.last_dc is None:
                return None
            return p.LiveValues(st.last_sample_ms, st.last_mv, st.last_dc)

        def placement() -> tuple[int, str, str]:
            c = logger.config
            return c.block_position, c.block_label, c.test_id

        return cls(logger.identity, logger.store, clock_ms=logger.now_ms,
                   config_seq=lambda: logger.config_seq, placement=placement, live=live,
                   flush=logger.flush, **kwargs)

    # ------------------------------------------------------------------ GATT database

    def _build_service(self) -> None:
        props = gatt.Characteristic.Properties
        readable = gatt.Characteristic.READABLE
        writeable = gatt.Characteristic.WRITEABLE
        self.version_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            p.VERSION_UUID, props.READ, readable,
            p.VersionInfo(self.version, int(self.identity.generation), self.max_mtu).to_bytes())
        self.info_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            p.INFO_UUID, props.READ, readable, gatt.CharacteristicValue[bytes](read=self._read_info))
        self.live_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            p.LIVE_UUID, props.READ | props.NOTIFY, readable,
            gatt.CharacteristicValue[bytes](read=self._read_live))
        self.control_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            p.CONTROL_UUID, props.WRITE | props.WRITE_WITHOUT_RESPONSE | props.NOTIFY, writeable,
            gatt.CharacteristicValue[bytes](write=self._on_control))
        self.data_char: gatt.Characteristic[bytes] = gatt.Characteristic(p.DATA_UUID, props.NOTIFY, readable, b"")
        self.attest_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            p.ATTEST_UUID, props.READ, readable, gatt.CharacteristicValue[bytes](read=self._read_attest))
        self.service = gatt.Service(p.SERVICE_UUID, [
            self.version_char, self.info_char, self.live_char, self.control_char,
            self.data_char, self.attest_char])

    def _read_info(self, connection: Connection) -> bytes:
        with self.lock:
            if self.flush is not None:
                self.flush()
            flags = p.InfoFlags(0)
            if self.identity.simulated:
                flags |= p.InfoFlags.SIMULATED
            if self.identity.replayed:
                flags |= p.InfoFlags.REPLAYED
            if self.credentials is not None:
                flags |= p.InfoFlags.SIGNED
            store = self.view.store
            return p.LoggerInfo(
                device_ms=self.clock_ms(), flags=flags, main_next=store.next_seq,
                main_oldest=store.oldest_seq, read_up_to=store.read_up_to_seq,
                summary_next=self.view.next_seq(1), summary_oldest=self.view.oldest_seq(1),
                config_seq=self.config_seq(), serial=self.identity.serial,
                firmware=self.identity.firmware, **self._placement()).to_bytes()

    def _placement(self) -> dict[str, Any]:
        # Generation-1 firmware predates the placement tail of INFO.
        if self.placement is None or self.version != p.PROTOCOL_V2:
            return {}
        position, label, test_id = self.placement()
        return {"position": position, "label": label, "test_id": test_id}

    def _read_live(self, connection: Connection) -> bytes:
        with self.lock:
            value = self.live() if self.live is not None else None
            if value is None:
                value = p.LiveValues(self.clock_ms(), 0, 0)
            return value.to_bytes()

    def _read_attest(self, connection: Connection) -> bytes:
        with self.lock:
            s = self._sessions.get(connection.handle)
            if s is None or self.credentials is None or not s.from_seqs:
                return b""
            heads = [self.view.head(st) for st in (p.STREAM_MAIN, p.STREAM_SUMMARY)]
            # A long read calls this once per ATT READ/READ BLOB: sign once per pull state.
            key = (s.nonce, tuple((h.next_seq, h.hash) for h in heads))
            if s.attest_cache is not None and s.attest_cache[0] == key:
                return s.attest_cache[1]
            oldest = [self.view.oldest_seq(st) for st in (p.STREAM_MAIN, p.STREAM_SUMMARY)]
            froms = [min(max(s.from_seqs.get(st, h.next_seq), o), h.next_seq)
                     for st, o, h in zip((0, 1), oldest, heads, strict=True)]
            att = sign_pull(self.credentials, [(h.next_seq, h.hash) for h in heads], s.nonce,
                            self.clock_ms(), oldest_seqs=oldest, from_seqs=froms)
            value = p.AttestReply(self.credentials.certificate.to_bytes(), att.to_bytes()).to_bytes()
            s.attest_cache = (key, value)
            return value

    # ------------------------------------------------------------------ radio

    async def attach(self, link: Air, *, advertising_interval_ms: float = ADVERTISING_INTERVAL_MS,
                     ) -> Device:
        """Power on a Bumble device for this logger on the air ``link`` and start advertising."""
        device, controller = _device_and_controller(link, self.identity.serial, self.address)
        self._air = (link, controller)
        device.add_service(self.service)
        device.gatt_server.max_mtu = self.max_mtu
        device.on("connection", self._on_connection)
        await device.power_on()
        await device.start_advertising(
            auto_restart=True,
            advertising_data=p.advertising_data(self.identity.serial),
            advertising_interval_min=advertising_interval_ms,
            advertising_interval_max=advertising_interval_ms)
        self.device = device
        return device

    async def set_live_advertising(self, data: bytes | None, *, interval_ms: float) -> None:
        """Broadcast ``data`` (the live advertising data, ``protocol.live``) as legacy
        non-connectable advertising from the logger's live address; None stops it."""
        device = self.device
        if device is None or (data == self._live_data and interval_ms == self._live_interval):
            return
        if self._live_set is not None and data is not None and interval_ms != self._live_interval:
            # a new interval (discharge <-> float): the set is made again with it
            if self._live_set.enabled:
                await self._live_set.stop()
            await self._live_set.remove()
            self._live_set = None
        if data is None:
            if self._live_set is not None and self._live_set.enabled:
                await self._live_set.stop()
        elif self._live_set is None:
            props = AdvertisingEventProperties(is_connectable=False, is_scannable=False,
                                               is_legacy=True)
            params = AdvertisingParameters(
                advertising_event_properties=props, primary_advertising_interval_min=interval_ms,
                primary_advertising_interval_max=interval_ms, own_address_type=OwnAddressType.RANDOM,
                advertising_sid=1)
            self._live_set = await device.create_advertising_set(
                advertising_parameters=params, random_address=Address(self.live_address),
                advertising_data=data, auto_start=True)
        else:
            await self._live_set.set_advertising_data(data)
            if not self._live_set.enabled:
                await self._live_set.start()
        self._live_data = data
        self._live_interval = interval_ms

    async def detach(self) -> None:
        """Disconnect everyone and power the radio off."""
        if self.device is None:
            return
        self._live_set = None  # goes with the radio
        self._live_data = None
        self._live_interval = None
        await self.device.stop_advertising()
        for conn in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await conn.disconnect()
        await self.device.power_off()
        self.device = None
        if self._air is not None:
            # a radio that is off is not on the air: a later attach (a reboot) is a new controller
            # with the same address, and must be the only one found there
            air, controller = self._air
            self._air = None
            air.remove_controller(controller)

    def _on_connection(self, connection: Connection) -> None:
        s = _Session(connection)
        s.drop_roll = self.faults.drop_chance > 0 and self.faults.rng.random() < self.faults.drop_chance
        self._sessions[connection.handle] = s
        connection.on("disconnection", lambda reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        s = self._sessions.pop(connection.handle, None)
        if s is not None and s.task is not None:
            s.task.cancel()

    async def _notify(self, s: _Session, char: gatt.Characteristic[bytes], value: bytes) -> None:
        assert self.device is not None
        await self.device.notify_subscriber(s.connection, char, value)

    # ------------------------------------------------------------------ CONTROL

    def _on_control(self, connection: Connection, value: bytes) -> None:
        s = self._sessions.get(connection.handle)
        if s is None:
            return
        try:
            msg = p.parse_client_message(bytes(value))
        except p.ProtocolError as err:
            self._reply(s, p.ErrorReply(p.ErrorCode.BAD_REQUEST, str(err)))
            return
        if isinstance(msg, p.Ack):
            t = s.transfer
            if t is not None and msg.transfer_id == t.header.transfer_id:
                t.acked = max(t.acked, min(msg.next_offset, t.header.total_len))
                s.wake.set()
        elif isinstance(msg, p.Resend):
            t = s.transfer
            if t is not None and msg.transfer_id == t.header.transfer_id:
                t.resend.append((msg.offset, msg.length))
                s.wake.set()
        elif isinstance(msg, p.Start) and self.version == p.PROTOCOL_V2:
            self._start_v2(s, msg)
        elif isinstance(msg, p.StartV1) and self.version == p.PROTOCOL_V1:
            self._start_v1(s, msg)
        elif isinstance(msg, p.MarkRead) and self.version == p.PROTOCOL_V2:
            self._mark_read(s, msg)
        elif isinstance(msg, p.Reset) and self.version == p.PROTOCOL_V2:
            self._reset(s, msg)
        else:
            self._reply(s, p.ErrorReply(p.ErrorCode.UNSUPPORTED,
                                        f"{type(msg).__name__} is not protocol version {self.version}"))

    def _reply(self, s: _Session, msg: p.DeviceMessage) -> None:
        # Replies are queued behind any chunks already handed to the host: ordered per connection.
        asyncio.get_running_loop().create_task(self._notify(s, self.control_char, msg.to_bytes()))

    def _image(self, stream: int, first: int, end: int) -> tuple[bytes, int]:
        key = (stream, first, end)
        if key not in self._images:
            if len(self._images) > 8:
                self._images.clear()
            self._images[key] = p.encode_image(self.view.records(stream, first, end), first)
        return self._images[key]

    def _start_v2(self, s: _Session, msg: p.Start) -> None:
        with self.lock:
            if self.flush is not None:
                self.flush()
            if s.task is not None and not s.task.done():
                s.task.cancel()
            oldest = self.view.oldest_seq(msg.stream)
            newest = self.view.next_seq(msg.stream)
            first = self.view.store.read_up_to_seq if msg.from_seq == p.SINCE_LAST_READ else msg.from_seq
            if msg.stream != p.STREAM_MAIN and msg.from_seq == p.SINCE_LAST_READ:
                first = oldest
            end = newest if msg.end_seq == p.TO_NEWEST else msg.end_seq
            if first < oldest and msg.image_crc != 0:
                self._reply(s, p.ErrorReply(p.ErrorCode.RANGE_GONE,
                                            f"records {first}..{oldest - 1} were overwritten"))
                return
            first = min(max(first, oldest), newest)
            end = min(max(end, first), newest)
            image, count = self._image(msg.stream, first, end)
            crc = p.crc32(image)
            if msg.image_crc != 0 and msg.image_crc != crc:
                self._reply(s, p.ErrorReply(p.ErrorCode.IMAGE_CHANGED,
                                            "the records of this range changed since the first attempt"))
                return
            start = msg.resume_offset if msg.image_crc != 0 else 0
            if start > len(image):
                self._reply(s, p.ErrorReply(p.ErrorCode.BAD_REQUEST,
                                            f"resume offset {start} is past the image end {len(image)}"))
                return
            mtu = s.connection.att_mtu
            header = p.Header(
                transfer_id=p.transfer_id(msg.stream, first, end, crc), stream=msg.stream,
                first_seq=first, end_seq=end, total_len=len(image), image_crc=crc,
                record_count=count, chunk_payload=p.chunk_payload_size(mtu), start_offset=start,
                device_ms=self.clock_ms(), anchor=self.view.chain_at(msg.stream, first))
            t = _Transfer(header, image, p.PROTOCOL_V2, msg.window, msg.credit, msg.nonce,
                          acked=start, sent=start)
            s.transfer = t
            s.nonce = msg.nonce
            # One pull (one nonce) may span reconnects: remember where it began per stream.
            froms = self._pull_froms.setdefault(msg.nonce, {})
            froms.setdefault(msg.stream, first)
            s.from_seqs = froms
            while len(self._pull_froms) > 16:
                del self._pull_froms[next(iter(self._pull_froms))]
            s.wake.clear()
            self._reply(s, header)
            self.faults.arm(s, len(image) - start)
            s.task = asyncio.get_running_loop().create_task(self._stream_v2(s, t))

    async def _send_chunk(self, s: _Session, t: _Transfer, offset: int) -> None:
        payload = t.image[offset:offset + t.header.chunk_payload]
        raw = p.Chunk(offset, payload).to_bytes()
        if offset in self.faults.corrupt_offsets:
            self.faults.corrupt_offsets.discard(offset)
            raw = raw[:4] + bytes([raw[4] ^ 0x01]) + raw[5:]  # CRC still covers the good byte
        await self._notify(s, self.data_char, raw)
        s.image_bytes_sent += len(payload)
        if await self.faults.check(s):
            raise asyncio.CancelledError

    async def _stream_v2(self, s: _Session, t: _Transfer) -> None:
        size = t.header.chunk_payload
        total = t.header.total_len
        budget = t.window * t.credit * size  # bytes allowed in flight beyond the acknowledged ones
        burst = 0
        try:
            while True:
                if t.resend:
                    off, length = t.resend.popleft()
                    off -= off % size  # chunks are aligned on chunk_payload from offset 0
                    for o in range(off, min(off + length, total), size):
                        await self._send_chunk(s, t, o)
                    continue
                if t.sent < total and t.sent < t.acked + budget:
                    await self._send_chunk(s, t, t.sent)
                    t.sent = min(t.sent + size, total)
                    burst += 1
                    if burst % 32 == 0:
                        await asyncio.sleep(0)  # let ACKs in between bursts
                    continue
                if t.acked >= total:
                    await self._finish_v2(s, t)
                    return
                await s.wake.wait()
                s.wake.clear()
        except asyncio.CancelledError:
            return

    async def _finish_v2(self, s: _Session, t: _Transfer) -> None:
        h = t.header
        with self.lock:
            main, summary = self.view.head(p.STREAM_MAIN), self.view.head(p.STREAM_SUMMARY)
            end = p.End(h.transfer_id, h.total_len, h.record_count, h.image_crc, self.clock_ms(),
                        main, summary, self.credentials is not None)
        await self._notify(s, self.control_char, end.to_bytes())
        s.transfer = None

    # ------------------------------------------------------------------ version 1

    def _start_v1(self, s: _Session, msg: p.StartV1) -> None:
        with self.lock:
            if self.flush is not None:
                self.flush()
            if s.task is not None and not s.task.done():
                s.task.cancel()
            first = min(max(msg.from_seq, self.view.oldest_seq(0)), self.view.next_seq(0))
            image, count = p.encode_image(self.view.records(0, first, self.view.next_seq(0)), first)
            self.faults.arm(s, len(image))
            s.task = asyncio.get_running_loop().create_task(self._stream_v1(s, first, image, count))

    async def _stream_v1(self, s: _Session, first: int, image: bytes, count: int) -> None:
        try:
            await self._notify(s, self.control_char, p.HeaderV1(first, len(image), count).to_bytes())
            size = p.chunk_payload_size(s.connection.att_mtu, p.PROTOCOL_V1)
            for i, off in enumerate(range(0, len(image), size)):
                await self._notify(s, self.data_char, p.encode_chunk_v1(i, image[off:off + size]))
                s.image_bytes_sent += min(size, len(image) - off)
                if await self.faults.check(s):
                    return
                if i % 32 == 31:
                    await asyncio.sleep(0)
            with self.lock:
                end_v1 = p.EndV1(len(image), p.crc32(image), self.clock_ms())
            await self._notify(s, self.control_char, end_v1.to_bytes())
        except asyncio.CancelledError:
            return

    # ------------------------------------------------------------------ read-out and reset

    def _mark_read(self, s: _Session, msg: p.MarkRead) -> None:
        with self.lock:
            store = self.view.store
            if not store.oldest_seq <= msg.up_to_seq <= store.next_seq:
                self._reply(s, p.Result(p.Op.MARK_READ, False,
                                        f"seq {msg.up_to_seq} is outside {store.oldest_seq}..{store.next_seq}"))
                return
            if self.view.chain_at(p.STREAM_MAIN, msg.up_to_seq) != msg.chain:
                self._reply(s, p.Result(p.Op.MARK_READ, False,
                                        f"chain value at seq {msg.up_to_seq} does not match this log"))
                return
            store.mark_read(msg.up_to_seq)
            self._reply(s, p.Result(p.Op.MARK_READ, True))

    def _reset(self, s: _Session, msg: p.Reset) -> None:
        with self.lock:
            try:
                self.view.store.reset(t_ms=self.clock_ms())
            except ResetRefused as err:
                self._reply(s, p.Result(p.Op.RESET, False, err.reason))
                return
            self._images.clear()
            self._reply(s, p.Result(p.Op.RESET, True))


async def serve_loggers(link: Air, loggers: Iterable[Logger], *, signed: bool = True,
                        ) -> list[LoggerPeripheral]:
    """Put firmware ``Logger``s on a radio link, each advertising its GATT service.

    Simulated generation-2 loggers get reproducible test-authority credentials when
    ``signed`` (they can never pass as hardware evidence).
    """
    out = []
    for logger in loggers:
        ident = logger.identity
        creds = (simulated_credentials(ident) if signed and ident.simulated
                 and ident.generation is Generation.GEN2 else None)
        per = LoggerPeripheral.for_logger(logger, credentials=creds)
        await per.attach(link)
        out.append(per)
    return out
