"""Example inputs for the exporters: a simulated capacity test with N blocks.

Owns ``example_string_test`` and ``write_examples``: a deterministic (seeded)
discharge of a string of 12 V VRLA blocks, with a few weak blocks, and the
example workbooks built from it, so ``smartlogger export examples DIR`` (and
the benchmark) reproduce the documented workbooks with one command.

Every identity here is SIMULATED (it can never pass as evidence). The curve is
a simple empirical shape (open-circuit drop, plateau, knee), not the battery
model of ``device.battery``: the exporters need realistic-looking data of the
right size, not electrochemistry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smartlogger.export.data import write_samples
from smartlogger.export.inputs import (
    BlockOutcome,
    DailyRow,
    EvidenceRow,
    ExceedanceRow,
    LoggerSamples,
    LongtermData,
    StringTestOutcome,
)
from smartlogger.export.logger_workbook import write_logger_workbook
from smartlogger.export.longterm import daily_rows, write_longterm_workbook
from smartlogger.export.string_report import write_string_report
from smartlogger.model import (
    BlockType,
    DischargeSummary,
    Event,
    EventKind,
    Generation,
    Level,
    LoggerConfig,
    LoggerIdentity,
    Quantity,
    Side,
    Thresholds,
)

#: 2026-03-14 09:00:00 UTC, the example test start.
EXAMPLE_START_MS = 1_773_478_800_000


@dataclass
class ExampleTest:
    series: list[LoggerSamples]
    outcome: StringTestOutcome
    exceedances: list[ExceedanceRow]
    evidence: list[EvidenceRow]


def example_thresholds() -> Thresholds:
    """The field example: 12 V blocks declared empty at 10.5 V (alarm), warning at 11.0 V."""
    return Thresholds(10500, 11000, 14100, 14700, 0, 50, 350, 450)


def example_string_test(n_blocks: int = 24, *, duration_s: int = 3 * 3600, rate_s: int = 1,
                        pre_s: int = 300, seed: int = 7) -> ExampleTest:
    """A simulated constant-current test of ``n_blocks`` 12 V blocks, sampled every ``rate_s``.

    ``pre_s`` seconds of float charge precede the discharge. Blocks 3 and every
    11th are weaker (earlier knee), block 5 runs warm.
    """
    rng = np.random.default_rng(seed)
    block = BlockType.lead_acid(12)
    th = example_thresholds()
    n = (pre_s + duration_s) // rate_s + 1
    t_rel = np.arange(n, dtype=np.int64) * rate_s * 1000
    t_dis = (t_rel / 1000.0 - pre_s).clip(min=0.0)
    on = t_rel / 1000.0 >= pre_s
    series: list[LoggerSamples] = []
    blocks: list[BlockOutcome] = []
    exceed: list[ExceedanceRow] = []
    evidence: list[EvidenceRow] = []
    for i in range(n_blocks):
        pos = i + 1
        serial = f"SIM-{pos:04d}"
        health = 1.0 - 0.08 * rng.random()
        if pos == 3 or pos % 11 == 0:
            health = 0.70 + 0.08 * rng.random()
        knee_s = duration_s * health / 1.1  # the curve reaches 10.5 V at x = 1.1
        x = np.clip(t_dis / knee_s, 0.0, 1.3)
        # plateau falling slowly, then a knee as the block empties
        v = 12.75 - 0.9 * x - 1.6 * np.maximum(0.0, x - 0.82) ** 1.6 * 6.0
        v = np.where(on, v, 13.62)
        v = v + rng.normal(0.0, 0.004, n)
        mv = np.round(np.maximum(v, 9.8) * 1000).astype(np.int32)
        warm = 6.0 if pos == 5 else 0.0
        temp = 22.5 + warm + 3.0 * (t_dis / duration_s) + rng.normal(0.0, 0.05, n)
        dc = np.round(temp * 10).astype(np.int16)
        ident = LoggerIdentity(serial, Generation.GEN2, "2.1.0", simulated=True)
        cfg = LoggerConfig(block, th, 100.0, float_rate_s=60, discharge_rate_s=rate_s,
                           block_position=pos, block_label=f"R1-{pos:03d}", test_id="EXAMPLE-1")
        t_ms = EXAMPLE_START_MS + t_rel
        s = LoggerSamples(ident, cfg, t_ms, mv, dc)
        series.append(s)
        end_idx = np.flatnonzero(on & (mv <= th.v_low_alarm_mv))
        end_s = float(t_dis[end_idx[0]]) if len(end_idx) else None
        cap = 100.0 * (end_s if end_s is not None else duration_s) / (duration_s * 0.95)
        status = "alarm" if cap < 80 else "warning" if cap < 90 else "ok"
        blocks.append(BlockOutcome(pos, serial, round(cap, 1), round(100.0 * cap / 100.0, 1), end_s,
                                   int(mv.min()), int(dc.max()), status, cfg.block_label))
        for level, limit in ((Level.WARNING, th.v_low_warn_mv), (Level.ALARM, th.v_low_alarm_mv)):
            below = np.flatnonzero(on & (mv < limit))
            if len(below):
                exceed.append(ExceedanceRow(serial, Quantity.VOLTAGE, Side.LOW, level,
                                            int(t_ms[below[0]]), int(t_ms[-1]), int(mv.min()), limit, pos))
        hot = np.flatnonzero(dc > th.t_high_warn_dc)
        if len(hot):
            exceed.append(ExceedanceRow(serial, Quantity.TEMPERATURE, Side.HIGH, Level.WARNING,
                                        int(t_ms[hot[0]]), int(t_ms[hot[-1]]), int(dc.max()),
                                        th.t_high_warn_dc, pos))
        digest = hashlib.sha256(mv.tobytes() + dc.tobytes()).hexdigest()
        evidence.append(EvidenceRow(f"{serial}.slog", digest, serial, False,
                                    "SIMULATED: intact, certified by the TEST authority: not evidence",
                                    hashlib.sha256(serial.encode()).hexdigest()[:32],
                                    ident.markers, status="simulated"))
    caps = [b.capacity_pct for b in blocks if b.capacity_pct is not None]
    weakest = [b.position for b in sorted(blocks, key=lambda b: b.capacity_pct or 0.0)[:3]]
    string_cap = min(caps) if caps else None
    outcome = StringTestOutcome(
        test_id="EXAMPLE-1",
        result="PASS" if string_cap is not None and string_cap >= 80 else "FAIL",
        capacity_pct=string_cap,
        method="IEEE 450 time-adjusted: 100 % x actual time to end voltage / rated time",
        duration_s=float(duration_s),
        load="constant current 50 A (load bank)",
        temperature_correction="IEEE 450 Table 1, factor 1.000 at 25 C (electrolyte 22.5 C measured)",
        blocks=blocks,
        weakest=weakest,
        start_ms=EXAMPLE_START_MS + pre_s * 1000,
        end_v_per_cell=1.75,
        site="Example data centre, UPS A, string 1",
    )
    return ExampleTest(series, outcome, exceed, evidence)


def example_longterm(years: float = 10.0, *, rate_s: int = 60, seed: int = 3) -> LongtermData:
    """A simulated blackbox: ``years`` of float charge at ``rate_s`` with yearly discharges."""
    rng = np.random.default_rng(seed)
    n = int(years * 365.25 * 86400 / rate_s)
    t0 = EXAMPLE_START_MS - int(years * 365.25 * 86400_000)
    t = t0 + np.arange(n, dtype=np.int64) * rate_s * 1000
    day = (t - t0) / 86_400_000.0
    temp = 22.0 + 4.0 * np.sin(2 * np.pi * day / 365.25) + 1.5 * np.sin(2 * np.pi * day) \
        + rng.normal(0, 0.1, n)
    v = 13.62 - 0.00002 * day + rng.normal(0, 0.003, n)
    discharges: list[DischargeSummary] = []
    events: list[Event] = []
    for k in range(int(years)):
        d0 = int((k + 0.5) * 365.25 * 86400 / rate_s)
        d1 = min(n, d0 + int(2 * 3600 / rate_s))
        ramp = np.linspace(0.0, 1.0, d1 - d0)
        v[d0:d1] = 12.6 - 1.4 * ramp ** 3
        discharges.append(DischargeSummary(int(t[d0]), int(t[d1 - 1]), int(v[d0:d1].min() * 1000),
                                           int(90_000 - 2_000 * k)))
        events.append(Event(int(t[d0]), EventKind.DISCHARGE_START, value=int(v[d0] * 1000)))
        events.append(Event(int(t[d1 - 1]), EventKind.DISCHARGE_END, value=int(v[d0:d1].min() * 1000)))
        hot = d0 + int(200 * 86400 / rate_s)
        if hot < n:
            temp[hot:hot + int(5 * 86400 / rate_s)] += 15.0
            events.append(Event(int(t[hot]), EventKind.ENTER_WARNING, Quantity.TEMPERATURE, Side.HIGH,
                                int(temp[hot] * 10)))
            events.append(Event(int(t[min(n - 1, hot + int(5 * 86400 / rate_s))]),
                                EventKind.LEAVE_WARNING, Quantity.TEMPERATURE, Side.HIGH, 0))
    mv = np.round(v * 1000).astype(np.int32)
    dc = np.round(temp * 10).astype(np.int16)
    ident = LoggerIdentity("SIM-BB-0001", Generation.GEN2, "2.1.0", simulated=True)
    cfg = LoggerConfig(BlockType.lead_acid(12), example_thresholds(), 100.0, float_rate_s=rate_s,
                       discharge_rate_s=1, block_position=1, block_label="UPS-A-01")
    samples = LoggerSamples(ident, cfg, t, mv, dc)
    daily: list[DailyRow] = daily_rows(samples, "UTC")
    return LongtermData(ident, cfg, daily, events, discharges, samples)


def write_examples(out_dir: str | Path, *, n_blocks: int = 24, tz: str = "Europe/Berlin") -> list[Path]:
    """Write the documented example workbooks (and data files) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = example_string_test(n_blocks)
    first = test.series[2]
    paths = [
        write_logger_workbook(out / "logger_SIM-0003.xlsx", first,
                              exceedances=[e for e in test.exceedances if e.serial == first.identity.serial],
                              evidence=test.evidence[2], tz=tz),
        write_string_report(out / f"string_report_{n_blocks}.xlsx", test.outcome, test.series,
                            exceedances=test.exceedances, evidence=test.evidence, tz=tz),
    ]
    lt = example_longterm(10.0, rate_s=600)
    paths.append(write_longterm_workbook(out / "longterm_SIM-BB-0001.xlsx", lt, tz=tz))
    if lt.samples is not None:
        paths.append(write_samples(out / "longterm_SIM-BB-0001.parquet", lt.samples, tz=tz))
    return paths
