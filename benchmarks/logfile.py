"""Logfile benchmark: size per sample, decode speed, 10-year verification time, tamper corpus.

Prints ONE JSON object. ``--quick`` runs 1 year instead of 10 and a smaller tamper corpus.

    python benchmarks/logfile.py [--quick]

Data comes from the firmware/battery simulator (``device.sim``) when it is
importable, otherwise from the synthetic traces of ``logfile.examples``
(the JSON says which in ``data_source``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from smartlogger.logfile import chain
from smartlogger.logfile.container import LogfileMetadata
from smartlogger.logfile.convert import load_samples
from smartlogger.logfile.evidence import simulated_credentials
from smartlogger.logfile.format import read_logfile
from smartlogger.logfile.samples import decode_samples, encode_samples
from smartlogger.logfile.verify import verify_logfile
from smartlogger.model import LoggerIdentity, Record, SampleBlock
from smartlogger.testing.logfile_examples import (
    EPOCH_2026_MS,
    ChainedLog,
    discharge_trace,
    example_identity,
    float_trace,
    sample_blocks,
)
from smartlogger.testing.tamper import detected, tamper_cases

META = LogfileMetadata("B1", 1, {"site": "benchmark"}, EPOCH_2026_MS)


def _sim_records(kind: str, years: float) -> tuple[LoggerIdentity, list[Record], str]:
    """Records of a simulated logger (device.sim if present, else synthetic)."""
    try:
        from smartlogger.device import sim
    except ImportError:
        sim = None  # type: ignore[assignment]
    if sim is not None:
        try:
            if kind == "test":
                logger = sim.simulate_string_test(1, weak=0, load="10A", seed=1).loggers[0]
            else:
                logger = sim.simulate_years(years, seed=1).logger
            return logger.identity, [r for _, r in logger.store.records()], "device.sim"
        except Exception as err:  # the simulator is another part: fall back, and say so
            print(json.dumps({"warning": f"device.sim failed: {err!r}"}), file=__import__("sys").stderr)
    ident = example_identity("SIM-0001")
    if kind == "test":
        mv, dc = discharge_trace(36_000)
        return ident, list(sample_blocks(EPOCH_2026_MS, 1000, mv, dc, 256)), "synthetic"
    n = int(years * 365.25 * 1440)
    mv, dc = float_trace(n)
    return ident, list(sample_blocks(EPOCH_2026_MS, 60_000, mv, dc, 256)), "synthetic"


def _pull(ident: LoggerIdentity, records: Sequence[Record], *, capacity: int | None = None,
          older_at: int | None = None) -> tuple[bytes, bytes | None, ChainedLog]:
    """Signed logfile of ``records``; with ``older_at`` also the file of a pull taken earlier."""
    cred = simulated_credentials(ident)
    log = ChainedLog(ident.serial, capacity)
    older = None
    for i, rec in enumerate(records):
        if older_at is not None and i == older_at:
            att = log.sign(cred, b"\x01" * 16, EPOCH_2026_MS + i, EPOCH_2026_MS + i - 500)
            older = log.logfile(ident, cred, [att], META)
            first = att
        log.append(rec)
    atts = [first] if older is not None else []
    atts.append(log.sign(cred, b"\x02" * 16, EPOCH_2026_MS + 10**9, EPOCH_2026_MS + 10**9 - 700))
    return log.logfile(ident, cred, atts, META), older, log


def _samples(records: list[Record]) -> int:
    return sum(len(r) for r in records if isinstance(r, SampleBlock))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    years = 1.0 if args.quick else 10.0
    out: dict[str, Any] = {"benchmark": "logfile", "quick": args.quick}

    # ---- size: a 10-h 1 Hz capacity test log, and the fixed overhead of any file
    ident, test_recs, source = _sim_records("test", years)
    out["data_source"] = source
    test_file, _, _ = _pull(ident, test_recs)
    empty_file, _, _ = _pull(ident, [])
    n_test = _samples(test_recs)
    out["fixed_overhead_bytes"] = len(empty_file)
    out["test_log_samples"] = n_test
    out["test_log_bytes"] = len(test_file)
    out["bytes_per_sample_test_log"] = round((len(test_file) - len(empty_file)) / n_test, 4)

    # ---- size and verification of a full blackbox log (10 years at 1 min unless --quick)
    t0 = time.perf_counter()
    ident_y, year_recs, _ = _sim_records("years", years)
    out["simulate_s"] = round(time.perf_counter() - t0, 2)
    year_file, _, _ = _pull(ident_y, year_recs)
    n_year = _samples(year_recs)
    out["years"] = years
    out["log_samples_10y"] = n_year
    out["log_records_10y"] = len(year_recs)
    out["log_bytes_10y"] = len(year_file)
    out["bytes_per_sample_10y"] = round((len(year_file) - len(empty_file)) / n_year, 4)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        rep = verify_logfile(year_file)
        best = min(best, time.perf_counter() - t0)
    out["verify_10y_s"] = round(best, 3)
    out["verify_10y_status"] = rep.status

    # ---- decode speed into numpy arrays: all blocks of the 10-year log (firmware-sized blocks)
    lf = read_logfile(year_file, decode=False)
    load_s = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        t_ms, mv, _dc = load_samples(lf)
        load_s = min(load_s, time.perf_counter() - t0)
    assert t_ms.size == n_year
    t0 = time.perf_counter()
    load_samples(read_logfile(year_file, decode=False))
    e2e_s = time.perf_counter() - t0
    # the codec alone, one block per call (per-call overhead included) and one large block
    fmv, fdc = float_trace(min(n_year, 1440 * 365))
    payloads = [encode_samples(fmv[i:i + 1440], fdc[i:i + 1440]) for i in range(0, fmv.size, 1440)]
    t0 = time.perf_counter()
    decoded = sum(decode_samples(p)[0].size for p in payloads)
    codec_s = time.perf_counter() - t0
    big = encode_samples(fmv, fdc)
    t0 = time.perf_counter()
    decode_samples(big)
    big_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    encode_samples(fmv, fdc)
    enc_s = time.perf_counter() - t0
    out["decode_samples_per_s"] = int(n_year / load_s)
    out["decode_blocks_10y"] = len(year_recs)
    out["read_and_decode_samples_per_s"] = int(n_year / e2e_s)
    out["decode_samples_per_s_per_day_block_calls"] = int(decoded / codec_s)
    out["decode_samples_per_s_single_block"] = int(fmv.size / big_s)
    out["encode_samples_per_s_single_block"] = int(fmv.size / enc_s)

    # ---- tamper corpus on a ring log with two pulls
    ring = test_recs
    latest, older, _ = _pull(ident, ring, capacity=max(8, len(ring) - 20), older_at=len(ring) - 5)
    other_ident = LoggerIdentity("SIM-9999", ident.generation, ident.firmware, simulated=True)
    mv2, dc2 = discharge_trace(n_test, seed=77)
    other_recs = list(sample_blocks(EPOCH_2026_MS, 1000, mv2, dc2, 256))
    other, _, _ = _pull(other_ident, other_recs)
    kinds: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    for case in tamper_cases(latest, other=other, older_pull=older,
                             positions=5 if args.quick else 25, seed=11):
        kinds[case.kind] += 1
        caught[case.kind] += detected(case, verify_logfile)
    out["tamper_cases"] = sum(kinds.values())
    out["tamper_detected"] = sum(caught.values())
    out["tamper_by_kind"] = {k: [caught[k], kinds[k]] for k in sorted(kinds)}
    out["genuine_verifies"] = verify_logfile(latest, expected_nonce=b"\x02" * 16).status
    assert chain.HASH_LEN == 32
    out["entropy_hint_mv_delta_bits"] = round(float(_entropy(np.diff(mv[: 1440 * 30]))), 3)
    print(json.dumps(out))


def _entropy(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


if __name__ == "__main__":
    main()
