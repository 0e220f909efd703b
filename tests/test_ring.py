"""The sector ring over opaque bytes: framing, wrap, remount, torn writes, bad sectors, wear."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlogger.device.flash import FlashGeometry, FlashOp, NorFlash, PowerLoss
from smartlogger.device.ring import (
    ENTRY_HEADER_SIZE,
    SECTOR_HEADER_SIZE,
    STATUS_PRE_WRITE,
    STATUS_WRITE,
    Ring,
    RingError,
)

GEOM = FlashGeometry(size=16 * 4096)


def _payloads(n: int, seed: int = 0, max_len: int = 300) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(1, max_len)) for _ in range(n)]


def _ring(flash: NorFlash, first: int = 2, count: int = 8) -> Ring:
    ring = Ring(flash, first, count, region=7)
    ring.mount()
    return ring


def test_byte_layout_of_sector_header_and_entry() -> None:
    f = NorFlash(GEOM)
    ring = _ring(f)
    assert ring.append(b"abc", anchor=b"\x11" * 32) == 0
    base = 2 * 4096
    magic, version, region, flags, gen, first_seq, anchor, crc = struct.unpack_from(
        "<4sBBHIQ32sI", f.read(base, 56))
    assert (magic, version, region, flags, gen, first_seq) == (b"SLRG", 1, 7, 0xFFFF, 0, 0)
    assert anchor == b"\x11" * 32
    assert crc == zlib.crc32(f.read(base, 52))
    status, length, seq_off, ecrc = struct.unpack_from("<BHHI", f.read(base + 56, 9))
    assert (status, length, seq_off) == (STATUS_WRITE, 3, 0)
    assert ecrc == zlib.crc32(b"abc", zlib.crc32(struct.pack("<QH", 0, 3)))
    assert f.read(base + 65, 4) == b"abc\xff"
    assert (SECTOR_HEADER_SIZE, ENTRY_HEADER_SIZE) == (56, 9)


def test_append_read_wrap_and_remount() -> None:
    f = NorFlash(GEOM)
    ring = _ring(f)
    data = _payloads(600)
    for i, p in enumerate(data):
        assert ring.append(p, anchor=i.to_bytes(4, "little")) == i
    assert ring.oldest_seq > 0  # wrapped: whole oldest sectors were erased
    assert [p for _, p in ring.entries()] == data[ring.oldest_seq:]
    again = Ring(f, 2, 8, region=7)
    rep = again.mount()
    assert (again.oldest_seq, again.next_seq) == (ring.oldest_seq, ring.next_seq)
    assert again.oldest_anchor == ring.oldest_seq.to_bytes(4, "little").ljust(32, b"\x00")
    assert rep.corrupt_entries == rep.torn_entries == 0
    assert rep.bytes_scanned <= 8 * 4096
    assert list(again.entries(595)) == [(i, data[i]) for i in range(595, 600)]
    assert again.append(b"more") == 600
    # a neighbouring region with another id sees nothing of this one
    other = Ring(f, 10, 4, region=3)
    other.mount()
    assert len(other) == 0


def test_iterator_survives_appends_that_wrap_over_it() -> None:
    f = NorFlash(GEOM)
    ring = _ring(f)
    data = _payloads(400, seed=1)
    for p in data[:100]:
        ring.append(p)
    it = ring.entries()
    first = [next(it) for _ in range(3)]
    for p in data[100:]:
        ring.append(p)  # wraps the ring several times
    rest = list(it)
    assert first == [(i, data[i]) for i in range(3)]
    assert rest[0][0] >= ring.oldest_seq - 50 and rest[-1][0] == 399
    assert all(data[s] == p for s, p in rest)
    seqs = [s for s, _ in rest]
    assert seqs == sorted(seqs)


def test_entry_too_large_is_refused() -> None:
    ring = _ring(NorFlash(GEOM))
    ring.append(b"x" * ring.max_payload)
    with pytest.raises(RingError, match="exceeds"):
        ring.append(b"x" * (ring.max_payload + 1))


def test_torn_entry_is_discarded_and_seals_its_sector() -> None:
    f = NorFlash(GEOM, seed=5)
    ring = _ring(f)
    for p in _payloads(5, seed=2):
        ring.append(p)
    f.power_loss_at = f.op_count  # the first program of the next entry
    with pytest.raises(PowerLoss):
        ring.append(b"y" * 100)
    f.power_on()
    again = Ring(f, 2, 8, region=7)
    rep = again.mount()
    assert again.next_seq == 5
    assert rep.torn_entries == 1
    assert again.append(b"z") == 5
    assert again.run_sectors()[-1][2] == 5  # went to a fresh sector
    third = Ring(f, 2, 8, region=7)
    third.mount()
    assert [p for s, p in third.entries(5)] == [b"z"]


def test_pre_write_entry_is_not_committed() -> None:
    f = NorFlash(GEOM)
    ring = _ring(f)
    ring.append(b"ok")
    # power loss after the PRE_WRITE program and the barrier, before the WRITE bit
    f.power_loss_at = f.op_count + 1
    with pytest.raises(PowerLoss):
        ring.append(b"not committed")
    f.power_on()
    pos = 2 * 4096 + 56 + 9 + 2
    assert f.read(pos, 1)[0] in (STATUS_PRE_WRITE, STATUS_WRITE)  # torn status byte
    again = Ring(f, 2, 8, region=7)
    again.mount()
    if f.read(pos, 1)[0] == STATUS_PRE_WRITE:
        assert again.next_seq == 1


def _ring_sweep(out_of_order: bool, seed: int) -> tuple[int, int, int]:
    """Power loss at every operation of a wrapping workload; returns (points, lost, corrupt)."""
    f = NorFlash(GEOM, seed=seed)
    f.out_of_order = out_of_order
    ring = _ring(f, 0, 6)
    data = _payloads(260, seed=seed, max_len=400)
    committed = [0]
    rng = random.Random(seed)
    counts = [0, 0, 0]

    def hook(op: FlashOp) -> None:
        twin = f.crash_copy(op, rng)
        r = Ring(twin, 0, 6, region=7)
        rep = r.mount()
        counts[0] += 1
        got = dict(r.entries())
        n = committed[0]
        assert r.next_seq in (n, n + 1)
        assert sorted(got) == list(range(r.oldest_seq, r.next_seq))
        counts[1] += sum(1 for s in range(ring.oldest_seq, n) if s not in got)
        counts[2] += sum(1 for s, p in got.items() if p != data[s]) + rep.corrupt_entries
        # the recovered ring accepts appends and keeps them across another remount
        probe = r.append(b"probe")
        r2 = Ring(twin, 0, 6, region=7)
        r2.mount()
        assert dict(r2.entries(probe)) == {probe: b"probe"}

    f.on_op = hook
    for i, p in enumerate(data):
        assert ring.append(p) == i
        committed[0] = i + 1
    assert ring.oldest_seq > 50  # the workload wrapped the ring
    return counts[0], counts[1], counts[2]


@pytest.mark.parametrize("out_of_order", [False, True])
def test_power_loss_at_every_operation_loses_nothing(out_of_order: bool) -> None:
    points, lost, corrupt = _ring_sweep(out_of_order, seed=11)
    assert points > 700
    assert (lost, corrupt) == (0, 0)


def test_bad_sector_is_skipped() -> None:
    f = NorFlash(GEOM)
    f.mark_bad(4)
    ring = _ring(f, 2, 8)
    data = _payloads(300, seed=3)
    for p in data:
        ring.append(p)
    assert 4 in ring.bad
    assert all(s != 4 for s, *_ in ring.run_sectors())
    again = Ring(f, 2, 8, region=7)
    again.mount()
    assert [p for _, p in again.entries()] == data[again.oldest_seq:]
    assert again.oldest_seq == ring.oldest_seq


def test_sector_going_bad_mid_write_moves_the_entry_on() -> None:
    f = NorFlash(GEOM)
    ring = _ring(f, 2, 8)
    ring.append(b"first")
    f.mark_bad(2)  # the head sector now fails programs
    assert ring.append(b"second") == 1
    again = Ring(f, 2, 8, region=7)
    again.mount()
    assert [p for _, p in again.entries()] == [b"first", b"second"]


def test_wear_is_even_after_many_wraps() -> None:
    f = NorFlash(GEOM)
    ring = _ring(f, 0, 8)
    rng = random.Random(4)
    while f.erase_counts[:8].min() < 12:
        ring.append(rng.randbytes(rng.randrange(20, 600)))
    counts = f.erase_counts[:8]
    assert counts.max() / counts.min() <= 1.1


def test_ring_needs_two_sectors_inside_the_chip() -> None:
    f = NorFlash(GEOM)
    with pytest.raises(RingError, match="at least 2"):
        Ring(f, 0, 1, region=0)
    with pytest.raises(RingError, match="outside"):
        Ring(f, 10, 8, region=0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=700), st.none()), max_size=120))
def test_ring_behaves_like_a_bounded_log(ops: list[bytes | None]) -> None:
    """Appends (bytes) and remounts (None) in any order: the ring holds a suffix of the log."""
    f = NorFlash(GEOM)
    ring = _ring(f, 0, 3)
    log: list[bytes] = []
    for op in ops:
        if op is None:
            ring = Ring(f, 0, 3, region=7)
            ring.mount()
        else:
            assert ring.append(op) == len(log)
            log.append(op)
        assert ring.next_seq == len(log)
        assert [p for _, p in ring.entries()] == log[ring.oldest_seq:]
        # the ring only gives up whole sectors: at least the newest two sectors' worth remains
        assert sum(ENTRY_HEADER_SIZE + len(p) for p in log[ring.oldest_seq:]) >= min(
            sum(ENTRY_HEADER_SIZE + len(p) for p in log), 4096 - SECTOR_HEADER_SIZE - 800)
