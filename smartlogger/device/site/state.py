"""The state directory of a virtual site: what is in it, how it is written, who holds it.

Layout of ``DIR`` (docs/SIMULATOR.md)::

    site.json       the definition, written once at creation (SiteSpec)
    state.json      the checkpoint: virtual time, battery, load, loggers' RAM, walk, faults
    step.json       the advance step in progress (how far a crash may have got)
    rtc.jsonl       journal of logger clock changes (a tap sets a clock between checkpoints)
    faults.jsonl    every fault injected, one JSON object per line
    site.log        the site process's log
    run.json        while running: how to reach it (mode 0600: it holds the control token)
    lock            flock()ed by the running process: a free lock with run.json = a crash
    flash/SERIAL.nor  each logger's NOR chip as a live image (device.flash): the blackbox

Everything is written so that a process killed at any instant leaves a state the next
start can resume: whole-file writes go to a temporary name and are renamed over the old
file; journals are appended a line at a time and a torn last line is ignored.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smartlogger.device.sim import DEFAULT_TEST_START_MS, SIM_FIRMWARE
from smartlogger.errors import ConfigError, SmartLoggerError
from smartlogger.model import BlockType, Chemistry, Generation, LoggerIdentity
from smartlogger.protocol import site as sp

SPEC_VERSION = 1
CHECKPOINT_FILE = "state.json"
STEP_FILE = "step.json"
RTC_JOURNAL = "rtc.jsonl"
FAULT_LOG = "faults.jsonl"
LOG_FILE = "site.log"
FLASH_DIR = "flash"


class SiteError(SmartLoggerError):
    """A site command cannot be done; ``code`` is a short reason for scripts."""

    exit_code = 3

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def block_type_for(block_voltage: int, chemistry: str) -> BlockType:
    """The block of a nominal voltage and chemistry (``12``, ``"vrla"`` -> 6-cell VRLA)."""
    chem = Chemistry.parse(chemistry, "chemistry")
    if chem.is_lead_acid:
        return BlockType.lead_acid(block_voltage, vented=chem is Chemistry.FLOODED)
    cells = max(1, round(block_voltage * 1000 / chem.cell_nominal_mv))
    return BlockType(chem, cells)


@dataclass(frozen=True)
class SiteSpec:
    """What a site is: its string and its kit. Fixed when the site is created."""

    blocks: int = 24
    weak: int = 2
    seed: int = 1
    block_voltage: int = 12
    chemistry: str = "vrla"
    rated_ah: float = 100.0
    ambient_c: float = 25.0
    serial_prefix: str = "SIM"
    epoch_ms: int = DEFAULT_TEST_START_MS  # virtual UTC at site time 0

    def validate(self) -> None:
        if not 1 <= self.blocks <= 1000:
            raise ConfigError("--blocks", f"{self.blocks} blocks is outside 1..1000")
        if not 0 <= self.weak <= self.blocks:
            raise ConfigError("--weak", f"{self.weak} weak blocks in a string of {self.blocks}")
        if not (math.isfinite(self.rated_ah) and 0.1 <= self.rated_ah <= 20000):
            raise ConfigError("--rated-ah", f"{self.rated_ah!r} Ah is outside 0.1..20000 Ah")
        if not (math.isfinite(self.ambient_c) and -20.0 <= self.ambient_c <= 50.0):
            raise ConfigError("--ambient", f"{self.ambient_c!r} C is outside -20..50 C")
        if not (self.serial_prefix.isalnum() and 1 <= len(self.serial_prefix) <= 8):
            raise ConfigError("--serial-prefix", f"{self.serial_prefix!r} must be 1-8 letters/digits")
        _ = self.block_type  # raises ConfigError for a block that cannot exist

    @property
    def block_type(self) -> BlockType:
        return block_type_for(self.block_voltage, self.chemistry)

    def serial(self, index: int) -> str:
        return f"{self.serial_prefix}-{index + 1:04d}"

    def identity(self, index: int) -> LoggerIdentity:
        return LoggerIdentity(self.serial(index), Generation.GEN2, SIM_FIRMWARE, simulated=True)

    def logger_seed(self, index: int) -> int:
        """Seed of logger ``index``'s sensor calibration and factory clock (as ``device.sim``)."""
        return self.seed * 100_003 + index

    def to_json(self) -> dict[str, Any]:
        return {"format": sp.SITE_FORMAT, "version": SPEC_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, raw: Any, *, source: str) -> SiteSpec:
        if not isinstance(raw, dict) or raw.get("format") != sp.SITE_FORMAT:
            raise SiteError("not_a_site", f"{source} is not a site definition")
        if raw.get("version") != SPEC_VERSION:
            raise SiteError("version", f"{source}: site version {raw.get('version')!r}, this tool "
                                       f"reads version {SPEC_VERSION}")
        try:
            spec = cls(int(raw["blocks"]), int(raw["weak"]), int(raw["seed"]),
                       int(raw["block_voltage"]), str(raw["chemistry"]), float(raw["rated_ah"]),
                       float(raw["ambient_c"]), str(raw["serial_prefix"]), int(raw["epoch_ms"]))
        except (KeyError, TypeError, ValueError) as err:
            raise SiteError("not_a_site", f"{source}: missing or bad field {err}") from None
        spec.validate()
        return spec


