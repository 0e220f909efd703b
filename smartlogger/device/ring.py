"""A power-loss-safe append-only ring of opaque byte records on NOR flash sectors.

Owns the on-flash framing of one region of the chip: sector headers, entry
headers, the two-phase commit, wrap-around by erasing the oldest sector, bad
sector skipping and the mount-time scan that rebuilds the ring's state. Does
not own what the payload bytes mean (``device.blackbox`` puts encoded records
and bookkeeping in them) nor the chip itself (``device.flash``).

Byte layout (little-endian; docs/BLACKBOX.md has the full description)::

    sector header, 56 bytes at the start of every sector in use
      magic     4s   b"SLRG"
      version   u8   1
      region    u8   which ring of the chip this sector belongs to
      flags     u16  0xFFFF (reserved, left erased)
      gen       u32  sector generation: +1 for every sector the ring opens
      first_seq u64  sequence number of the first entry in this sector
      anchor    32s  owner's value for the state before first_seq (hash-chain value)
      crc       u32  CRC-32 of the 52 bytes above

    entry, packed back to back after the header, never across sectors
      status    u8   0xFF erased, 0xFE PRE_WRITE, 0xFC WRITE (committed)
      length    u16  payload bytes
      seq_off   u16  seq - first_seq
      crc       u32  CRC-32 of (seq as u64, length as u16, payload)
      payload   length bytes

Commit protocol (as FlashDB's fdb_tsdb.c): the entry is programmed with status
PRE_WRITE together with its header and payload, a write barrier follows, then
one more bit of the status byte is cleared to make it WRITE, and a second
barrier follows. Only a WRITE entry with a good CRC counts. ``append`` returns
only after the second barrier, so a returned sequence number survives any later
power loss until the ring wraps over it.

Recovery never trusts a stored pointer: mount reads every sector header of the
region, takes the longest run of consecutive generations ending at the newest,
checks that the sequence numbers of consecutive sectors join up, and scans the
entries of those sectors. A torn entry seals its sector (the next append opens
a new sector), so the space after an interrupted write is never reused.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from smartlogger.device.flash import BadSectorError, NorFlash
from smartlogger.errors import StoreError

__all__ = [
    "ENTRY_HEADER_SIZE",
    "SECTOR_HEADER_SIZE",
    "MountReport",
    "Ring",
    "RingError",
]

RING_MAGIC = b"SLRG"
RING_VERSION = 1
ANCHOR_SIZE = 32

_SECTOR_HEADER = struct.Struct("<4sBBHIQ32sI")
SECTOR_HEADER_SIZE = _SECTOR_HEADER.size  # 56
_ENTRY_HEADER = struct.Struct("<BHHI")
ENTRY_HEADER_SIZE = _ENTRY_HEADER.size  # 9
_CRC_PREFIX = struct.Struct("<QH")

STATUS_ERASED = 0xFF
STATUS_PRE_WRITE = 0xFE  # bit 0 cleared: space claimed, payload being written
STATUS_WRITE = 0xFC  # bit 1 cleared too: committed


class RingError(StoreError):
    """The ring cannot do what was asked (record too large, no usable sector left)."""


@dataclass
class _Sector:
    """RAM state of one sector of the current run."""

    index: int  # physical sector number on the chip
    gen: int
    first_seq: int
    anchor: bytes
    offsets: array[int] = field(default_factory=lambda: array("I"))  # chip address of each entry
    end: int = 0  # chip address just after the last parsed entry
    writable: bool = True  # bytes from ``end`` to the sector end are erased and may be appended to
    alive: bool = True  # False once the ring has dropped (is erasing) this sector

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.offsets)


@dataclass
class MountReport:
    """What the mount-time scan found; ``corrupt_entries`` should always be 0."""

    sectors_in_run: int = 0
    sectors_blank: int = 0
    sectors_garbage: int = 0  # header unreadable: torn header, partly erased, foreign data
    sectors_stale: int = 0  # valid header outside the current run (e.g. an interrupted erase)
    torn_entries: int = 0  # uncommitted (PRE_WRITE or torn) entries; each sealed its sector
    corrupt_entries: int = 0  # WRITE status but bad CRC or sequence
    bytes_scanned: int = 0


class Ring:
    """An append-only ring over sectors ``first_sector .. first_sector + n_sectors - 1``.

    Create, then call ``mount()`` (also on a blank chip). ``floor_seq`` is the
    sequence number an empty ring starts at (so numbers are not reused after a wipe).
    """

    def __init__(self, flash: NorFlash, first_sector: int, n_sectors: int, *, region: int) -> None:
        if n_sectors < 2:
            raise RingError(f"ring region {region}: needs at least 2 sectors, got {n_sectors}")
        if first_sector < 0 or first_sector + n_sectors > flash.geometry.sectors:
            raise RingError(f"ring region {region}: sectors {first_sector}..{first_sector + n_sectors - 1} "
                            f"are outside the {flash.geometry.sectors}-sector chip")
        self.flash = flash
        self.first_sector = first_sector
        self.n_sectors = n_sectors
        self.region = region
        self.sector_size = flash.geometry.sector_size
        self.max_payload = self.sector_size - SECTOR_HEADER_SIZE - ENTRY_HEADER_SIZE
        self._run: list[_Sector] = []
        self._firsts: list[int] = []  # first_seq of each run sector, for bisect
        self._next_seq = 0
        self._max_gen = -1  # highest generation seen on flash, so new ones are unique
        self._cursor = first_sector  # where an empty ring opens its first sector
        self.bad: set[int] = set()  # sectors found bad since mount
        self.report = MountReport()

    # ------------------------------------------------------------------ state

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def oldest_seq(self) -> int:
        return self._run[0].first_seq if self._run else self._next_seq

    @property
    def oldest_anchor(self) -> bytes | None:
        """The owner's anchor stored in the oldest sector (None if the ring is empty)."""
        return self._run[0].anchor if self._run else None

    def __len__(self) -> int:
        return self._next_seq - self.oldest_seq

    def used_bytes(self) -> int:
        """Flash bytes the current run occupies: full sectors, plus the head sector up to its end."""
        if not self._run:
            return 0
        head = self._run[-1]
        return (len(self._run) - 1) * self.sector_size + (head.end - head.index * self.sector_size)

    def usable_sectors(self) -> int:
        return self.n_sectors - len(self.bad)

    def run_sectors(self) -> list[tuple[int, int, int, int]]:
        """(physical sector, generation, first_seq, entries) of each sector, oldest first."""
        return [(s.index, s.gen, s.first_seq, len(s.offsets)) for s in self._run]

    # ------------------------------------------------------------------ mount

    def mount(self, floor_seq: int = 0) -> MountReport:
        """Rebuild the RAM state from the sectors of the region (bounded: one pass)."""
        rep = MountReport()
        by_gen: dict[int, _Sector] = {}
        max_gen = -1
        for index in range(self.first_sector, self.first_sector + self.n_sectors):
            raw = self.flash.read(index * self.sector_size, _SECTOR_HEADER.size)
            magic, version, region, _flags, gen, first_seq, anchor, crc = _SECTOR_HEADER.unpack(raw)
            if (magic != RING_MAGIC or version != RING_VERSION or region != self.region
                    or zlib.crc32(raw[:-4]) != crc):
                if self.flash.is_blank(index):
                    rep.sectors_blank += 1
                else:
                    rep.sectors_garbage += 1
                continue
            max_gen = max(max_gen, gen)
            if gen in by_gen:  # cannot happen with unique generations; keep the first, call it stale
                rep.sectors_stale += 1
                continue
            by_gen[gen] = _Sector(index, gen, first_seq, bytes(anchor))
        self._max_gen = max(self._max_gen, max_gen)
        run: list[_Sector] = []
        g = max_gen
        while g in by_gen:
            run.append(by_gen.pop(g))
            g -= 1
        run.reverse()
        corrupt = [self._scan_sector(sec, rep) for sec in run]
        # consecutive sectors must join up: sector k+1 starts where sector k's committed entries end
        start = len(run) - 1
        while start > 0 and run[start - 1].next_seq == run[start].first_seq:
            start -= 1
        rep.sectors_stale += start + len(by_gen)
        # damage in sectors cut off here (an interrupted erase) is not damage to the ring
        rep.corrupt_entries = sum(corrupt[start:])
        run = run[start:]
        rep.sectors_in_run = len(run)
        self._run = run
        self._firsts = [s.first_seq for s in run]
        self._next_seq = run[-1].next_seq if run else floor_seq
        self._cursor = (run[-1].index if run else self.first_sector - 1)
        self.bad = set()  # rediscovered by failing erases; the chip's own list is not readable
        self.report = rep
        return rep

    def _scan_sector(self, sec: _Sector, rep: MountReport) -> int:
        """Parse the entries of ``sec``; returns how many committed entries were corrupt (0 or 1)."""
        corrupt = 0
        base = sec.index * self.sector_size
        buf = self.flash.read(base, self.sector_size)  # positions below are relative to ``base``
        end = self.sector_size
        pos = SECTOR_HEADER_SIZE
        hdr = _ENTRY_HEADER
        while True:
            if pos + hdr.size > end:
                sec.writable = False
                break
            status, length, seq_off, crc = hdr.unpack_from(buf, pos)
            if status == STATUS_ERASED:
                sec.writable = not buf[pos:].strip(b"\xff")
                if not sec.writable:
                    rep.torn_entries += 1
                break
            seq = sec.first_seq + len(sec.offsets)
            body = pos + hdr.size
            ok = (body + length <= end and seq_off == len(sec.offsets)
                  and zlib.crc32(buf[body:body + length], zlib.crc32(_CRC_PREFIX.pack(seq, length))) == crc)
            if status == STATUS_WRITE and ok:
                sec.offsets.append(base + pos)
                pos = body + length
                continue
            if status == STATUS_WRITE:
                corrupt += 1
            else:
                rep.torn_entries += 1
            sec.writable = False
            break
        sec.end = base + pos
        rep.bytes_scanned += pos
        return corrupt

    # ------------------------------------------------------------------ append

    def append(self, payload: bytes, anchor: bytes = b"") -> int:
        """Commit ``payload`` as the next entry and return its sequence number.

        ``anchor`` (at most 32 bytes) is stored in the header of a sector opened
        for this entry: the owner's state just before this entry (a chain value).
        """
        n = len(payload)
        if n > self.max_payload:
            raise RingError(f"ring region {self.region}: entry of {n} bytes exceeds the "
                            f"{self.max_payload}-byte maximum of a {self.sector_size}-byte sector")
        need = ENTRY_HEADER_SIZE + n
        for _ in range(self.n_sectors + 1):
            head = self._run[-1] if self._run else None
            if head is None or not head.writable or head.end + need > (head.index + 1) * self.sector_size:
                self._open_sector(anchor)
                head = self._run[-1]
            try:
                self._write_entry(head, payload)
            except BadSectorError as err:
                head.writable = False
                self.bad.add(err.sector)
                continue
            return self._next_seq - 1
        raise RingError(f"ring region {self.region}: no sector accepted the entry")

    def _write_entry(self, head: _Sector, payload: bytes) -> None:
        seq = self._next_seq
        n = len(payload)
        crc = zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(seq, n)))
        blob = _ENTRY_HEADER.pack(STATUS_PRE_WRITE, n, seq - head.first_seq, crc) + payload
        pos = head.end
        head.writable = False  # until committed: a failure below leaves a torn entry here
        self._program(pos, blob)
        self.flash.sync()
        self.flash.program(pos, bytes((STATUS_WRITE,)))
        self.flash.sync()
        head.offsets.append(pos)
        head.end = pos + len(blob)
        head.writable = True
        self._next_seq = seq + 1

    def _program(self, addr: int, data: bytes) -> None:
        page = self.flash.geometry.page_size
        mv = memoryview(data)
        done = 0
        while done < len(data):
            room = page - (addr + done) % page
            chunk = mv[done:done + room]
            self.flash.program(addr + done, bytes(chunk))
            done += len(chunk)

    def _open_sector(self, anchor: bytes) -> None:
        if len(anchor) > ANCHOR_SIZE:
            raise RingError(f"anchor of {len(anchor)} bytes exceeds {ANCHOR_SIZE}")
        cand = self._cursor
        for _ in range(self.n_sectors):
            cand = self.first_sector + (cand + 1 - self.first_sector) % self.n_sectors
            if cand in self.bad:
                continue
            if self._run and cand == self._run[-1].index:
                break  # every other sector is bad
            self._drop_through(cand)
            try:
                self.flash.erase_sector(cand)
                gen = self._max_gen + 1
                raw = _SECTOR_HEADER.pack(RING_MAGIC, RING_VERSION, self.region, 0xFFFF, gen,
                                          self._next_seq, anchor.ljust(ANCHOR_SIZE, b"\x00"), 0)
                raw = raw[:-4] + struct.pack("<I", zlib.crc32(raw[:-4]))
                self.flash.program(cand * self.sector_size, raw)
                self.flash.sync()
            except BadSectorError:
                self.bad.add(cand)
                continue
            self._max_gen = gen
            self._cursor = cand
            sec = _Sector(cand, gen, self._next_seq, anchor.ljust(ANCHOR_SIZE, b"\x00"),
                          end=cand * self.sector_size + SECTOR_HEADER_SIZE)
            self._run.append(sec)
            self._firsts.append(sec.first_seq)
            return
        raise RingError(f"ring region {self.region}: no usable sector left "
                        f"({len(self.bad)} of {self.n_sectors} bad)")

    def _drop_through(self, index: int) -> None:
        """Forget the run sectors up to and including physical sector ``index`` (about to be erased)."""
        k = next((i for i, s in enumerate(self._run) if s.index == index), -1)
        for s in self._run[:k + 1]:
            s.alive = False
        del self._run[:k + 1]
        del self._firsts[:k + 1]

    # ------------------------------------------------------------------ read

    def entries(self, from_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(seq, payload)`` from ``max(from_seq, oldest_seq)`` to the newest entry.

        Safe against appends between items: entries overwritten meanwhile are
        skipped (the iterator continues at the new oldest) and new ones are included.
        """
        seq = from_seq
        while True:
            if seq < self.oldest_seq:
                seq = self.oldest_seq
            if seq >= self._next_seq:
                return
            k = bisect_right(self._firsts, seq) - 1
            sec = self._run[k]
            i = seq - sec.first_seq
            base = sec.index * self.sector_size
            # one read per sector; read again if the head sector grew meanwhile
            buf, have = b"", 0
            while sec.alive and i < len(sec.offsets):
                if i >= have:
                    buf, have = self.flash.read(base, self.sector_size), len(sec.offsets)
                pos = sec.offsets[i] - base
                length = int.from_bytes(buf[pos + 1:pos + 3], "little")
                body = pos + ENTRY_HEADER_SIZE
                yield seq, buf[body:body + length]
                seq += 1
                i += 1

    def newest(self) -> tuple[int, bytes] | None:
        """The newest entry, or None if the ring is empty."""
        if not len(self):
            return None
        return next(self.entries(self._next_seq - 1))

    # ------------------------------------------------------------------ wipe

    def wipe(self, floor_seq: int) -> None:
        """Erase every non-blank sector of the region; the ring restarts empty at ``floor_seq``."""
        for s in self._run:
            s.alive = False
        for index in range(self.first_sector, self.first_sector + self.n_sectors):
            if index in self.bad or self.flash.is_blank(index):
                continue
            try:
                self.flash.erase_sector(index)
            except BadSectorError:
                self.bad.add(index)
        self._run = []
        self._firsts = []
        self._next_seq = floor_seq
