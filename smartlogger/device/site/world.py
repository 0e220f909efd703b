"""The virtual site's world: a battery string, one logger per block, and virtual time.

Owns what the site *is* between commands: the live string (``device.live_string``), the
loggers (firmware ``Logger`` on a ``BlackboxStore`` on a live flash image), where each
logger is clipped, their clocks, the load bank and charger, the NFC walk's next position,
the faults injected, the ground truth, and the checkpoint that lets all of it resume.
Does not own any transport (``walk`` and ``radio`` reach the loggers; ``server`` runs
commands) and never blocks on I/O other than its state directory.

Power, clocks and restarts (docs/SIMULATOR.md):

- A logger is powered by the block it is clipped on. Unclipped (``detach``) it is off:
  the firmware commits its open sample block (brown-out), its RAM is gone, only its
  clock keeps running on the backup cell. Clipped on again (``attach``) it boots: a
  ``POWER_ON`` event and the configuration it had committed to its log.
- ``clock-reset``: the backup cell is flat, so the clock restarts at the logger's epoch
  on the next power-up; a logger on a block gets the power interruption at once.
- A *stopped* site is paused: the checkpoint holds every logger's RAM, so ``start``
  continues exactly (no event is logged). A site *killed* (SIGKILL, a crash) is a power
  loss of every logger at once: on the next start the loggers boot at the furthest time
  the killed process may have reached (``step.json``), their flash keeps everything they
  had committed (the blackbox's power-loss guarantees; the chip is a live image file),
  and what was only in their RAM is lost, as on real hardware.

Threading: the server's event loop runs commands and steps; the NFC walk runs in a
thread and calls into the firmware through ``Slot.lock``. Every access to a slot's
logger or store takes that lock; ``topology`` guards positions and the walk.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from smartlogger.device.battery import build_string
from smartlogger.device.beacon import LiveBeacon
from smartlogger.device.blackbox import BlackboxStore
from smartlogger.device.clock import DEFAULT_EPOCH_MS, Rtc
from smartlogger.device.firmware import Logger
from smartlogger.device.flash import W25Q64, NorFlash
from smartlogger.device.live_string import BlockSignal, LiveString, describe_load
from smartlogger.device.load import Load
from smartlogger.device.sensors import Sensor
from smartlogger.device.site.state import (
    SiteDir,
    SiteError,
    SiteSpec,
    append_jsonl,
    write_json_atomic,
)
from smartlogger.errors import SimulationError
from smartlogger.model import ConfigChange, LoggerConfig, LoggerIdentity

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1

#: Fault kinds ``World.fault`` knows (docs/SIMULATOR.md).
FAULT_KINDS = ("clock-reset", "detach", "attach", "weak-link", "out-of-range", "link-ok",
               "flash-wear-out")
#: Chance that a BLE connection to a logger with a weak link drops during a transfer.
WEAK_LINK_DROP_CHANCE = 0.35


class PowerListener(Protocol):
    """Told when a logger's radio must change (the site's radio implements it)."""

    def logger_changed(self, slot: Slot) -> None: ...


@dataclass
class Slot:
    """One logger of the kit: its hardware (chip, clock, sensor seed) and where it is.

    ``logger`` is the running firmware, None while unpowered (not clipped on a block).
    ``rtc`` is the clock, which runs on its backup cell while unpowered.
    """

    index: int
    identity: LoggerIdentity
    seed: int
    flash: NorFlash
    store: BlackboxStore
    rtc: Rtc
    position: int | None  # 1-based block it is clipped on; None: detached
    last_position: int  # the block it was last clipped on
    logger: Logger | None = None
    rtc_lost: bool = False  # backup cell flat while unpowered: the clock restarts at its epoch
    link: str = "ok"  # BLE: "ok", "weak" (drops often), "out_of_range"
    tag_state: dict[str, Any] | None = None  # the NFC tag's firmware-side state (walk)
    beacon: LiveBeacon = field(default_factory=LiveBeacon)  # live-advert key store (survives power)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def serial(self) -> str:
        return self.identity.serial

    @property
    def powered(self) -> bool:
        return self.logger is not None


def committed_config(store: BlackboxStore) -> tuple[LoggerConfig, int] | None:
    """The newest configuration a logger committed to its log (summary stream) and its seq."""
    last: ConfigChange | None = None
    for _, rec in store.summary_records():
        if isinstance(rec, ConfigChange):
            last = rec
    return None if last is None else (last.config, last.seq)


class World:
    """See the module docstring. Build with ``create`` or ``resume``."""

    def __init__(self, sdir: SiteDir, spec: SiteSpec, string: LiveString, slots: list[Slot]) -> None:
        self.sdir = sdir
        self.spec = spec
        self.string = string
        self.slots = slots
        self.walk_next = 1
        self.topology = threading.RLock()
        self.listener: PowerListener | None = None
        self.discharge_loggers: list[list[str | None]] = []  # per discharge: serial on each block
        self.dirty = False  # a tap changed something since the last checkpoint

    # ------------------------------------------------------------------ time

    @property
    def t_s(self) -> float:
        return self.string.t_s

    def utc_ms(self, t_s: float | None = None) -> int:
        return self.spec.epoch_ms + round((self.t_s if t_s is None else t_s) * 1000.0)

    # ------------------------------------------------------------------ construction

    @classmethod
    def _string(cls, spec: SiteSpec) -> LiveString:
        model = build_string(spec.blocks, spec.block_type, spec.rated_ah, weak=spec.weak,
                             seed=spec.seed, ambient_c=spec.ambient_c)
        return LiveString(model, ambient_c=spec.ambient_c)

    def _sensor(self, slot_seed: int) -> Sensor:
        return Sensor.seeded(self.spec.block_type, slot_seed)

    @classmethod
    def create(cls, sdir: SiteDir, spec: SiteSpec) -> World:
        """A new site in an empty state directory: every logger clipped on its block, on float."""
        string = cls._string(spec)
        slots = []
        for i in range(spec.blocks):
            ident = spec.identity(i)
            seed = spec.logger_seed(i)
            flash = NorFlash.open_live(sdir.flash_path(ident.serial), geometry=W25Q64, seed=seed)
            store = BlackboxStore.create(ident, flash=flash)
            slots.append(Slot(i, ident, seed, flash, store, Rtc.seeded(seed), i + 1, i + 1))
        world = cls(sdir, spec, string, slots)
        for slot in slots:
            world._boot(slot)
        return world

    @classmethod
    def resume(cls, sdir: SiteDir, spec: SiteSpec) -> tuple[World, str | None]:
        """The site from its checkpoint; after a crash the loggers boot again (see the module
        docstring). Returns the world and a note about a recovery (None after a clean stop)."""
        try:
            raw = _read_json(sdir.checkpoint)
        except FileNotFoundError:
            raise SiteError("damaged", f"{sdir.path} has a site definition but no checkpoint "
                                       f"({sdir.checkpoint.name}); it cannot be resumed") from None
        if raw.get("v") != CHECKPOINT_VERSION:
            raise SiteError("damaged", f"{sdir.checkpoint}: checkpoint version {raw.get('v')!r}")
        try:
            string = LiveString.from_json(cls._string(spec).model, raw["string"],
                                          ambient_c=spec.ambient_c)
            clean = bool(raw["clean"])
            slots_raw = raw["slots"]
            if len(slots_raw) != spec.blocks:
                raise ValueError(f"{len(slots_raw)} loggers, the site has {spec.blocks}")
            slots = []
            for i, s in enumerate(slots_raw):
                ident = spec.identity(i)
                if s["serial"] != ident.serial:
                    raise ValueError(f"logger {i} is {s['serial']!r}, expected {ident.serial}")
                seed = spec.logger_seed(i)
                flash = NorFlash.open_live(sdir.flash_path(ident.serial), seed=seed)
                store = BlackboxStore.mount(flash)
                store.bind_serial(ident.serial)
                rtc = Rtc(base_ms=int(s["rtc"]["base_ms"]), drift_ppm=float(s["rtc"]["drift_ppm"]))
                pos = s["position"]
                slots.append(Slot(i, ident, seed, flash, store, rtc,
                                  None if pos is None else int(pos), int(s["last_position"]),
                                  rtc_lost=bool(s["rtc_lost"]), link=str(s["link"]),
                                  tag_state=s.get("tag"), beacon=LiveBeacon.from_json(s.get("beacon"))))
            world = cls(sdir, spec, string, slots)
            world.walk_next = int(raw["walk_next"])
            world.discharge_loggers = [list(x) for x in raw["discharge_loggers"]]
            journal_seen = int(raw["rtc_journal_lines"])
        except (KeyError, TypeError, ValueError) as err:
            raise SiteError("damaged", f"{sdir.checkpoint}: unreadable checkpoint: {err}") from None
        except SimulationError as err:
            raise SiteError("damaged", f"{sdir.checkpoint}: {err}") from None
        # clock changes after the checkpoint (a tap) are in the journal
        by_serial = {slot.serial: slot for slot in slots}
        for entry in sdir.rtc_entries()[journal_seen:]:
            slot = by_serial.get(str(entry.get("serial")))
            if slot is not None and isinstance(entry.get("base_ms"), int):
                slot.rtc.base_ms = int(entry["base_ms"])
        world._journal_lines = len(sdir.rtc_entries())
        note: str | None = None
        if clean:
            for slot, s in zip(slots, slots_raw, strict=True):
                if slot.position is not None and s.get("firmware") is not None:
                    slot.logger = Logger.resume(
                        slot.identity, s["firmware"], store=slot.store, sensor=world._sensor(slot.seed),
                        source=BlockSignal(string, slot.position - 1), seed=slot.seed,
                        beacon=slot.beacon)
                    slot.rtc = slot.logger.rtc
                elif slot.position is not None:
                    world._boot(slot)
        else:
            t_ck = string.t_s
            step = _read_json_or_none(sdir.step_file)
            to = float(step["to_s"]) if step and isinstance(step.get("to_s"), int | float) else t_ck
            if to > t_ck:
                # the killed process may have stepped this far: the world moves on to there
                string.run(to)
            for slot in slots:
                if slot.position is not None:
                    world._boot(slot)
            note = (f"recovered from a crash: the loggers lost power at site time "
                    f"{t_ck:.0f}..{string.t_s:.0f} s and booted again at {string.t_s:.0f} s; "
                    "what they had committed to flash is kept")
        return world, note

    # ------------------------------------------------------------------ checkpoint

    _journal_lines = 0

    def checkpoint(self, *, clean: bool = False) -> None:
        """Write ``state.json`` (all loggers' RAM when ``clean``: the site is being paused)."""
        slots = []
        for slot in self.slots:
            with slot.lock:
                firmware = slot.logger.snapshot() if slot.logger is not None else None
                slots.append({
                    "serial": slot.serial, "position": slot.position,
                    "last_position": slot.last_position,
                    "rtc": {"base_ms": slot.rtc.base_ms, "drift_ppm": slot.rtc.drift_ppm},
                    "rtc_lost": slot.rtc_lost, "link": slot.link, "firmware": firmware,
                    "tag": slot.tag_state, "beacon": slot.beacon.to_json()})
        string = self.string.to_json()
        raw = {"v": CHECKPOINT_VERSION, "clean": clean, "string": string,
               "walk_next": self.walk_next, "rtc_journal_lines": self._journal_lines,
               "discharge_loggers": self.discharge_loggers, "slots": slots}
        write_json_atomic(self.sdir.checkpoint, raw)
        self.dirty = False

    def note_step(self, to_s: float) -> None:
        """Before a step: how far a crash during it may get (cheap, not synced)."""
        write_json_atomic(self.sdir.step_file, {"to_s": to_s}, sync=False, mode=0o644)

    def journal_rtc(self, slot: Slot, why: str) -> None:
        append_jsonl(self.sdir.rtc_journal, {"serial": slot.serial, "base_ms": slot.rtc.base_ms,
                                             "utc_ms": self.utc_ms(), "why": why})
        self._journal_lines += 1

    def close(self) -> None:
        for slot in self.slots:
            with slot.lock:
                slot.flash.close()

    # ------------------------------------------------------------------ power

    def _boot(self, slot: Slot) -> None:
        """Power the logger up on its block at the present time (POWER_ON is logged)."""
        assert slot.position is not None
        if slot.rtc_lost:
            # the oscillator starts again with the power: the clock reads its epoch now
            slot.rtc.base_ms = DEFAULT_EPOCH_MS - math.floor(slot.rtc.oscillator_ms(self.t_s))
            slot.rtc_lost = False
            self.journal_rtc(slot, "clock lost")
        committed = committed_config(slot.store)
        config, seq = committed if committed is not None else (
            LoggerConfig.default_for(self.spec.block_type, self.spec.rated_ah), 0)
        with slot.lock:
            slot.logger = Logger(slot.identity, config, store=slot.store, rtc=slot.rtc,
                                 sensor=self._sensor(slot.seed), seed=slot.seed,
                                 source=BlockSignal(self.string, slot.position - 1),
                                 config_seq=seq, power_on_s=self.t_s, beacon=slot.beacon)

    def _power_off(self, slot: Slot) -> None:
        with slot.lock:
            if slot.logger is not None:
                slot.logger.flush()  # brown-out: the open sample block is committed
            slot.logger = None

    def _changed(self, slot: Slot) -> None:
        if self.listener is not None:
            self.listener.logger_changed(slot)

    # ------------------------------------------------------------------ stepping

    def step(self, t_to: float) -> list[tuple[str, float]]:
        """Step the battery to ``t_to`` (``run_loggers`` then brings the loggers along)."""
        return self.string.run(t_to)

    def run_loggers(self, slots: Iterable[Slot]) -> None:
        t = self.t_s
        for slot in slots:
            with slot.lock:
                if slot.logger is not None:
                    slot.logger.run_until(t)

    def powered(self) -> list[Slot]:
        return [s for s in self.slots if s.logger is not None]

    # ------------------------------------------------------------------ lookups

    def slot_at(self, position: int) -> Slot | None:
        return next((s for s in self.slots if s.position == position), None)

    def find(self, which: str) -> Slot:
        """A logger by serial (``SIM-0003``) or by block position (``3``): the logger clipped
        there, or, for a block with none, the logger that was last clipped there."""
        key = which.strip()
        for slot in self.slots:
            if slot.serial.lower() == key.lower():
                return slot
        try:
            pos = int(key)
        except ValueError:
            raise SiteError("no_logger", f"no logger {which!r} at this site (serials "
                                         f"{self.slots[0].serial}..{self.slots[-1].serial}, or a "
                                         f"block position 1..{self.spec.blocks})") from None
        if not 1 <= pos <= self.spec.blocks:
            raise SiteError("no_position", f"block {pos} does not exist: the string has "
                                           f"blocks 1..{self.spec.blocks}")
        found = self.slot_at(pos) or next(
            (s for s in self.slots if s.position is None and s.last_position == pos), None)
        if found is None:
            raise SiteError("no_logger", f"no logger is on block {pos} or was last clipped there")
        return found

    # ------------------------------------------------------------------ load bank and charger

    def connect_load(self, load: Load, *, cutoff_v_per_cell: float | None) -> dict[str, Any]:
        if self.string.load is not None:
            raise SiteError("load_on", f"a load bank is already connected "
                                       f"({describe_load(self.string.load)}); switch it off first")
        d = self.string.connect_load(load, cutoff_v_per_cell=cutoff_v_per_cell)
        self.discharge_loggers.append(
            [None if (s := self.slot_at(p)) is None else s.serial
             for p in range(1, self.spec.blocks + 1)])
        return {"load": describe_load(load), "cutoff_v_per_cell": cutoff_v_per_cell,
                "since_utc_ms": self.utc_ms(d.start_s), "charger": self.string.charger}

    def disconnect_load(self) -> dict[str, Any]:
        d = self.string.disconnect_load("manual")
        if d is None:
            return {"was_connected": False}
        return {"was_connected": True, "load_on_s": d.end_s - d.start_s if d.end_s else None}

    def set_charger(self, on: bool) -> None:
        try:
            self.string.set_charger(on)
        except SimulationError as err:
            raise SiteError("load_on", str(err)) from None

    # ------------------------------------------------------------------ faults

    def fault(self, which: str, kind: str, *, to_position: int | None = None) -> dict[str, Any]:
        """Inject fault ``kind`` into the logger ``which`` (serial or position); logged."""
        if kind not in FAULT_KINDS:
            raise SiteError("no_fault", f"unknown fault {kind!r} (one of: {', '.join(FAULT_KINDS)})")
        with self.topology:
            slot = self.find(which)
            detail: dict[str, Any] = {}
            if kind == "clock-reset":
                slot.rtc_lost = True
                if slot.position is not None:
                    self._power_off(slot)
                    self._boot(slot)  # the interruption is brief: it boots at once
                    detail["device_utc_ms"] = slot.rtc.device_ms(self.t_s)
                else:
                    detail["note"] = "the clock restarts at its epoch when the logger is clipped on"
            elif kind == "detach":
                if slot.position is None:
                    raise SiteError("detached", f"{slot.serial} is not clipped on a block")
                detail["from_position"] = slot.position
                self._power_off(slot)
                slot.last_position = slot.position
                slot.position = None
            elif kind == "attach":
                if slot.position is not None:
                    raise SiteError("attached", f"{slot.serial} is already clipped on block "
                                                f"{slot.position}; detach it first")
                target = slot.last_position if to_position is None else to_position
                if not 1 <= target <= self.spec.blocks:
                    raise SiteError("no_position", f"block {target} does not exist: the string has "
                                                   f"blocks 1..{self.spec.blocks}")
                other = self.slot_at(target)
                if other is not None:
                    raise SiteError("occupied", f"block {target} already carries {other.serial}; "
                                                "detach it first")
                slot.position = slot.last_position = target
                self._boot(slot)
                detail["position"] = target
            elif kind == "weak-link":
                slot.link = "weak"
            elif kind == "out-of-range":
                slot.link = "out_of_range"
            elif kind == "link-ok":
                slot.link = "ok"
            elif kind == "flash-wear-out":
                with slot.lock:
                    sector = slot.store.head_sector(0)
                    if sector is None:
                        raise SiteError("empty", f"{slot.serial} has no records on flash yet")
                    slot.flash.mark_bad(sector)
                detail["sector"] = sector
        entry = {"n": len(self.sdir.faults()) + 1, "utc_ms": self.utc_ms(), "t_s": self.t_s,
                 "kind": kind, "serial": slot.serial,
                 "position": slot.position if slot.position is not None else slot.last_position,
                 **detail}
        append_jsonl(self.sdir.fault_log, entry)
        log.info("fault %s", entry)
        self._changed(slot)
        return entry

    # ------------------------------------------------------------------ the NFC walk

    def set_walk(self, position: int) -> None:
        if not 1 <= position <= self.spec.blocks:
            raise SiteError("no_position", f"block {position} does not exist: the string has "
                                           f"blocks 1..{self.spec.blocks}")
        with self.topology:
            self.walk_next = position
            self.dirty = True

    def walk_slot(self) -> Slot | None:
        """The logger the next NFC tap reaches: the first clipped-on logger at or after the
        walk's position, along the string and round again."""
        with self.topology:
            n = self.spec.blocks
            for k in range(n):
                pos = (self.walk_next - 1 + k) % n + 1
                slot = self.slot_at(pos)
                if slot is not None:
                    return slot
            return None

    def walked_past(self, slot: Slot) -> None:
        """A tap of ``slot`` ended: the technician moves on to the next block."""
        with self.topology:
            if slot.position is not None:
                self.walk_next = slot.position % self.spec.blocks + 1
            self.dirty = True

    # ------------------------------------------------------------------ reports

    def status(self) -> dict[str, Any]:
        s = self.string
        loggers = []
        for slot in self.slots:
            with slot.lock:
                row: dict[str, Any] = {"serial": slot.serial, "position": slot.position,
                                       "last_position": slot.last_position, "link": slot.link}
                if slot.logger is None:
                    row.update(state="detached", device_utc_ms=None, clock_offset_ms=None)
                else:
                    st = slot.logger.status()
                    row.update(state=st.detector if st.mode != "discharge" else "discharge",
                               device_utc_ms=st.device_ms,
                               clock_offset_ms=st.device_ms - self.utc_ms(),
                               config_seq=st.config_seq, test_id=slot.logger.config.test_id,
                               block_mv=st.last_mv)
                row["records"] = slot.store.next_seq
                row["bad_sectors"] = sorted(slot.flash.bad_sectors)
            loggers.append(row)
        d = s.active
        return {
            "t_s": round(self.t_s, 3), "utc_ms": self.utc_ms(), "mode": s.mode,
            "load": None if s.load is None else {
                "load": describe_load(s.load),
                "cutoff_v_per_cell": d.cutoff_v_per_cell if d else None,
                "since_utc_ms": self.utc_ms(d.start_s) if d else None},
            "charger": s.charger, "string_v": round(s.string_voltage(), 3),
            "current_a": round(s.current_a, 3), "walk_next": self.walk_next,
            "blocks": self.spec.blocks, "loggers": loggers, "discharges": len(s.discharges),
            "faults": len(self.sdir.faults()),
        }

    def truth(self) -> dict[str, Any]:
        """The ground truth an analysis of the pulled logs should find (docs/SIMULATOR.md)."""
        s = self.string
        model = s.model
        blocks = []
        for i, b in enumerate(model.blocks):
            slot = self.slot_at(i + 1)
            blocks.append({"position": i + 1, "serial": slot.serial if slot else None,
                           "weak": b.weak, "capacity_factor": b.capacity_factor,
                           "capacity_ah_rated_rate": model.rated_ah * b.capacity_factor,
                           "resistance_mohm": model.resistance_mohm(i)})
        discharges = []
        for k, d in enumerate(s.discharges):
            caps = s.capacity_at_test_rate(d)
            serials = self.discharge_loggers[k] if k < len(self.discharge_loggers) else []
            end_s = d.end_s
            rows = []
            on = d.steps[0] if d.steps else None
            for i in range(self.spec.blocks):
                rows.append({
                    "position": i + 1, "serial": serials[i] if i < len(serials) else None,
                    "delivered_ah": d.block_delivered_ah[i],
                    "time_to_end_s": d.block_end_s[i],
                    "reached_end_voltage": d.block_end_s[i] is not None,
                    "capacity_ah_test_rate": caps[i],
                    "resistance_mohm": model.resistance_mohm(i),
                    # what the load-on step sees: the DC resistance at the block's temperature
                    "step_resistance_mohm": None if on is None else on["resistance_mohm"][i]})
            discharges.append({
                "start_s": d.start_s, "end_s": end_s,
                "start_utc_ms": self.utc_ms(d.start_s),
                "end_utc_ms": None if end_s is None else self.utc_ms(end_s),
                "duration_s": None if end_s is None else end_s - d.start_s,
                "load": describe_load_json(d.load), "mean_current_a": d.mean_current_a,
                "cutoff_v_per_cell": d.cutoff_v_per_cell, "end_v_per_cell": d.end_v_per_cell,
                "end_reason": d.end_reason, "delivered_ah": d.delivered_ah,
                "load_steps": [{"t_s": st["t_s"], "utc_ms": self.utc_ms(st["t_s"]),
                                "current_before_a": st["current_before_a"],
                                "current_after_a": st["current_after_a"]} for st in d.steps],
                "blocks": rows})
        return {"t_s": self.t_s, "utc_ms": self.utc_ms(), "blocks": blocks,
                "block_type": self.spec.block_type.describe(), "rated_ah": model.rated_ah,
                "rated_hours": model.rated_hours, "ambient_c": self.spec.ambient_c,
                "discharges": discharges, "test": discharges[-1] if discharges else None,
                "markers": ["SIMULATED"]}


def describe_load_json(raw: dict[str, Any]) -> str:
    if raw.get("kind") == "current":
        return f"{float(raw['amps']):g}A"
    if raw.get("kind") == "power":
        return f"{float(raw['watts']):g}W"
    return str(raw.get("kind"))


def _read_json(path: Path) -> dict[str, Any]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a JSON object")
    return raw


def _read_json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return _read_json(path)
    except (OSError, ValueError):
        return None
