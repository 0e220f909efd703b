"""A technician's pulls of a simulated string, in process: firmware loggers that keep logging on
virtual time, pulled through the real field code (bleak on Bumble virtual controllers), with the
clock faults a real site has.

- ``pull_all(prepared, out)``: one ``ble pull --all -o out`` of every logger, the phone on the
  loggers' virtual time (``phone_offset_ms`` makes it a phone with a wrong clock);
  ``drop_after_bytes`` drops the first logger's link mid-transfer (an interrupted pull).
- ``run_to(prepared, true_s)``: every logger logs on to ``true_s`` (virtual time).
- ``reset_clock(logger, to_ms)``: the logger's clock restarts at ``to_ms`` without a record, as
  after a power loss with a flat backup cell (its open sample block is closed first, as the
  reboot does); ``tap_with_phone_at`` programs a logger from a phone whose clock reads wrong.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from smartlogger.device.firmware import Logger
from smartlogger.device.gatt import serve_loggers
from smartlogger.device.sim import PreparedTest
from smartlogger.field import ble as fb
from smartlogger.field.ble_virtual import VirtualBleakClient, VirtualBleakScanner, VirtualRadio
from smartlogger.model import LoggerConfig


def pull_all(prepared: PreparedTest, out: Path, *, full: bool = False, phone_offset_ms: int = 0,
             drop_after_bytes: int | None = None, retries: int = 4) -> fb.FleetOutcome:
    """Pull every logger of ``prepared`` into ``out`` (see module docstring)."""
    loggers = prepared.loggers
    pull_ms = prepared.start_ms + round(loggers[0].true_s * 1000) + phone_offset_ms

    async def go() -> fb.FleetOutcome:
        async with VirtualRadio() as radio:
            peripherals = await serve_loggers(radio.air, loggers)
            if drop_after_bytes is not None:
                peripherals[0].faults.drop_after_bytes = drop_after_bytes
            found = await fb.scan(10.0, backend=VirtualBleakScanner, until_count=len(loggers))
            options = fb.PullOptions(full=full, backend=VirtualBleakClient, retries=retries, backoff_s=0.0)
            return await fb.pull_many(found, out, options)

    with fb.phone_clock(lambda: pull_ms):
        return asyncio.run(go())


def run_to(prepared: PreparedTest, true_s: float) -> None:
    """Every logger logs on to virtual time ``true_s`` and closes its open sample block."""
    for lg in prepared.loggers:
        lg.run_until(true_s)
        lg.flush()


def reset_clock(logger: Logger, to_ms: int) -> None:
    """The logger's clock restarts at ``to_ms`` with no record of it (a power loss)."""
    logger.flush()
    logger.rtc.set(to_ms, logger.true_s)


def tap_with_phone_at(logger: Logger, phone_ms: int, config: LoggerConfig, seq: int = 1) -> None:
    """An NFC tap from a phone whose clock reads ``phone_ms``: the clock is set to it, then the
    configuration is applied (what ``PreparedTest.tap_all`` does with the right time)."""
    logger.set_clock(phone_ms)
    logger.apply_config(config, seq)
