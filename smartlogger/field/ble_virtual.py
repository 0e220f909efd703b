"""The ``virtual`` BLE transport: a bleak backend running on Bumble virtual controllers.

Owns the phone's virtual radio (``VirtualRadio``: a phone-side central device on a
Bumble controller, either on an in-process air whose every link-layer data PDU is
metered, or at a virtual site over HCI on a TCP transport), the link-time model that
turns the metered packets into modeled radio time (``LinkModel``), and the bleak
backend classes ``VirtualBleakScanner`` and ``VirtualBleakClient`` passed to bleak's
public ``BleakScanner``/``BleakClient`` with ``backend=``. ATT, GATT, MTU exchange,
notifications and disconnects are Bumble's real stacks; only radio timing is modeled
(Bumble's link has none). Uses Bumble's public API only; the air itself and the
controller settings are ``smartlogger.compat.bumble``.

Does not own any logger: simulated loggers are placed on ``radio.air`` by the
device side (``device.gatt.LoggerPeripheral.attach``) or live in a site's process,
so ``field`` never touches device objects. Does not own the pull logic (``field.ble``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bleak.backends.client import NotifyCallback
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementDataCallback
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bumble import gatt
from bumble.core import UUID as BumbleUUID
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.transport import open_transport
from bumble.transport.common import TransportSpecError

from smartlogger.compat.bleak import (
    BackendClient,
    BackendScanner,
    BleakGATTCharacteristic,
    BleakGATTDescriptor,
    BleakGATTServiceCollection,
    advertisement,
    gatt_characteristic,
    gatt_descriptor,
    gatt_service,
)
from smartlogger.compat.bumble import LL_DATA_LENGTH, Air, LinkSession, new_controller
from smartlogger.protocol import ble as p

log = logging.getLogger(__name__)

PHONE_MTU = 247  # the ATT MTU the phone asks for


# --------------------------------------------------------------------------- link-time model


@dataclass(frozen=True)
class LinkProfile:
    """How a phone runs a connection: interval and a cap on packets per connection event."""

    name: str
    interval_ms: float  # connection interval
    max_packets_per_event: int | None = None  # None: as many exchanges as fit in the interval


ANDROID = LinkProfile("android", 7.5)
IOS = LinkProfile("ios", 15.0)

PHY_US_PER_BYTE = 4.0  # LE 2M PHY: 2 Mbit/s
LL_OVERHEAD_BYTES = 11  # preamble 2 + access address 4 + LL header 2 + CRC 3 (unencrypted)
T_IFS_US = 150.0  # inter-frame space
CONNECT_SETUP_S = 0.030  # advertising wait (half a 20 ms interval) + CONNECT_IND + first events
SUPERVISION_TIMEOUT_S = 1.0  # how long the phone takes to notice a dropped link

#: Application bytes the link layer can carry at most: one 244-byte notification value
#: (ATT MTU 247) per exchange of a full data PDU and an empty one, back to back.
MAX_EXCHANGE_US = 2 * T_IFS_US + PHY_US_PER_BYTE * (2 * LL_OVERHEAD_BYTES + LL_DATA_LENGTH)
LINK_CAPACITY_BPS = (PHONE_MTU - p.NOTIFY_OVERHEAD) / (MAX_EXCHANGE_US * 1e-6)  # ≈ 175 kB/s


def air_us(payload: int) -> float:
    """Air time of one LL data PDU with ``payload`` octets (0 = empty PDU)."""
    return PHY_US_PER_BYTE * (LL_OVERHEAD_BYTES + payload)


@dataclass(frozen=True)
class ModeledTime:
    seconds: float  # from the first to the last PDU, whole connection events
    events: int  # connection events used
    busy_s: float  # radio busy (packets + IFS) within them
    done_s: tuple[float, ...] = ()  # per PDU: modeled time its exchange ended

    def span_s(self, first: int, last: int) -> float:
        """Modeled time between the ends of the exchanges carrying PDUs ``first`` and ``last``."""
        return self.done_s[last] - self.done_s[first]


class LinkModel:
    """Modeled radio time of a connection from the PDUs actually exchanged (docs/BLE.md).

    Connection events every ``interval``; in each, exchanges of one central PDU and one
    peripheral PDU (either may be an empty PDU), each costing both air times plus two
    T_IFS, until the next exchange would not fit. A PDU is ready only in the connection
    event after the one that carried its ``cause`` (the newest PDU its sender had
    received when it sent it): a stack answers in the next connection event, never in
    the same one. Notifications and write commands answer nothing: they only keep
    their order behind the PDUs their sender queued before them (in-process the sender
    runs far ahead of any radio, so "newest delivered" would be meaningless for a
    stream; that the transfer's credit never binds is argued in docs/BLE.md).
    Order per direction is kept.
    """

    def __init__(self, profile: LinkProfile = ANDROID) -> None:
        self.profile = profile

    def session_time(self, pdus: Sequence[tuple[int, int, int]]) -> ModeledTime:
        interval = self.profile.interval_ms * 1000.0
        cap = self.profile.max_packets_per_event
        queues: tuple[list[int], list[int]] = ([], [])
        dep: list[int] = []
        for i, (d, _, cause) in enumerate(pdus):
            queues[d].append(i)
            dep.append(cause)
        sent_event = [-1] * len(pdus)
        done = [0.0] * len(pdus)
        heads = [0, 0]
        event = 0
        busy = 0.0
        t = 0.0

        def ready(d: int) -> int | None:
            q = queues[d]
            if heads[d] >= len(q):
                return None
            i = q[heads[d]]
            j = dep[i]
            if j < 0 or 0 <= sent_event[j] < event:
                return i
            return None

        while heads[0] < len(queues[0]) or heads[1] < len(queues[1]):
            t = 0.0
            n = 0
            while cap is None or n < cap:
                c, q = ready(0), ready(1)
                if c is None and q is None:
                    break
                cost = (2 * T_IFS_US + air_us(pdus[c][1] if c is not None else 0)
                        + air_us(pdus[q][1] if q is not None else 0))
                if t + cost > interval:
                    break
                t += cost
                n += 1
                for d, k in ((0, c), (1, q)):
                    if k is not None:
                        sent_event[k] = event
                        done[k] = (event * interval + t) * 1e-6
                        heads[d] += 1
            busy += t
            if heads[0] >= len(queues[0]) and heads[1] >= len(queues[1]):
                break
            event += 1
        seconds = (event * interval + t) * 1e-6 if pdus else 0.0
        return ModeledTime(seconds, event + 1 if pdus else 0, busy * 1e-6, tuple(done))

    def connection_time(self, session: LinkSession) -> float:
        """Setup + PDUs + (for a dropped link) the supervision timeout, seconds."""
        s = CONNECT_SETUP_S + self.session_time(session.pdus).seconds
        return s + (SUPERVISION_TIMEOUT_S if session.dropped else 0.0)


# --------------------------------------------------------------------------- the radio


class VirtualRadio:
    """The phone's Bluetooth on virtual controllers, in one of two places.

    In-process (``VirtualRadio()``): the air is a ``compat.bumble.Air`` in this process;
    simulated loggers are placed on ``radio.air`` by the device side
    (``device.gatt.LoggerPeripheral.attach``) and every LL data PDU is metered
    (``sessions``). At a virtual site (``VirtualRadio(transport="tcp-client:HOST:PORT")``):
    the air, the loggers and the phone's controller live in the site's process; this
    process runs the phone's host stack over HCI on that transport (Bumble's
    ``bumble.transport``), as a phone's OS talks to its Bluetooth chip. Then ``link`` is
    None: nothing can be placed on a site's air from here.

    Use ``async with VirtualRadio(...) as radio:`` (or ``await radio.start()``) inside the
    event loop that runs the pull. ``VirtualRadio.current()`` is the radio the bleak
    backends use when no ``radio=`` keyword is passed to ``BleakClient``/``BleakScanner``.
    """

    _current: VirtualRadio | None = None

    def __init__(self, phone_address: str | None = None, *, transport: str | None = None) -> None:
        # A phone at a site gets an address of its own: two field-tool processes on one
        # site are two phones.
        self.phone_address = phone_address or ("C0:00:00:00:00:01" if transport is None
                                               else _random_static_address())
        self.transport_name = transport
        self.link: Air | None = Air() if transport is None else None
        self.phone: Device | None = None
        self._transport: Any = None
        self._connect_lock = asyncio.Lock()
        self.scanners: set[VirtualBleakScanner] = set()
        self._scanning = False

    @property
    def air(self) -> Air:
        """The in-process air loggers are placed on (``BleakError`` at a site: its air is
        in the site's process, out of reach by design)."""
        if self.link is None:
            raise BleakError("a virtual site's radio: its loggers live in the site's process")
        return self.link

    @classmethod
    def current(cls) -> VirtualRadio:
        if cls._current is None:
            raise BleakError("no virtual radio is running (start a VirtualRadio first)")
        return cls._current

    async def start(self) -> VirtualRadio:
        if self.link is not None:
            controller = new_controller("phone", self.link)
            self.link.add_central(controller)
            host = Host(controller, controller)
        else:
            assert self.transport_name is not None
            try:
                self._transport = await open_transport(self.transport_name)
            except (OSError, TransportSpecError) as err:
                raise BleakError(f"cannot reach the virtual site's radio at "
                                 f"{self.transport_name}: {err}") from err
            host = Host(self._transport.source, self._transport.sink)
        self.phone = Device("phone", Address(self.phone_address), host=host)
        self.phone.on("advertisement", self._on_advertisement)
        await self.phone.power_on()
        VirtualRadio._current = self
        return self

    async def stop(self) -> None:
        if self.phone is not None:
            for conn in list(self.phone.connections.values()):
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            with contextlib.suppress(Exception):
                await self.phone.power_off()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                await self._transport.close()
            self._transport = None
        if VirtualRadio._current is self:
            VirtualRadio._current = None

    async def __aenter__(self) -> VirtualRadio:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ scanning

    async def set_scanning(self, scanner: VirtualBleakScanner, on: bool) -> None:
        assert self.phone is not None
        if on:
            self.scanners.add(scanner)
        else:
            self.scanners.discard(scanner)
        want = bool(self.scanners)
        if want and not self._scanning:
            await self.phone.start_scanning(filter_duplicates=False)
        elif not want and self._scanning:
            await self.phone.stop_scanning()
        self._scanning = want

    def _on_advertisement(self, adv: Advertisement) -> None:
        for s in list(self.scanners):
            s.on_advertisement(adv)

    # ------------------------------------------------------------------ connections

    async def connect(self, address: str, timeout: float) -> Connection:
        assert self.phone is not None
        # Bumble (like a controller) initiates one LE connection at a time.
        async with self._connect_lock:
            return await self.phone.connect(address, timeout=timeout)

    def sessions(self, address: str) -> list[LinkSession]:
        """Every metered connection to the logger at ``address``, oldest first (in-process)."""
        if self.link is None:
            return []
        return list(self.link.sessions.get(address, []))


def _random_static_address() -> str:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] |= 0xC0  # random static: the two top bits set
    return ":".join(f"{b:02X}" for b in raw)


