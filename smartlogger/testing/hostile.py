"""Hostile inputs and faults for the API's tests and benchmark: sample bombs and a private PostgreSQL.

Owns ``sample_bomb`` (a small, valid, signed logfile whose sample blocks declare a huge number of
constant samples: a width-0 bit group packs 32 samples into half a byte, so 2 MB of file decode
to 2**26 samples), and ``PrivatePostgres`` (a throwaway PostgreSQL cluster in a temporary folder,
on a free loopback port, that a test may stop and restart at will: the shared server
other sessions test against is never touched). Not a fuzzer (``benchmarks/fuzz_logfile.py``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smartlogger.logfile import chain
from smartlogger.logfile.container import LogfileMetadata
from smartlogger.logfile.evidence import simulated_credentials
from smartlogger.logfile.records import SAMPLE_HEAD, RecordType
from smartlogger.logfile.samples import MAX_BLOCK_SAMPLES, encode_samples
from smartlogger.model import ConfigChange, Event, EventKind, SampleBlock
from smartlogger.testing.logfile_examples import (
    EPOCH_2026_MS,
    ChainedLog,
    example_config,
    example_identity,
)


def sample_bomb(samples: int, *, block_samples: int = MAX_BLOCK_SAMPLES, serial: str = "SIM-BOMB",
                unreadable_tail: bool = False, interval_ms: int = 1000, mv: int = 12_700,
                discharge: int = 0) -> bytes:
    """A signed simulated logfile of ``samples`` constant samples in blocks of ``block_samples``.

    Valid in every way the upload checks (structure, CRCs, chains, signature, sample heads).
    ``unreadable_tail``: the last block keeps its head (declaring its samples) but loses its
    bit-packed channels, so only a decode of every sample before it finds the damage: the most
    work a check job can be made to do for a file it then marks unreadable. ``mv``: the block
    voltage of every sample (the default is a 12 V block on float: no discharge anywhere; below
    12.6 V the whole log is one discharge, the most an analysis can be made to look at).
    ``discharge``: that many samples, ending an hour before the last, are a capacity test's
    discharge (a step to 12.2 V, then down to 10.4 V; then 12.6 V at rest): a file at the limits
    that the analysis finds a result in (and the report is made of).
    """
    if samples < 1 or block_samples < 1:
        raise ValueError("samples and block_samples must be positive")
    ident = example_identity(serial)
    cred = simulated_credentials(ident)
    log = ChainedLog(serial)
    t0 = EPOCH_2026_MS
    log.append(Event(t0, EventKind.POWER_ON))
    # Block 1 of its string: a one-block test of it is complete (and analysed).
    log.append(ConfigChange(t0 + 1_000, example_config().with_changes(block_label="B01", block_position=1), 1))
    payloads: dict[int, bytes] = {}
    d0 = samples - discharge - 3600 if discharge else samples  # first sample of the discharge
    start, left = t0 + 2_000, samples
    while left:
        n = min(block_samples, left)
        first = samples - left
        left -= n
        if first + n <= d0 or not discharge:
            if n not in payloads:
                payloads[n] = encode_samples([mv] * n, [215] * n)
            payload = payloads[n]
        else:
            i = np.arange(first, first + n)
            v = np.full(n, mv, dtype=np.int64)
            during = (i >= d0) & (i < d0 + discharge)
            v[during] = np.round(12_200 - 1_800 * (i[during] - d0) / max(discharge - 1, 1))
            v[i >= d0 + discharge] = 12_600
            payload = encode_samples(v, np.full(n, 215))
        if unreadable_tail and not left:
            payload = payload[:5]  # codec and count only: the channels are gone
        raw = bytes([RecordType.SAMPLE_BLOCK]) + SAMPLE_HEAD.pack(start, interval_ms) + payload
        _append_raw(log, raw)
        start += n * interval_ms
    att = log.sign(cred, bytes(16), start + 1_000, start + 1_000)
    return log.logfile(ident, cred, [att], LogfileMetadata("B01", 1, {"site": "bomb"}))


def _append_raw(log: ChainedLog, raw: bytes) -> None:
    """``ChainedLog.append`` for record bytes (a record the encoder would not write, or one too
    big to hold decoded)."""
    seq = log.next_seq[0]
    log.head[0] = chain.chain_next(log.head[0], seq, raw)
    # The decoded record is only used by examples that read it back; a stand-in keeps memory flat.
    log.streams[0].append((seq, raw, SampleBlock.of(0, 1, [], [])))
    log.next_seq[0] += 1


# ----------------------------------------------------------------------------- a private PostgreSQL


def postgres_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl`` (newest installed major version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivatePostgres:
    """A throwaway cluster: ``url`` (user postgres, trust, database postgres), ``stop``/``start``."""

    bindir: Path
    datadir: Path
    port: int
    as_user: str | None  # run the server as this user (initdb and postgres refuse root)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-l", str(self.datadir / "server.log"),
                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self.datadir} -c fsync=off "
                        "-c full_page_writes=off -c max_connections=60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``mode``: "fast" (clients cut off, clean shutdown) or "immediate" (as a crash)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-m", mode, "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh cluster in a new temporary folder on a free loopback port, started; stopped and
    removed after. As root the server runs as user ``postgres`` (initdb refuses root), so the
    folder is its own (``tempfile.mkdtemp``: a pytest ``tmp_path`` is private to root).

    Raises ``FileNotFoundError`` if PostgreSQL's server binaries are not installed.
    """
    bindir = postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    as_user = "postgres" if os.geteuid() == 0 else None
    datadir = Path(tempfile.mkdtemp(prefix="sl-pg-"))
    if as_user:
        shutil.chown(datadir, as_user)
    pg = PrivatePostgres(bindir, datadir, _free_port(), as_user)
    try:
        pg._run("initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(RuntimeError):  # not started, or already stopped
            pg.stop("immediate")
        shutil.rmtree(datadir, ignore_errors=True)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll ``predicate()`` until true; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(poll)
