"""The NOR flash model: bit semantics, page rule, wear, timing, fault injection, image files."""

from __future__ import annotations

import random

import numpy as np
import pytest

from smartlogger.device.flash import (
    W25Q64,
    BadSectorError,
    FlashGeometry,
    FlashOp,
    FlashRangeError,
    ImageError,
    NorFlash,
    PowerLoss,
)

SMALL = FlashGeometry(size=8 * 4096)


def test_w25q64_geometry() -> None:
    assert W25Q64.size == 8 * 1024 * 1024
    assert W25Q64.sectors == 2048
    assert W25Q64.page_size == 256
    assert W25Q64.erase_limit == 100_000


def test_program_only_clears_bits_and_erase_sets_them() -> None:
    f = NorFlash(SMALL)
    assert f.read(0, 4) == b"\xff" * 4
    f.program(0, b"\xf0\x0f\xaa\x55")
    f.program(0, b"\x0f\xff\xff\x0f")  # trying to set bits back to 1 has no effect
    assert f.read(0, 4) == b"\x00\x0f\xaa\x05"
    f.erase_sector(0)
    assert f.read(0, 4) == b"\xff" * 4
    assert int(f.erase_counts[0]) == 1 and int(f.erase_counts[1]) == 0


def test_program_must_stay_in_one_page_and_on_the_chip() -> None:
    f = NorFlash(SMALL)
    f.program(250, b"\x00" * 6)  # ends exactly at the page end
    with pytest.raises(FlashRangeError, match="crosses a 256-byte page"):
        f.program(250, b"\x00" * 7)
    with pytest.raises(FlashRangeError, match="outside"):
        f.read(SMALL.size - 2, 4)
    with pytest.raises(FlashRangeError, match="sector 8"):
        f.erase_sector(8)


def test_modeled_device_time() -> None:
    f = NorFlash(SMALL)
    f.program(0, b"\x00" * 256)
    assert f.busy_s == pytest.approx(min(0.7e-3, 30e-6 + 255 * 2.5e-6))
    f.program(256, b"\x00")
    f.erase_sector(1)
    assert f.busy_s == pytest.approx(min(0.7e-3, 30e-6 + 255 * 2.5e-6) + 30e-6 + 45e-3)
    assert (f.program_ops, f.erase_ops, f.op_count, f.bytes_programmed) == (2, 1, 3, 257)


def test_power_loss_during_program_clears_only_a_subset_of_the_bits() -> None:
    torn_states = set()
    for seed in range(20):
        f = NorFlash(SMALL, seed=seed)
        f.program(0, b"\xf0")
        f.power_loss_at = 1
        with pytest.raises(PowerLoss) as info:
            f.program(0, b"\x00" * 16)
        assert info.value.op_index == 1
        got = f.read(0, 16)
        # bits can only have gone from 1 to 0, and byte 0 keeps its cleared bits
        assert got[0] & 0xF0 == got[0]
        torn_states.add(got)
        with pytest.raises(PowerLoss):
            f.program(100, b"\x00")  # unpowered until power_on
        f.power_on()
        f.program(100, b"\x00")
        assert f.read(100, 1) == b"\x00"
    assert len(torn_states) > 10  # really torn, not all-or-nothing


def test_power_loss_during_erase_leaves_sector_partly_erased() -> None:
    seen_partial = False
    for seed in range(10):
        f = NorFlash(SMALL, seed=seed)
        for page in range(16):
            f.program(4096 + page * 256, b"\x00" * 256)
        f.power_loss_at = f.op_count
        with pytest.raises(PowerLoss):
            f.erase_sector(1)
        cells = np.frombuffer(f.read(4096, 4096), dtype=np.uint8)
        assert int(f.erase_counts[1]) == 1  # the interrupted erase still wore the sector
        assert cells.max() == 0xFF
        seen_partial |= bool(cells.min() != 0xFF)
    assert seen_partial


def test_out_of_order_mode_undoes_some_unsynced_programs_only() -> None:
    outcomes = set()
    for seed in range(30):
        f = NorFlash(SMALL, seed=seed)
        f.out_of_order = True
        f.program(0, b"\x00")
        f.sync()  # byte 0 is durable
        f.program(1, b"\x00")
        f.program(2, b"\x00")
        f.power_loss_at = f.op_count
        with pytest.raises(PowerLoss):
            f.program(3, b"\x00")
        got = f.read(0, 3)
        assert got[0] == 0
        outcomes.add(got[1:])
    assert outcomes == {b"\x00\x00", b"\xff\x00", b"\x00\xff", b"\xff\xff"}


def test_bad_sector_and_wear_out() -> None:
    f = NorFlash(FlashGeometry(size=4 * 4096, erase_limit=3))
    f.mark_bad(2)
    with pytest.raises(BadSectorError, match="sector 2"):
        f.erase_sector(2)
    with pytest.raises(BadSectorError):
        f.program(2 * 4096, b"\x00")
    for _ in range(3):
        f.erase_sector(1)
    with pytest.raises(BadSectorError, match="after 4 cycles") as info:
        f.erase_sector(1)
    assert info.value.sector == 1
    assert f.bad_sectors == {1, 2}


def test_on_op_hook_and_crash_copy_leave_the_original_alone() -> None:
    f = NorFlash(SMALL)
    seen: list[FlashOp] = []
    copies: list[NorFlash] = []

    def hook(op: FlashOp) -> None:
        seen.append(op)
        copies.append(f.crash_copy(op, random.Random(op.index)))

    f.on_op = hook
    f.program(0, b"\x00" * 64)
    f.erase_sector(0)
    assert [(o.index, o.kind) for o in seen] == [(0, "program"), (1, "erase")]
    assert f.read(0, 64) == b"\xff" * 64  # the original completed both commands
    torn = copies[0].read(0, 64)
    assert torn != b"\x00" * 64 and torn != b"\xff" * 64
    assert int(copies[1].erase_counts[0]) == 1


def test_image_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = NorFlash(SMALL, seed=1)
    f.program(5000, b"hello")
    f.erase_sector(3)
    f.mark_bad(6)
    path = tmp_path / "chip.img"
    f.save(path)
    g = NorFlash.load(path)
    assert g.geometry == SMALL
    assert g.read(5000, 5) == b"hello"
    assert list(g.erase_counts) == list(f.erase_counts)
    assert g.bad_sectors == {6}
    assert g.busy_s == pytest.approx(f.busy_s, abs=1e-6)
    raw = path.read_bytes()
    (tmp_path / "short.img").write_bytes(raw[:-1])
    with pytest.raises(ImageError, match="header says"):
        NorFlash.load(tmp_path / "short.img")
    (tmp_path / "bad.img").write_bytes(b"XXXXXXXX" + raw[8:])
    with pytest.raises(ImageError, match="at byte 0"):
        NorFlash.load(tmp_path / "bad.img")


def test_blank_chip_is_sparse_and_erase_gives_memory_back() -> None:
    f = NorFlash(W25Q64)
    assert f.resident_sectors() == 0 and f.is_blank(2047)
    f.program(2047 * 4096 + 10, b"\x12\x34")
    assert f.resident_sectors() == 1 and not f.is_blank(2047)
    twin = f.clone()
    assert twin.read(2047 * 4096 + 10, 2) == b"\x12\x34" and twin.resident_sectors() == 1
    f.erase_sector(2047)
    assert f.resident_sectors() == 0 and f.read(2047 * 4096, 4096) == b"\xff" * 4096
    assert twin.read(2047 * 4096 + 10, 2) == b"\x12\x34"  # the clone is independent