# --------------------------------------------------------------------------- bleak backends


def _radio(kwargs: dict[str, Any]) -> VirtualRadio:
    radio = kwargs.get("radio")
    return radio if isinstance(radio, VirtualRadio) else VirtualRadio.current()


class VirtualBleakScanner(BackendScanner):
    """bleak scanner backend listening on a ``VirtualRadio`` (``radio=`` kwarg or current)."""

    def __init__(self, detection_callback: AdvertisementDataCallback | None,
                 service_uuids: list[str] | None, scanning_mode: str = "active",
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = _radio(kwargs)

    async def start(self) -> None:
        self.start_seen()
        await self._radio.set_scanning(self, True)

    async def stop(self) -> None:
        await self._radio.set_scanning(self, False)

    def on_advertisement(self, adv: Advertisement) -> None:
        uuids, name, _complete = p.parse_advertising(adv.data_bytes)
        address = str(adv.address).split("/")[0]
        self.report(address, name, adv, advertisement(
            local_name=name, service_uuids=uuids, rssi=adv.rssi, details=adv,
            manufacturer_data=p.parse_manufacturer_data(adv.data_bytes)))


_PROPS: tuple[tuple[gatt.Characteristic.Properties, str], ...] = (
    (gatt.Characteristic.Properties.BROADCAST, "broadcast"),
    (gatt.Characteristic.Properties.READ, "read"),
    (gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE, "write-without-response"),
    (gatt.Characteristic.Properties.WRITE, "write"),
    (gatt.Characteristic.Properties.NOTIFY, "notify"),
    (gatt.Characteristic.Properties.INDICATE, "indicate"),
)


class VirtualBleakClient(BackendClient):
    """bleak client backend: a Bumble GATT client on the virtual radio's phone device."""

    def __init__(self, address_or_ble_device: BLEDevice | str, *,
                 disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback,
                         timeout=timeout)
        self._radio = _radio(kwargs)
        wanted = kwargs.get("services")  # bleak passes BleakClient(services=...) normalized
        self._wanted: list[str] | None = sorted(wanted) if wanted else None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._proxies: dict[int, CharacteristicProxy[bytes]] = {}
        self._descriptors: dict[int, DescriptorProxy] = {}
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        timeout = float(kwargs.get("timeout", self.connect_timeout))
        try:
            conn = await self._radio.connect(self.address, timeout)
        except Exception as err:  # Bumble raises TimeoutError / core errors
            raise BleakDeviceNotFoundError(self.address, f"cannot connect: {err}") from err
        self._connection = conn
        conn.on("disconnection", self._on_disconnection)
        try:
            peer = Peer(conn)
            # Phones negotiate the MTU on their own right after connecting.
            await peer.request_mtu(PHONE_MTU)
            # Like the platform backends, only the services asked for (if any) are discovered.
            await peer.discover_services([BumbleUUID(u) for u in self._wanted]
                                         if self._wanted else [])
            self.services = await self._build_services(peer)
            self._peer = peer
        except BaseException as err:
            with contextlib.suppress(Exception):
                await conn.disconnect()
            self._connection = None
            if isinstance(err, Exception) and not isinstance(err, BleakError):
                # a GATT timeout or a link lost during discovery is a failed connect to bleak
                raise BleakError(f"{self.address}: connected, but {type(err).__name__}: {err}") from err
            raise

    async def _build_services(self, peer: Peer) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        for svc in peer.services:
            bs = gatt_service(svc, svc.handle, str(svc.uuid.to_hex_str("-")).lower())
            coll.add_service(bs)
            for ch in await peer.discover_characteristics(service=svc):
                props = [name for flag, name in _PROPS if ch.properties & flag]
                bc = gatt_characteristic(ch, ch.handle, str(ch.uuid.to_hex_str("-")).lower(), props,
                                         lambda: self.mtu_size - 3, bs)
                coll.add_characteristic(bc)
                self._proxies[ch.handle] = ch
                if not ch.properties & (gatt.Characteristic.Properties.NOTIFY
                                        | gatt.Characteristic.Properties.INDICATE):
                    continue  # only notifiable characteristics carry a CCCD worth discovering
                for d in await peer.discover_descriptors(ch):
                    coll.add_descriptor(gatt_descriptor(d, d.handle, str(d.type.to_hex_str("-")).lower(), bc))
                    self._descriptors[d.handle] = d
        return coll

    def _on_disconnection(self, reason: int) -> None:
        was = self._connection is not None
        self._connection = None
        self._peer = None
        if was:
            self.notify_disconnected()

    async def disconnect(self) -> None:
        conn = self._connection
        if conn is None:
            return
        self._connection = None  # a disconnect we asked for is not "unsolicited"
        with contextlib.suppress(Exception):
            await conn.disconnect()
        self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        log.info("virtual radio: pairing is not modeled; ignored")

    async def unpair(self) -> None:
        log.info("virtual radio: pairing is not modeled; ignored")

    def _proxy(self, characteristic: BleakGATTCharacteristic) -> CharacteristicProxy[bytes]:
        if self._connection is None:
            raise BleakError("not connected")
        return self._proxies[characteristic.handle]

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        try:
            return bytearray(await self._proxy(characteristic).read_value())
        except BleakError:
            raise
        except Exception as err:
            raise BleakError(f"read {characteristic.uuid} failed: {err}") from err

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        if self._connection is None:
            raise BleakError("not connected")
        return bytearray(await self._descriptors[descriptor.handle].read_value())

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any,
                              response: bool) -> None:
        proxy = self._proxy(characteristic)
        try:
            await proxy.write_value(bytes(data), with_response=response)
        except Exception as err:
            raise BleakError(f"write {characteristic.uuid} failed: {err}") from err

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        if self._connection is None:
            raise BleakError("not connected")
        await self._descriptors[descriptor.handle].write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        proxy = self._proxy(characteristic)

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = on_value
        await proxy.subscribe(on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        proxy = self._proxy(characteristic)
        sub = self._subscribers.pop(characteristic.handle, None)
        await proxy.unsubscribe(sub)
