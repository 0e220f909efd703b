"""The field tool at a virtual site: where its loggers are reached, and the rehearsal's clock.

A virtual site (``smartlogger sim site start DIR``) is a separate process holding
simulated loggers; the field tool reaches them only as it reaches hardware: NFC through
nfcpy on the site's ``udp:HOST:PORT`` moniker, BLE through bleak on Bumble over the
site's HCI transport. This module reads where those are (``DIR/run.json``,
``protocol.site``), and answers the one question a simulation must answer for the phone:
what time it is. At a site, the phone's clock is the site's virtual clock (``SiteClient.
phone_clock_ms``), so that a tap or a pull records the time the loggers live in; with
the system clock every simulated logger would look days or months off.

It also carries the control exchange the ``sim site`` commands use (the simulator's
own knobs: load bank, virtual time, faults, truth). It never imports ``device``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smartlogger.errors import SmartLoggerError
from smartlogger.protocol import site as sp

#: Seconds to wait for the site to answer a command (advance streams progress meanwhile).
REPLY_TIMEOUT_S = 60.0


class SiteUnavailable(SmartLoggerError):
    """The directory is not a site, or its site is not running; ``state`` says which:
    ``not_a_site``, ``stopped``, ``crashed`` (stale lock: the process died without
    stopping), ``unreachable`` (running but not answering)."""

    exit_code = 3

    def __init__(self, directory: Path, state: str, message: str) -> None:
        self.directory = directory
        self.state = state
        super().__init__(message)


def is_site(directory: Path) -> bool:
    """True if ``directory`` holds a site definition (running or not)."""
    path = directory / sp.SITE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("format") == sp.SITE_FORMAT


def read_run(directory: Path) -> sp.SiteRun:
    """The running site's ``run.json``; ``SiteUnavailable`` saying why there is none."""
    directory = Path(directory)
    cmd = f"smartlogger sim site start {directory}"
    if not directory.is_dir() or not is_site(directory):
        raise SiteUnavailable(directory, "not_a_site",
                              f"{directory} is not a virtual site (no {sp.SITE_FILE}); "
                              f"create one with: {cmd}")
    path = directory / sp.RUN_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteUnavailable(directory, "stopped",
                              f"the site in {directory} is not running; start it with: {cmd}") from None
    except (OSError, ValueError) as err:
        raise SiteUnavailable(directory, "unreachable", f"{path}: unreadable: {err}") from None
    run = sp.SiteRun.from_json(raw, source=str(path))
    if not sp.lock_is_held(directory):
        raise SiteUnavailable(
            directory, "crashed",
            f"the site in {directory} is not running: its process (pid {run.pid}) ended without "
            f"stopping and left a stale lock; {cmd} recovers it")
    return run


class SiteClient:
    """A connection to a running site's control exchange (``protocol.site``)."""

    def __init__(self, directory: Path, run: sp.SiteRun, sock: socket.socket) -> None:
        self.directory = directory
        self.run = run
        self._sock = sock
        self._file = sock.makefile("rb")

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, timeout_s: float = 5.0) -> SiteClient:
        d = Path(directory)
        run = read_run(d)
        try:
            sock = socket.create_connection(("127.0.0.1", run.control_port), timeout=timeout_s)
        except OSError as err:
            raise SiteUnavailable(d, "unreachable",
                                  f"the site in {d} (pid {run.pid}) does not answer on "
                                  f"127.0.0.1:{run.control_port}: {err.strerror or err}") from None
        sock.settimeout(REPLY_TIMEOUT_S)
        return cls(d, run, sock)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> SiteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def nfc_device(self) -> str:
        return self.run.nfc_device

    @property
    def ble_transport(self) -> str:
        return self.run.ble_transport

    def request(self, cmd: str, args: dict[str, Any] | None = None, *,
                progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
        """Send one command and return its result; ``SiteCommandError`` if the site refuses."""
        try:
            self._sock.sendall(sp.request(self.run.token, cmd, args))
            while True:
                line = self._file.readline(sp.MAX_LINE + 1)
                if not line:
                    raise SiteUnavailable(self.directory, "unreachable",
                                          f"the site in {self.directory} closed the connection "
                                          f"during '{cmd}' (did it stop or crash?)")
                kind, value = sp.parse_reply(line)
                if kind == "progress":
                    if progress is not None:
                        progress(*value)
                    continue
                result: dict[str, Any] = value
                return result
        except TimeoutError:
            raise SiteUnavailable(self.directory, "unreachable",
                                  f"the site in {self.directory} did not answer '{cmd}' "
                                  f"within {REPLY_TIMEOUT_S:g} s") from None
        except OSError as err:
            raise SiteUnavailable(self.directory, "unreachable",
                                  f"lost the site in {self.directory} during '{cmd}': {err}") from None

    def stop(self, *, wait_s: float = 60.0) -> None:
        """Stop the site and wait until its process has let go of the directory."""
        pid = self.request("stop").get("pid")
        deadline = time.monotonic() + wait_s
        while sp.lock_is_held(self.directory):
            if time.monotonic() > deadline:
                raise SiteUnavailable(self.directory, "unreachable",
                                      f"the site in {self.directory} (pid {pid}) did not stop "
                                      f"within {wait_s:g} s")
            time.sleep(0.05)  # polling another process's exit

    def phone_clock_ms(self) -> int:
        """The rehearsal's phone clock: the site's virtual time, ms since the epoch."""
        return int(self.request("clock")["utc_ms"])
