"""Simulation orchestration: a kit of virtual loggers on a virtual string, on virtual time.

Owns the two canned scenarios the product offers (a capacity test of a string:
``simulate_string_test``; one logger's long-term float life: ``simulate_years``)
and the plain CSV/JSON writers the ``sim`` and ``device replay`` commands use
until logfiles replace them. Does not own the battery physics (``device.battery``),
the firmware (``device.firmware``) or the phone (the NFC tap is modelled here as
what it does to the logger: set the clock, apply the configuration).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from smartlogger.device import battery
from smartlogger.device.battery import StringTrace, build_string
from smartlogger.device.clock import Rtc
from smartlogger.device.firmware import Logger
from smartlogger.device.load import Load, load_from_text
from smartlogger.device.sensors import TraceSource
from smartlogger.device.store import LogStore, MemoryStore
from smartlogger.errors import SimulationError
from smartlogger.logfile import (
    LogfileMetadata,
    gen1_logfile_from_store,
    pull_logfile,
    simulated_credentials,
    write_logfile,
)
from smartlogger.model import (
    BlockType,
    Event,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    SampleBlock,
    Thresholds,
)

#: Phone time at the NFC tap that starts a simulated test: 2026-03-02T08:00:00Z (ms since epoch).
DEFAULT_TEST_START_MS = 1_772_438_400_000
#: Firmware version string of simulated generation-2 loggers.
SIM_FIRMWARE = "2.0.0-sim"

StoreFactory = Callable[[LoggerIdentity], LogStore]
Progress = Callable[[int, int], None]


@dataclass
class SimulatedTest:
    """A simulated capacity test: the loggers (with their logs) and the battery's ground truth."""

    loggers: list[Logger]
    trace: StringTrace
    start_ms: int  # phone time at the tap (true t = 0), ms since epoch
    load: str
    battery_wall_s: float
    firmware_wall_s: float

    @property
    def wall_s(self) -> float:
        return self.battery_wall_s + self.firmware_wall_s


@dataclass
class SimulatedYears:
    """One logger's long-term run and the battery's ground truth."""

    logger: Logger
    trace: StringTrace
    start_ms: int
    years: float
    battery_wall_s: float
    firmware_wall_s: float

    @property
    def wall_s(self) -> float:
        return self.battery_wall_s + self.firmware_wall_s


def sim_identity(index: int, prefix: str = "SIM") -> LoggerIdentity:
    """Identity of the ``index``-th (0-based) simulated logger of a kit: ``SIM-0001``, ..."""
    return LoggerIdentity(f"{prefix}-{index + 1:04d}", Generation.GEN2, SIM_FIRMWARE, simulated=True)


def _default_store(identity: LoggerIdentity) -> LogStore:
    return MemoryStore(serial=identity.serial)


def _tap(logger: Logger, phone_ms: int, config: LoggerConfig, seq: int) -> None:
    """What an NFC tap does to a logger: the phone sets the clock, then writes the configuration."""
    logger.set_clock(phone_ms)
    logger.apply_config(config, seq)


@dataclass
class PreparedTest:
    """A string with its loggers powered on but not yet programmed or run.

    ``configs[i]`` is the test configuration meant for logger ``i`` (what the
    technician's profile gives block ``i + 1``). Program the loggers (``tap_all``
    or over NFC), then ``run()`` the test in virtual time.
    """

    loggers: list[Logger]
    configs: list[LoggerConfig]
    trace: StringTrace
    start_ms: int
    load: str
    battery_wall_s: float

    def tap_all(self) -> None:
        """Program every logger as an NFC tap at true t = 0 would (clock, then configuration)."""
        for logger, cfg in zip(self.loggers, self.configs, strict=True):
            _tap(logger, self.start_ms, cfg, 1)

    def run(self, progress: Progress | None = None) -> SimulatedTest:
        """Run every logger through the whole trace and close its open sample block."""
        t1 = time.perf_counter()
        end_s = float(self.trace.t_s[-1])
        n = len(self.loggers)
        for i, logger in enumerate(self.loggers):
            logger.run_until(end_s)
            logger.flush()
            if progress is not None:
                progress(i + 1, n)
        return SimulatedTest(self.loggers, self.trace, self.start_ms, self.load, self.battery_wall_s,
                             time.perf_counter() - t1)


