"""The site process: start-up, the control exchange, virtual time, and a clean shutdown.

Owns the event loop of a running site: it takes the state directory's lock, creates or
resumes the world (recovering from a crash), opens the NFC walk and the radio, answers
the control exchange (``protocol.site``) on ``127.0.0.1``, steps virtual time (on
``advance`` as fast as the machine allows, or on its own at ``speed`` times real time),
checkpoints, and on ``stop``/SIGTERM/SIGINT pauses everything into the checkpoint and
releases the directory. Does not own what the commands do to the world (``world``).

Virtual time moves in steps (``STEP_S`` under load); before each step ``step.json`` says
how far it goes, so a crash in the middle can be recovered to a consistent state. A
checkpoint is written at the end of every command, at most every ``CHECKPOINT_S`` of wall
time during a long advance or a run at speed, within a second of an NFC tap, and at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smartlogger.device.live_string import describe_load
from smartlogger.device.load import ConstantCurrent, ConstantPower, Load
from smartlogger.device.site.radio import SiteRadio
from smartlogger.device.site.state import SiteDir, SiteError, SiteSpec, write_json_atomic
from smartlogger.device.site.walk import Walk, free_tcp_port, free_udp_port
from smartlogger.device.site.world import FAULT_KINDS, World
from smartlogger.errors import SmartLoggerError
from smartlogger.protocol import site as sp
from smartlogger.quantities import Current, parse_duration, parse_load, parse_voltage

log = logging.getLogger(__name__)

#: Virtual seconds per step under load or while charging (the loggers' fastest rate is 1 s).
STEP_S = 300.0
#: Longest step on float or at rest, virtual seconds (the battery is quiet there).
QUIET_STEP_S = 6 * 3600.0
#: Wall seconds between checkpoints during a long advance or a run at speed.
CHECKPOINT_S = 5.0
#: Loggers stepped between two looks at the network (keeps pulls and taps responsive).
LOGGERS_PER_SLICE = 16
#: Longest advance one command may ask for, virtual seconds (30 years).
MAX_ADVANCE_S = 30 * 365.25 * 86400.0
#: Wall seconds between two ticks of a site that runs at a speed.
TICK_S = 0.25

ReadyHook = Callable[[dict[str, Any]], None]


class SiteServer:
    """One running site (``run`` is the process's main coroutine)."""

    def __init__(self, sdir: SiteDir, *, create: SiteSpec | None = None, speed: float = 0.0,
                 nfc_port: int = 0, ble_port: int = 0, owner_pid: int | None = None) -> None:
        self.sdir = sdir
        self.owner_pid = owner_pid  # stop when this process is gone (the demo's own site)
        self.create_spec = create
        self.speed = speed
        self.nfc_port = nfc_port
        self.ble_port = ble_port
        self.world: World | None = None
        self.walk: Walk | None = None
        self.radio: SiteRadio | None = None
        self.token = secrets.token_hex(32)
        self.lock = asyncio.Lock()  # one command or step at a time
        self.stopping = asyncio.Event()
        self.control: asyncio.AbstractServer | None = None
        self.note: str | None = None
        self._last_checkpoint = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ life cycle

    async def run(self, on_ready: ReadyHook) -> None:
        """Start, report readiness (or raise before it), serve until stopped, shut down."""
        self.sdir.acquire_lock()
        started = False
        try:
            await self._start()
            started = True
            on_ready(self._ready_info())
            await self.stopping.wait()
        finally:
            await self._shutdown(started)

    async def _start(self) -> None:
        sdir = self.sdir
        # ports first: a port in use fails the start before any work (and before a new site
        # is made); the walk and the radio bind them for real below
        self.nfc_port = free_udp_port("127.0.0.1", self.nfc_port)
        if self.ble_port:
            free_tcp_port("127.0.0.1", self.ble_port)
        if self.create_spec is not None:
            sdir.prepare(self.create_spec)
            self.world = World.create(sdir, self.create_spec)
            self.world.checkpoint(clean=True)
        else:
            spec = sdir.read_spec()
            stale = sdir.stale_run()
            self.world, self.note = World.resume(sdir, spec)
            if stale is not None and self.note is None:
                self.note = f"a stale lock of pid {stale.pid} was cleared"
            if stale is not None:
                log.warning("the previous process (pid %s) ended without stopping", stale.pid)
            if self.note:
                log.warning("%s", self.note)
        world = self.world
        self.walk = Walk(world, port=self.nfc_port)
        self.radio = SiteRadio(world)
        await self.radio.start(port=self.ble_port)
        loop = asyncio.get_running_loop()
        self.control = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=sp.MAX_LINE)
        if self.create_spec is not None:
            sdir.write_spec(self.create_spec)  # last: only a site that started has a site.json
            log.info("site created: %s", self.create_spec.to_json())
        world.checkpoint(clean=False)  # from here on, a killed process is a crash to recover
        self.walk.start()
        run = sp.SiteRun(os.getpid(), self.walk.device, self.radio.transport,
                         self.control.sockets[0].getsockname()[1], self.token,
                         time.time_ns() // 1_000_000)
        write_json_atomic(sdir.run_file, run.to_json(), mode=0o600)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        self._tasks.append(loop.create_task(self._housekeeping()))
        if self.speed > 0:
            self._tasks.append(loop.create_task(self._tick()))
        log.info("site running: pid %s, NFC %s, BLE %s, speed %s", os.getpid(), self.walk.device,
                 self.radio.transport, self.speed or "paused")

    def _ready_info(self) -> dict[str, Any]:
        assert self.world is not None and self.walk is not None and self.radio is not None
        return {"pid": os.getpid(), "dir": str(self.sdir.path), "nfc_device": self.walk.device,
                "ble_transport": self.radio.transport, "utc_ms": self.world.utc_ms(),
                "blocks": self.world.spec.blocks, "created": self.create_spec is not None,
                "note": self.note}

    async def _shutdown(self, started: bool) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        async with self.lock:  # let a running command finish its step
            if self.control is not None:
                self.control.close()
            if self.walk is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.walk.stop)
            if self.radio is not None:
                await self.radio.stop()
            if self.world is not None:
                self.world.checkpoint(clean=True)
                self.world.close()
                with contextlib.suppress(FileNotFoundError):
                    self.sdir.step_file.unlink()
            if not started and self.create_spec is not None:
                self.sdir.discard_new()  # a site that never ran is not left half made
            with contextlib.suppress(FileNotFoundError):
                self.sdir.run_file.unlink()
            self.sdir.release_lock()
            log.info("site stopped")

    # ------------------------------------------------------------------ time

    def _step_size(self) -> float:
        assert self.world is not None
        s = self.world.string
        if s.mode in ("discharge", "charge"):
            return STEP_S
        # quiet: the longer it has been quiet, the longer the step (the firmware skips it fast)
        return max(STEP_S, min(QUIET_STEP_S, s.t_s - s.mode_since_s))

    async def _step_to(self, target: float) -> list[tuple[str, float]]:
        """One step towards ``target`` (call with ``self.lock`` held)."""
        world = self.world
        assert world is not None
        t_next = min(target, world.t_s + self._step_size())
        world.note_step(t_next)
        events = world.step(t_next)
        slots = world.powered()
        for i in range(0, len(slots), LOGGERS_PER_SLICE):
            world.run_loggers(slots[i:i + LOGGERS_PER_SLICE])
            await asyncio.sleep(0)  # a pull or a tap in between
        if self.radio is not None:
            await self.radio.update_live()  # the live adverts show the newest samples
        if time.monotonic() - self._last_checkpoint > CHECKPOINT_S:
            self._checkpoint()
        return events

    def _checkpoint(self) -> None:
        assert self.world is not None
        self.world.checkpoint()
        self._last_checkpoint = time.monotonic()

    async def _tick(self) -> None:
        """A site at speed: virtual time follows wall time, ``speed`` times faster."""
        assert self.world is not None
        last = time.monotonic()
        carry = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            async with self.lock:
                now = time.monotonic()
                carry += min(now - last, 5 * TICK_S) * self.speed  # no catching up after a pause
                last = now
                target = self.world.t_s + carry
                while self.world.t_s < target - 1e-9:
                    for kind, t in await self._step_to(target):
                        log.info("%s at site time %.0f s", kind, t)
                carry = target - self.world.t_s  # a loaded step may overshoot by < 1 s
                last = time.monotonic()

    async def _housekeeping(self) -> None:
        """Checkpoint soon after a tap changed a logger (the walk runs in its thread); stop
        when the owning process is gone."""
        while True:
            await asyncio.sleep(1.0)
            if self.world is not None and self.world.dirty:
                async with self.lock:
                    self._checkpoint()
            if self.owner_pid is not None and not _alive(self.owner_pid):
                log.warning("owner process %s is gone: stopping", self.owner_pid)
                self.stopping.set()

    # ------------------------------------------------------------------ control exchange

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not reader.at_eof():
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(sp.reply_error("bad_request", "control line too long"))
                    break
                if not line:
                    break
                try:
                    token, cmd, args = sp.parse_request(line)
                except sp.SiteProtocolError as err:
                    writer.write(sp.reply_error("bad_request", str(err)))
                    break
                if not hmac.compare_digest(token.encode(), self.token.encode()):
                    writer.write(sp.reply_error("forbidden", "wrong control token (read it from "
                                                             f"{self.sdir.run_file})"))
                    break
                writer.write(await self._dispatch(cmd, args, writer))
                await writer.drain()
                if cmd == "stop":
                    self.stopping.set()
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()

    async def _dispatch(self, cmd: str, args: dict[str, Any], writer: asyncio.StreamWriter) -> bytes:
        try:
            if cmd == "clock":
                return sp.reply_ok(self._clock())
            handler = getattr(self, f"_cmd_{cmd}")
            result = await handler(args, writer)
            return sp.reply_ok(result)
        except SiteError as err:
            return sp.reply_error(err.code, str(err))
        except SmartLoggerError as err:
            return sp.reply_error("bad_input", str(err))
        except Exception as err:  # a bug: keep the site up, say what happened
            log.exception("command %s failed", cmd)
            return sp.reply_error("internal", f"{cmd} failed: {type(err).__name__}: {err}")

    def _clock(self) -> dict[str, Any]:
        assert self.world is not None
        return {"utc_ms": self.world.utc_ms(), "t_s": self.world.t_s}

    async def _cmd_status(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        assert self.world is not None and self.walk is not None and self.radio is not None
        async with self.lock:
            out = self.world.status()
        out.update(dir=str(self.sdir.path), pid=os.getpid(), running=True, speed=self.speed,
                   nfc_device=self.walk.device, ble_transport=self.radio.transport,
                   spec=self.world.spec.to_json())
        return out

    async def _cmd_truth(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        assert self.world is not None
        async with self.lock:
            out = self.world.truth()
        out["dir"] = str(self.sdir.path)
        return out

    async def _cmd_load(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        assert self.world is not None
        text = str(args.get("load", ""))
        cutoff = args.get("cutoff")
        async with self.lock:
            if text.strip().lower() == "off":
                if cutoff is not None:
                    raise SiteError("bad_input", "--cutoff belongs to a load, not to 'off'")
                out = self.world.disconnect_load()
            else:
                load = _load(text)
                per_cell = None
                if cutoff is not None:
                    v = parse_voltage(str(cutoff), field="--cutoff", default_scope="cell")
                    per_cell = v.per_cell(self.world.spec.block_type.cells, self.world.spec.blocks)
                    _check_cutoff(per_cell, self.world)
                out = self.world.connect_load(load, cutoff_v_per_cell=per_cell)
            self._checkpoint()
            out.update(self._clock())
            return out

    async def _cmd_charger(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        assert self.world is not None
        async with self.lock:
            self.world.set_charger(bool(args.get("on")))
            self._checkpoint()
            return {"charger": self.world.string.charger, **self._clock()}

    async def _cmd_advance(self, args: dict[str, Any], writer: asyncio.StreamWriter) -> dict[str, Any]:
        world = self.world
        assert world is not None
        seconds = parse_duration(str(args.get("duration", "")), field="DURATION")
        if seconds > MAX_ADVANCE_S:
            raise SiteError("bad_input", f"{args.get('duration')!r} is more than 30 years")
        until_off = bool(args.get("until_load_off"))
        async with self.lock:
            if until_off and world.string.load is None:
                raise SiteError("no_load", "--until-load-off: no load bank is connected")
            start = world.t_s
            target = start + seconds
            events: list[dict[str, Any]] = []
            last_progress = time.monotonic()
            while world.t_s < target - 1e-9:
                for kind, t in await self._step_to(target):
                    events.append({"kind": kind, "t_s": t, "utc_ms": world.utc_ms(t)})
                    log.info("%s at site time %.0f s", kind, t)
                if until_off and world.string.load is None:
                    break
                if time.monotonic() - last_progress > 0.2:
                    writer.write(sp.progress_line(world.t_s - start, seconds))
                    await writer.drain()
                    last_progress = time.monotonic()
            self._checkpoint()
            s = world.string
            return {"advanced_s": world.t_s - start, "events": events, "mode": s.mode,
                    "load": None if s.load is None else describe_load(s.load), **self._clock()}

    async def _cmd_fault(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        assert self.world is not None
        kind = str(args.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise SiteError("no_fault", f"unknown fault {kind!r} (one of: {', '.join(FAULT_KINDS)})")
        to = args.get("to")
        async with self.lock:
            entry = self.world.fault(str(args.get("logger", "")), kind,
                                     to_position=None if to is None else int(to))
            self._checkpoint()
            return entry

    async def _cmd_walk(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        assert self.world is not None
        async with self.lock:
            self.world.set_walk(int(args.get("position", 0)))
            slot = self.world.walk_slot()
            self._checkpoint()
            return {"walk_next": self.world.walk_next,
                    "next_logger": None if slot is None else slot.serial}

    async def _cmd_stop(self, args: dict[str, Any], writer: Any) -> dict[str, Any]:
        return {"stopping": True, "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load(text: str) -> Load:
    q = parse_load(text, field="LOAD")
    if isinstance(q, Current):
        return ConstantCurrent(q.amps)
    return ConstantPower(q.watts)


def _check_cutoff(per_cell: float, world: World) -> None:
    p = world.string.model.params
    lo, hi = 0.5 * p.end_v_cell, p.float_v_cell
    if not lo <= per_cell <= hi:
        raise SiteError("bad_input", f"--cutoff {per_cell:.3f} V/cell is not an end voltage for "
                                     f"{world.spec.block_type.describe()} blocks "
                                     f"({lo:.2f}..{hi:.2f} V/cell)")


def serve(directory: Path, *, create: SiteSpec | None, speed: float, nfc_port: int, ble_port: int,
          on_ready: ReadyHook, owner_pid: int | None = None) -> None:
    """Run a site in this process until it is stopped (``asyncio.run``)."""
    server = SiteServer(SiteDir(directory), create=create, speed=speed, nfc_port=nfc_port,
                        ble_port=ble_port, owner_pid=owner_pid)
    asyncio.run(server.run(on_ready))
