"""Example logs: realistic synthetic sample data and complete example logfiles.

Owns the deterministic example data used by the tests, the benchmarks and the
example file printed in docs/LOGFILE_FORMAT.md: float-charge and discharge
voltage/temperature traces quantised to 1 mV / 0.1 C with sensor noise, and a
small signed pull of a simulated logger. Not a battery model (see
``device.battery``); just plausible numbers with the right statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from smartlogger.logfile import chain
from smartlogger.logfile.container import LogfileMetadata
from smartlogger.logfile.evidence import (
    STREAMS,
    DeviceCredentials,
    PullAttestation,
    sign_pull,
    simulated_credentials,
)
from smartlogger.logfile.format import build_logfile
from smartlogger.logfile.records import encode_record
from smartlogger.model import (
    BlockType,
    ClockSet,
    ConfigChange,
    DailySummary,
    Event,
    EventKind,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    Quantity,
    Record,
    SampleBlock,
    Side,
)

I32 = npt.NDArray[np.int32]
#: 2026-01-01T00:00:00Z in ms.
EPOCH_2026_MS = 1_767_225_600_000


def float_trace(n: int, *, seed: int = 1, float_mv: int = 13_620, noise_mv: float = 1.0) -> tuple[I32, I32]:
    """``n`` float-charge samples: a flat voltage with ADC noise and a slow daily temperature swing
    (assumes 1 sample per minute for the swing period)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    drift = 3 * np.sin(t / (60 * 24 * 365) * 2 * np.pi)  # seasonal float drift, mV
    mv = np.round(float_mv + drift + rng.normal(0, noise_mv, n)).astype(np.int32)
    dc = np.round(220 + 25 * np.sin(t / (60 * 24) * 2 * np.pi) + rng.normal(0, 0.3, n)).astype(np.int32)
    return mv, dc


