"""Running virtual sites from tests: the CLI in separate processes, and cleanup that never
leaves a site process behind (not a test module)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: The installed ``smartlogger`` script of this environment (the CLI as a user runs it).
SMARTLOGGER = shutil.which("smartlogger", path=str(Path(sys.executable).parent)) or "smartlogger"


def cli(*args: str, cwd: Path | None = None, check: bool = True,
        timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``smartlogger ARGS`` in a new process; with ``check`` it must exit 0."""
    proc = subprocess.run([SMARTLOGGER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"smartlogger {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def site_pid(directory: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(json.loads((directory / "run.json").read_text())["pid"])
    return None


def kill_site(directory: Path) -> None:
    """Stop the site in ``directory`` if one runs (cleanly if it answers, else SIGKILL)."""
    pid = site_pid(directory)
    if pid is None:
        return
    subprocess.run([SMARTLOGGER, "sim", "site", "stop", str(directory), "--timeout", "20"],
                   capture_output=True, timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def cleanup(*directories: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for d in directories:
            kill_site(d)


def wait_for(predicate: object, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Wait (polling) until ``predicate()`` is true."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
