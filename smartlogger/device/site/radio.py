"""The site's BLE side: its air, the loggers' GATT servers, and the port phones connect to.

Owns the site's radio medium (``compat.bumble.Air`` with the advertising pump), one
``LoggerPeripheral`` (``device.gatt``) per logger on it, and the HCI port
(``compat.bumble.HciPort``): a field tool's process connects over TCP and gets a virtual
Bluetooth controller of its own on this air, which its Bumble host drives over HCI, as a
phone's OS drives its Bluetooth chip. So the loggers, the air and the phone's controller
live here; the phone's host stack, bleak and the pull logic live in the field tool's
process (docs/SIMULATOR.md: "How the processes are linked").

A logger is on the air while it is powered and in range; it leaves it (its connections
drop) when it loses power or reboots, and its link faults set the drop chance of its
connections. Extending it (live advertisements during a discharge, for instance) starts
at ``SiteRadio.refresh``, where a logger's radio state follows its slot.

Does not own the GATT service or the transfer protocol (``device.gatt``).
"""

from __future__ import annotations

import asyncio
import logging
import random

from smartlogger.compat.bumble import Air, HciPort
from smartlogger.device.gatt import LoggerPeripheral
from smartlogger.device.site.state import SiteError
from smartlogger.device.site.world import WEAK_LINK_DROP_CHANCE, Slot, World
from smartlogger.logfile.evidence import simulated_credentials
from smartlogger.protocol import ble as p
from smartlogger.protocol import live

log = logging.getLogger(__name__)

#: The air delivers advertising to listeners this often (the loggers' advertising interval
#: as a listener experiences it; docs/BLE.md).
PUMP_S = 0.02
#: The loggers' own advertising timers at a site: slow, the pump does the listening part.
SITE_ADVERTISING_TIMER_MS = 1000.0


class SiteRadio:
    """The site's loggers on its air, reachable over the HCI port (``start``/``stop``)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.air = Air(meter=False, pump_s=PUMP_S)
        self.port = HciPort(self.air)
        self.peripherals = [self._peripheral(slot) for slot in world.slots]
        self._on_air: list[object | None] = [None] * len(world.slots)  # the firmware served
        self._pending: set[asyncio.Task[None]] = set()
        self._live_tasks: set[asyncio.Future[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def _peripheral(self, slot: Slot) -> LoggerPeripheral:
        world = self.world

        def clock_ms() -> int:
            with slot.lock:
                if slot.logger is not None:
                    return slot.logger.now_ms()
                return slot.rtc.device_ms(world.t_s)

        def config_seq() -> int:
            with slot.lock:
                return slot.logger.config_seq if slot.logger is not None else 0

        def live() -> p.LiveValues | None:
            with slot.lock:
                if slot.logger is None:
                    return None
                st = slot.logger.status()
            if st.last_sample_ms is None or st.last_mv is None or st.last_dc is None:
                return None
            return p.LiveValues(st.last_sample_ms, st.last_mv, st.last_dc)

        def flush() -> None:
            with slot.lock:
                if slot.logger is not None:
                    slot.logger.flush()

        def placement() -> tuple[int, str, str]:
            # INFO's placement tail: what the configuration in force says (as on hardware).
            with slot.lock:
                if slot.logger is None:
                    return 0, "", ""
                c = slot.logger.config
            return c.block_position, c.block_label, c.test_id

        per = LoggerPeripheral(slot.identity, slot.store, clock_ms=clock_ms, config_seq=config_seq,
                               placement=placement, live=live, credentials=simulated_credentials(slot.identity),
                               lock=slot.lock, flush=flush)
        per.faults.rng = random.Random(slot.seed)  # each logger's link drops its own way
        return per

    @property
    def transport(self) -> str:
        """The Bumble HCI transport moniker a field tool opens to reach this radio."""
        return f"tcp-client:127.0.0.1:{self.port.port}"

    async def start(self, *, port: int = 0) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await self.port.serve("127.0.0.1", port)
        except OSError as err:
            raise SiteError("port_in_use", f"BLE port 127.0.0.1:{port} (tcp) is not available: "
                                           f"{err.strerror}; choose another with --ble-port") from None
        self.air.start_pump()
        for slot in self.world.slots:
            await self.refresh(slot)
        self.world.listener = self

    async def stop(self) -> None:
        self.world.listener = None
        for task in list(self._pending):
            task.cancel()
        if self._live_tasks:
            await asyncio.gather(*self._live_tasks, return_exceptions=True)
        await self.port.close()
        for per in self.peripherals:
            await per.detach()
        await self.air.stop_pump()

    def logger_changed(self, slot: Slot) -> None:
        """A logger's power or link changed (called on the event loop by ``World.fault``)."""
        assert self.loop is not None
        task = self.loop.create_task(self.refresh(slot))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def update_live(self) -> None:
        """Every logger on the air broadcasts the live advert of its newest sample
        (``device.beacon``; a logger without a kit key broadcasts none). Called after each
        step of virtual time.

        The HCI commands run to completion even if the caller is cancelled (a site that
        stops in the middle of a step): a command cancelled between request and answer
        would leave the logger's host waiting for an answer that is never matched, and its
        radio could then never be switched off. ``stop`` waits for them."""
        task = asyncio.ensure_future(self._update_live())
        self._live_tasks.add(task)
        task.add_done_callback(self._live_tasks.discard)
        await asyncio.shield(task)

    async def _update_live(self) -> None:
        for slot in self.world.slots:
            per = self.peripherals[slot.index]
            if per.device is None:
                continue
            await self._set_live(slot, per)

    async def _set_live(self, slot: Slot, per: LoggerPeripheral) -> None:
        """The logger's live broadcast at its own interval (the air does not pump broadcasts)."""
        with slot.lock:
            logger = slot.logger
            adv = logger.live_advert() if logger is not None else None
            interval = logger.live_interval_ms() if logger is not None else 0
        await per.set_live_advertising(None if adv is None else live.advertising_data(adv),
                                       interval_ms=float(interval))

    async def refresh(self, slot: Slot) -> None:
        """Make the logger's radio follow its slot: on the air while powered and in range,
        off it otherwise; a rebooted logger drops its connections and advertises anew."""
        per = self.peripherals[slot.index]
        want = slot.logger is not None and slot.link != "out_of_range"
        rebooted = self._on_air[slot.index] is not slot.logger
        if per.device is not None and (not want or rebooted):
            await per.detach()
            self._on_air[slot.index] = None
        per.faults.drop_chance = WEAK_LINK_DROP_CHANCE if slot.link == "weak" else 0.0
        if want and per.device is None:
            await per.attach(self.air, advertising_interval_ms=SITE_ADVERTISING_TIMER_MS)
            self._on_air[slot.index] = slot.logger
            log.info("%s on the air (block %s)", slot.serial, slot.position)
        if want:
            await self._set_live(slot, per)
