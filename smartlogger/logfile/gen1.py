"""Generation-1 logfiles: the older, simpler format of gen-1 loggers, read transparently.

Owns the gen-1 byte layout, the writer the gen-1 firmware profile uses
(``write_gen1`` / ``gen1_logfile_from_store``) and the reader that turns a
gen-1 file into the same ``Logfile`` object as a gen-2 file, flagged unsigned
(generation 1 has no keys). Gen-1 loggers have fixed thresholds
(``model.gen1_config``), a fixed log rate and no configuration history.

    file   = magic "SLG1" | version:u8 (=1) | serial[12] (ASCII, NUL-padded) | firmware[8] (ditto)
             | markers:u8 (bit 0 SIMULATED, bit 1 REPLAYED) | interval_s:u16 | runs:u16
             | run* | events:u16 | event* | crc32:u32 (zlib CRC-32 of every byte before it)
    run    = start_ms:i64 | count:u32 | count x (mv:u16 in mV, dc:i16 in 0.1 C)
    event  = t_ms:i64 | kind:u8 (model.EventKind) | value:i32

A run is a stretch of samples without a gap; ``start_ms`` is the device time of its
first sample, the i-th sample is at ``start_ms + i * interval_s * 1000``.
Records other than samples and events (clock sets, summaries) do not exist in gen 1.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Final, Protocol

import numpy as np

from smartlogger.errors import LogfileError
from smartlogger.logfile.chain import stream_genesis
from smartlogger.logfile.container import (
    Logfile,
    LogfileMetadata,
    LogStream,
    RawRecord,
    record_crc,
)
from smartlogger.logfile.records import encode_record
from smartlogger.model import (
    ConfigChange,
    Event,
    EventKind,
    Generation,
    LoggerIdentity,
    Record,
    SampleBlock,
    gen1_config,
)
from smartlogger.wire import ByteReader

MAGIC: Final = b"SLG1"
VERSION: Final = 1
_HEAD = struct.Struct("<4sB12s8sBHH")
_RUN = struct.Struct("<qI")
_EVENT = struct.Struct("<qBi")
_SAMPLE = np.dtype([("mv", "<u2"), ("dc", "<i2")])
#: gen-1 firmware reports this version when it has none.
DEFAULT_FIRMWARE: Final = "1.0"


class _Records(Protocol):
    def records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]: ...


def write_gen1(identity: LoggerIdentity, records: Iterable[Record]) -> bytes:
    """Gen-1 logfile bytes for a gen-1 logger's records (sample blocks and events)."""
    if identity.generation is not Generation.GEN1:
        raise ValueError(f"{identity.serial} is generation {int(identity.generation)}, not 1")
    serial = identity.serial.encode("ascii")
    firmware = identity.firmware.encode("ascii")
    if len(serial) > 12 or len(firmware) > 8:
        raise ValueError("gen-1 serials have at most 12 and firmware versions at most 8 characters")
    runs: list[tuple[int, list[np.ndarray]]] = []  # (start_ms, [structured sample arrays])
    run_end = None
    interval_ms: int | None = None
    events: list[Event] = []
    for rec in records:
        if isinstance(rec, Event):
            events.append(rec)
            continue
        if not isinstance(rec, SampleBlock) or not len(rec):
            continue
        if interval_ms is None:
            interval_ms = rec.interval_ms
        if rec.interval_ms != interval_ms or interval_ms % 1000:
            raise ValueError(f"gen-1 logs have one fixed rate in whole seconds; got {rec.interval_ms} ms "
                             f"after {interval_ms} ms")
        mv = np.frombuffer(rec.mv, dtype=np.int32)
        dc = np.frombuffer(rec.dc, dtype=np.int32)
        if mv.min() < 0 or mv.max() > 65535 or dc.min() < -32768 or dc.max() > 32767:
            raise ValueError("gen-1 samples are u16 mV and i16 dC")
        arr = np.empty(len(rec), dtype=_SAMPLE)
        arr["mv"] = mv
        arr["dc"] = dc
        if run_end is not None and rec.start_ms == run_end + interval_ms:
            runs[-1][1].append(arr)
        else:
            runs.append((rec.start_ms, [arr]))
        run_end = rec.end_ms
    if len(runs) > 65535 or len(events) > 65535:
        raise ValueError("gen-1 logs hold at most 65535 runs and 65535 events")
    out = bytearray(_HEAD.pack(MAGIC, VERSION, serial, firmware,
                               (1 if identity.simulated else 0) | (2 if identity.replayed else 0),
                               (interval_ms or 10_000) // 1000, len(runs)))
    for start_ms, parts in runs:
        samples = np.concatenate(parts)
        out += _RUN.pack(start_ms, samples.size) + samples.tobytes()
    out += struct.pack("<H", len(events))
    for ev in events:
        out += _EVENT.pack(ev.t_ms, int(ev.kind), ev.value)
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def gen1_logfile_from_store(identity: LoggerIdentity, store: _Records) -> bytes:
    """What a gen-1 logger's log download produces: all its records as a gen-1 file."""
    return write_gen1(identity, (rec for _, rec in store.records()))


def read_gen1(data: bytes) -> Logfile:
    """Decode a gen-1 file into a ``Logfile`` (generation 1, unsigned, version (1, 0))."""
    r = ByteReader(data)
    r.need(_HEAD.size, "gen-1 header")
    _magic, version, serial_b, fw_b, markers, interval_s, nruns = _HEAD.unpack_from(data, 0)
    if version != VERSION:
        raise LogfileError(f"gen-1 format version {version} is not {VERSION}", offset=4)
    r.pos = _HEAD.size
    try:
        serial = serial_b.rstrip(b"\x00").decode("ascii")
        firmware = fw_b.rstrip(b"\x00").decode("ascii") or DEFAULT_FIRMWARE
        identity = LoggerIdentity(serial, Generation.GEN1, firmware, bool(markers & 1),
                                  bool(markers & 2))
    except (UnicodeDecodeError, ValueError) as err:
        raise LogfileError(f"gen-1 identity is invalid: {err}", offset=5) from None
    if markers & ~3:
        raise LogfileError(f"gen-1 markers 0x{markers:02x} has unknown bits", offset=25)
    if interval_s == 0:
        raise LogfileError("gen-1 interval_s is 0", offset=26)
    items: list[tuple[int, int, Record]] = []  # (t_ms, order, record) for a stable time merge
    for i in range(nruns):
        start_ms = r.i64(f"gen-1 run {i} start_ms")
        count_at = r.pos
        count = r.u32(f"gen-1 run {i} count")
        if count * 4 > r.remaining:
            raise LogfileError(f"gen-1 run {i} declares {count} samples, only {r.remaining // 4} "
                               "fit in the file", offset=count_at)
        arr = np.frombuffer(data, dtype=_SAMPLE, count=count, offset=r.pos)
        r.pos += count * 4
        if count:
            block = SampleBlock.of(start_ms, interval_s * 1000, arr["mv"].astype(np.int32).tolist(),
                                   arr["dc"].astype(np.int32).tolist())
            items.append((start_ms, len(items), block))
    nevents = r.u16("gen-1 event count")
    for i in range(nevents):
        at = r.pos
        t_ms = r.i64(f"gen-1 event {i} t_ms")
        kind = r.u8(f"gen-1 event {i} kind")
        value = r.i32(f"gen-1 event {i} value")
        try:
            ekind = EventKind(kind)
        except ValueError:
            raise LogfileError(f"gen-1 event {i} kind {kind} is unknown", offset=at + 8) from None
        items.append((t_ms, len(items), Event(t_ms, ekind, value=value)))
    crc_at = r.pos
    crc = r.u32("gen-1 CRC")
    r.expect_end("the gen-1 file")
    footer_problem = ""
    if zlib.crc32(data[:crc_at]) != crc:
        footer_problem = "the gen-1 CRC-32 does not match the file content (modified or corrupted)"
    items.sort(key=lambda x: (x[0], x[1]))
    raws = []
    for seq, (_, _, rec) in enumerate(items):
        raw = encode_record(rec)
        raws.append(RawRecord(seq, raw, 0, record_crc(seq, raw), rec))
    streams = [LogStream(0, 0, stream_genesis(serial, 0), raws),
               LogStream(1, 0, stream_genesis(serial, 1), [])]
    first_t = items[0][0] if items else 0
    meta = LogfileMetadata(config_history=[ConfigChange(first_t, gen1_config(), 0)])
    return Logfile((1, 0), identity, meta, streams, None, [], len(data),
                   hashlib.sha256(data).hexdigest(), not footer_problem, footer_problem,
                   generation1=True)
