"""BLE log pull benchmark: link efficiency, modeled pull times, a 240-logger fleet pull.

Everything runs through bleak's public API on the virtual radio (Bumble
controllers on an in-process LocalLink); modeled radio time comes from the LL
data PDUs actually exchanged (``field.ble_virtual.LinkModel``, docs/BLE.md).
Prints ONE JSON object. ``--quick``: 1 MiB instead of 8 MiB and 24 loggers
instead of 240.

    python benchmarks/ble.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from smartlogger.device.gatt import LoggerPeripheral
from smartlogger.device.store import MemoryStore
from smartlogger.field import ble
from smartlogger.field.ble_virtual import (
    ANDROID,
    IOS,
    LINK_CAPACITY_BPS,
    MAX_EXCHANGE_US,
    LinkModel,
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualRadio,
)
from smartlogger.logfile.records import encode_record
from smartlogger.model import Generation, LoggerIdentity, SampleBlock

T0_MS = 1_790_000_000_000


def build_store(serial: str, samples: int, rng: np.random.Generator, block: int = 600,
                ) -> MemoryStore:
    """A 1 Hz random-walk log (float voltage with noise, slow temperature) of ``samples``."""
    store = MemoryStore(serial=serial)
    mv = 13500 + np.cumsum(rng.integers(-2, 3, samples))
    dc = 250 + np.cumsum(rng.integers(-1, 2, samples)) // 8
    for i in range(0, samples, block):
        store.append(SampleBlock.of(T0_MS + i * 1000, 1000, mv[i:i + block].tolist(),
                                    dc[i:i + block].tolist()))
    return store


def device_records(store: MemoryStore) -> list[tuple[int, bytes]]:
    return [(s, encode_record(r)) for s, r in store.records(0)]


def identity(i: int) -> LoggerIdentity:
    return LoggerIdentity(f"SL2-{i:05d}", Generation.GEN2, "2.0.0", simulated=True)


def clock() -> int:
    return time.time_ns() // 1_000_000


async def single_pull(samples: int, rng: np.random.Generator) -> dict[str, float]:
    """Pull one logger of ``samples`` 1 Hz samples in full; modeled time per phone profile."""
    async with VirtualRadio() as radio:
        ident = identity(0)
        store = build_store(ident.serial, samples, rng)
        per = LoggerPeripheral(ident, store, clock_ms=clock)
        await per.attach(radio.link)
        t = time.perf_counter()
        res = await ble.pull_one(per.address, ble.PullState(ident.serial),
                                 ble.PullOptions(backend=VirtualBleakClient, full=True))
        wall = time.perf_counter() - t
        got = res.streams[0].records
        assert got == device_records(store) and res.verified, "pulled log differs from the device"
        record_bytes = sum(len(b) for _, b in got)
        (session,) = radio.sessions(per.address)
        out: dict[str, float] = {"record_bytes": record_bytes, "image_bytes": res.image_bytes,
                                 "wall_s": wall}
        # Bulk phase: from the first to the last full-size LL PDU from the logger (the DATA
        # chunks of the main stream); the rest of the session is connection overhead.
        full = [i for i, (d, n, _) in enumerate(session.pdus) if d == 1 and n == 251]
        for name, profile in (("android", ANDROID), ("ios", IOS)):
            model = LinkModel(profile)
            out[f"{name}_s"] = model.connection_time(session)
            timed = model.session_time(session.pdus)
            # One exchange's worth added: span_s measures end-to-end of first..last exchange.
            out[f"{name}_bulk_s"] = timed.span_s(full[0], full[-1]) + MAX_EXCHANGE_US * 1e-6
        return out


async def fleet(n: int, samples: int, k: int, drop_fraction: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    async with VirtualRadio() as radio:
        peripherals: list[LoggerPeripheral] = []
        truth: dict[str, list[tuple[int, bytes]]] = {}
        for i in range(n):
            ident = identity(i + 1)
            store = build_store(ident.serial, samples, rng)
            per = LoggerPeripheral(ident, store, clock_ms=clock)
            truth[ident.serial] = device_records(store)
            # Every connection (reconnects too) drops with this chance at a random byte.
            per.faults.drop_chance = drop_fraction
            per.faults.rng = random.Random(pick.random())
            await per.attach(radio.link)
            peripherals.append(per)
        t = time.perf_counter()
        found = await ble.scan(5.0, backend=VirtualBleakScanner, until_count=n)
        with tempfile.TemporaryDirectory() as tmp:
            outcome = await ble.pull_many(
                found, Path(tmp), ble.PullOptions(backend=VirtualBleakClient),
                concurrency=k, write=lambda result, out: out)
        wall = time.perf_counter() - t
        identical = len(outcome.results) == n and all(
            outcome.results[s].streams[0].records == recs and outcome.results[s].verified
            for s, recs in truth.items())
        # Modeled fleet time: every logger's connections back to back (setup, PDUs,
        # supervision timeout for a dropped link, the client's first backoff), list-scheduled
        # on K phone connection slots in pull order; bounded below by the radio being busy.
        model = LinkModel(ANDROID)
        slots = [0.0] * k
        busy = 0.0
        for f in found:
            sessions = radio.sessions(f.address)
            per_logger = sum(model.connection_time(s) for s in sessions)
            per_logger += sum(ble.PullOptions().backoff_s for s in sessions if s.dropped)
            busy += sum(model.session_time(s.pdus).busy_s for s in sessions)
            j = slots.index(min(slots))
            slots[j] += per_logger
        drops = sum(p.faults.drops for p in peripherals)
        connections = sum(len(radio.sessions(p.address)) for p in peripherals)
        return {"fleet_loggers": n, "fleet_identical": identical,
                "fleet_modeled_s": round(max(max(slots), busy), 2),
                "fleet_radio_busy_s": round(busy, 2), "fleet_wall_s": round(wall, 2),
                "fleet_connections": connections, "fleet_dropped_connections": drops,
                "fleet_failures": len(outcome.failures)}


def main() -> None:
    # Bumble logs benign teardown warnings (ACL for a handle the peer already dropped).
    logging.getLogger("bumble").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    blackbox_mib = 1 if args.quick else 8
    # ~0.633 encoded bytes per 1 Hz random-walk sample: size the log to the blackbox size.
    big = asyncio.run(single_pull(int(blackbox_mib * 2**20 / 0.633), rng))
    test_log = asyncio.run(single_pull(36_000, rng))
    n = 24 if args.quick else 240
    fl = asyncio.run(fleet(n, 36_000, 3, 0.10, args.seed))
    scale = 8 * 2**20 / big["record_bytes"]
    out = {
        "quick": args.quick,
        "link_capacity_kb_per_s": round(LINK_CAPACITY_BPS / 1000, 1),
        # Bulk transfer: record bytes over what the link carries in the same modeled time.
        "link_efficiency": round(big["record_bytes"] / (LINK_CAPACITY_BPS * big["android_bulk_s"]), 4),
        "link_efficiency_ios": round(big["record_bytes"] / (LINK_CAPACITY_BPS * big["ios_bulk_s"]), 4),
        # Whole session (connect, discovery, clock reads, both streams, MARK_READ) included.
        "link_efficiency_session": round(big["record_bytes"] / (LINK_CAPACITY_BPS * big["android_s"]), 4),
        "blackbox_pull_record_bytes": big["record_bytes"],
        "blackbox_8mib_pull_modeled_s": round(big["android_s"] * scale, 2),
        "blackbox_8mib_pull_modeled_s_ios": round(big["ios_s"] * scale, 2),
        "test_log_record_bytes": test_log["record_bytes"],
        "test_log_pull_modeled_s": round(test_log["android_s"], 3),
        "test_log_pull_modeled_s_ios": round(test_log["ios_s"], 3),
        **fl,
        "virtual_link_kb_per_s": round(big["image_bytes"] / big["wall_s"] / 1000, 1),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
