"""Bumble past its public API, in one place: the virtual air and the controller settings.

Everything smartlogger does with Bumble beyond its public classes (``Device``, ``Host``,
``Peer``, GATT, ``bumble.transport``) lives here, so a Bumble release that changes a
private detail breaks one module with a clear message instead of the BLE simulation
misbehaving quietly. It owns:

- ``Air``: the radio medium, a ``bumble.link.LocalLink`` subclass. It overrides the
  link's packet hooks (``send_acl_data``, ``send_advertising_pdu``,
  ``send_ll_control_pdu``, ``find_le_controller``) to meter every LL data PDU per
  connection (the input of the link-time model, ``field.ble_virtual.LinkModel``), to
  deliver advertising only to controllers that listen (scanning or initiating) as a
  radio would, and, for a long-lived site, to run the advertising *pump* (below);
- ``new_controller``: a virtual controller with LE Data Length Extension (251-octet
  PDUs) and, for a logger-class chip, few outgoing ACL buffers (controller attributes
  Bumble has no API for); it is a ``QuietController``, which skips formatting Bumble's
  per-packet debug trace while that trace is off;
- ``HciPort``: controllers whose host is on the other end of a TCP connection (HCI
  over TCP, one controller per connection), and the supervision timeout their peers
  see when that host vanishes (``Air.lose_host``).

The advertising pump: Bumble's controllers advertise from a timer per advertiser; a
site with hundreds of loggers advertising every 20 ms would spend its time on timers
that nobody hears. With ``Air(pump_s=...)`` the site's advertisers run a slow timer and
the air itself delivers, while a central listens, the target's PDU to an initiator each
``pump_s`` and every enabled connectable advertiser's current advertising PDU to scanners
every few ticks: what a listener hears is the same, only unheard advertising events are not
simulated. A scanner gets at most ``SCAN_REPORTS_PER_S`` reports a second in all (a
Python host on the other end of HCI takes no more), so on a big site each logger is
reported less often, as a phone's controller that filters duplicates would.
Non-connectable sets (broadcasts such as the loggers' live adverts) are not pumped: their
own timers deliver them at their own interval.

The supported Bumble range is checked at import (``smartlogger.compat.require``), and
the hooks this module overrides or reads are checked to exist with the shape it
expects (``_check_shape``), so a release that renamed one fails here, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smartlogger.compat import UnsupportedDependency, require

BUMBLE_MIN, BUMBLE_BELOW = "0.0.236", "0.0.240"
BUMBLE_VERSION = require("bumble", BUMBLE_MIN, BUMBLE_BELOW)

from bumble import hci, ll  # noqa: E402  (after the version check, on purpose)
from bumble.controller import Controller  # noqa: E402
from bumble.core import PhysicalTransport  # noqa: E402
from bumble.link import LocalLink  # noqa: E402
from bumble.transport.common import StreamPacketSink, StreamPacketSource  # noqa: E402

log = logging.getLogger(__name__)

__all__ = [
    "BUMBLE_VERSION",
    "LL_DATA_LENGTH",
    "Air",
    "Controller",
    "HciPort",
    "LinkSession",
    "QuietController",
    "current_advertising",
    "new_controller",
]

#: The advertising pump's scan reports to one scanning phone, per second at most.
SCAN_REPORTS_PER_S = 250.0

#: LE Data Length Extension: LL payload octets per data PDU of every virtual controller.
LL_DATA_LENGTH = 251

ATT_CID = 0x0004
ATT_UNSOLICITED = frozenset({0x1B, 0x1D, 0x52})  # notification, indication, write command


def _check_shape() -> None:
    """Fail at import, naming the hook, if Bumble no longer has what this module relies on."""
    expected: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
        "LocalLink.send_acl_data": (LocalLink.send_acl_data,
                                    ("sender_controller", "destination_address", "transport", "data")),
        "LocalLink.send_advertising_pdu": (LocalLink.send_advertising_pdu,
                                           ("sender_controller", "packet")),
        "LocalLink.send_ll_control_pdu": (LocalLink.send_ll_control_pdu,
                                          ("sender_address", "receiver_address", "packet")),
        "LocalLink.find_le_controller": (LocalLink.find_le_controller, ("address",)),
        "Controller.on_ll_advertising_pdu": (Controller.on_ll_advertising_pdu, ("packet",)),
        "Controller.on_ll_control_pdu": (Controller.on_ll_control_pdu, ("sender_address", "packet")),
        "Controller.on_link_acl_data": (Controller.on_link_acl_data,
                                        ("sender_address", "transport", "data")),
        # QuietController's dispatch
        "Controller.on_hci_packet": (Controller.on_hci_packet, ("packet",)),
        "Controller.send_hci_packet": (Controller.send_hci_packet, ("packet",)),
        "Controller.on_hci_command_packet": (Controller.on_hci_command_packet, ("command",)),
        "Controller.on_hci_acl_data_packet": (Controller.on_hci_acl_data_packet, ("packet",)),
        "Controller.on_hci_event_packet": (Controller.on_hci_event_packet, ("_event",)),
    }
    supported = f">={BUMBLE_MIN},<{BUMBLE_BELOW}"
    for name, (fn, params) in expected.items():
        have = tuple(inspect.signature(fn).parameters)[1:]  # without self
        if have[:len(params)] != params:
            raise UnsupportedDependency(
                "bumble", BUMBLE_VERSION, f"{supported} (this release changed {name}: {have})")
    declared = set(inspect.get_annotations(Controller)) | set(vars(Controller))
    for attr in ("le_acl_data_packet_length", "supported_max_tx_octets",
                 "total_num_le_acl_data_packets", "le_scan_enable", "pending_le_connection",
                 "le_legacy_advertiser", "advertising_sets", "le_connections"):
        if attr not in declared:
            raise UnsupportedDependency(
                "bumble", BUMBLE_VERSION, f"{supported} (this release has no Controller.{attr})")


_check_shape()


#: Bumble's controller module logger: its packet trace is formatted only when it is on.
_CONTROLLER_LOG = logging.getLogger("bumble.controller")


class QuietController(Controller):
    """Bumble's ``Controller`` without the packet trace it formats for every HCI packet even
    when debug logging is off (``logger.debug(f"...{packet}")`` stringifies each packet's
    fields: about a sixth of a site's CPU during a pull of all its loggers). The same
    dispatch as Bumble's ``on_hci_packet`` / ``send_hci_packet``; with ``bumble.controller``
    at DEBUG, Bumble's own methods run, trace included."""

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if _CONTROLLER_LOG.isEnabledFor(logging.DEBUG):
            super().on_hci_packet(packet)
        elif isinstance(packet, hci.HCI_Command):
            self.on_hci_command_packet(packet)
        elif isinstance(packet, hci.HCI_AclDataPacket):
            self.on_hci_acl_data_packet(packet)
        elif isinstance(packet, hci.HCI_Event):
            self.on_hci_event_packet(packet)
        else:
            super().on_hci_packet(packet)  # Bumble's warning for an unknown packet type

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if _CONTROLLER_LOG.isEnabledFor(logging.DEBUG) or not self.host:
            super().send_hci_packet(packet)
        else:
            asyncio.get_running_loop().call_soon(self.host.on_packet, bytes(packet))


def new_controller(name: str, air: LocalLink, *, acl_buffers: int | None = None,
                   host_source: Any = None, host_sink: Any = None) -> Controller:
    """A virtual controller on ``air`` with LE data length 251 (DLE).

    ``acl_buffers``: outgoing LE ACL buffers (a logger-class chip holds a handful; the
    host then feeds it as packets complete, which also paces the in-process link so
    that acknowledgements interleave with data as on air).
    """
    controller = QuietController(name, host_source=host_source, host_sink=host_sink, link=air)
    controller.le_acl_data_packet_length = LL_DATA_LENGTH
    controller.supported_max_tx_octets = LL_DATA_LENGTH
    if acl_buffers is not None:
        controller.total_num_le_acl_data_packets = acl_buffers
    return controller


#: ``advertising_event_properties`` bit of a connectable advertising set (HCI LE Set Extended
#: Advertising Parameters, Core spec Vol 4 E 7.8.53).
_CONNECTABLE = 0x01


def current_advertising(controller: Controller, *, connectable_only: bool = False) -> list[Any]:
    """The advertising PDUs ``controller`` sends now: its legacy advertiser and its enabled
    advertising sets (Bumble's ``Device.start_advertising`` uses a set with legacy PDUs
    when the controller supports extended advertising); with ``connectable_only`` the
    non-connectable sets (broadcasts) are left out."""
    out: list[Any] = []
    legacy = controller.le_legacy_advertiser
    if legacy.enabled:
        out.append(ll.AdvInd(advertiser_address=legacy.address, data=legacy.advertising_data))
    for adv_set in controller.advertising_sets.values():
        if connectable_only and adv_set.parameters is not None and not (
                int(adv_set.parameters.advertising_event_properties) & _CONNECTABLE):
            continue
        if adv_set.enabled and adv_set.address is not None:
            sid = adv_set.parameters.advertising_sid if adv_set.parameters else 0
            out.append(ll.AdvExtInd(advertiser_address=adv_set.address, data=bytes(adv_set.data),
                                    sid=sid))
    return out


def _unsolicited(acl: bytes) -> bool:
    """True for an LL PDU that starts an ATT notification/indication or write command."""
    return len(acl) >= 5 and acl[2] | acl[3] << 8 == ATT_CID and acl[4] in ATT_UNSOLICITED


@dataclass
class LinkSession:
    """The LL data PDUs of one connection, in the order the controllers sent them.

    ``pdus`` holds ``(direction, payload octets, cause)``; direction 0 = central (phone)
    to peripheral (logger), 1 = back; ``cause`` is the index of the newest PDU of the
    other direction that had been *delivered* to the sender when it sent this one (-1:
    none), i.e. the latest thing this PDU can be an answer to. ``dropped`` = the link
    ended without the phone asking.
    """

    address: str
    pdus: list[tuple[int, int, int]] = field(default_factory=list)
    dropped: bool = False
    closed: bool = False
    sent_index: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))
    delivered_count: list[int] = field(default_factory=lambda: [0, 0])

    def sent(self, direction: int, octets: int, unsolicited: bool = False) -> None:
        other = 1 - direction
        n = self.delivered_count[other]
        cause = self.sent_index[other][n - 1] if n and not unsolicited else -1
        self.sent_index[direction].append(len(self.pdus))
        self.pdus.append((direction, octets, cause))

    def delivered(self, direction: int) -> None:
        self.delivered_count[direction] += 1


