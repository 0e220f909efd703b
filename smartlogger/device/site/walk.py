"""The site's NFC side: the technician's walk along the string, one tap at a time.

Owns how the site's loggers appear to an NFC reader: one ``LoggerTag`` per logger
(``device.nfc_tag``), presented on nfcpy's ``udp`` driver (``TagEmulator``) one after
another in the order of the blocks they are clipped on, starting at the world's walk
position and round again, skipping loggers that are not on a block. A presentation ends
when the reader has used the tag and turned its field off; the walk then moves on. So
``smartlogger nfc program --device udp:127.0.0.1:PORT --count N`` programs N loggers in
block order, exactly as tapping along a real string does.

The tags run in the emulator's thread. Their firmware side (``SlotHost``) reaches the
logger only under the slot's lock, and records every clock set in the site's journal, so
a tap between two checkpoints survives a crash. Does not own the tag protocol or the
firmware.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

from smartlogger.device.firmware import ConfigRejected, LoggerStatus
from smartlogger.device.nfc_tag import LoggerTag, TagEmulator
from smartlogger.device.site.state import SiteError
from smartlogger.device.site.world import Slot, World, committed_config
from smartlogger.model import LoggerConfig, LoggerIdentity
from smartlogger.protocol.live import KitKey

log = logging.getLogger(__name__)


class SlotHost:
    """The firmware as a slot's NFC tag sees it (``nfc_tag.NfcHost``), always under the lock."""

    def __init__(self, world: World, slot: Slot) -> None:
        self.world = world
        self.slot = slot

    @property
    def identity(self) -> LoggerIdentity:
        return self.slot.identity

    @property
    def config(self) -> LoggerConfig:
        with self.slot.lock:
            if self.slot.logger is not None:
                return self.slot.logger.config
            committed = committed_config(self.slot.store)
        if committed is not None:
            return committed[0]
        return LoggerConfig.default_for(self.world.spec.block_type, self.world.spec.rated_ah)

    @property
    def config_seq(self) -> int:
        with self.slot.lock:
            if self.slot.logger is not None:
                return self.slot.logger.config_seq
            committed = committed_config(self.slot.store)
        return committed[1] if committed is not None else 0

    def now_ms(self) -> int:
        with self.slot.lock:
            return self.slot.rtc.device_ms(self.world.t_s)

    def apply_config(self, config: LoggerConfig, seq: int) -> None:
        with self.slot.lock:
            logger = self.slot.logger
            if logger is None:
                raise ConfigRejected("unpowered", "the logger is not on a block (no power)")
            logger.apply_config(config, seq)
        self.world.dirty = True

    def set_clock(self, new_ms: int) -> int:
        with self.slot.lock:
            logger = self.slot.logger
            if logger is None:
                raise ConfigRejected("unpowered", "the logger is not on a block (no power)")
            old = logger.set_clock(new_ms)
            self.world.journal_rtc(self.slot, "nfc tap")
        self.world.dirty = True
        return old

    @property
    def live_key_id(self) -> int:
        with self.slot.lock:
            return self.slot.beacon.key_id

    def set_live_key(self, key: KitKey) -> None:
        with self.slot.lock:
            logger = self.slot.logger
            if logger is None:
                raise ConfigRejected("unpowered", "the logger is not on a block (no power)")
            logger.set_live_key(key)
        self.world.dirty = True

    def status(self) -> LoggerStatus | None:
        with self.slot.lock:
            return self.slot.logger.status() if self.slot.logger is not None else None


def free_udp_port(host: str, port: int) -> int:
    """Check that ``port`` (0: any) is free for UDP on ``host``; return the port to use.

    nfcpy's udp driver does not report a port it could not bind, so the site checks first.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise SiteError("port_in_use", f"NFC port {host}:{port} (udp) is not available: "
                                           f"{err.strerror}; choose another with --nfc-port") from None
        got: int = s.getsockname()[1]
        return got


def free_tcp_port(host: str, port: int) -> None:
    """Check that TCP ``port`` on ``host`` can be listened on (the BLE port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            s.bind((host, port))
        except OSError as err:
            raise SiteError("port_in_use", f"BLE port {host}:{port} (tcp) is not available: "
                                           f"{err.strerror}; choose another with --ble-port") from None


class Walk:
    """The NFC walk of a site on ``udp:HOST:PORT`` (``start`` runs it in a thread)."""

    def __init__(self, world: World, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.world = world
        self.host = host
        self.port = free_udp_port(host, port)
        self.tags = [LoggerTag(SlotHost(world, slot)) for slot in world.slots]
        for tag, slot in zip(self.tags, world.slots, strict=True):
            if slot.tag_state is not None:
                tag.restore_firmware_state(slot.tag_state)
        self._stop = threading.Event()
        self.emulator = TagEmulator(self._presentations(), host=host, port=self.port, idle_s=3.0)
        self.emulator.on_presentation_end = self._ended
        self.thread: threading.Thread | None = None

    @property
    def device(self) -> str:
        """The nfcpy moniker a reader opens to reach this walk."""
        return f"udp:{self.host}:{self.port}"

    def _presentations(self) -> Iterator[LoggerTag]:
        while not self._stop.is_set():
            slot = self.world.walk_slot()
            if slot is None:  # nobody on the string: wait for a logger to be clipped on
                self._stop.wait(0.2)
                continue
            yield self.tags[slot.index]

    def _ended(self, tag: Any) -> None:
        slot = self.world.slots[self.tags.index(tag)]
        slot.tag_state = tag.firmware_state()
        self.world.walked_past(slot)
        log.info("NFC tap of %s ended (block %s)", slot.serial, slot.position)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._serve, name=f"nfc-walk {self.device}",
                                       daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.emulator.serve()
        except Exception:  # the walk must not take the site down; the log says why
            log.exception("the NFC walk stopped")

    def stop(self) -> None:
        self._stop.set()
        self.emulator.stop()
        if self.thread is not None:
            self.thread.join(timeout=5.0)
        for tag, slot in zip(self.tags, self.world.slots, strict=True):
            slot.tag_state = tag.firmware_state()