def prepare_string_test(
    n_blocks: int = 24,
    *,
    weak: int = 2,
    load: str | Load = "20A",
    ambient_c: float = 25.0,
    seed: int = 1,
    block_type: BlockType | None = None,
    rated_ah: float = 100.0,
    store_factory: StoreFactory | None = None,
    float_rate_s: int = 60,
    discharge_rate_s: int = 1,
    thresholds: Thresholds | None = None,
    end_v_per_cell: float | None = None,
    rest_before_s: float = 300.0,
    rest_after_s: float = 600.0,
    max_duration_s: float = 86400.0,
    start_ms: int = DEFAULT_TEST_START_MS,
    test_id: str = "",
    from_rest: bool = False,
    serial_prefix: str = "SIM",
) -> PreparedTest:
    """Simulate the battery and power on one logger per block (factory configuration).

    See ``simulate_string_test`` for the scenario.
    """
    bt = block_type if block_type is not None else BlockType.lead_acid(12)
    load_obj = load_from_text(load) if isinstance(load, str) else load
    t0 = time.perf_counter()
    string = build_string(n_blocks, bt, rated_ah, weak=weak, seed=seed, ambient_c=ambient_c)
    trace = string.discharge(load_obj, rest_before_s=rest_before_s, rest_after_s=rest_after_s,
                             end_v_per_cell=end_v_per_cell, max_duration_s=max_duration_s,
                             ambient_c=ambient_c, from_rest=from_rest)
    battery_wall_s = time.perf_counter() - t0
    factory = store_factory or _default_store
    th = thresholds if thresholds is not None else Thresholds.default_for(bt)
    loggers: list[Logger] = []
    configs: list[LoggerConfig] = []
    for i in range(n_blocks):
        ident = sim_identity(i, serial_prefix)
        lseed = seed * 100_003 + i
        factory_cfg = LoggerConfig.default_for(bt, rated_ah)
        loggers.append(Logger(ident, factory_cfg, store=factory(ident), rtc=Rtc.seeded(lseed),
                              seed=lseed,
                              source=TraceSource(trace.t_s, trace.block_v[i], trace.block_temp_c[i],
                                                 trace.jumps(i))))
        configs.append(LoggerConfig(bt, th, rated_ah, float_rate_s=float_rate_s,
                                    discharge_rate_s=discharge_rate_s, block_label=f"B{i + 1}",
                                    block_position=i + 1, test_id=test_id))
    load_text = load if isinstance(load, str) else type(load).__name__
    return PreparedTest(loggers, configs, trace, start_ms, load_text, battery_wall_s)


def simulate_string_test(
    n_blocks: int = 24,
    *,
    weak: int = 2,
    load: str | Load = "20A",
    ambient_c: float = 25.0,
    seed: int = 1,
    block_type: BlockType | None = None,
    rated_ah: float = 100.0,
    store_factory: StoreFactory | None = None,
    float_rate_s: int = 60,
    discharge_rate_s: int = 1,
    thresholds: Thresholds | None = None,
    end_v_per_cell: float | None = None,
    rest_before_s: float = 300.0,
    rest_after_s: float = 600.0,
    max_duration_s: float = 86400.0,
    start_ms: int = DEFAULT_TEST_START_MS,
    test_id: str = "",
    progress: Progress | None = None,
    from_rest: bool = False,
    serial_prefix: str = "SIM",
) -> SimulatedTest:
    """A capacity test of ``n_blocks`` blocks, one logger each.

    Scenario: every logger powers on (factory clock with its own offset and drift),
    is tapped at true t = 0 (clock set to the phone's time, the test configuration
    written), floats for ``rest_before_s``, the load is applied until the string
    reaches its end voltage, then rests open-circuit for ``rest_after_s``.
    ``store_factory(identity)`` gives each logger its store (default ``MemoryStore``).
    """
    prepared = prepare_string_test(
        n_blocks, weak=weak, load=load, ambient_c=ambient_c, seed=seed, block_type=block_type,
        rated_ah=rated_ah, store_factory=store_factory, float_rate_s=float_rate_s,
        discharge_rate_s=discharge_rate_s, thresholds=thresholds, end_v_per_cell=end_v_per_cell,
        rest_before_s=rest_before_s, rest_after_s=rest_after_s, max_duration_s=max_duration_s,
        start_ms=start_ms, test_id=test_id, from_rest=from_rest, serial_prefix=serial_prefix)
    prepared.tap_all()
    return prepared.run(progress)


