"""How a virtual site is reached: its run file and its control exchange. One definition for
the site (``device.site``) and its clients (``field.site`` and the ``sim site`` commands).

A virtual site is a process that holds simulated loggers and is reached like hardware:
NFC over nfcpy's ``udp`` driver, BLE over a Bumble HCI transport. Besides those, the site
answers a small control exchange (what the simulator's commands ask: status, load,
advance, faults, truth, stop) and publishes its virtual time, which a rehearsal uses as
the phone's clock (docs/SIMULATOR.md).

The state directory ``DIR`` of a site holds, among its own files:

- ``site.json``: the site's definition (``SITE_FILE``; its ``format`` is ``SITE_FORMAT``);
- ``run.json`` while the site runs (``RUN_FILE``, mode 0600): ``SiteRun``, how to reach it;
- ``lock``: held (``flock``) by the running site's process (``LOCK_FILE``).

The control exchange runs on a TCP connection to ``127.0.0.1:control_port``: the client
sends one request per line, a JSON object ``{"token", "cmd", "args"}`` (``token`` from the
run file: only who can read ``DIR`` can command the site); the site answers with zero or
more progress lines ``{"progress": {"done", "total"}}`` and then one reply line,
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {"code", "message"}}``.
Lines are UTF-8 and at most ``MAX_LINE`` bytes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartlogger.errors import SmartLoggerError

SITE_FILE = "site.json"
RUN_FILE = "run.json"
LOCK_FILE = "lock"
SITE_FORMAT = "smartlogger-site"
PROTOCOL = "smartlogger-site/1"
MAX_LINE = 1 << 22  # 4 MiB: a truth or status of a few hundred loggers fits many times over

#: Commands of the control exchange (``args`` per command in docs/SIMULATOR.md).
COMMANDS = frozenset({"status", "clock", "load", "charger", "advance", "fault", "walk", "truth",
                      "stop"})


class SiteProtocolError(SmartLoggerError, ValueError):
    """A run file or a control line is not what this protocol defines."""

    exit_code = 3


class SiteCommandError(SmartLoggerError):
    """The site refused or failed a command; ``code`` is the site's short reason."""

    exit_code = 3

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class SiteRun:
    """``run.json``: how to reach a running site."""

    pid: int  # the site's process
    nfc_device: str  # nfcpy reader moniker of its NFC walk, "udp:127.0.0.1:PORT"
    ble_transport: str  # Bumble HCI transport moniker of its radio, "tcp-client:127.0.0.1:PORT"
    control_port: int  # TCP port of the control exchange on 127.0.0.1
    token: str  # hex; proves a client could read the state directory
    started_ms: int  # wall clock when the process started, ms since the epoch
    protocol: str = PROTOCOL

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "nfc_device": self.nfc_device, "ble_transport": self.ble_transport,
                "control_port": self.control_port, "token": self.token,
                "started_ms": self.started_ms, "protocol": self.protocol}

    @classmethod
    def from_json(cls, raw: Any, *, source: str = RUN_FILE) -> SiteRun:
        if not isinstance(raw, dict):
            raise SiteProtocolError(f"{source}: not a JSON object")
        try:
            run = cls(int(raw["pid"]), str(raw["nfc_device"]), str(raw["ble_transport"]),
                      int(raw["control_port"]), str(raw["token"]), int(raw["started_ms"]),
                      str(raw.get("protocol", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise SiteProtocolError(f"{source}: missing or bad field {err}") from None
        if run.protocol != PROTOCOL:
            raise SiteProtocolError(f"{source}: protocol {run.protocol!r}, this tool speaks "
                                    f"{PROTOCOL!r}")
        if not 0 < run.control_port < 65536:
            raise SiteProtocolError(f"{source}: control port {run.control_port} is not a port")
        return run


def lock_is_held(directory: Path) -> bool:
    """True if a process holds ``DIR/lock``: a site is running in ``directory``.

    The probe takes a shared lock for an instant; a starting site retries its exclusive
    lock for a moment, so the two never collide.
    """
    try:
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def encode_line(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    if len(data) > MAX_LINE:
        raise SiteProtocolError(f"control line of {len(data)} bytes exceeds {MAX_LINE}")
    return data


def decode_line(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise SiteProtocolError(f"control line of {len(line)} bytes exceeds {MAX_LINE}")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError) as err:
        raise SiteProtocolError(f"control line is not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise SiteProtocolError("control line is not a JSON object")
    return obj


def request(token: str, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    if cmd not in COMMANDS:
        raise SiteProtocolError(f"unknown site command {cmd!r}")
    return encode_line({"token": token, "cmd": cmd, "args": args or {}})


def parse_request(line: bytes) -> tuple[str, str, dict[str, Any]]:
    """``(token, cmd, args)`` of a request line; ``SiteProtocolError`` if malformed."""
    obj = decode_line(line)
    token, cmd, args = obj.get("token"), obj.get("cmd"), obj.get("args", {})
    if not isinstance(token, str) or not isinstance(cmd, str) or not isinstance(args, dict):
        raise SiteProtocolError("a request needs a string token, a string cmd and an args object")
    if cmd not in COMMANDS:
        raise SiteProtocolError(f"unknown site command {cmd!r}")
    return token, cmd, args


def reply_ok(result: dict[str, Any]) -> bytes:
    return encode_line({"ok": True, "result": result})


def reply_error(code: str, message: str) -> bytes:
    return encode_line({"ok": False, "error": {"code": code, "message": message}})


def progress_line(done: float, total: float) -> bytes:
    return encode_line({"progress": {"done": done, "total": total}})


def parse_reply(line: bytes) -> tuple[str, Any]:
    """``("progress", (done, total))``, ``("ok", result)``; raises ``SiteCommandError`` for an
    error reply and ``SiteProtocolError`` for anything else."""
    obj = decode_line(line)
    if "progress" in obj:
        p = obj["progress"]
        if not isinstance(p, dict):
            raise SiteProtocolError("progress line without an object")
        return "progress", (float(p.get("done", 0)), float(p.get("total", 0)))
    if obj.get("ok") is True and isinstance(obj.get("result"), dict):
        return "ok", obj["result"]
    err = obj.get("error")
    if obj.get("ok") is False and isinstance(err, dict):
        raise SiteCommandError(str(err.get("code", "error")), str(err.get("message", "")))
    raise SiteProtocolError("control reply is neither a result, an error nor progress")
