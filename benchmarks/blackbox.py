"""Blackbox benchmark: flash bytes per sample, power-loss sweeps, wear, throughput.

Prints one JSON object. ``--quick`` runs 1 simulated year and short sweeps.

    python benchmarks/blackbox.py            # full: 10 years, >= 20,000-operation sweep
    python benchmarks/blackbox.py --quick

Sample data comes from the firmware and battery models (``device.sim``): a
10-year float life at a 1-minute rate and a 10-hour 1 Hz capacity test. There is
no recorded real trace on this machine; the "replay" figure runs the simulated
discharge, written to CSV with 1 mV / 0.1 C quantisation and added sensor
noise, through ``device.replay`` (the path a real trace takes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from smartlogger.device.blackbox import REGION_MAIN, BlackboxLayout, BlackboxStore
from smartlogger.device.flash import W25Q64, FlashGeometry, NorFlash
from smartlogger.device.replay import TraceFormat, read_trace, replay_trace
from smartlogger.device.ring import Ring
from smartlogger.device.sim import sim_identity, simulate_string_test, simulate_years
from smartlogger.model import (
    BlockType,
    SampleBlock,
)
from smartlogger.testing.powerloss import SweepResult, power_loss_sweep, sweep_workload

T0 = 1_767_225_600_000


def _samples(store: BlackboxStore) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int]:
    mv: list[np.ndarray[Any, Any]] = []
    dc: list[np.ndarray[Any, Any]] = []
    for _seq, rec in store.records():
        if isinstance(rec, SampleBlock):
            mv.append(np.frombuffer(rec.mv, dtype=np.int32))
            dc.append(np.frombuffer(rec.dc, dtype=np.int32))
    n = sum(len(a) for a in mv)
    return (np.concatenate(mv) if mv else np.zeros(0, np.int32),
            np.concatenate(dc) if dc else np.zeros(0, np.int32), n)


def _entropy_bytes_per_sample(store: BlackboxStore) -> float:
    """Order-0 entropy of the per-block first differences of mV and dC, bytes per sample."""
    bits = 0.0
    n = 0
    counts_v: Counter[int] = Counter()
    counts_t: Counter[int] = Counter()
    for _seq, rec in store.records():
        if isinstance(rec, SampleBlock) and len(rec) > 1:
            counts_v.update(np.diff(np.frombuffer(rec.mv, dtype=np.int32)).tolist())
            counts_t.update(np.diff(np.frombuffer(rec.dc, dtype=np.int32)).tolist())
            n += len(rec) - 1
    for counts in (counts_v, counts_t):
        p = np.array(list(counts.values()), dtype=float) / n
        bits += float(-(p * np.log2(p)).sum())
    return bits / 8


def float_10y(years: float) -> dict[str, Any]:
    t = time.perf_counter()
    run = simulate_years(years, store_factory=lambda ident: BlackboxStore.create(ident),
                         discharges_per_year=0)
    store = run.logger.store
    assert isinstance(store, BlackboxStore)
    wall = time.perf_counter() - t
    _mv, _dc, n = _samples(store)
    tot = store.totals()
    counts = store.region_erase_counts(0)
    used = counts[counts > 0]
    payload = sum(len(data) for _seq, data in store.raw_records(0))
    return {
        "store": store,
        "samples": n,
        "bytes_per_sample": tot["main"]["used_bytes"] / n,
        "record_bytes_per_sample": payload / n,
        "main_used_bytes": tot["main"]["used_bytes"],
        "main_capacity_bytes": tot["main"]["capacity_bytes"],
        "summary_used_bytes": tot["summary"]["used_bytes"],
        "summary_records": tot["summary"]["records"],
        "wear_ratio_used_sectors": float(used.max() / used.min()) if used.size else None,
        "sectors_used": int(used.size),
        "sectors": int(counts.size),
        "device_busy_s": tot["device_busy_s"],
        "wall_s": wall,
    }


def discharge_10h() -> dict[str, Any]:
    # a 100 Ah 12 V block at 10 A (C10) runs about 10 h to its end voltage
    test = simulate_string_test(1, weak=0, load="10A", store_factory=lambda i: BlackboxStore.create(i),
                                rest_before_s=300, rest_after_s=600)
    store = test.loggers[0].store
    assert isinstance(store, BlackboxStore)
    _mv, _dc, n = _samples(store)
    used = store.totals()["main"]["used_bytes"]
    return {"store": store, "samples": n, "bytes": used, "bytes_per_sample": used / n,
            "hours": float(test.trace.t_s[-1]) / 3600}


def replay(discharge_store: BlackboxStore) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    rows = []
    for _seq, rec in discharge_store.records():
        if isinstance(rec, SampleBlock):
            for i in range(len(rec)):
                rows.append((rec.start_ms + i * rec.interval_ms, rec.mv[i], rec.dc[i]))
    t0 = rows[0][0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.csv"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("time,voltage,temperature\n")
            noise_v = rng.normal(0, 1.5, len(rows))  # mV, sensor noise on top of the model
            noise_t = rng.normal(0, 0.4, len(rows))  # dC
            for (t, mv, dc), nv, nt in zip(rows, noise_v, noise_t, strict=True):
                fh.write(f"{(t - t0) / 1000:.3f},{(mv + nv) / 1000:.3f},{(dc + nt) / 10:.1f}\n")
        trace = read_trace(path, TraceFormat(temperature_column="temperature"))
    store = BlackboxStore.create(sim_identity(90))
    replay_trace(trace, block_type=BlockType.lead_acid(12), store=store)
    _mv, _dc, n = _samples(store)
    used = store.totals()["main"]["used_bytes"]
    return {"bytes_per_sample": used / n, "entropy": _entropy_bytes_per_sample(store), "samples": n}


def throughput(n_blocks: int) -> dict[str, float]:
    rng = np.random.default_rng(3)
    blocks = []
    t = T0
    for _ in range(n_blocks):
        mv = 13_560 + np.cumsum(rng.integers(-2, 3, 256))
        dc = 231 + rng.integers(-1, 2, 256)
        blocks.append(SampleBlock(t, 60_000, array("i", mv.astype(np.int32).tobytes()),
                                  array("i", dc.astype(np.int32).tobytes())))
        t += 256 * 60_000
    store = BlackboxStore.create(sim_identity(91))
    a = time.perf_counter()
    for b in blocks:
        store.append(b)
    append_s = time.perf_counter() - a
    a = time.perf_counter()
    count = sum(1 for _ in store.records())
    read_s = time.perf_counter() - a
    a = time.perf_counter()
    BlackboxStore.mount(store.flash)
    mount_s = time.perf_counter() - a
    return {"append_records_per_s": n_blocks / append_s, "read_records_per_s": count / read_s,
            "mount_s": mount_s, "device_busy_ms_per_record": store.flash.busy_s / n_blocks * 1000}


def wear_wrapping(wraps: int) -> dict[str, Any]:
    """Erase-count spread of the W25Q64 main region after the ring wrapped ``wraps`` times.

    Opaque 200-byte entries (a 256-sample float block is ~215 bytes on flash)
    through ``Ring`` directly, so many wraps take seconds, not hours.
    """
    flash = NorFlash(W25Q64)
    layout = BlackboxLayout.for_geometry(W25Q64)
    ring = Ring(flash, *layout.main, region=REGION_MAIN)
    ring.mount()
    payload = bytes(range(200))
    first, n = layout.main
    t = time.perf_counter()
    while int(flash.erase_counts[first:first + n].min()) < wraps:
        for _ in range(1000):
            ring.append(payload, anchor=b"")
    counts = flash.erase_counts[first:first + n]
    return {"wear_ratio_wrapping": float(counts.max() / counts.min()),
            "wear_wraps": int(counts.min()), "wear_wrapping_wall_s": round(time.perf_counter() - t, 2)}


def powerloss(quick: bool) -> dict[str, Any]:
    geom = FlashGeometry(size=16 * 4096)  # meta 2, summary 2, main 12 sectors: wraps often
    ident = sim_identity(92)
    runs: dict[str, SweepResult] = {}
    t = time.perf_counter()
    runs["linear"] = power_loss_sweep(sweep_workload(800 if quick else 5600, seed=1), ident,
                                      geometry=geom, seed=1)
    long_steps = sweep_workload(4000 if quick else 40000, seed=2, with_reset=False)
    log_points = {int(x) for x in np.unique(np.geomspace(1, 15_000 if quick else 160_000, 120).astype(int))}
    runs["logarithmic"] = power_loss_sweep(long_steps, ident, geometry=geom, points=log_points, seed=2)
    runs["out_of_order"] = power_loss_sweep(sweep_workload(400 if quick else 1500, seed=3), ident,
                                            geometry=geom, out_of_order=True, seed=3)
    out: dict[str, Any] = {"powerloss_wall_s": time.perf_counter() - t}
    for name, r in runs.items():
        out[f"powerloss_{name}"] = {"points": r.points, "operations": r.operations,
                                    "main_wraps": round(r.main_wraps, 2), "lost": r.lost_records,
                                    "corrupt": r.corrupt_records,
                                    "invariant_failures": r.invariant_failures,
                                    "failures": r.failures or []}
    out["powerloss_points"] = sum(r.points for r in runs.values())
    out["powerloss_lost_records"] = sum(r.lost_records for r in runs.values())
    out["powerloss_corrupt_records"] = sum(r.corrupt_records for r in runs.values())
    out["powerloss_invariant_failures"] = sum(r.invariant_failures for r in runs.values())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 simulated year and short sweeps")
    args = ap.parse_args(argv)
    years = 1.0 if args.quick else 10.0
    fl = float_10y(years)
    dis = discharge_10h()
    rep = replay(dis["store"])
    free = fl["main_capacity_bytes"] - fl["main_used_bytes"] * (10.0 / years)
    result: dict[str, Any] = {
        "quick": args.quick,
        "years_simulated": years,
        "bytes_per_sample_float_10y": round(fl["bytes_per_sample"], 4),
        "record_bytes_per_sample_float_10y": round(fl["record_bytes_per_sample"], 4),
        "float_samples": fl["samples"],
        "float_main_used_bytes": fl["main_used_bytes"],
        "summary_used_bytes": fl["summary_used_bytes"],
        "summary_records": fl["summary_records"],
        "bytes_per_sample_discharge": round(dis["bytes_per_sample"], 4),
        "discharge_hours": round(dis["hours"], 2),
        "discharge_samples": dis["samples"],
        "bytes_per_sample_replay": round(rep["bytes_per_sample"], 4),
        "entropy_bound_bytes_per_sample": round(rep["entropy"], 4),
        "discharges_that_fit": max(0, math.floor(free / dis["bytes"])),
        "wear_ratio_10y": fl["wear_ratio_used_sectors"],
        "wear_sectors_used": fl["sectors_used"],
        "wear_sectors_in_region": fl["sectors"],
        "float_device_busy_s": fl["device_busy_s"],
        "float_sim_wall_s": round(fl["wall_s"], 2),
    }
    result.update({k: round(v, 3) for k, v in throughput(2000 if args.quick else 20000).items()})
    result.update(wear_wrapping(2 if args.quick else 12))
    result.update(powerloss(args.quick))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
