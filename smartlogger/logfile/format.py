"""The ``.slog`` container (format 2.x): one portable, signed file per logger pull.

Owns the byte layout of a logfile around the device records, the writer
``build_logfile`` (and ``pull_logfile``, a whole signed pull of a store), the reader
``read_logfile`` (which also reads every older version, i.e. generation-1 files via
``logfile.gen1``) and the checks of the sample blocks a reader defers
(``check_sample_heads``, ``check_sample_payloads``). Does not own the decoded types
(``container``), the record bytes (``records``), keys and signatures (``evidence``)
or the verdict (``verify``). Byte-exact specification: docs/LOGFILE_FORMAT.md.

    file     = magic "\\x89SLOG\\r\\n\\x1a" | major:u8 (=2) | minor:u8 | reserved:u16 (=0) | section* | footer
    section  = type:u8 | length:u32 | body[length]
    0x01 HEADER       identity, created_ms, block label/position, test metadata, configuration history
    0x02 CERTIFICATE  the device certificate (evidence.Certificate), at most one
    0x03 STREAM       stream:u8 anchor_seq:u64 anchor_hash[32] count:u32 then per record
                      seq_delta:LEB128 length:LEB128 crc32:u32 record[length]
    0x04 ATTESTATION  a signed pull (evidence.PullAttestation), oldest pull first
    0xFF FOOTER       counts (main, summary, attestations: u32 each) and SHA-256 of every byte before it

Versioning: a reader accepts every major version up to its own (1 = generation-1
files) and rejects a newer major version with a clear message; within a major
version, sections of unknown type are skipped (minor versions only add them).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from smartlogger.errors import LogfileError
from smartlogger.logfile.container import (
    Logfile,
    LogfileMetadata,
    LogStream,
    RawRecord,
    record_crc,
)
from smartlogger.logfile.evidence import (
    STREAMS,
    Certificate,
    ChainedStore,
    DeviceCredentials,
    PullAttestation,
    new_nonce,
    read_identity,
    sign_store_pull,
    write_identity,
)
from smartlogger.logfile.gen1 import MAGIC as GEN1_MAGIC
from smartlogger.logfile.gen1 import read_gen1
from smartlogger.logfile.records import SAMPLE_HEAD, RecordType, decode_record, encode_record
from smartlogger.logfile.samples import decode_many, decode_samples_chunked, read_head
from smartlogger.model import ConfigChange, LoggerIdentity, Record, SampleBlock
from smartlogger.wire import ByteReader, leb128, read_leb128, str8, str16

MAGIC: Final = b"\x89SLOG\r\n\x1a"
MAJOR: Final = 2
MINOR: Final = 0
#: Files larger than this are refused before reading (a 10-year log is ~6 MB).
MAX_FILE_BYTES: Final = 512 * 1024 * 1024
#: Most samples one logfile may hold (10 years at 1 min is 5.3 M; ~1 GB once decoded).
MAX_FILE_SAMPLES: Final = 1 << 26
#: Samples decoded per vectorised batch: bounds the decoder's temporaries to ~30 MB (about 110
#: bytes per sample while a batch decodes), whatever a file declares. A block of more than
#: ``CHUNKED_ABOVE`` samples is decoded alone, a piece at a time (``samples.decode_samples_chunked``).
BATCH_SAMPLES: Final = 1 << 18
#: Sample blocks declaring more samples than this are decoded on their own in pieces (~15 MB of
#: temporaries whatever their size, up to ``samples.MAX_BLOCK_SAMPLES``).
CHUNKED_ABOVE: Final = 1 << 16
#: Largest single record (a SampleBlock of MAX_BLOCK_SAMPLES 33-bit deltas is ~8.7 MB).
MAX_RECORD_BYTES: Final = 16 * 1024 * 1024

SEC_HEADER: Final = 0x01
SEC_CERTIFICATE: Final = 0x02
SEC_STREAM: Final = 0x03
SEC_ATTESTATION: Final = 0x04
SEC_FOOTER: Final = 0xFF
_UNKNOWN_MS: Final = -(1 << 63)
_SECTION = struct.Struct("<BI")
_FOOTER_LEN: Final = 3 * 4 + 32
#: Offset of the sample payload inside a SampleBlock record (type byte, then ``SAMPLE_HEAD``).
PAYLOAD_AT: Final = 1 + SAMPLE_HEAD.size
# --------------------------------------------------------------------------- writer


def build_logfile(
    identity: LoggerIdentity,
    credentials: DeviceCredentials | Certificate | None,
    streams: Sequence[Sequence[tuple[int, Record | bytes]]],
    anchors: Sequence[tuple[int, bytes]],
    attestations: Sequence[PullAttestation] = (),
    metadata: LogfileMetadata | None = None,
) -> bytes:
    """The logfile bytes for a pull.

    ``streams``: (main, summary) lists of ``(seq, record)`` in seq order; a record may be
    given as its canonical bytes as received (kept verbatim) or as a ``Record``.
    ``anchors``: per stream ``(seq of the first record, chain value before it)``, as the
    device reports them (``LogStore.chain_anchor`` for a whole pull). Only the certificate
    of ``credentials`` is written, never the private key.
    """
    if len(streams) != STREAMS or len(anchors) != STREAMS:
        raise ValueError("a logfile carries exactly 2 streams (main, summary) and their anchors")
    meta = metadata or LogfileMetadata()
    cert = credentials.certificate if isinstance(credentials, DeviceCredentials) else credentials
    encoded: list[list[tuple[int, bytes]]] = []
    for records in streams:
        encoded.append([(seq, rec if isinstance(rec, bytes | bytearray) else encode_record(rec))
                        for seq, rec in records])
    history = meta.config_history
    if history is None:
        found: dict[bytes, ConfigChange] = {}
        for recs in encoded:
            for _, raw in recs:
                if raw[:1] == bytes([RecordType.CONFIG_CHANGE]):
                    change = decode_record(raw)
                    assert isinstance(change, ConfigChange)
                    found.setdefault(raw, change)
        history = sorted(found.values(), key=lambda c: (c.t_ms, c.seq))
    out = bytearray(MAGIC + bytes([MAJOR, MINOR]) + b"\x00\x00")
    _section(out, SEC_HEADER, _header_body(identity, meta, history))
    if cert is not None:
        _section(out, SEC_CERTIFICATE, cert.to_bytes())
    for index, (records_b, (anchor_seq, anchor_hash)) in enumerate(zip(encoded, anchors, strict=True)):
        _section(out, SEC_STREAM, _stream_body(index, anchor_seq, anchor_hash, records_b))
    ordered = sorted(attestations, key=lambda a: a.counter)
    for att in ordered:
        _section(out, SEC_ATTESTATION, att.to_bytes())
    digest = hashlib.sha256(out).digest()
    footer = struct.pack("<III", len(encoded[0]), len(encoded[1]), len(ordered)) + digest
    _section(out, SEC_FOOTER, footer)
    return bytes(out)


def pull_logfile(credentials: DeviceCredentials | None, identity: LoggerIdentity,
                 store: ChainedStore, *, device_ms: int, phone_ms: int | None = None,
                 nonce: bytes | None = None, metadata: LogfileMetadata | None = None) -> bytes:
    """A whole signed pull of ``store`` as logfile bytes (simulator and tests; BLE does the same
    over the air). ``credentials`` None gives an unsigned logfile."""
    streams = [list(store.records()), list(store.summary_records())]
    anchors = [store.chain_anchor(s) for s in range(STREAMS)]
    attestations = []
    if credentials is not None:
        attestations.append(sign_store_pull(credentials, store, nonce or new_nonce(), device_ms,
                                            phone_ms=phone_ms))
    return build_logfile(identity, credentials, streams, anchors, attestations, metadata)


def _section(out: bytearray, kind: int, body: bytes) -> None:
    out += _SECTION.pack(kind, len(body))
    out += body


def _header_body(identity: LoggerIdentity, meta: LogfileMetadata,
                 history: Sequence[ConfigChange]) -> bytes:
    parts = [write_identity(identity),
             struct.pack("<q", meta.created_ms if meta.created_ms is not None else _UNKNOWN_MS),
             str8(meta.block_label, "block_label"), struct.pack("<H", meta.block_position)]
    if len(meta.test) > 255:
        raise ValueError("at most 255 test metadata entries")
    parts.append(bytes([len(meta.test)]))
    for key, value in meta.test.items():
        parts.append(str8(key, "test metadata key") + str16(value, "test metadata value"))
    if len(history) > 65535:
        raise ValueError("at most 65535 configuration changes in the header")
    parts.append(struct.pack("<H", len(history)))
    for change in history:
        raw = encode_record(change)
        parts.append(leb128(len(raw)) + raw)
    return b"".join(parts)


def _stream_body(index: int, anchor_seq: int, anchor_hash: bytes,
                 records: Sequence[tuple[int, bytes]]) -> bytes:
    if len(anchor_hash) != 32:
        raise ValueError(f"stream {index} anchor hash must be 32 bytes")
    parts = [struct.pack("<BQ", index, anchor_seq), anchor_hash, struct.pack("<I", len(records))]
    prev = anchor_seq
    first = True
    for seq, raw in records:
        delta = seq - prev
        if delta < (0 if first else 1):
            raise ValueError(f"stream {index}: seq {seq} does not follow {prev}")
        parts.append(leb128(delta) + leb128(len(raw)) + struct.pack("<I", record_crc(seq, raw)))
        parts.append(raw)
        prev = seq
        first = False
    return b"".join(parts)


# --------------------------------------------------------------------------- reader


def read_logfile(source: bytes | bytearray | memoryview | str | os.PathLike[str], *,
                 check_hash: bool = True, decode: bool = True) -> Logfile:
    """Decode a logfile of any supported version from bytes or a path.

    With ``check_hash`` (default) a footer whose hash or counts do not match raises
    ``LogfileError``; ``verify`` reads with ``check_hash=False`` and reports it instead.
    With ``decode=False`` sample blocks are decoded only when their ``record`` is used
    (all other records are always decoded).
    """
    path: str | None = None
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise LogfileError(f"file is {size} bytes, more than the {MAX_FILE_BYTES} a logfile may have",
                               offset=0, path=path)
        data = Path(path).read_bytes()
    else:
        data = bytes(source)
    try:
        return _read(data, check_hash, decode)
    except LogfileError as err:
        if path is not None and err.path is None:
            raise LogfileError(err.message, offset=err.offset, path=path) from None
        raise


def _read(data: bytes, check_hash: bool, decode: bool) -> Logfile:
    if len(data) > MAX_FILE_BYTES:
        raise LogfileError(f"{len(data)} bytes is more than the {MAX_FILE_BYTES} a logfile may have",
                           offset=0)
    if not data:
        raise LogfileError("empty file: not a logfile", offset=0)
    if data.startswith(GEN1_MAGIC):
        old = read_gen1(data)
        if check_hash and not old.footer_ok:
            raise LogfileError(old.footer_problem, offset=len(data) - 4)
        return old
    if not data.startswith(MAGIC[:4]):
        raise LogfileError(f"not a smartlogger logfile (magic {data[:8].hex()} is neither "
                           f"{MAGIC.hex()} nor {GEN1_MAGIC.hex()})", offset=0)
    r = ByteReader(data)
    r.take(len(MAGIC), "magic")
    if data[:8] != MAGIC:
        raise LogfileError("damaged magic: the first 8 bytes are not 89 53 4c 4f 47 0d 0a 1a",
                           offset=0)
    major = r.u8("format major version")
    minor = r.u8("format minor version")
    if major > MAJOR:
        raise LogfileError(f"format version {major}.{minor} is newer than this reader "
                           f"(reads up to {MAJOR}.x): update smartlogger", offset=8)
    if major != MAJOR:
        raise LogfileError(f"format major version {major} does not use this container", offset=8)
    r.u16("reserved")
    identity: LoggerIdentity | None = None
    meta = LogfileMetadata()
    certificate: Certificate | None = None
    streams: list[LogStream] = []
    attestations: list[PullAttestation] = []
    footer_problem = ""
    while True:
        at = r.pos
        if r.remaining == 0:
            raise LogfileError("file ends without a footer (truncated?)", offset=at)
        kind = r.u8("section type")
        length = r.u32("section length")
        if length > r.remaining:
            raise LogfileError(f"section 0x{kind:02x} declares {length} bytes but only "
                               f"{r.remaining} remain (truncated?)", offset=at + 1)
        start, end = r.pos, r.pos + length
        if identity is None and kind != SEC_HEADER:
            raise LogfileError(f"first section is 0x{kind:02x}, expected the header (0x01)", offset=at)
        if kind == SEC_HEADER:
            if identity is not None:
                raise LogfileError("second header section", offset=at)
            identity, meta = _read_header(ByteReader(data, start, end))
        elif kind == SEC_CERTIFICATE:
            if certificate is not None:
                raise LogfileError("second certificate section", offset=at)
            certificate = Certificate.from_bytes(data, start, end)
        elif kind == SEC_STREAM:
            streams.append(_read_stream(ByteReader(data, start, end), len(streams), at, decode))
        elif kind == SEC_ATTESTATION:
            attestations.append(PullAttestation.from_bytes(data, start, end))
        elif kind == SEC_FOOTER:
            if end != len(data):
                raise LogfileError(f"{len(data) - end} bytes after the footer", offset=end)
            if length != _FOOTER_LEN:
                raise LogfileError(f"footer is {length} bytes, expected {_FOOTER_LEN}", offset=at + 1)
            n_main, n_sum, n_att = struct.unpack_from("<III", data, start)
            digest = data[start + 12:end]
            if hashlib.sha256(memoryview(data)[:at]).digest() != digest:
                footer_problem = "the footer's SHA-256 does not match the file content (modified or corrupted)"
            elif len(streams) == STREAMS and (n_main, n_sum, n_att) != (
                    len(streams[0].records), len(streams[1].records), len(attestations)):
                footer_problem = "the footer's record/attestation counts do not match the sections"
            if footer_problem and check_hash:
                raise LogfileError(footer_problem, offset=at)
            r.pos = end
            break
        # unknown section types (added by a later minor version) are skipped
        r.pos = end
    assert identity is not None
    if len(streams) != STREAMS:
        raise LogfileError(f"file has {len(streams)} stream sections, expected {STREAMS}", offset=r.pos)
    return Logfile((major, minor), identity, meta, streams, certificate, attestations, len(data),
                   hashlib.sha256(data).hexdigest(), not footer_problem, footer_problem)


def _read_header(r: ByteReader) -> tuple[LoggerIdentity, LogfileMetadata]:
    identity = read_identity(r, "header")
    created = r.i64("header created_ms")
    label = r.str8("header block_label")
    position = r.u16("header block_position")
    n = r.u8("header test metadata count")
    test: dict[str, str] = {}
    for i in range(n):
        key = r.str8(f"test metadata key {i}")
        test[key] = r.str16(f"test metadata value {key!r}")
    count = r.u16("header configuration count")
    history: list[ConfigChange] = []
    for i in range(count):
        length = r.leb128(f"configuration {i} length")
        r.need(length, f"configuration {i}")
        rec = decode_record(r.data, offset=r.pos, length=length)
        if not isinstance(rec, ConfigChange):
            raise LogfileError(f"configuration {i} is a {type(rec).__name__}, not a ConfigChange",
                               offset=r.pos)
        history.append(rec)
        r.pos += length
    r.expect_end("the header")
    return identity, LogfileMetadata(label, position, test, None if created == _UNKNOWN_MS else created,
                                     history)


_CRC = struct.Struct("<I")


def _record_head(r: ByteReader, index: int, i: int, seq: int) -> tuple[int, int, int]:
    """Record ``i``'s head read field by field with the checked reader: ``(seq, length, crc)``,
    or the ``LogfileError`` naming what is wrong (the slow path of ``_read_stream``)."""
    delta = r.leb128(f"stream {index} record {i} seq delta")
    seq += delta
    if seq >= 1 << 64:
        raise LogfileError(f"stream {index} record {i}: seq beyond u64", offset=r.pos)
    length = r.leb128(f"stream {index} record {i} length")
    if length > MAX_RECORD_BYTES:
        raise LogfileError(f"stream {index} record {i} declares {length} bytes "
                           f"(limit {MAX_RECORD_BYTES})", offset=r.pos - 1)
    crc = r.u32(f"stream {index} record {i} crc")
    r.need(length, f"stream {index} record {i} (seq {seq})")
    return seq, length, crc


def _read_stream(r: ByteReader, expected: int, section_at: int, decode: bool) -> LogStream:
    at = r.pos
    index = r.u8("stream number")
    if index != expected:
        raise LogfileError(f"stream section {index} where stream {expected} was expected", offset=at)
    anchor_seq = r.u64("stream anchor_seq")
    anchor_hash = r.take(32, "stream anchor hash")
    count_at = r.pos
    count = r.u32("stream record count")
    # every record takes at least 1+1+4+1 bytes: a count the section cannot hold is a lie
    if count * 7 > r.remaining:
        raise LogfileError(f"stream {index} declares {count} records, the section holds at most "
                           f"{r.remaining // 7}", offset=count_at)
    records: list[RawRecord] = []
    seq = anchor_seq
    data, end = r.data, r.end
    for i in range(count):
        # Fast path: the record head (seq delta, length, CRC) of a well-formed file, parsed with
        # no per-field error text. Anything unusual re-reads the head with the checked reader,
        # which names the field and offset of the problem (same result, same messages).
        head_at = r.pos
        delta, pos = read_leb128(data, head_at, end)
        length, pos = read_leb128(data, pos, end) if delta >= 0 else (-1, pos)
        if 0 <= length <= MAX_RECORD_BYTES and seq + delta < 1 << 64 and pos + 4 + length <= end:
            seq += delta
            (crc,) = _CRC.unpack_from(data, pos)
            r.pos = pos + 4
        else:
            seq, length, crc = _record_head(r, index, i, seq)
        start = r.pos
        raw = bytes(data[start:start + length])
        record = None
        if not raw or raw[0] != RecordType.SAMPLE_BLOCK:
            record = decode_record(data, offset=start, length=length)  # errors at file offsets
        records.append(RawRecord(seq, raw, start, crc, record))
        r.pos += length
    r.expect_end(f"stream {index}")
    if decode:
        _decode_samples_in_place(records)
    return LogStream(index, anchor_seq, anchor_hash, records, section_at)


def decode_sample_records(raws: Sequence[RawRecord]) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int32],
        npt.NDArray[np.int64]]:
    """Decode many SampleBlock records in one vectorised pass (``samples.decode_many``).

    Returns ``(start_ms, interval_ms, mv, dc, counts)``: per-record start and interval,
    all samples concatenated, and per-record sample counts. Errors name the record's seq
    and its byte offset in the file. Holds every sample decoded: ``iter_sample_batches``
    for work whose memory must not grow with the file.
    """
    parts = list(iter_sample_batches(raws))
    if parts:
        starts = np.concatenate([p[1] for p in parts])
        intervals = np.concatenate([p[2] for p in parts])
        mv = np.concatenate([p[3] for p in parts])
        dc = np.concatenate([p[4] for p in parts])
        counts = np.concatenate([p[5] for p in parts])
    else:
        starts, intervals = np.zeros(0, np.int64), np.zeros(0, np.int64)
        mv, dc, counts = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int64)
    return starts, intervals, mv, dc, counts


def iter_sample_batches(raws: Sequence[RawRecord], batch_samples: int = BATCH_SAMPLES) -> Iterator[tuple[
        Sequence[RawRecord], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32],
        npt.NDArray[np.int32], npt.NDArray[np.int64]]]:
    """Decode SampleBlock records batch by batch: ``(records, start_ms, interval_ms, mv, dc, counts)``
    per batch of consecutive records declaring at most ``batch_samples`` samples (or one record).

    What ``decode_sample_records`` returns, in pieces: a caller that keeps only a reduction of
    each batch needs memory for one batch, not for the file. The heads are all checked, and the
    file's declared total bounded, before the first payload is decoded.
    """
    heads = [SAMPLE_HEAD.unpack_from(raw.data, 1) if len(raw.data) >= PAYLOAD_AT else (0, 0)
             for raw in raws]
    for raw, (_, interval) in zip(raws, heads, strict=True):
        if raw.data[:1] != bytes([RecordType.SAMPLE_BLOCK]):
            raise ValueError(f"record seq {raw.seq} is not a SampleBlock")
        if len(raw.data) < PAYLOAD_AT or interval == 0:
            try:
                decode_record(raw.data)  # raises the precise error
            except LogfileError as err:
                raise LogfileError(f"record seq {raw.seq}: {err.message}",
                                   offset=raw.offset + (err.offset or 0)) from None
    # Bound memory before decoding: a width-0 group packs 32 samples into half a byte, so
    # the sample count, not the file size, limits what a hostile file can make us allocate.
    declared = [int.from_bytes(raw.data[PAYLOAD_AT + 1:PAYLOAD_AT + 5], "little") for raw in raws]
    if sum(declared) > MAX_FILE_SAMPLES:
        raise LogfileError(f"the sample blocks declare {sum(declared)} samples, more than the "
                           f"{MAX_FILE_SAMPLES} a logfile may hold", offset=raws[0].offset)
    a = 0
    while a < len(raws):
        b, total = a, 0
        while b < len(raws) and (b == a or (total + declared[b] <= batch_samples and declared[b] <= CHUNKED_ABOVE)):
            total += declared[b]
            b += 1
            if declared[b - 1] > CHUNKED_ABOVE:
                break  # a large block goes alone
        if b == a + 1 and declared[a] > CHUNKED_ABOVE:
            mv, dc, counts = _decode_large(raws[a])
        else:
            mv, dc, counts = _decode_batch(raws[a:b])
        yield (raws[a:b], np.array([h[0] for h in heads[a:b]], dtype=np.int64),
               np.array([h[1] for h in heads[a:b]], dtype=np.int64), mv, dc, counts)
        a = b


def _decode_batch(raws: Sequence[RawRecord]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32],
                                                       npt.NDArray[np.int64]]:
    offsets = np.cumsum([0] + [len(raw.data) - PAYLOAD_AT for raw in raws[:-1]]).tolist()
    joined = b"".join(raw.data[PAYLOAD_AT:] for raw in raws)
    try:
        mv, dc, counts, ends = decode_many(joined, offsets)
    except LogfileError as err:
        i = max(0, bisect.bisect_right(offsets, err.offset or 0) - 1)
        raise LogfileError(f"record seq {raws[i].seq}: {err.message}",
                           offset=raws[i].offset + PAYLOAD_AT + (err.offset or 0) - offsets[i]) from None
    for i, end in enumerate(ends):
        if end != offsets[i] + len(raws[i].data) - PAYLOAD_AT:
            raise LogfileError(f"record seq {raws[i].seq}: {offsets[i] + len(raws[i].data) - PAYLOAD_AT - end}"
                               " unexpected bytes after the sample payload",
                               offset=raws[i].offset + PAYLOAD_AT + end - offsets[i])
    return mv, dc, counts


def _decode_large(raw: RawRecord) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """One large SampleBlock record decoded a piece at a time (``samples.decode_samples_chunked``)."""
    try:
        mv, dc, end = decode_samples_chunked(raw.data, PAYLOAD_AT)
    except LogfileError as err:
        raise LogfileError(f"record seq {raw.seq}: {err.message}", offset=raw.offset + (err.offset or 0)) from None
    if end != len(raw.data):
        raise LogfileError(f"record seq {raw.seq}: {len(raw.data) - end} unexpected bytes after the sample payload",
                           offset=raw.offset + end)
    return mv, dc, np.array([mv.size], dtype=np.int64)


def _decode_samples_in_place(records: list[RawRecord]) -> None:
    """Give every undecoded SampleBlock in ``records`` its decoded record (one batch decode)."""
    todo = [raw for raw in records if raw.decoded is None]
    if not todo:
        return
    starts, intervals, mv, dc, counts = decode_sample_records(todo)
    cuts = np.cumsum(counts)[:-1]
    for raw, start, interval, bmv, bdc in zip(todo, starts.tolist(), intervals.tolist(),
                                             np.split(mv, cuts), np.split(dc, cuts), strict=True):
        block = SampleBlock(start, interval, array("i", bmv.tobytes()), array("i", bdc.tobytes()))
        object.__setattr__(raw, "decoded", block)


def check_sample_heads(lf: Logfile) -> int:
    """Bound what a deferred sample decode may do, cheaply (no sample payload is decoded).

    Every SampleBlock record must have its whole head (start, interval, codec, count), a
    non-zero interval, the one known codec and at most ``samples.MAX_BLOCK_SAMPLES``
    samples; the file at most ``MAX_FILE_SAMPLES`` in all. Raises ``LogfileError`` naming
    the record's seq and byte offset, as the decoder does. For a file read with
    ``decode=False`` whose payloads are decoded later (``check_sample_payloads``).
    Returns the number of samples the blocks declare (what decoding them will cost).
    """
    total = 0
    for st in lf.streams:
        for raw in st.records:
            d = raw.data
            if d[0] != RecordType.SAMPLE_BLOCK:
                continue
            where = f"record seq {raw.seq}: sample block"
            if len(d) < PAYLOAD_AT:
                raise LogfileError(f"{where} is {len(d)} bytes, its head needs {PAYLOAD_AT}",
                                   offset=raw.offset)
            _, interval = SAMPLE_HEAD.unpack_from(d, 1)
            if interval == 0:
                raise LogfileError(f"{where} has interval 0 ms", offset=raw.offset + 1)
            try:
                n, _ = read_head(d, PAYLOAD_AT)  # the codec and count checks the decoder makes
            except LogfileError as err:
                raise LogfileError(f"{where}: {err.message}",
                                   offset=raw.offset + (err.offset or 0)) from None
            total += n
    if total > MAX_FILE_SAMPLES:
        raise LogfileError(f"the sample blocks declare {total} samples, more than the "
                           f"{MAX_FILE_SAMPLES} a logfile may hold", offset=0)
    return total


def check_sample_payloads(lf: Logfile) -> None:
    """Decode every sample payload of ``lf`` (read with ``decode=False``) and keep nothing.

    What ``read_logfile(decode=True)`` does per stream, without building ``SampleBlock``
    objects, one batch at a time (``BATCH_SAMPLES``): memory does not grow with the file. Raises ``LogfileError`` (the record's seq and byte offset) if one does not decode.
    """
    for st in lf.streams:
        raws = [raw for raw in st.records if raw.record_type == RecordType.SAMPLE_BLOCK]
        for _ in iter_sample_batches(raws):  # one batch in memory at a time
            pass


def write_logfile(path: str | os.PathLike[str], data: bytes) -> None:
    """Write logfile bytes atomically (temp file + rename) so a crash never leaves half a file."""
    target = Path(path)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
