"""BlackboxStore: the LogStore seam on flash, both streams, chain, summaries, reset, images."""

from __future__ import annotations

import random
from array import array

import numpy as np
import pytest

from smartlogger.device.blackbox import (
    DAY_MS,
    BlackboxLayout,
    BlackboxStore,
    NotFormattedError,
)
from smartlogger.device.flash import FlashGeometry, FlashOp, NorFlash
from smartlogger.device.store import LogStore, MemoryStore
from smartlogger.errors import ResetRefused
from smartlogger.logfile import chain
from smartlogger.logfile.records import encode_record
from smartlogger.model import (
    BlockType,
    ClockSet,
    ConfigChange,
    DailySummary,
    DischargeSummary,
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

IDENT = LoggerIdentity("SIM-0042", Generation.GEN2, "2.1.0", simulated=True)
SMALL = FlashGeometry(size=48 * 4096)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, device ms


def _float_blocks(n_blocks: int, per_block: int, interval_ms: int, seed: int,
                  t0: int = T0) -> list[SampleBlock]:
    rng = np.random.default_rng(seed)
    out = []
    t = t0
    for _ in range(n_blocks):
        mv = 13_560 + np.cumsum(rng.integers(-2, 3, per_block))
        dc = 231 + rng.integers(-1, 2, per_block)
        out.append(SampleBlock(t, interval_ms, array("i", mv.astype(np.int32).tobytes()),
                               array("i", dc.astype(np.int32).tobytes())))
        t += per_block * interval_ms
    return out


def _workload(seed: int = 0) -> list[Record]:
    """About four days at 1 min in 120-sample blocks, a discharge, threshold events, a config."""
    config = LoggerConfig.default_for(BlockType.lead_acid(12), 100.0)
    recs: list[Record] = [ConfigChange(T0, config, 1)]
    blocks = _float_blocks(48, 120, 60_000, seed)
    for i, b in enumerate(blocks):
        recs.append(b)
        if i == 10:
            recs.append(Event(b.end_ms, EventKind.ENTER_WARNING, Quantity.VOLTAGE, Side.HIGH, 14_150))
        if i == 20:
            recs.append(Event(b.end_ms, EventKind.DISCHARGE_START, value=12_600))
            recs.append(Event(b.end_ms, EventKind.RATE_CHANGE, value=1))
        if i == 25:
            recs.append(Event(b.end_ms, EventKind.DISCHARGE_END, value=10_950))
        if i == 30:
            recs.append(ClockSet(b.end_ms, b.end_ms + 1500))
    return recs


def _expected_days(recs: list[Record]) -> list[DailySummary]:
    by_day: dict[int, tuple[list[int], list[int]]] = {}
    for r in recs:
        if isinstance(r, SampleBlock):
            for s in r.samples():
                mv, dc = by_day.setdefault(s.t_ms // DAY_MS, ([], []))
                mv.append(s.mv)
                dc.append(s.dc)
    out = []
    for day in sorted(by_day)[:-1]:  # the newest day is still open
        mv, dc = by_day[day]
        out.append(DailySummary(day * DAY_MS, len(mv), min(mv), round(sum(mv) / len(mv)), max(mv),
                                min(dc), round(sum(dc) / len(dc)), max(dc)))
    return out


def test_is_a_logstore_and_round_trips_records() -> None:
    store = BlackboxStore.create(IDENT, geometry=SMALL)
    assert isinstance(store, LogStore)
    recs = _workload()
    for i, r in enumerate(recs):
        assert store.append(r) == i
    assert [r for _, r in store.records()] == recs
    assert [s for s, _ in store.records(40)] == list(range(40, len(recs)))
    again = BlackboxStore.mount(store.flash)
    assert again.identity == IDENT
    assert [r for _, r in again.records()] == recs


def test_layout_for_w25q64_and_small_chips() -> None:
    big = BlackboxLayout.for_geometry(FlashGeometry())
    assert (big.meta, big.summary, big.main) == ((0, 4), (4, 128), (132, 1916))
    small = BlackboxLayout.for_geometry(SMALL)
    assert (small.meta, small.summary, small.main) == ((0, 2), (2, 3), (5, 43))


def test_chain_head_and_anchor_match_the_contract_after_wrap() -> None:
    store = BlackboxStore.create(IDENT, geometry=FlashGeometry(size=12 * 4096))
    h = chain.genesis(IDENT.serial)
    values = [h]
    for i, b in enumerate(_float_blocks(400, 120, 60_000, seed=3)):
        data = encode_record(b)
        assert store.append(b) == i
        h = chain.chain_next(h, i, data)
        values.append(h)
    assert store.chain_head(0) == (400, h)
    oldest, anchor = store.chain_anchor(0)
    assert oldest > 0 and anchor == values[oldest]
    assert store.oldest_seq == oldest
    again = BlackboxStore.mount(store.flash)
    assert again.chain_head(0) == (400, h)
    assert again.chain_anchor(0) == (oldest, anchor)
    # the summary stream has its own chain from its own genesis
    hs = chain.genesis(IDENT.serial + "/summary")
    for seq, rec in again.summary_records():
        hs = chain.chain_next(hs, seq, encode_record(rec))
    s_oldest, s_anchor = again.chain_anchor(1)
    assert s_oldest == 0 and s_anchor == chain.genesis(IDENT.serial + "/summary")
    assert again.chain_head(1) == (again.totals()["summary"]["next_seq"], hs)


def test_summary_stream_has_days_discharges_and_copies() -> None:
    store = BlackboxStore.create(IDENT, geometry=SMALL)
    recs = _workload()
    for r in recs:
        store.append(r)
    summary = [r for _, r in store.summary_records()]
    assert [r for r in summary if isinstance(r, DailySummary)] == _expected_days(recs)
    start = next(r for r in recs if isinstance(r, Event) and r.kind is EventKind.DISCHARGE_START)
    end = next(r for r in recs if isinstance(r, Event) and r.kind is EventKind.DISCHARGE_END)
    assert [r for r in summary if isinstance(r, DischargeSummary)] == [
        DischargeSummary(start.t_ms, end.t_ms, 10_950, 0)
    ]
    copies = [r for r in summary if isinstance(r, Event | ConfigChange | ClockSet)]
    assert copies == [r for r in recs if isinstance(r, ConfigChange | ClockSet)
                      or (isinstance(r, Event) and r.kind is not EventKind.RATE_CHANGE)]


def test_summary_outlives_the_raw_ring() -> None:
    store = BlackboxStore.create(IDENT, geometry=FlashGeometry(size=64 * 4096))
    blocks = _float_blocks(1500, 240, 60_000, seed=4)  # 250 days at 1 min
    for b in blocks:
        store.append(b)
    assert store.oldest_seq > 300  # raw samples of the first months are gone
    days = [r for _, r in store.summary_records() if isinstance(r, DailySummary)]
    assert days[0].day_start_ms == T0 and len(days) == 249


def test_daily_summaries_survive_a_power_loss_at_every_operation() -> None:
    """Crash anywhere, remount, finish the workload: the summary equals the fault-free one."""
    recs = _workload(seed=7)
    ref = BlackboxStore.create(IDENT, geometry=SMALL)
    for r in recs:
        ref.append(r)
    want = [encode_record(r) for _, r in ref.summary_records()]

    flash = NorFlash(SMALL, seed=1)
    store = BlackboxStore.create(IDENT, flash=flash)
    rng = random.Random(2)
    checked = [0]

    def hook(op: FlashOp) -> None:
        twin = flash.crash_copy(op, rng)
        st = BlackboxStore.mount(twin)
        for r in recs[st.next_seq:]:
            st.append(r)
        got = [encode_record(r) for _, r in st.summary_records()]
        assert got == want, f"power loss at flash operation {op.index}"
        checked[0] += 1

    flash.on_op = hook
    for r in recs:
        store.append(r)
    assert checked[0] > 150


def test_reset_rules_and_persistence() -> None:
    store = BlackboxStore.create(IDENT, geometry=SMALL)
    recs = _workload()[:20]
    for r in recs:
        store.append(r)
    with pytest.raises(ResetRefused) as info:
        store.reset(t_ms=T0 + 5)
    assert info.value.unread_from_seq == 0
    store.mark_read(12)
    again = BlackboxStore.mount(store.flash)
    assert again.read_up_to_seq == 12  # the read-out mark is on flash
    with pytest.raises(ResetRefused, match=r"12\.\.19"):
        again.reset(t_ms=T0 + 5)
    again.mark_read(20)
    again.reset(t_ms=T0 + 6)
    assert [(s, r) for s, r in again.records()] == [(20, Event(T0 + 6, EventKind.RESET, value=0))]
    head_after_reset = again.chain_head(0)
    again.append(recs[0])
    # a forced reset with unread records is allowed and logged as forced, in both streams
    again.reset(t_ms=T0 + 7, force=True)
    third = BlackboxStore.mount(again.flash)
    assert [r for _, r in third.records()] == [Event(T0 + 7, EventKind.RESET, value=1)]
    assert third.oldest_seq == 22 and third.next_seq == 23  # numbers are never reused
    resets = [r for _, r in third.summary_records()
              if isinstance(r, Event) and r.kind is EventKind.RESET]
    assert [r.value for r in resets] == [0, 1]
    assert third.totals()["resets"] == 2
    # the chain runs on across resets: the anchor of the new oldest record is the old head
    h = chain.chain_next(head_after_reset[1], 21, encode_record(recs[0]))
    assert third.chain_anchor(0) == (22, h)
    with pytest.raises(ResetRefused):
        third.reset(t_ms=T0 + 8)


def test_reset_behaves_like_memorystore() -> None:
    mem, bb = MemoryStore(), BlackboxStore.create(IDENT, geometry=SMALL)
    for store in (mem, bb):
        for r in _workload()[:5]:
            store.append(r)
        store.mark_read(5)
        store.reset(t_ms=T0)
    assert (mem.next_seq, mem.oldest_seq, mem.read_up_to_seq) == (bb.next_seq, bb.oldest_seq,
                                                                  bb.read_up_to_seq)
    assert list(mem.records()) == list(bb.records())


def test_image_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = BlackboxStore.create(IDENT, geometry=SMALL)
    recs = _workload()
    for r in recs:
        store.append(r)
    store.mark_read(7)
    path = tmp_path / "logger.img"
    store.save_image(path)
    loaded = BlackboxStore.from_image(path)
    assert [r for _, r in loaded.records()] == recs
    assert loaded.read_up_to_seq == 7
    assert loaded.chain_head(0) == store.chain_head(0)
    assert loaded.chain_head(1) == store.chain_head(1)


def test_blank_flash_is_not_a_blackbox() -> None:
    with pytest.raises(NotFormattedError, match="no meta snapshot"):
        BlackboxStore.mount(NorFlash(SMALL))


def test_float_storage_efficiency_on_w25q64_layout() -> None:
    """A week at 1 min in 256-sample blocks costs well under 1 flash byte per sample."""
    store = BlackboxStore.create(IDENT)
    blocks = _float_blocks(40, 256, 60_000, seed=9)
    for b in blocks:
        store.append(b)
    used = store.totals()["main"]["used_bytes"]
    assert used / (40 * 256) < 1.0


def test_cli_flash_info_and_flash_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from click.testing import CliRunner

    from smartlogger.cli.flash import flash
    from smartlogger.logfile.verify import verify_logfile

    store = BlackboxStore.create(IDENT, geometry=SMALL)
    recs = _workload()
    for r in recs:
        store.append(r)
    image = tmp_path / "logger.img"
    store.save_image(image)
    runner = CliRunner()
    res = runner.invoke(flash, ["flash-info", str(image), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["serial"] == "SIM-0042" and info["main"]["next_seq"] == len(recs)
    assert info["mount"]["main"]["corrupt_entries"] == 0
    out = tmp_path / "out"
    res = runner.invoke(flash, ["flash-read", str(image), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    n_samples = sum(len(r) for r in recs if isinstance(r, SampleBlock))
    lines = (out / "samples.csv").read_text().splitlines()
    assert len(lines) == 2 + n_samples
    first = recs[1]
    assert isinstance(first, SampleBlock)
    assert lines[2] == f"2026-01-01T00:00:00.000Z,{first.mv[0] / 1000:.3f},{first.dc[0] / 10:.1f}"
    report = verify_logfile((out / "SIM-0042.slog").read_bytes())
    assert report.chain_intact is True
    assert [(s.first_seq, s.next_seq) for s in report.streams] == [
        (0, len(recs)), (0, store.chain_head(1)[0])]


def test_bind_serial_refuses_another_loggers_flash() -> None:
    from smartlogger.errors import StoreError

    store = BlackboxStore.create(IDENT, geometry=SMALL)
    store.bind_serial("SIM-0042")
    with pytest.raises(StoreError, match="belongs to logger SIM-0042, not SIM-0043"):
        store.bind_serial("SIM-0043")