def simulate_years(
    years: float = 10,
    *,
    log_rate_s: int = 60,
    seed: int = 1,
    store_factory: StoreFactory | None = None,
    block_type: BlockType | None = None,
    rated_ah: float = 100.0,
    ambient_c: float = 25.0,
    discharges_per_year: float = 1.0,
    discharge_rate_s: int = 1,
    dt_s: float = 60.0,
    start_ms: int = DEFAULT_TEST_START_MS,
    progress: Progress | None = None,
) -> SimulatedYears:
    """One logger on one block through ``years`` of float life with occasional discharges.

    The logger stores every ``log_rate_s`` on float and every ``discharge_rate_s``
    during the discharges it detects; progress is reported per simulated year.
    """
    if not 0 < years <= 30:
        raise SimulationError(f"{years} years is outside 0..30")
    bt = block_type if block_type is not None else BlockType.lead_acid(12)
    t0 = time.perf_counter()
    # the battery helper's long-term model; looked up at call time so a string test
    # runs even where only the discharge model is present
    trace = battery.float_years(bt, rated_ah, years=years, dt_s=dt_s, seed=seed, ambient_c=ambient_c,
                        discharges_per_year=discharges_per_year)
    t1 = time.perf_counter()
    ident = sim_identity(0)
    factory = store_factory or _default_store
    logger = Logger(ident, LoggerConfig.default_for(bt, rated_ah), store=factory(ident),
                    rtc=Rtc.seeded(seed), seed=seed,
                    source=TraceSource(trace.t_s, trace.block_v[0], trace.block_temp_c[0]))
    cfg = LoggerConfig(bt, Thresholds.default_for(bt), rated_ah, float_rate_s=log_rate_s,
                       discharge_rate_s=min(discharge_rate_s, log_rate_s), block_label="B1",
                       block_position=1)
    _tap(logger, start_ms, cfg, 1)
    end_s = float(trace.t_s[-1])
    year_s = 365.25 * 86400.0
    steps = max(1, int(np.ceil(end_s / year_s)))
    for y in range(1, steps + 1):
        logger.run_until(min(end_s, y * year_s))
        if progress is not None:
            progress(y, steps)
    logger.flush()
    t2 = time.perf_counter()
    return SimulatedYears(logger, trace, start_ms, float(years), t1 - t0, t2 - t1)


# --------------------------------------------------------------------------- plain writers