class Air(LocalLink):
    """The radio medium of a set of virtual controllers (see the module docstring).

    ``meter``: record ``LinkSession``s per peripheral address (``sessions``).
    ``pump_s``: run the advertising pump every ``pump_s`` seconds (``start_pump``).
    Controllers that act as centrals (phones) are marked with ``add_central``.
    """

    def __init__(self, *, meter: bool = True, pump_s: float | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.meter = meter
        self.pump_s = pump_s
        self.sessions: dict[str, list[LinkSession]] = {}
        self._centrals: set[Controller] = set()
        self._by_address: dict[str, Controller] = {}
        self._pump_task: asyncio.Task[None] | None = None
        self._scan_every = 5  # pump ticks between two rounds of scan reports (at least)

    # ------------------------------------------------------------------ controllers

    def add_central(self, controller: Controller) -> None:
        """Mark ``controller`` as a central (a phone): its PDUs are direction 0."""
        self._centrals.add(controller)

    def add_controller(self, controller: Controller) -> None:
        super().add_controller(controller)
        self._by_address.clear()

    def remove_controller(self, controller: Controller) -> None:
        super().remove_controller(controller)
        self._centrals.discard(controller)
        self._by_address.clear()

    def find_le_controller(self, address: hci.Address) -> Controller | None:
        key = str(address)
        c = self._by_address.get(key)
        if c is None:
            c = super().find_le_controller(address)
            if c is not None:
                self._by_address[key] = c
        return c

    def _is_central_address(self, address: hci.Address) -> bool:
        return any(c.random_address == address for c in self._centrals)

    # ------------------------------------------------------------------ metering

    def _current(self, address: str) -> LinkSession:
        lst = self.sessions.setdefault(address, [])
        if not lst or lst[-1].closed:
            lst.append(LinkSession(address))
        return lst[-1]

    def send_acl_data(self, sender_controller: Controller, destination_address: hci.Address,
                      transport: PhysicalTransport, data: bytes) -> None:
        if transport != PhysicalTransport.LE:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        destination = self.find_le_controller(destination_address)
        source = sender_controller.random_address
        deliver: Callable[[], None]
        if self.meter:
            direction = 0 if sender_controller in self._centrals else 1
            session = self._current(str(destination_address) if direction == 0 else str(source))
            session.sent(direction, len(data), _unsolicited(data))

            def deliver() -> None:
                session.delivered(direction)
                if destination is not None:
                    destination.on_link_acl_data(source, transport, data)
        else:
            def deliver() -> None:
                if destination is not None:
                    destination.on_link_acl_data(source, transport, data)
        if destination is None:
            return
        asyncio.get_running_loop().call_soon(deliver)

    # ------------------------------------------------------------------ advertising

    @staticmethod
    def _listening(c: Controller) -> bool:
        return bool(c.le_scan_enable or c.pending_le_connection)

    def send_advertising_pdu(self, sender_controller: Controller, packet: Any) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(packet, ll.ConnectInd):
            target = str(packet.advertiser_address)
            if self.meter:
                self.sessions.setdefault(target, []).append(LinkSession(target))
            peer = self.find_le_controller(packet.advertiser_address)
            if peer is not None and peer is not sender_controller:
                loop.call_soon(peer.on_ll_advertising_pdu, packet)
            return
        # only centrals ever listen: loggers neither scan nor initiate
        for c in list(self._centrals):
            if c is not sender_controller and self._listening(c):
                loop.call_soon(c.on_ll_advertising_pdu, packet)

    def start_pump(self) -> None:
        """Start the advertising pump (needs ``pump_s``; runs until ``stop_pump``)."""
        if self.pump_s is None or self._pump_task is not None:
            return
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def stop_pump(self) -> None:
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self) -> None:
        assert self.pump_s is not None
        tick = 0
        while True:
            await asyncio.sleep(self.pump_s)
            tick += 1
            listeners = [c for c in self._centrals if self._listening(c)]
            if not listeners:
                continue
            # broadcasts (non-connectable sets: the loggers' live adverts) reach listeners from
            # their own timers at their own interval; the pump is for the connectable adverts,
            # whose timers run slow at a site
            advertising = [pdu for c in list(self.controllers) if c not in self._centrals
                           for pdu in current_advertising(c, connectable_only=True)]
            # A scanning phone's host takes at most SCAN_REPORTS_PER_S reports a second: with
            # many loggers, each is reported less often (as a phone's controller that filters
            # duplicates reports each advertiser once per scan window). Unbounded, 240 loggers
            # sent 2,400 reports a second, and the field tool's host fell so far behind that
            # its stop-scanning command timed out behind the backlog.
            every = max(self._scan_every, math.ceil(len(advertising) / (SCAN_REPORTS_PER_S * self.pump_s)))
            scan_round = tick % every == 0
            for central in listeners:
                pending = central.pending_le_connection
                scanning = bool(central.le_scan_enable)
                for pdu in advertising:
                    wanted = pending is not None and pending.peer_address == pdu.advertiser_address
                    if wanted or (scanning and scan_round):
                        central.on_ll_advertising_pdu(pdu)

    # ------------------------------------------------------------------ control PDUs

    def send_ll_control_pdu(self, sender_address: hci.Address, receiver_address: hci.Address,
                            packet: Any) -> None:
        if isinstance(packet, ll.TerminateInd) and self.meter:
            central = self._is_central_address(sender_address)
            peripheral = str(receiver_address if central else sender_address)
            if self.sessions.get(peripheral):
                s = self.sessions[peripheral][-1]
                s.closed = True
                # The phone never drops on purpose mid-transfer; a logger-side end is a link loss.
                s.dropped = not central
        if self.find_le_controller(receiver_address) is None:
            return  # the peer is gone (powered off): nothing receives it
        super().send_ll_control_pdu(sender_address, receiver_address, packet)

    def lose_host(self, controller: Controller) -> None:
        """The host of ``controller`` vanished (its process ended): every LE link it had
        ends by supervision timeout at the peer, and the controller leaves the air."""
        timeout = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
        for peer_address, conn in list(controller.le_connections.items()):
            if self.meter and self.sessions.get(str(peer_address)):
                s = self.sessions[str(peer_address)][-1]
                s.closed = s.dropped = True
            peer = self.find_le_controller(peer_address)
            if peer is not None:
                peer.on_ll_control_pdu(conn.self_address, ll.TerminateInd(timeout))
            del controller.le_connections[peer_address]
        controller.pending_le_connection = None
        controller.le_scan_enable = False
        if controller in self.controllers:
            self.remove_controller(controller)


