"""A SPI NOR flash model (W25Q64 geometry) with littlefs-style fault injection.

Owns the physics of the blackbox's storage medium: an array of bytes whose
erased state is 0xFF, where a program can only clear bits and must stay inside
one 256-byte page, where only whole 4 KiB sectors can be set back to 0xFF, with
per-sector erase counters, an erase-cycle limit, bad sectors and a model of
device busy time. Does not own any layout on top of the bytes (``device.ring``
and ``device.blackbox`` do).

Fault injection, in the spirit of littlefs's ``lfs_emubd``:

- ``power_loss_at = N``: the N-th program/erase operation (0-based, counted by
  ``op_count``) is interrupted: a program leaves some of its bits cleared and
  others not, an erase leaves some bits set and others not (the sector is
  partly erased), then ``PowerLoss`` is raised and the chip stays unpowered
  (every further operation raises) until ``power_on()``.
- ``out_of_order = True``: programs issued since the last ``sync()`` (the write
  barrier a driver gets by polling the busy bit) may complete in any order, so
  at a power loss a random subset of them never reached the cells.
- ``on_op``: a hook called before every operation with a ``FlashOp``; a sweep
  harness uses it with ``crash_copy`` to get the chip state for a power loss at
  *every* operation index from one run of a workload instead of one run per index.
- bad sectors (``mark_bad``) and wear-out (``geometry.erase_limit``) make erases
  and programs fail with ``BadSectorError``; a failed erase leaves the sector
  partly erased.

Memory: the cells are held inverted in a private anonymous mapping, so erased
sectors are untouched zero pages and erasing hands pages back to the OS; a
blank 8 MiB chip costs almost nothing and a simulated fleet of hundreds of
loggers fits in memory.

Image file format (``save``/``load``), all little-endian::

    magic      8s   b"SLNOR\\x00\\x01\\x00"
    size       u32  chip size, bytes
    sector     u32  erase sector size, bytes
    page       u32  program page size, bytes
    limit      u32  erase cycles per sector before it fails
    busy_us    u64  modeled device busy time so far, microseconds
    counts     u32 * sectors   erase count per sector
    bad        u8  * sectors   1 = sector is bad
    data       size bytes      the cells

Live image files (``open_live``): the chip *is* the file. A virtual site keeps each
logger's chip in one, mapped shared into memory, so every program and erase is in the
file the moment it completes: a process killed at any instant leaves exactly what a
power loss at that instant would leave on a real chip, and the blackbox's recovery
applies across processes. Same header fields with magic ``b"SLNOR\\x00\\x02\\x00"``,
then the counts and bad flags, then, from the next 4 KiB boundary, the cells *inverted*
(a zero byte is an erased 0xFF), so an erased chip is a sparse file of holes. ``busy_us``
is brought up to date at ``sync_file``. ``load`` reads both formats.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from smartlogger.errors import FlashError

__all__ = [
    "W25Q64",
    "BadSectorError",
    "FlashGeometry",
    "FlashOp",
    "FlashRangeError",
    "ImageError",
    "NorFlash",
    "PowerLoss",
]


@dataclass(frozen=True)
class FlashGeometry:
    """Size and timing of a NOR chip. Times are typical datasheet values, seconds."""

    size: int = 8 * 1024 * 1024  # bytes
    sector_size: int = 4096  # bytes per erase sector
    page_size: int = 256  # bytes per program page
    erase_limit: int = 100_000  # erase cycles per sector (datasheet endurance)
    first_byte_program_s: float = 30e-6  # tBP1, W25Q64JV
    next_byte_program_s: float = 2.5e-6  # tBP2, per additional byte
    page_program_s: float = 0.7e-3  # tPP for a full page (issue: ~0.7 ms)
    sector_erase_s: float = 45e-3  # tSE typical

    def __post_init__(self) -> None:
        if self.sector_size % self.page_size or self.size % self.sector_size:
            raise FlashError(
                f"geometry: size {self.size} / sector {self.sector_size} / page {self.page_size} "
                "must divide evenly"
            )

    @property
    def sectors(self) -> int:
        return self.size // self.sector_size

    def program_time_s(self, nbytes: int) -> float:
        """Busy time of one page-program command of ``nbytes`` bytes."""
        return min(self.page_program_s,
                   self.first_byte_program_s + self.next_byte_program_s * max(nbytes - 1, 0))


#: Winbond W25Q64: 8 MiB, 2048 sectors of 4 KiB, 256-byte pages.
W25Q64 = FlashGeometry()


class FlashRangeError(FlashError, ValueError):
    """An address, length or sector index is outside the chip or crosses a page."""


class BadSectorError(FlashError):
    """A sector failed to erase or program (bad block or worn out)."""

    def __init__(self, sector: int, reason: str) -> None:
        self.sector = sector
        self.reason = reason
        super().__init__(f"flash sector {sector}: {reason}")


class PowerLoss(FlashError):
    """Simulated power failure during operation ``op_index``; the chip is now unpowered."""

    def __init__(self, op_index: int) -> None:
        self.op_index = op_index
        super().__init__(f"power lost during flash operation {op_index}")


class ImageError(FlashError, ValueError):
    """A flash image file cannot be read; ``offset`` is the byte offset of the problem."""

    def __init__(self, path: str, message: str, *, offset: int | None = None) -> None:
        self.path = path
        self.offset = offset
        where = f"{path}" + (f" at byte {offset}" if offset is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class FlashOp:
    """One program or erase command as seen by the ``on_op`` hook."""

    index: int  # 0-based count of program+erase commands since the model was created
    kind: str  # "program" or "erase"
    addr: int  # byte address (erase: sector start)
    data: bytes  # bytes to program (erase: empty)


_IMAGE_MAGIC = b"SLNOR\x00\x01\x00"
_LIVE_MAGIC = b"SLNOR\x00\x02\x00"
_IMAGE_HEAD = struct.Struct("<8sIIIIQ")
_LIVE_ALIGN = 4096


def _live_cells_offset(sectors: int) -> int:
    """Where the (inverted) cells start in a live image: after header, counts and bad flags."""
    raw = _IMAGE_HEAD.size + 5 * sectors
    return -(-raw // _LIVE_ALIGN) * _LIVE_ALIGN


class NorFlash:
    """The cells of one NOR chip plus its wear and timing state."""

    def __init__(self, geometry: FlashGeometry = W25Q64, *, seed: int = 0) -> None:
        self.geometry = geometry
        # The cells are kept inverted (a set bit = a programmed 0 on the chip) in anonymous
        # memory: an erased sector is all zero pages, which the OS does not allocate until
        # written, so a fleet of 8 MiB chips costs only the sectors actually in use.
        # private: MADV_DONTNEED then really drops the pages (they read back as zero)
        self._mem = mmap.mmap(-1, geometry.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._inv: npt.NDArray[np.uint8] = np.frombuffer(self._mem, dtype=np.uint8)
        self._can_release = geometry.sector_size % mmap.PAGESIZE == 0
        self.erase_counts: npt.NDArray[np.uint32] = np.zeros(geometry.sectors, dtype=np.uint32)
        self.bad_sectors: set[int] = set()
        self.op_count = 0  # program + erase commands issued (the power-loss index)
        self.program_ops = 0
        self.erase_ops = 0
        self.bytes_programmed = 0
        self.busy_s = 0.0  # modeled device busy time, seconds
        self.power_loss_at: int | None = None
        self.out_of_order = False
        self.on_op: Callable[[FlashOp], None] | None = None
        self.powered = True
        self._rng = random.Random(seed)
        # programs since the last sync: (addr, bytes before the program); used by out-of-order mode
        self._unsynced: list[tuple[int, bytes]] = []
        self._live: mmap.mmap | None = None  # the mapped file of a live image (open_live)
        self._live_bad: npt.NDArray[np.uint8] | None = None
        self._live_cells_at = 0
        self.path: Path | None = None

    # ------------------------------------------------------------------ live image files

    @classmethod
    def open_live(cls, path: str | os.PathLike[str], *, geometry: FlashGeometry | None = None,
                  seed: int = 0) -> NorFlash:
        """The chip kept in the live image file ``path`` (see the module docstring).

        With ``geometry`` a new, erased chip is created at ``path`` (which must not
        exist); without it the existing file is opened. Raises ``ImageError`` for a file
        that is not a live image.
        """
        name = os.fspath(path)
        if geometry is not None:
            n = geometry.sectors
            cells_at = _live_cells_offset(n)
            with open(name, "xb") as fh:  # exclusive: never format over an existing chip
                fh.write(_IMAGE_HEAD.pack(_LIVE_MAGIC, geometry.size, geometry.sector_size,
                                          geometry.page_size, geometry.erase_limit, 0))
                fh.truncate(cells_at + geometry.size)  # holes: erased cells cost no disk
        try:
            fd = os.open(name, os.O_RDWR)
        except OSError as err:
            raise ImageError(name, f"cannot open: {err.strerror}") from None
        try:
            total = os.fstat(fd).st_size
            head = os.pread(fd, _IMAGE_HEAD.size, 0)
            if len(head) < _IMAGE_HEAD.size or head[:8] != _LIVE_MAGIC:
                raise ImageError(name, "not a live smartlogger flash image", offset=0)
            _, size, sector, page, limit, busy_us = _IMAGE_HEAD.unpack(head)
            try:
                geom = FlashGeometry(size=size, sector_size=sector, page_size=page, erase_limit=limit)
            except FlashError as err:
                raise ImageError(name, str(err), offset=8) from None
            n = geom.sectors
            cells_at = _live_cells_offset(n)
            if total != cells_at + size:
                raise ImageError(name, f"live image is {total} bytes, header says {cells_at + size}",
                                 offset=total)
            mem = mmap.mmap(fd, total, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)  # the mapping keeps the file open
        flash = cls(geom, seed=seed)
        del flash._inv  # drop the view of the anonymous map before closing it
        flash._mem.close()
        flash._mem = mem
        flash._live = mem
        flash._live_cells_at = cells_at
        flash.path = Path(name)
        flash._inv = np.frombuffer(mem, dtype=np.uint8, count=size, offset=cells_at)
        flash.erase_counts = np.frombuffer(mem, dtype="<u4", count=n, offset=_IMAGE_HEAD.size)
        flash._live_bad = np.frombuffer(mem, dtype=np.uint8, count=n, offset=_IMAGE_HEAD.size + 4 * n)
        flash.bad_sectors = {int(i) for i in np.flatnonzero(flash._live_bad)}
        flash.busy_s = busy_us / 1e6
        return flash

    @property
    def live(self) -> bool:
        """True if the cells are a live image file (``open_live``)."""
        return self._live is not None

    def sync_file(self) -> None:
        """Live image: record the busy time and ask the OS to write the pages to disk.

        Not needed to survive the process being killed (the pages are the file's);
        this is for a clean shutdown and for surviving a crash of the machine.
        """
        if self._live is None:
            return
        struct.pack_into("<Q", self._live, _IMAGE_HEAD.size - 8, round(self.busy_s * 1e6))
        self._live.flush()

    def close(self) -> None:
        """Release the memory (a live image is synced first). The model is unusable after."""
        if self._live is not None:
            self.sync_file()
        # numpy views hold exports of the buffer: drop them before closing the mapping
        self._inv = np.zeros(0, dtype=np.uint8)
        self.erase_counts = np.zeros(self.geometry.sectors, dtype=np.uint32)
        self._live_bad = None
        with contextlib.suppress(BufferError):
            self._mem.close()
        self._live = None

    # ------------------------------------------------------------------ reading

    @property
    def size(self) -> int:
        return self.geometry.size

    def read(self, addr: int, length: int) -> bytes:
        self._check_range(addr, length)
        return (~self._inv[addr:addr + length]).tobytes()

    def is_blank(self, sector: int) -> bool:
        """True if every byte of ``sector`` reads 0xFF."""
        return not self._inv[self._sector_slice(sector)].any()

    def resident_sectors(self) -> int:
        """Sectors holding any programmed bit (what the model's memory use scales with)."""
        s = self.geometry.sector_size
        return int(self._inv.reshape(-1, s).any(axis=1).sum())

    # ------------------------------------------------------------------ commands

    def program(self, addr: int, data: bytes) -> None:
        """Clear the bits that are 0 in ``data`` at ``addr`` (AND); must stay inside one page."""
        n = len(data)
        if n == 0:
            return
        self._check_range(addr, n)
        page = self.geometry.page_size
        if addr // page != (addr + n - 1) // page:
            raise FlashRangeError(f"program of {n} bytes at 0x{addr:06x} crosses a {page}-byte page")
        sector = addr // self.geometry.sector_size
        op = self._begin("program", addr, bytes(data))
        if sector in self.bad_sectors:
            raise BadSectorError(sector, f"program at 0x{addr:06x} failed (bad sector)")
        new = np.frombuffer(data, dtype=np.uint8)
        if self.out_of_order:
            self._unsynced.append((addr, self.read(addr, n)))
        if op.index == self.power_loss_at:
            # torn program: each bit that should be cleared is cleared with probability 1/2
            noise = np.frombuffer(self._rng.randbytes(n), dtype=np.uint8)
            self._inv[addr:addr + n] |= ~(new | noise)
            self._lose_power(op.index)
        self._inv[addr:addr + n] |= ~new
        self.program_ops += 1
        self.bytes_programmed += n
        self.busy_s += self.geometry.program_time_s(n)

    def erase_sector(self, sector: int) -> None:
        """Set every byte of ``sector`` to 0xFF (one erase cycle of wear)."""
        sl = self._sector_slice(sector)
        op = self._begin("erase", sl.start, b"")
        self.erase_counts[sector] += 1
        self.busy_s += self.geometry.sector_erase_s
        if op.index == self.power_loss_at:
            self._partial_erase(sl)
            self._lose_power(op.index)
        if sector in self.bad_sectors or int(self.erase_counts[sector]) > self.geometry.erase_limit:
            self._set_bad(sector)
            self._partial_erase(sl)
            raise BadSectorError(sector, f"erase failed after {int(self.erase_counts[sector])} cycles")
        self._erase_cells(sl)
        self.erase_ops += 1

    def sync(self) -> None:
        """Write barrier: every program issued so far has reached the cells."""
        self._unsynced.clear()

    def power_on(self) -> None:
        """Restore power after a ``PowerLoss``; disarms the injected fault."""
        self.powered = True
        self.power_loss_at = None
        self._unsynced.clear()

    # ------------------------------------------------------------------ faults

    def mark_bad(self, sector: int) -> None:
        """Make ``sector`` fail every later erase and program."""
        self._sector_slice(sector)
        self._set_bad(sector)

    def _set_bad(self, sector: int) -> None:
        self.bad_sectors.add(sector)
        if self._live_bad is not None:
            self._live_bad[sector] = 1

    def clone(self) -> NorFlash:
        """An independent copy of the chip (cells, wear, faults), without hooks."""
        twin = NorFlash(self.geometry, seed=self._rng.randrange(1 << 30))
        s = self.geometry.sector_size
        src = self._inv.reshape(-1, s)
        used = np.flatnonzero(src.any(axis=1))  # copy only sectors in use: keeps the twin sparse
        twin._inv.reshape(-1, s)[used] = src[used]
        twin.erase_counts[:] = self.erase_counts
        twin.bad_sectors = set(self.bad_sectors)
        twin.op_count = self.op_count
        twin.program_ops = self.program_ops
        twin.erase_ops = self.erase_ops
        twin.bytes_programmed = self.bytes_programmed
        twin.busy_s = self.busy_s
        twin.out_of_order = self.out_of_order
        twin._unsynced = list(self._unsynced)
        return twin

    def crash_copy(self, op: FlashOp, rng: random.Random) -> NorFlash:
        """The chip as it would be after power failed during ``op`` (called from ``on_op``).

        The copy holds the interrupted operation partly done, and in out-of-order
        mode a random subset of the unsynced programs undone. It is powered and
        has no hooks, ready for a remount.
        """
        twin = self.clone()
        twin._rng = rng
        if op.kind == "program":
            n = len(op.data)
            if (op.addr // self.geometry.sector_size) not in self.bad_sectors:
                noise = np.frombuffer(rng.randbytes(n), dtype=np.uint8)
                twin._inv[op.addr:op.addr + n] |= ~(np.frombuffer(op.data, dtype=np.uint8) | noise)
        else:
            sector = op.addr // self.geometry.sector_size
            twin.erase_counts[sector] += 1
            twin._partial_erase(twin._sector_slice(sector))
        if self.out_of_order:
            # newest first, so an undone earlier program restores the truly older bytes
            for addr, old in reversed(self._unsynced):
                if rng.random() < 0.5:
                    twin._write_cells(addr, old)
        twin._unsynced.clear()
        return twin

    # ------------------------------------------------------------------ image files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the chip (cells, erase counters, bad sectors) to an image file."""
        g = self.geometry
        head = _IMAGE_HEAD.pack(_IMAGE_MAGIC, g.size, g.sector_size, g.page_size, g.erase_limit,
                                round(self.busy_s * 1e6))
        bad = bytes(1 if s in self.bad_sectors else 0 for s in range(g.sectors))
        tmp = Path(f"{os.fspath(path)}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(head)
            fh.write(self.erase_counts.astype("<u4").tobytes())
            fh.write(bad)
            fh.write((~self._inv).tobytes())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NorFlash:
        """Read an image written by ``save``."""
        name = os.fspath(path)
        with open(path, "rb") as fh:
            raw = fh.read()
        if len(raw) < _IMAGE_HEAD.size:
            raise ImageError(name, f"file of {len(raw)} bytes is too short for the image header",
                             offset=0)
        magic, size, sector, page, limit, busy_us = _IMAGE_HEAD.unpack_from(raw, 0)
        if magic == _LIVE_MAGIC:
            return cls._load_live_copy(name, raw)
        if magic != _IMAGE_MAGIC:
            raise ImageError(name, f"not a smartlogger flash image (magic {magic!r})", offset=0)
        try:
            geometry = FlashGeometry(size=size, sector_size=sector, page_size=page, erase_limit=limit)
        except FlashError as err:
            raise ImageError(name, str(err), offset=8) from None
        n = geometry.sectors
        pos = _IMAGE_HEAD.size
        want = pos + 4 * n + n + size
        if len(raw) != want:
            raise ImageError(name, f"image is {len(raw)} bytes, header says {want}", offset=len(raw))
        flash = cls(geometry)
        flash.busy_s = busy_us / 1e6
        flash.erase_counts[:] = np.frombuffer(raw, dtype="<u4", count=n, offset=pos)
        pos += 4 * n
        flash.bad_sectors = {i for i, b in enumerate(raw[pos:pos + n]) if b}
        pos += n
        cells = np.frombuffer(raw, dtype=np.uint8, count=size, offset=pos).reshape(-1, sector)
        used = np.flatnonzero((cells != 0xFF).any(axis=1))
        flash._inv.reshape(-1, sector)[used] = ~cells[used]
        return flash

    @classmethod
    def _load_live_copy(cls, name: str, raw: bytes) -> NorFlash:
        """A live image read into an ordinary (in-memory) chip, e.g. to inspect it."""
        _, size, sector, page, limit, busy_us = _IMAGE_HEAD.unpack_from(raw, 0)
        try:
            geometry = FlashGeometry(size=size, sector_size=sector, page_size=page, erase_limit=limit)
        except FlashError as err:
            raise ImageError(name, str(err), offset=8) from None
        n = geometry.sectors
        cells_at = _live_cells_offset(n)
        if len(raw) != cells_at + size:
            raise ImageError(name, f"live image is {len(raw)} bytes, header says {cells_at + size}",
                             offset=len(raw))
        flash = cls(geometry)
        flash.busy_s = busy_us / 1e6
        pos = _IMAGE_HEAD.size
        flash.erase_counts[:] = np.frombuffer(raw, dtype="<u4", count=n, offset=pos)
        flash.bad_sectors = {i for i, b in enumerate(raw[pos + 4 * n:pos + 5 * n]) if b}
        inv = np.frombuffer(raw, dtype=np.uint8, count=size, offset=cells_at).reshape(-1, sector)
        used = np.flatnonzero(inv.any(axis=1))
        flash._inv.reshape(-1, sector)[used] = inv[used]
        return flash

    # ------------------------------------------------------------------ internals

    def _begin(self, kind: str, addr: int, data: bytes) -> FlashOp:
        if not self.powered:
            raise PowerLoss(self.op_count)
        op = FlashOp(self.op_count, kind, addr, data)
        self.op_count += 1
        if self.on_op is not None:
            self.on_op(op)
        return op

    def _lose_power(self, index: int) -> None:
        if self.out_of_order:
            for addr, old in reversed(self._unsynced):
                if self._rng.random() < 0.5:
                    self._write_cells(addr, old)
        self._unsynced.clear()
        self.powered = False
        raise PowerLoss(index)

    def _partial_erase(self, sl: slice) -> None:
        n = sl.stop - sl.start
        if self._rng.random() < 0.5:
            # erase stopped part way through the sector
            cut = sl.start + self._rng.randrange(n)
            self._inv[sl.start:cut] = 0
        else:
            # every cell partly erased: random bits went back to 1
            self._inv[sl] &= ~np.frombuffer(self._rng.randbytes(n), dtype=np.uint8)

    def _erase_cells(self, sl: slice) -> None:
        if self._live is not None:
            # a live image: punch a hole (the file stays sparse), else write the zeros
            try:
                if not self._can_release:
                    raise OSError("sector not page aligned")
                self._live.madvise(mmap.MADV_REMOVE, self._live_cells_at + sl.start,
                                   sl.stop - sl.start)
            except (OSError, AttributeError):
                self._inv[sl] = 0
            return
        if self._can_release:
            # hand the pages back: they read as zero (= erased) and cost no memory until written
            self._mem.madvise(mmap.MADV_DONTNEED, sl.start, sl.stop - sl.start)
        else:
            self._inv[sl] = 0

    def _write_cells(self, addr: int, cells: bytes) -> None:
        """Set cells to exactly ``cells`` (undo of an out-of-order program)."""
        self._inv[addr:addr + len(cells)] = ~np.frombuffer(cells, dtype=np.uint8)

    def _sector_slice(self, sector: int) -> slice:
        if not 0 <= sector < self.geometry.sectors:
            raise FlashRangeError(f"sector {sector} is outside 0..{self.geometry.sectors - 1}")
        s = self.geometry.sector_size
        return slice(sector * s, (sector + 1) * s)

    def _check_range(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.geometry.size:
            raise FlashRangeError(
                f"access of {length} bytes at 0x{addr:06x} is outside the {self.geometry.size}-byte chip"
            )
