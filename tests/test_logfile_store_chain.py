"""The hash-chain extension of MemoryStore: anchors and heads per stream (contracts)."""

from __future__ import annotations

import pytest

from smartlogger.device.store import LogStore, MemoryStore, stream_genesis
from smartlogger.errors import StoreError
from smartlogger.logfile.chain import chain_next, genesis
from smartlogger.logfile.records import encode_record
from smartlogger.model import ClockSet, Event, EventKind, Record, SampleBlock


def _recompute(start: bytes, items: list[tuple[int, Record]]) -> bytes:
    h = start
    for seq, rec in items:
        h = chain_next(h, seq, encode_record(rec))
    return h


def test_head_is_the_chain_over_all_records() -> None:
    store = MemoryStore(serial="SL2-0001")
    assert isinstance(store, LogStore)
    assert store.chain_head() == (0, genesis("SL2-0001"))
    store.append(SampleBlock.of(0, 1000, [12800, 12801], [250, 250]))
    store.append(Event(2000, EventKind.POWER_ON))
    store.append(ClockSet(3000, 5000))
    items = list(store.records())
    assert store.chain_head() == (3, _recompute(genesis("SL2-0001"), items))
    assert store.chain_anchor() == (0, genesis("SL2-0001"))


def test_ring_anchor_is_the_chain_value_before_the_oldest_kept_record() -> None:
    ring = MemoryStore(capacity=3, serial="SL2-0002")
    full = MemoryStore(serial="SL2-0002")
    for i in range(10):
        rec = Event(i * 1000, EventKind.GAP, value=i)
        ring.append(rec)
        full.append(rec)
    seq, anchor = ring.chain_anchor()
    assert seq == 7 == ring.oldest_seq
    assert anchor == _recompute(genesis("SL2-0002"), list(full.records())[:7])
    assert _recompute(anchor, list(ring.records())) == ring.chain_head()[1] == full.chain_head()[1]


def test_reset_keeps_the_chain_going() -> None:
    store = MemoryStore(serial="SL2-0003")
    store.append(Event(1, EventKind.POWER_ON))
    head_before = store.chain_head()[1]
    store.reset(t_ms=5, force=True)
    assert store.chain_anchor() == (1, head_before)
    assert store.chain_head()[1] == _recompute(head_before, list(store.records()))


def test_bind_serial_later_and_summary_stream() -> None:
    store = MemoryStore()
    store.append(Event(1, EventKind.POWER_ON))
    with pytest.raises(StoreError, match="no serial"):
        store.chain_head()
    store.bind_serial("SL2-0004")
    assert store.chain_head()[1] == _recompute(genesis("SL2-0004"), list(store.records()))
    assert store.chain_head(1) == store.chain_anchor(1) == (0, genesis("SL2-0004/summary"))
    assert stream_genesis("SL2-0004", 1) == genesis("SL2-0004/summary")
    assert list(store.summary_records()) == []
    with pytest.raises(StoreError, match="stream 2"):
        store.chain_head(2)


def test_bind_serial_refused_after_overwrite() -> None:
    ring = MemoryStore(capacity=1)
    ring.append(Event(1, EventKind.POWER_ON))
    ring.append(Event(2, EventKind.POWER_ON))
    with pytest.raises(StoreError, match="gone"):
        ring.bind_serial("SL2-0005")