class HciPort:
    """Virtual controllers on ``air`` whose hosts connect over TCP (HCI over a byte stream,
    H4 framing, as ``bumble.transport``'s ``tcp-client:HOST:PORT`` speaks it).

    Each accepted connection gets its own controller, marked as a central (a phone's
    Bluetooth chip); when the connection closes, ``Air.lose_host`` ends its links.
    ``serve(host, port)`` binds (``OSError`` if the port is taken).
    """

    def __init__(self, air: Air, *, name: str = "phone") -> None:
        self.air = air
        self.name = name
        self.server: asyncio.Server | None = None
        self.controllers: set[Controller] = set()
        self._count = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def serve(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, host, port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for c in list(self.controllers):
            self.air.lose_host(c)
        self.controllers.clear()

    def _protocol(self) -> asyncio.Protocol:
        port = self

        class _Source(StreamPacketSource):
            controller: Controller | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.WriteTransport)
                port._count += 1
                sink = StreamPacketSink(transport)
                self.controller = new_controller(f"{port.name}-{port._count}", port.air,
                                                 host_source=self, host_sink=sink)
                port.air.add_central(self.controller)
                port.controllers.add(self.controller)
                log.info("HCI host %s connected as %s", transport.get_extra_info("peername"),
                         self.controller.name)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.controller is not None:
                    port.controllers.discard(self.controller)
                    port.air.lose_host(self.controller)
                    log.info("HCI host of %s gone", self.controller.name)
                    self.controller = None
                self.on_transport_lost()

        return _Source()