def discharge_trace(n: int, *, seed: int = 2, start_mv: int = 12_700, end_mv: int = 10_500,
                    noise_mv: float = 1.5) -> tuple[I32, I32]:
    """``n`` samples of a constant-current discharge: an initial coup de fouet dip, a slow
    plateau decline and a knee into the end voltage; the block warms by ~3 C."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n)
    plateau = start_mv - 400 * x - (start_mv - end_mv - 400) * x ** 6
    dip = -120 * np.exp(-x * 200)
    mv = np.round(plateau + dip + rng.normal(0, noise_mv, n)).astype(np.int32)
    dc = np.round(230 + 30 * x + rng.normal(0, 0.3, n)).astype(np.int32)
    return mv, dc


def sample_blocks(start_ms: int, interval_ms: int, mv: I32, dc: I32, block: int) -> Iterator[SampleBlock]:
    """Split a trace into SampleBlocks of ``block`` samples."""
    for i in range(0, mv.size, block):
        yield SampleBlock.of(start_ms + i * interval_ms, interval_ms, mv[i:i + block].tolist(),
                             dc[i:i + block].tolist())


def example_identity(serial: str = "SIM-0001", *, simulated: bool = True) -> LoggerIdentity:
    return LoggerIdentity(serial, Generation.GEN2, "2.1.0", simulated=simulated)


def example_config() -> LoggerConfig:
    return LoggerConfig.default_for(BlockType.lead_acid(12), 100.0).with_changes(
        block_label="B07", block_position=7, test_id="T-2026-001")


@dataclass
class ChainedLog:
    """A minimal device log with both streams and hash chains, for examples and tests.

    ``capacity`` makes the main stream a ring of that many records.
    """

    serial: str
    capacity: int | None = None
    streams: list[list[tuple[int, bytes, Record]]] = field(default_factory=lambda: [[], []])
    next_seq: list[int] = field(default_factory=lambda: [0, 0])
    anchor: list[bytes] = field(default_factory=list)
    head: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.anchor = [chain.stream_genesis(self.serial, 0), chain.stream_genesis(self.serial, 1)]
        self.head = list(self.anchor)

    def append(self, record: Record, stream: int = 0) -> int:
        raw = encode_record(record)
        seq = self.next_seq[stream]
        self.head[stream] = chain.chain_next(self.head[stream], seq, raw)
        self.streams[stream].append((seq, raw, record))
        self.next_seq[stream] += 1
        if stream == 0 and self.capacity is not None and len(self.streams[0]) > self.capacity:
            old_seq, old_raw, _ = self.streams[0].pop(0)
            self.anchor[0] = chain.chain_next(self.anchor[0], old_seq, old_raw)
        return seq

    def oldest(self, stream: int) -> int:
        return self.streams[stream][0][0] if self.streams[stream] else self.next_seq[stream]

    def sign(self, credentials: DeviceCredentials, nonce: bytes, device_ms: int,
             phone_ms: int | None = None) -> PullAttestation:
        heads = [(self.next_seq[s], self.head[s]) for s in range(STREAMS)]
        oldest = [self.oldest(s) for s in range(STREAMS)]
        return sign_pull(credentials, heads, nonce, device_ms, oldest_seqs=oldest, phone_ms=phone_ms)

    def logfile(self, identity: LoggerIdentity, credentials: DeviceCredentials | None,
                attestations: list[PullAttestation], metadata: LogfileMetadata | None = None) -> bytes:
        streams = [[(seq, raw) for seq, raw, _ in self.streams[s]] for s in range(STREAMS)]
        anchors = [(self.oldest(s), self.anchor[s]) for s in range(STREAMS)]
        return build_logfile(identity, credentials, streams, anchors, attestations, metadata)


def example_log(serial: str = "SIM-0001", *, capacity: int | None = 12, seed: int = 1) -> ChainedLog:
    """A short capacity test: config tap, float, a 1 Hz discharge with exceedances, a clock set."""
    log = ChainedLog(serial, capacity)
    cfg = example_config()
    t0 = EPOCH_2026_MS
    log.append(Event(t0, EventKind.POWER_ON))
    log.append(ClockSet(t0 + 5_000, t0 + 7_250))
    change = ConfigChange(t0 + 7_300, cfg, 1)
    log.append(change)
    log.append(change, stream=1)
    mv, dc = float_trace(240, seed=seed)
    for b in sample_blocks(t0 + 60_000, 60_000, mv, dc, 60):
        log.append(b)
    d0 = t0 + 241 * 60_000
    log.append(Event(d0, EventKind.DISCHARGE_START, value=12_650))
    dmv, ddc = discharge_trace(1800, seed=seed + 1)
    for b in sample_blocks(d0, 1000, dmv, ddc, 300):
        log.append(b)
    low = Event(d0 + 1_700_000, EventKind.ENTER_WARNING, Quantity.VOLTAGE, Side.LOW, 10_790)
    log.append(low)
    log.append(low, stream=1)
    log.append(Event(d0 + 1_800_000, EventKind.DISCHARGE_END, value=int(dmv.min())))
    log.append(DailySummary(t0, 2040, int(mv.min()), int(mv.mean()), int(mv.max()),
                            int(dc.min()), int(dc.mean()), int(dc.max())), stream=1)
    return log


def example_pulls(serial: str = "SIM-0001", *, capacity: int | None = 12,
                  seed: int = 1) -> tuple[bytes, bytes, ChainedLog]:
    """Two pulls of one simulated logger: ``(older file, latest file, log)``."""
    ident = example_identity(serial)
    cred = simulated_credentials(ident)
    log = example_log(serial, capacity=capacity, seed=seed)
    t = EPOCH_2026_MS + 4 * 3_600_000
    first = log.sign(cred, bytes(range(16)), t, t - 2_000)
    older = log.logfile(ident, cred, [first], LogfileMetadata("B07", 7, {"site": "example"}, t))
    mv, dc = float_trace(120, seed=seed + 7)
    for b in sample_blocks(t + 60_000, 60_000, mv, dc, 60):
        log.append(b)
    second = log.sign(cred, bytes(range(16, 32)), t + 3 * 3_600_000, t + 3 * 3_600_000 - 2_100)
    latest = log.logfile(ident, cred, [first, second],
                         LogfileMetadata("B07", 7, {"site": "example"}, t + 3 * 3_600_000))
    return older, latest, log


def example_file() -> bytes:
    """The example logfile printed in docs/LOGFILE_FORMAT.md (deterministic: Ed25519 signatures are).

    One simulated logger, main stream: a power-on event, an NFC clock set and five 1 Hz samples;
    summary stream: the configuration change; one signed pull.
    """
    ident = example_identity("SIM-0001")
    cred = simulated_credentials(ident)
    log = ChainedLog(ident.serial)
    t0 = EPOCH_2026_MS
    log.append(Event(t0, EventKind.POWER_ON))
    log.append(ClockSet(t0 + 1_000, t0 + 3_500))
    cfg = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0).with_changes(
        block_label="B07", block_position=7)
    log.append(ConfigChange(t0 + 3_600, cfg, 1), stream=1)
    log.append(SampleBlock.of(t0 + 4_000, 1000, [12_731, 12_730, 12_732, 12_729, 12_729],
                              [215, 215, 216, 216, 216]))
    att = log.sign(cred, bytes.fromhex("00112233445566778899aabbccddeeff"), t0 + 9_000, t0 + 9_200)
    return log.logfile(ident, cred, [att], LogfileMetadata("B07", 7, {"site": "Plant A"}, t0 + 9_500))