def logger_samples(logger: Logger) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All stored samples of a logger in log order: (device ms, mV, dC) arrays."""
    ts: list[npt.NDArray[np.int64]] = []
    mvs: list[npt.NDArray[np.int64]] = []
    dcs: list[npt.NDArray[np.int64]] = []
    for _, rec in logger.store.records():
        if isinstance(rec, SampleBlock):
            n = len(rec)
            ts.append(rec.start_ms + rec.interval_ms * np.arange(n, dtype=np.int64))
            mvs.append(np.frombuffer(rec.mv, dtype=np.int32).astype(np.int64))
            dcs.append(np.frombuffer(rec.dc, dtype=np.int32).astype(np.int64))
    if not ts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(ts), np.concatenate(mvs), np.concatenate(dcs)


def _iso(ms: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    return np.char.add(np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms"), "Z")


def write_logger_logfile(logger: Logger, path: Path, *, phone_ms: int | None = None,
                         test: dict[str, str] | None = None) -> Path:
    """Write the logger's whole log as a logfile, as a full pull would give it.

    Generation-2 loggers sign the pull with test-authority credentials, which are only
    ever given to SIMULATED or REPLAYED identities (they can never verify as hardware
    evidence); generation-1 loggers produce the unsigned generation-1 format.
    ``phone_ms`` is the phone's clock at the pull (a clock observation for alignment).
    """
    ident = logger.identity
    if not (ident.simulated or ident.replayed):
        raise SimulationError(f"{ident.serial}: only simulated or replayed loggers get test credentials")
    logger.flush()
    if ident.generation is Generation.GEN1:
        data = gen1_logfile_from_store(ident, logger.store)
    else:
        meta = LogfileMetadata(block_label=logger.config.block_label,
                               block_position=logger.config.block_position,
                               test=dict(test or {}), created_ms=phone_ms)
        data = pull_logfile(simulated_credentials(ident), ident, logger.store,
                            device_ms=logger.now_ms(), phone_ms=phone_ms, metadata=meta)
    write_logfile(path, data)
    return path


def write_samples_csv(logger: Logger, path: Path) -> int:
    """Write ``time_utc,voltage_v,temperature_c`` (device time, 1 mV, 0.1 C); returns the row count."""
    t, mv, dc = logger_samples(logger)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(f"# serial={logger.identity.serial} markers={'+'.join(logger.identity.markers) or 'none'}\n")
        fh.write("time_utc,voltage_v,temperature_c\n")
        chunk = 200_000  # bounded memory for 10-year logs
        for a in range(0, t.size, chunk):
            iso = _iso(t[a:a + chunk])
            lines = [f"{s},{v / 1000:.3f},{d / 10:.1f}\n"
                     for s, v, d in zip(iso.tolist(), mv[a:a + chunk].tolist(), dc[a:a + chunk].tolist(),
                                        strict=True)]
            fh.writelines(lines)
    return int(t.size)


def write_events_csv(loggers: Iterable[Logger], path: Path) -> int:
    """Write every event of every logger: ``serial,seq,time_utc,kind,quantity,side,value``."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["serial", "seq", "time_utc", "kind", "quantity", "side", "value"])
        for logger in loggers:
            for seq, rec in logger.store.records():
                if isinstance(rec, Event):
                    iso = str(_iso(np.array([rec.t_ms], dtype=np.int64))[0])
                    w.writerow([logger.identity.serial, seq, iso, rec.kind.name,
                                rec.quantity.value if rec.quantity else "",
                                rec.side.value if rec.side else "", rec.value])
                    rows += 1
    return rows


def trace_truth(trace: StringTrace, start_ms: int) -> dict[str, Any]:
    """The battery's ground truth as plain JSON-able data (true times relative to the tap)."""
    def num(x: float) -> float | None:
        return None if x is None or not np.isfinite(x) else float(x)

    return {
        "start_utc": str(_iso(np.array([start_ms], dtype=np.int64))[0]),
        "duration_s": float(trace.t_s[-1]),
        "load_on_s": num(trace.load_on_s),
        "load_off_s": num(trace.load_off_s),
        "blocks": [
            {
                "index": b.index,
                "position": b.index + 1,
                "weak": b.weak,
                "capacity_factor": b.capacity_factor,
                "resistance_mohm": b.resistance_mohm,
                "capacity_ah_rated_rate": b.capacity_ah_rated_rate,
                "time_to_end_s": b.time_to_end_s,
                "delivered_ah": b.delivered_ah,
            }
            for b in trace.truth
        ],
    }


def write_truth_json(truth: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(truth, indent=2, allow_nan=False) + "\n", encoding="utf-8")
