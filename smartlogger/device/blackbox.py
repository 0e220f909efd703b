"""The blackbox: a logger's ``LogStore`` on NOR flash, with a long-lived summary history.

Owns the division of the chip into regions, what goes into each, the hash-chain
heads and anchors of both streams, the derivation of the summary history
(daily min/mean/max, discharge summaries, copies of events, configuration
changes and clock sets), the persistent read-out mark and the reset rules, and
recovery of all of that after a power loss. Does not own the sector/entry
framing (``device.ring``), the chip (``device.flash``) or record bytes
(``logfile.records``).

Regions (sector ranges, see ``BlackboxLayout``; W25Q64 numbers):

- meta (sectors 0-3): a ring of JSON snapshots of the store state (identity,
  read-out mark, last reset). The newest committed snapshot is the state.
- summary (sectors 4-131, 512 KiB): stream 1, ``summary_records``. Each entry
  is ``source:u64`` + record bytes, where ``source = main_seq << 1 | last`` names
  the main-stream record it was derived from and whether it is the last entry
  derived from that record. Recovery uses it to finish a derivation a power
  loss interrupted. The chain is over the record bytes only.
- main (sectors 132-2047, 7.48 MiB): stream 0, ``records``; entry = record bytes.

A reset for reuse wipes the main region only. The summary region is the
battery's lifetime record: it keeps going and logs the reset itself. Sequence
numbers and the main chain continue across a reset (the reset snapshot keeps
the chain head), so a verifier sees one unbroken chain with a RESET event.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from smartlogger.device.flash import W25Q64, FlashGeometry, NorFlash
from smartlogger.device.ring import MountReport, Ring
from smartlogger.errors import ResetRefused, StoreError
from smartlogger.logfile import chain
from smartlogger.logfile.records import RecordType, decode_record, encode_record
from smartlogger.model import (
    ClockSet,
    ConfigChange,
    DailySummary,
    DischargeSummary,
    Event,
    EventKind,
    Generation,
    LoggerIdentity,
    Record,
    SampleBlock,
)

__all__ = [
    "REGION_MAIN",
    "REGION_META",
    "REGION_SUMMARY",
    "BlackboxLayout",
    "BlackboxStore",
    "NotFormattedError",
]

REGION_META = 0
REGION_SUMMARY = 1
REGION_MAIN = 2

DAY_MS = 86_400_000
_SOURCE = struct.Struct("<Q")  # summary entry prefix: main seq << 1 | last-derived flag
_I64 = struct.Struct("<q")
_META_VERSION = 1


class NotFormattedError(StoreError):
    """The flash holds no blackbox (no readable meta snapshot)."""


@dataclass(frozen=True)
class BlackboxLayout:
    """Sector ranges ``(first, count)`` of the three regions."""

    meta: tuple[int, int]
    summary: tuple[int, int]
    main: tuple[int, int]

    @classmethod
    def for_geometry(cls, geometry: FlashGeometry) -> BlackboxLayout:
        """4 meta sectors (2 on chips under 256 sectors), 1/16 of the chip for the summary, rest main."""
        n = geometry.sectors
        meta = 4 if n >= 256 else 2
        summary = max(2, n // 16)
        main = n - meta - summary
        if main < 2:
            raise StoreError(f"a {n}-sector chip is too small for a blackbox (needs >= {meta + summary + 2})")
        return cls((0, meta), (meta, summary), (meta + summary, main))


@dataclass
class _DayAccumulator:
    day: int  # UTC day number (device time // DAY_MS)
    count: int = 0
    mv_min: int = 2**31 - 1
    mv_max: int = -(2**31)
    mv_sum: int = 0
    dc_min: int = 2**31 - 1
    dc_max: int = -(2**31)
    dc_sum: int = 0

    def add(self, mv: np.ndarray[Any, Any], dc: np.ndarray[Any, Any]) -> None:
        self.count += int(mv.size)
        self.mv_min = min(self.mv_min, int(mv.min()))
        self.mv_max = max(self.mv_max, int(mv.max()))
        self.mv_sum += int(mv.sum(dtype=np.int64))
        self.dc_min = min(self.dc_min, int(dc.min()))
        self.dc_max = max(self.dc_max, int(dc.max()))
        self.dc_sum += int(dc.sum(dtype=np.int64))

    def summary(self) -> DailySummary:
        # mean rounded half away from zero to an integer mV / dC
        return DailySummary(self.day * DAY_MS, self.count, self.mv_min,
                            _round_div(self.mv_sum, self.count), self.mv_max, self.dc_min,
                            _round_div(self.dc_sum, self.count), self.dc_max)


def _round_div(a: int, b: int) -> int:
    q = (abs(a) * 2 + b) // (2 * b)
    return q if a >= 0 else -q


#: Event kinds copied into the summary history (RATE_CHANGE is implied by discharges).
SUMMARY_EVENT_KINDS = frozenset(k for k in EventKind if k is not EventKind.RATE_CHANGE)


class BlackboxStore:
    """``LogStore`` on NOR flash. Build with ``create``, ``mount`` or ``from_image``."""

    def __init__(self, flash: NorFlash, layout: BlackboxLayout | None = None) -> None:
        self.flash = flash
        self.layout = layout or BlackboxLayout.for_geometry(flash.geometry)
        self._meta = Ring(flash, *self.layout.meta, region=REGION_META)
        self._summary = Ring(flash, *self.layout.summary, region=REGION_SUMMARY)
        self._main = Ring(flash, *self.layout.main, region=REGION_MAIN)
        self.identity: LoggerIdentity | None = None
        self._read_up_to = 0
        self._reset: dict[str, Any] | None = None  # last reset: floor, head (hex), t_ms, forced
        self._resets = 0
        self._heads = [b"", b""]  # chain value after the newest record, per stream
        self._day: _DayAccumulator | None = None
        self._last_day = -(2**62)  # newest day with a DailySummary in the summary stream
        self._discharge_start: Event | None = None
        self._days_pending = False  # the open day's accumulator must be rebuilt (after a mount)
        self.mount_reports: dict[str, MountReport] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(cls, identity: LoggerIdentity, *, flash: NorFlash | None = None,
               geometry: FlashGeometry = W25Q64) -> BlackboxStore:
        """Format ``flash`` (a new W25Q64 model if None) for ``identity`` and mount it."""
        flash = flash if flash is not None else NorFlash(geometry)
        store = cls(flash)
        for ring in (store._meta, store._summary, store._main):
            ring.wipe(0)
        store._meta.mount()
        store.identity = identity
        store._write_meta()
        return cls.mount(flash, layout=store.layout)

    @classmethod
    def mount(cls, flash: NorFlash, *, layout: BlackboxLayout | None = None) -> BlackboxStore:
        """Rebuild the store from the chip; finishes a reset or a summary a power loss interrupted."""
        store = cls(flash, layout)
        store._mount()
        return store

    @classmethod
    def from_image(cls, path: str | os.PathLike[str]) -> BlackboxStore:
        return cls.mount(NorFlash.load(path))

    def save_image(self, path: str | os.PathLike[str]) -> None:
        self.flash.save(path)

    def bind_serial(self, serial: str) -> None:
        """Check that this blackbox was formatted for ``serial`` (its chains start there)."""
        have = self.identity.serial if self.identity else None
        if have != serial:
            raise StoreError(f"blackbox belongs to logger {have}, not {serial}")

    # ------------------------------------------------------------------ LogStore

    @property
    def next_seq(self) -> int:
        return self._main.next_seq

    @property
    def oldest_seq(self) -> int:
        return self._main.oldest_seq

    @property
    def read_up_to_seq(self) -> int:
        return self._read_up_to

    def append(self, record: Record) -> int:
        data = encode_record(record)
        if isinstance(record, SampleBlock):
            self._catch_up_days()  # before this block is in the main stream
        seq = self._append_main(data)
        self._emit(seq, self._derive(record))
        return seq

    def records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]:
        for seq, payload in self._main.entries(from_seq):
            yield seq, decode_record(payload)

    def mark_read(self, up_to_seq: int) -> None:
        new = max(self._read_up_to, min(up_to_seq, self.next_seq))
        if new != self._read_up_to:
            self._read_up_to = new
            self._write_meta()

    def reset(self, *, t_ms: int, force: bool = False) -> None:
        floor = int(self._reset["floor"]) if self._reset else 0
        unread_from = max(self._read_up_to, floor)
        if unread_from < self.next_seq and not force:
            raise ResetRefused(
                f"records {unread_from}..{self.next_seq - 1} since the last reset have not been read out",
                unread_from_seq=unread_from,
            )
        self._catch_up_days()  # the open day's samples are about to be wiped
        # the snapshot goes first: if power fails during the wipe, mount finishes the reset
        self._reset = {"floor": self.next_seq, "head": self._heads[0].hex(), "t_ms": t_ms,
                       "forced": bool(force)}
        self._resets += 1
        self._read_up_to = self.next_seq
        self._write_meta()
        self._finish_reset()

    def flush(self) -> None:
        return None  # every append is committed before it returns

    # ------------------------------------------------------------------ streams and chain

    def chain_anchor(self, stream: int = 0) -> tuple[int, bytes]:
        """(oldest available seq, chain value just before it) of ``stream`` (0 main, 1 summary)."""
        ring = self._ring(stream)
        anchor = ring.oldest_anchor
        return ring.oldest_seq, anchor if anchor is not None else self._heads[stream]

    def chain_head(self, stream: int = 0) -> tuple[int, bytes]:
        """(next seq, chain value after the newest record) of ``stream``."""
        return self._ring(stream).next_seq, self._heads[stream]

    def summary_records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]:
        for seq, payload in self._summary.entries(from_seq):
            yield seq, decode_record(payload, offset=_SOURCE.size)

    def raw_records(self, stream: int = 0, from_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """(seq, canonical record bytes) as stored, without decoding."""
        cut = _SOURCE.size if stream == 1 else 0
        for seq, payload in self._ring(stream).entries(from_seq):
            yield seq, payload[cut:]

    def totals(self) -> dict[str, Any]:
        """Counts and space use for ``flash-info`` and the benchmark."""
        g = self.flash.geometry
        counts = self.flash.erase_counts
        out: dict[str, Any] = {
            "serial": self.identity.serial if self.identity else None,
            "markers": list(self.identity.markers) if self.identity else [],
            "geometry": {"size": g.size, "sector_size": g.sector_size, "page_size": g.page_size},
            "read_up_to_seq": self._read_up_to,
            "resets": self._resets,
            "last_reset": dict(self._reset) if self._reset else None,
            "erase_count_min": int(counts.min()),
            "erase_count_max": int(counts.max()),
            "bad_sectors": sorted(self.flash.bad_sectors),
            "device_busy_s": round(self.flash.busy_s, 3),
        }
        for name, ring in (("main", self._main), ("summary", self._summary)):
            out[name] = {
                "sectors": ring.n_sectors,
                "first_sector": ring.first_sector,
                "oldest_seq": ring.oldest_seq,
                "next_seq": ring.next_seq,
                "records": len(ring),
                "used_bytes": ring.used_bytes(),
                "capacity_bytes": ring.usable_sectors() * ring.sector_size,
                "sectors_in_use": len(ring.run_sectors()),
            }
        return out

    def head_sector(self, stream: int = 0) -> int | None:
        """The flash sector the newest record of ``stream`` is in (None: the stream is empty)."""
        sectors = self._ring(stream).run_sectors()
        return sectors[-1][0] if sectors else None

    def region_erase_counts(self, stream: int = 0) -> np.ndarray[Any, Any]:
        ring = self._ring(stream)
        return self.flash.erase_counts[ring.first_sector:ring.first_sector + ring.n_sectors].copy()

    # ------------------------------------------------------------------ internals: writing

    def _ring(self, stream: int) -> Ring:
        if stream == 0:
            return self._main
        if stream == 1:
            return self._summary
        raise StoreError(f"stream {stream} does not exist (0 = main, 1 = summary)")

    def _append_main(self, data: bytes) -> int:
        seq = self._main.append(data, anchor=self._heads[0])
        self._heads[0] = chain.chain_next(self._heads[0], seq, data)
        return seq

    def _emit(self, source: int, derived: list[Record], skip: int = 0) -> None:
        for i, rec in enumerate(derived):
            if i < skip:
                continue
            last = 1 if i == len(derived) - 1 else 0
            data = encode_record(rec)
            seq = self._summary.append(_SOURCE.pack(source << 1 | last) + data, anchor=self._heads[1])
            self._heads[1] = chain.chain_next(self._heads[1], seq, data)

    def _derive(self, record: Record) -> list[Record]:
        """The summary records ``record`` gives rise to; updates the derivation state."""
        out: list[Record] = []
        if isinstance(record, SampleBlock):
            self._add_samples(record, out)
        elif isinstance(record, Event):
            if record.kind in SUMMARY_EVENT_KINDS:
                out.append(record)
            if record.kind is EventKind.DISCHARGE_START:
                self._discharge_start = record
            elif record.kind is EventKind.DISCHARGE_END and self._discharge_start is not None:
                start = self._discharge_start
                self._discharge_start = None
                # the firmware puts the discharge's minimum mV in the END event; no current sensor,
                # so no Ah estimate
                out.append(DischargeSummary(start.t_ms, record.t_ms, record.value, 0))
        elif isinstance(record, ConfigChange | ClockSet):
            out.append(record)
        return out

    def _add_samples(self, block: SampleBlock, out: list[Record]) -> None:
        n = len(block)
        if n == 0:
            return
        mv = np.frombuffer(block.mv, dtype=np.int32)
        dc = np.frombuffer(block.dc, dtype=np.int32)
        first_day = block.start_ms // DAY_MS
        last_day = block.end_ms // DAY_MS
        if first_day == last_day:
            self._add_day(first_day, mv, dc, out)
            return
        days = (block.start_ms + np.arange(n, dtype=np.int64) * block.interval_ms) // DAY_MS
        cuts = np.flatnonzero(np.diff(days)) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
            self._add_day(int(days[a]), mv[a:b], dc[a:b], out)

    def _add_day(self, day: int, mv: np.ndarray[Any, Any], dc: np.ndarray[Any, Any],
                 out: list[Record]) -> None:
        if self._day is not None and self._day.day != day:
            # a new day closes the previous one; a clock set back to an already summarised
            # day is not summarised twice (the summary stream stays in day order)
            if self._day.day > self._last_day:
                out.append(self._day.summary())
                self._last_day = self._day.day
            self._day = None
        if self._day is None:
            self._day = _DayAccumulator(day)
        self._day.add(mv, dc)

    def _write_meta(self) -> None:
        ident = self.identity
        if ident is None:
            raise StoreError("blackbox has no identity")
        snap = {
            "v": _META_VERSION,
            "serial": ident.serial,
            "generation": int(ident.generation),
            "firmware": ident.firmware,
            "simulated": ident.simulated,
            "replayed": ident.replayed,
            "read_up_to": self._read_up_to,
            "resets": self._resets,
            "reset": self._reset,
        }
        self._meta.append(json.dumps(snap, separators=(",", ":"), sort_keys=True).encode())

    def _finish_reset(self) -> None:
        """Wipe the main region and log the reset (idempotent: re-run by mount after a power loss)."""
        reset = self._reset
        if reset is None:
            return
        floor = int(reset["floor"])
        self._main.wipe(floor)
        self._heads[0] = bytes.fromhex(reset["head"])
        self.append(Event(int(reset["t_ms"]), EventKind.RESET, value=1 if reset["forced"] else 0))

    # ------------------------------------------------------------------ internals: recovery

    def _mount(self) -> None:
        self.mount_reports["meta"] = self._meta.mount()
        newest = self._meta.newest()
        if newest is None:
            raise NotFormattedError("flash holds no blackbox: no meta snapshot in sectors "
                                    f"{self.layout.meta[0]}..{sum(self.layout.meta) - 1}")
        seq, payload = newest
        try:
            snap = json.loads(payload)
            self.identity = LoggerIdentity(snap["serial"], Generation(snap["generation"]),
                                           snap["firmware"], bool(snap["simulated"]),
                                           bool(snap["replayed"]))
            self._read_up_to = int(snap["read_up_to"])
            self._resets = int(snap["resets"])
            self._reset = snap["reset"]
        except (ValueError, KeyError, TypeError) as err:
            raise StoreError(f"meta snapshot {seq} is unreadable: {err}") from None
        serial = self.identity.serial
        floor = int(self._reset["floor"]) if self._reset else 0
        self.mount_reports["main"] = self._main.mount(floor)
        self.mount_reports["summary"] = self._summary.mount()
        self._heads[0] = self._replay_chain(self._main, 0,
                                            bytes.fromhex(self._reset["head"]) if self._reset
                                            else chain.stream_genesis(serial, 0))
        self._heads[1] = self._replay_chain(self._summary, _SOURCE.size,
                                            chain.stream_genesis(serial, 1))
        self._rebuild_derivation()
        if self._reset is not None and (self._main.oldest_seq < floor or self._main.next_seq == floor):
            self._finish_reset()

    @staticmethod
    def _replay_chain(ring: Ring, cut: int, empty_head: bytes) -> bytes:
        anchor = ring.oldest_anchor
        h = anchor if anchor is not None else empty_head
        for seq, payload in ring.entries():
            h = chain.chain_next(h, seq, payload[cut:])
        return h

    def _rebuild_derivation(self) -> None:
        """Restore the summary derivation state and emit what a power loss left out.

        Copies and discharge summaries carry the main seq they derive from, so the
        main records after the last one are derived again now (only their type byte
        is read for sample blocks). Daily summaries are tracked by day instead: the
        accumulator of the open day is rebuilt lazily, before the next sample block
        is added (``_catch_up_days``), so mount stays fast.
        """
        last_source = -1
        derived_for_last = 0
        last_complete = True
        before: Event | None = None  # discharge state just before the entries of ``last_source``
        for _seq, payload in self._summary.entries():
            (source,) = _SOURCE.unpack_from(payload)
            rtype = payload[_SOURCE.size]
            if rtype == RecordType.DAILY_SUMMARY:
                (day_start,) = _I64.unpack_from(payload, _SOURCE.size + 1)
                self._last_day = max(self._last_day, day_start // DAY_MS)
                continue
            main_seq = source >> 1
            if main_seq != last_source:
                derived_for_last = 0
                before = self._discharge_start
            last_source = main_seq
            derived_for_last += 1
            last_complete = bool(source & 1)
            if rtype == RecordType.EVENT:
                kind = payload[_SOURCE.size + 9]
                if kind == EventKind.DISCHARGE_START:
                    rec = decode_record(payload, offset=_SOURCE.size)
                    self._discharge_start = rec if isinstance(rec, Event) else None
                elif kind == EventKind.DISCHARGE_END:
                    self._discharge_start = None
            elif rtype == RecordType.DISCHARGE_SUMMARY:
                self._discharge_start = None
        done = last_source if last_complete else last_source - 1
        partial = -1 if last_complete else last_source
        for seq, payload in self._main.entries(done + 1):
            if payload[0] == RecordType.SAMPLE_BLOCK:
                continue
            rec = decode_record(payload)
            if seq == partial:
                self._discharge_start = before
            self._emit(seq, self._derive(rec), skip=derived_for_last if seq == partial else 0)
        self._days_pending = True

    def _catch_up_days(self) -> None:
        """Rebuild the open day's accumulator from the main stream (once, after a mount)."""
        if not self._days_pending:
            return
        self._days_pending = False
        for seq, payload in self._main.entries(self._replay_start()):
            if payload[0] != RecordType.SAMPLE_BLOCK:
                continue
            rec = decode_record(payload)
            if isinstance(rec, SampleBlock):
                out: list[Record] = []
                self._add_samples(rec, out)
                self._emit(seq, out)

    def _replay_start(self) -> int:
        """First main seq whose samples may belong to a day without a DailySummary yet.

        Walks sectors newest to oldest and decodes only each sector's first
        record, so the cost is bounded by the days since the last summary.
        """
        boundary = (self._last_day + 1) * DAY_MS
        start = self._main.oldest_seq
        for _index, _gen, first_seq, entries in reversed(self._main.run_sectors()):
            if entries == 0:
                continue
            _s, payload = next(self._main.entries(first_seq))
            first = decode_record(payload)
            t_ms = first.start_ms if isinstance(first, SampleBlock) else first.t_ms
            if t_ms < boundary:
                start = first_seq
                break
        return start
