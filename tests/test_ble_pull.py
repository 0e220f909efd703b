"""Integration: pulls through bleak's public API on Bumble virtual controllers (no mocks).

Each test starts a VirtualRadio, places loggers (device.gatt.LoggerPeripheral on
MemoryStores with real encoded records) and pulls with field.ble via
``BleakScanner``/``BleakClient(backend=...)``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from smartlogger.device.gatt import LoggerPeripheral
from smartlogger.device.store import MemoryStore
from smartlogger.field import ble
from smartlogger.field.ble_virtual import (
    ANDROID,
    LinkModel,
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualRadio,
)
from smartlogger.logfile.evidence import simulated_credentials
from smartlogger.logfile.format import read_logfile
from smartlogger.logfile.records import encode_record
from smartlogger.logfile.verify import verify_logfile
from smartlogger.model import Generation, LoggerIdentity, SampleBlock

T0 = 1_790_000_000_000
T = TypeVar("T")


def run(coro_fn: Callable[[VirtualRadio], Awaitable[T]]) -> T:
    async def main() -> T:
        async with VirtualRadio() as radio:
            return await coro_fn(radio)

    return asyncio.run(main())


def fill(store: MemoryStore, blocks: int, seed: int, start_block: int = 0, n: int = 600) -> None:
    rng = np.random.default_rng(seed)
    for b in range(start_block, start_block + blocks):
        mv = 13000 + np.cumsum(rng.integers(-3, 4, n))
        dc = 200 + rng.integers(-1, 2, n)
        store.append(SampleBlock.of(T0 + b * n * 1000, 1000, mv.tolist(), dc.tolist()))


def make_logger(i: int, blocks: int = 4, *, gen: Generation = Generation.GEN2,
                signed: bool = True) -> tuple[LoggerIdentity, MemoryStore, LoggerPeripheral]:
    ident = LoggerIdentity(f"SL{int(gen)}-{i:05d}", gen, "2.1.0" if gen == 2 else "1.4",
                           simulated=True)
    store = MemoryStore(serial=ident.serial)
    fill(store, blocks, seed=i)
    creds = simulated_credentials(ident) if signed and gen is Generation.GEN2 else None
    per = LoggerPeripheral(ident, store, clock_ms=lambda: T0 + 3_600_000 + 1500,
                           credentials=creds)
    return ident, store, per


def truth(store: MemoryStore, from_seq: int = 0) -> list[tuple[int, bytes]]:
    return [(s, encode_record(r)) for s, r in store.records(from_seq)]


OPTS = ble.PullOptions(backend=VirtualBleakClient, backoff_s=0.001)


def test_pull_through_bleak_writes_verified_signed_logfile(tmp_path: Path) -> None:
    ident, store, per = make_logger(1, blocks=6)

    async def go(radio: VirtualRadio) -> ble.FleetOutcome:
        await per.attach(radio.link)
        found = await ble.scan(2.0, backend=VirtualBleakScanner, until_count=1)
        assert [f.name for f in found] == [ident.serial]
        return await ble.pull_many(found, tmp_path, OPTS)

    outcome = run(go)
    result = outcome.results[ident.serial]
    assert result.streams[0].records == truth(store)
    assert result.verified and result.end is not None and result.end.signed
    # The device clock against the phone clock: the logger runs 1.5 s + 1 h past T0 here.
    assert result.clocks and all(c.device_ms == T0 + 3_601_500 for c in result.clocks)
    assert store.read_up_to_seq == store.next_seq  # MARK_READ accepted after verification
    (path,) = tmp_path.glob("*.slog")
    report = verify_logfile(path)
    assert report.signatures_valid and report.certificate_valid and report.chain_intact, report
    assert report.authority == "test" and "SIMULATED" in report.markers
    lf = read_logfile(path)
    assert [(r.seq, r.data) for r in lf.streams[0].records] == truth(store)
    assert lf.metadata.test["ble.clock.0.device_ms"] == str(T0 + 3_601_500)


def test_second_pull_is_incremental_and_chains_on(tmp_path: Path) -> None:
    ident, store, per = make_logger(2, blocks=3)

    async def go(radio: VirtualRadio) -> tuple[ble.FleetOutcome, ble.FleetOutcome]:
        await per.attach(radio.link)
        found = await ble.scan(2.0, backend=VirtualBleakScanner, until_count=1)
        first = await ble.pull_many(found, tmp_path, OPTS)
        fill(store, 2, seed=99, start_block=3)
        second = await ble.pull_many(found, tmp_path, OPTS)
        return first, second

    first, second = run(go)
    assert [s for s, _ in second.results[ident.serial].streams[0].records] == [3, 4]
    files = sorted(tmp_path.glob("*.slog"))
    assert [f.name for f in files] == [f"{ident.serial}-00000000-00000003.slog",
                                      f"{ident.serial}-00000003-00000005.slog"]
    later = read_logfile(files[1])
    assert later.streams[0].anchor_seq == 3
    assert later.streams[0].anchor_hash == first.results[ident.serial].streams[0].head.hash  # type: ignore[union-attr]
    assert verify_logfile(files[1]).chain_intact


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_disconnect_at_random_offset_resumes_from_last_ack(seed: int) -> None:
    ident, store, per = make_logger(10 + seed, blocks=8)
    image_len = sum(len(b) + 2 for _, b in truth(store))
    cut = random.Random(seed).randrange(1, image_len)
    per.faults.drop_after_bytes = cut

    async def go(radio: VirtualRadio) -> ble.PullResult:
        await per.attach(radio.link)
        return await ble.pull_one(per.address, ble.PullState(ident.serial), OPTS)

    result = run(go)
    assert per.faults.drops == 1 and result.connections == 2
    assert result.streams[0].records == truth(store) and result.verified
    # Resumed, not restarted: at most one window + credit more than the image was received.
    window_bytes = OPTS.window * OPTS.credit * 238
    assert result.image_bytes < image_len + window_bytes


def test_partial_transfer_survives_giving_up_and_resumes_next_run(tmp_path: Path) -> None:
    ident, store, per = make_logger(20, blocks=8)
    per.faults.drop_after_bytes = 3000

    async def go(radio: VirtualRadio) -> ble.PullResult:
        await per.attach(radio.link)
        state = ble.PullState(ident.serial)
        with pytest.raises(ble.PullError) as err:
            await ble.pull_one(per.address, state,
                               ble.PullOptions(backend=VirtualBleakClient, retries=0))
        assert err.value.serial == ident.serial
        assert state.partial is not None
        state.save(tmp_path)
        again = ble.PullState.load(tmp_path, ident.serial)
        return await ble.pull_one(per.address, again, OPTS)

    result = run(go)
    assert result.streams[0].records == truth(store) and result.verified
    assert result.image_bytes < sum(len(b) + 2 for _, b in truth(store))  # resumed from disk


def test_corrupted_chunk_is_re_requested() -> None:
    ident, store, per = make_logger(30, blocks=8)
    chunks = sum(len(b) + 2 for _, b in truth(store)) // 238
    per.faults.corrupt_offsets = {238 * 1, 238 * (chunks - 1)}

    async def go(radio: VirtualRadio) -> ble.PullResult:
        await per.attach(radio.link)
        return await ble.pull_one(per.address, ble.PullState(ident.serial), OPTS)

    result = run(go)
    assert not per.faults.corrupt_offsets  # both faults fired
    assert result.streams[0].records == truth(store) and result.verified


def test_24_loggers_pulled_with_at_most_3_connections(tmp_path: Path) -> None:
    loggers = [make_logger(100 + i, blocks=1, signed=False) for i in range(24)]
    loggers[5][2].faults.drop_after_bytes = 100
    for i, (_, _, per) in enumerate(loggers[12:]):
        per.faults.drop_chance = 0.3  # every connection of these, reconnects too
        per.faults.rng = random.Random(i)
    peak = [0]

    async def go(radio: VirtualRadio) -> ble.FleetOutcome:
        for _, _, per in loggers:
            await per.attach(radio.link)
        found = await ble.scan(5.0, backend=VirtualBleakScanner, until_count=24)
        assert len(found) == 24

        def progress(serial: str, done: int, total: int) -> None:
            assert radio.phone is not None
            peak[0] = max(peak[0], len(radio.phone.connections))

        opts = ble.PullOptions(backend=VirtualBleakClient, backoff_s=0.001, retries=8)
        return await ble.pull_many(found, tmp_path, opts, concurrency=3, progress=progress)

    outcome = run(go)
    assert not outcome.failures
    for ident, store, _ in loggers:
        assert outcome.results[ident.serial].streams[0].records == truth(store)
    assert 2 <= peak[0] <= 3
    assert len(list(tmp_path.glob("*.slog"))) == 24
    assert outcome.results[loggers[5][0].serial].connections == 2
    assert sum(per.faults.drops for _, _, per in loggers[12:]) >= 1


def test_gen1_logger_pulled_at_23_byte_mtu_unsigned(tmp_path: Path) -> None:
    ident, store, per = make_logger(7, blocks=2, gen=Generation.GEN1)
    per.faults.drop_after_bytes = 500  # no resume in v1: the second connection starts over

    async def go(radio: VirtualRadio) -> ble.FleetOutcome:
        await per.attach(radio.link)
        found = await ble.scan(2.0, backend=VirtualBleakScanner, until_count=1)
        out = await ble.pull_many(found, tmp_path, OPTS)
        sessions = radio.sessions(per.address)
        assert len(sessions) == 2
        assert max(n for s in sessions for _, n, _ in s.pdus) <= 27  # ATT MTU 23 + 4 L2CAP
        return out

    result = run(go).results[ident.serial]
    assert result.version == 1 and not result.attestation and result.connections == 2
    image_len = sum(len(b) + 2 for _, b in truth(store))
    assert result.image_bytes == image_len  # only the complete second transfer counts
    assert result.streams[0].records == truth(store)
    (path,) = tmp_path.glob("*.slog")
    report = verify_logfile(path)
    assert not report.signed and report.generation == 1


def test_reset_refused_until_everything_was_pulled(tmp_path: Path) -> None:
    ident, store, per = make_logger(40, blocks=2)

    async def go(radio: VirtualRadio) -> None:
        await per.attach(radio.link)
        with pytest.raises(ble.ResetDenied, match="have not been read out"):
            await ble.reset_logger(per.address, backend=VirtualBleakClient, serial=ident.serial)
        assert store.next_seq == 2
        # Pulled but not saved (no commit): the logger must keep refusing.
        await ble.pull_one(per.address, ble.PullState(ident.serial), OPTS)
        with pytest.raises(ble.ResetDenied, match="have not been read out"):
            await ble.reset_logger(per.address, backend=VirtualBleakClient, serial=ident.serial)
        # Saved but its content is rejected by the commit: still refused.
        res = await ble.pull_one(per.address, ble.PullState(ident.serial), OPTS, commit=lambda r: False)
        assert not res.marked_read
        with pytest.raises(ble.ResetDenied, match="have not been read out"):
            await ble.reset_logger(per.address, backend=VirtualBleakClient, serial=ident.serial)
        found = await ble.scan(2.0, backend=VirtualBleakScanner, until_count=1)
        out = await ble.pull_many(found, tmp_path, OPTS)
        (result,) = out.results.values()
        assert result.path is not None and result.path.exists() and result.marked_read
        assert result.status == "simulated"
        await ble.reset_logger(per.address, backend=VirtualBleakClient, serial=ident.serial)

    run(go)
    assert [s for s, _ in store.records()] == [2]  # only the RESET event is left


def test_link_model_counts_real_packets() -> None:
    ident, store, per = make_logger(50, blocks=20, signed=False)

    async def go(radio: VirtualRadio) -> float:
        await per.attach(radio.link)
        await ble.pull_one(per.address, ble.PullState(ident.serial), OPTS)
        (session,) = radio.sessions(per.address)
        return LinkModel(ANDROID).session_time(session.pdus).seconds

    modeled = run(go)
    data = sum(len(b) for _, b in truth(store))
    # No faster than the link can carry the data, no slower than 3x (setup + discovery).
    assert data / 175_300 < modeled < 3 * data / 175_300 + 0.5


def test_firmware_logger_served_with_live_values_and_info() -> None:
    from bleak import BleakClient

    from smartlogger.device.gatt import serve_loggers
    from smartlogger.device.sim import simulate_string_test
    from smartlogger.protocol import ble as p

    sim = simulate_string_test(3, weak=0, max_duration_s=1800)
    logger = sim.loggers[1]

    async def go(radio: VirtualRadio) -> tuple[p.LiveValues, p.LoggerInfo]:
        (per, *_rest) = await serve_loggers(radio.link, [logger])
        async with BleakClient(per.address, backend=VirtualBleakClient) as client:
            assert client.mtu_size == 247
            live = p.LiveValues.from_bytes(bytes(await client.read_gatt_char(p.LIVE_UUID)))
            info = p.LoggerInfo.from_bytes(bytes(await client.read_gatt_char(p.INFO_UUID)))
        return live, info

    live, info = run(go)
    st = logger.status()
    assert (live.device_ms, live.mv, live.dc) == (st.last_sample_ms, st.last_mv, st.last_dc)
    assert info.serial == logger.identity.serial and info.main_next == logger.store.next_seq
    assert info.flags & p.InfoFlags.SIMULATED and info.flags & p.InfoFlags.SIGNED
    assert info.device_ms == logger.now_ms() and info.config_seq == logger.config_seq
