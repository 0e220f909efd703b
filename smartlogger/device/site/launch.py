"""Starting a site: in the background (returns once it is reachable) or in the foreground.

Owns the checks a ``start`` makes before any process is started (a file instead of a
directory, a directory that is not a site, options that contradict an existing site, a
site that already runs), the background process (its own session, its output in
``DIR/site.log``) and the readiness report it sends back over a pipe: one JSON line,
``{"ok": true, ...}`` once the site is reachable or ``{"ok": false, "error": {...}}``
with the reason it could not start (a port in use, a damaged state directory). So
``start`` either returns a reachable site or fails with one clear line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from smartlogger.device.site.state import LOG_FILE, SiteDir, SiteError, SiteSpec
from smartlogger.protocol import site as sp

#: Wall seconds a background start may take before it counts as failed.
START_TIMEOUT_S = 120.0


def plan_start(directory: Path, options: dict[str, Any]) -> SiteSpec | None:
    """What ``start`` will do: the spec of a new site, or None to resume the existing one.

    ``options`` are the definition options the user gave explicitly (``SiteSpec`` field
    names); for an existing site they must match it. Raises ``SiteError`` otherwise.
    """
    sdir = SiteDir(directory)
    if directory.exists() and not directory.is_dir():
        raise SiteError("not_a_site", f"{directory} is a file, not a site directory")
    known = {f.name for f in fields(SiteSpec)}
    unknown = set(options) - known
    if unknown:
        raise SiteError("bad_input", f"unknown site options: {', '.join(sorted(unknown))}")
    if sdir.exists():
        spec = sdir.read_spec()
        have = asdict(spec)
        differ = [f"--{k.replace('_', '-')} {v} (the site has {have[k]})"
                  for k, v in options.items() if have[k] != v]
        if differ:
            raise SiteError("mismatch", f"{directory} is an existing site; its string is fixed when "
                                        f"it is created, so {'; '.join(differ)} cannot apply. "
                                        "Start it without those options, or use a new directory")
        if sp.lock_is_held(directory):
            raise SiteError("running", f"the site in {directory} is already running"
                                       f"{sdir.pid_note()}; stop it first with: "
                                       f"smartlogger sim site stop {directory}")
        return None
    sdir.check_usable()
    spec = SiteSpec(**options)
    spec.validate()
    return spec


def start_background(directory: Path, options: dict[str, Any], *, speed: float = 0.0,
                     nfc_port: int = 0, ble_port: int = 0, owner_pid: int | None = None,
                     timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Start the site of ``directory`` in a background process; return its readiness report
    once it is reachable. ``SiteError`` with the site's own reason if it cannot start.

    ``owner_pid``: the site stops (cleanly) once that process is gone; the demo and tests
    use it so that a site they start never outlives them.
    """
    directory = Path(directory)
    create = plan_start(directory, options)
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "smartlogger.device.site", str(directory),
            "--speed", repr(float(speed)), "--nfc-port", str(nfc_port), "--ble-port", str(ble_port)]
    if create is not None:
        args += ["--create", json.dumps(asdict(create))]
    if owner_pid is not None:
        args += ["--owner-pid", str(owner_pid)]
    r, w = os.pipe()
    args += ["--ready-fd", str(w)]
    log_path = directory / LOG_FILE
    try:
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, pass_fds=(w,),
                                    start_new_session=True)  # outlives the terminal that started it
    finally:
        os.close(w)
    try:
        report = _read_report(r, proc, timeout_s)
    finally:
        os.close(r)
    if report.get("ok") is True:
        return dict(report.get("site", {}))
    err = report.get("error") or {}
    if made and not SiteDir(directory).exists():
        _remove_failed(directory)
    raise SiteError(str(err.get("code", "failed")), str(err.get("message", "the site did not start")))


def _read_report(fd: int, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    buf = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            return {"ok": False, "error": {"code": "timeout", "message":
                    f"the site did not become reachable within {timeout_s:g} s (see its log)"}}
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # the process ended without a word: its log says why
            rc = proc.wait()
            return {"ok": False, "error": {"code": "failed", "message":
                    f"the site process exited with status {rc} before it was reachable"}}
        buf += chunk
    try:
        report: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return {"ok": False, "error": {"code": "failed", "message": "garbled readiness report"}}
    return report


def _remove_failed(directory: Path) -> None:
    """A start that never made a site leaves no directory behind (only our lock and log)."""
    for name in (sp.LOCK_FILE, LOG_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


def configure_logging(directory: Path, *, foreground: bool) -> None:
    handlers: list[logging.Handler] = []
    if foreground:
        directory.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(directory / LOG_FILE, encoding="utf-8"))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))  # the launcher points it at site.log
    logging.basicConfig(level=logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bumble").setLevel(logging.WARNING)
    logging.getLogger("nfc").setLevel(logging.WARNING)