def write_json_atomic(path: Path, obj: Any, *, sync: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``obj`` as JSON in one step (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if mode is None else mode)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one JSON line (one write: a crash leaves at most a torn last line)."""
    line = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a torn or foreign line is skipped)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


class SiteDir:
    """Paths and whole-directory operations of a site's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.site_file = self.path / sp.SITE_FILE
        self.run_file = self.path / sp.RUN_FILE
        self.lock_file = self.path / sp.LOCK_FILE
        self.checkpoint = self.path / CHECKPOINT_FILE
        self.step_file = self.path / STEP_FILE
        self.rtc_journal = self.path / RTC_JOURNAL
        self.fault_log = self.path / FAULT_LOG
        self.log_file = self.path / LOG_FILE
        self.flash_dir = self.path / FLASH_DIR
        self._lock_fd: int | None = None

    def flash_path(self, serial: str) -> Path:
        return self.flash_dir / f"{serial}.nor"

    # ------------------------------------------------------------------ what is there

    def exists(self) -> bool:
        return self.site_file.exists()

    def check_usable(self) -> None:
        """Refuse a path that is neither a site nor a place to create one."""
        if self.path.exists() and not self.path.is_dir():
            raise SiteError("not_a_site", f"{self.path} is a file, not a site directory")
        if self.path.is_dir() and not self.exists():
            # the lock and the log of a start that failed before the site was complete are ours
            ours = {sp.LOCK_FILE, LOG_FILE}
            extra = sorted(p.name for p in self.path.iterdir() if p.name not in ours)
            if extra:
                shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
                raise SiteError("not_a_site",
                                f"{self.path} is not a site (no {sp.SITE_FILE}) and is not empty "
                                f"({shown}); give a new or empty directory")

    def read_spec(self) -> SiteSpec:
        try:
            raw = json.loads(self.site_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SiteError("not_a_site", f"{self.path} is not a site (no {sp.SITE_FILE})") from None
        except (OSError, ValueError) as err:
            raise SiteError("not_a_site", f"{self.site_file} is unreadable: {err}") from None
        return SiteSpec.from_json(raw, source=str(self.site_file))

    def prepare(self, spec: SiteSpec) -> None:
        """Make the directory for a new site (``write_spec`` completes it)."""
        spec.validate()
        self.check_usable()
        self._made_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self.flash_dir.mkdir(exist_ok=True)

    def write_spec(self, spec: SiteSpec) -> None:
        write_json_atomic(self.site_file, spec.to_json(), mode=0o644)

    _made_dir = False

    def discard_new(self) -> None:
        """Remove what ``prepare`` and a failed first start made (never a complete site)."""
        if self.exists():
            return
        for path in (*self.flash_files(), self.checkpoint, self.step_file, self.rtc_journal,
                     self.fault_log, self.run_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.flash_dir.rmdir()
        if self._made_dir:
            for path in (self.lock_file, self.log_file):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(OSError):
                self.path.rmdir()

    # ------------------------------------------------------------------ the lock

    def acquire_lock(self, *, wait_s: float = 1.0) -> None:
        """Take the site's lock for this process (held until the process ends or
        ``release_lock``). ``SiteError("running")`` if another process holds it."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:  # a client's probe holds it for microseconds
                    os.close(fd)
                    raise SiteError("running", f"the site in {self.path} is already running"
                                               f"{self.pid_note()}; stop it first with: "
                                               f"smartlogger sim site stop {self.path}") from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def pid_note(self) -> str:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return f" (pid {int(json.loads(self.run_file.read_text())['pid'])})"
        return ""

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def stale_run(self) -> sp.SiteRun | None:
        """The run file a crashed process left (call while holding the lock), or None."""
        try:
            return sp.SiteRun.from_json(json.loads(self.run_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, sp.SiteProtocolError):
            return None

    # ------------------------------------------------------------------ journals

    def rtc_entries(self) -> list[dict[str, Any]]:
        return read_jsonl(self.rtc_journal)

    def faults(self) -> list[dict[str, Any]]:
        return read_jsonl(self.fault_log)

    def flash_files(self) -> Iterator[Path]:
        yield from sorted(self.flash_dir.glob("*.nor"))
