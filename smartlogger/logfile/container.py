"""The decoded logfile: the container types every reader and writer of ``.slog`` files shares.

Owns ``Logfile`` (a decoded file of any version), ``LogStream`` (one stream as the
file carries it), ``RawRecord`` (one device record: its seq, canonical bytes, file
offset, stored CRC and, decoded on demand, the record), ``LogfileMetadata`` (what the
phone adds) and the per-record CRC rule (``record_crc``).

Why a module of its own: the 2.x container (``format``) and the generation-1 reader
(``gen1``) both produce these objects, and ``verify`` and ``convert`` consume them;
with the types here none of those modules needs another's reader or writer.
Does not own any byte layout of the container (``format``, ``gen1``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from smartlogger.errors import LogfileError
from smartlogger.logfile.evidence import Certificate, PullAttestation
from smartlogger.logfile.records import decode_record
from smartlogger.model import ConfigChange, LoggerIdentity, Record

#: Stream numbers and names (0 main, 1 summary), as in the file and the pull attestation.
STREAM_NAMES: Final = ("main", "summary")


@dataclass
class LogfileMetadata:
    """What the phone adds about the test (not signed by the device)."""

    block_label: str = ""
    block_position: int = 0  # 1-based position in the string, 0 = not set
    test: dict[str, str] = field(default_factory=dict)  # free test metadata (site, string, load, ...)
    created_ms: int | None = None  # phone clock when the file was written
    #: Configuration history; None when writing means "take the ConfigChange records of the streams".
    config_history: list[ConfigChange] | None = None


@dataclass(frozen=True)
class RawRecord:
    """One device record as stored: its seq, canonical bytes, where they are and the decoded record.

    ``record`` decodes on first use when the file was read with ``decode=False`` (verification
    needs the bytes, not the samples).
    """

    seq: int
    data: bytes
    offset: int  # byte offset of the record bytes in the file
    crc: int  # stored CRC-32 over seq (u64 LE) || data
    decoded: Record | None = field(default=None, compare=False, repr=False)

    @property
    def record(self) -> Record:
        if self.decoded is None:
            try:
                rec = decode_record(self.data)
            except LogfileError as err:
                at = None if err.offset is None else self.offset + err.offset
                raise LogfileError(err.message, offset=at) from None
            object.__setattr__(self, "decoded", rec)
            return rec
        return self.decoded

    @property
    def record_type(self) -> int:
        """The record's type byte (``records.RecordType``), without decoding it."""
        return self.data[0]

    @property
    def crc_ok(self) -> bool:
        return record_crc(self.seq, self.data) == self.crc


@dataclass
class LogStream:
    """One stream of a logger's log as carried by the file."""

    stream: int  # 0 main, 1 summary
    anchor_seq: int  # seq of the first record the file may hold
    anchor_hash: bytes  # chain value before anchor_seq
    records: list[RawRecord]
    offset: int = 0  # byte offset of the section

    @property
    def name(self) -> str:
        return STREAM_NAMES[self.stream]

    @property
    def next_seq(self) -> int:
        return self.records[-1].seq + 1 if self.records else self.anchor_seq


@dataclass
class Logfile:
    """A decoded logfile of any version. ``generation1`` files are unsigned by construction."""

    version: tuple[int, int]
    identity: LoggerIdentity
    metadata: LogfileMetadata
    streams: list[LogStream]
    certificate: Certificate | None
    attestations: list[PullAttestation]
    size: int
    sha256: str  # of the whole file
    footer_ok: bool  # the footer's hash and counts match the content
    footer_problem: str = ""
    generation1: bool = False

    @property
    def signed(self) -> bool:
        return self.certificate is not None and bool(self.attestations)

    @property
    def latest_attestation(self) -> PullAttestation | None:
        return max(self.attestations, key=lambda a: a.counter) if self.attestations else None

    def records(self, stream: int = 0) -> list[tuple[int, Record]]:
        return [(r.seq, r.record) for r in self.streams[stream].records]

    @property
    def config_history(self) -> list[ConfigChange]:
        if self.metadata.config_history is not None:
            return list(self.metadata.config_history)
        return config_changes_of(self.streams)


def config_changes_of(streams: Iterable[LogStream]) -> list[ConfigChange]:
    """Distinct ConfigChange records of the streams, in time order."""
    seen: dict[bytes, ConfigChange] = {}
    for st in streams:
        for raw in st.records:
            if isinstance(raw.record, ConfigChange):
                seen.setdefault(raw.data, raw.record)
    return sorted(seen.values(), key=lambda c: (c.t_ms, c.seq))


_SEQ = struct.Struct("<Q")


def record_crc(seq: int, data: bytes) -> int:
    """CRC-32 (zlib) over the seq as u64 little-endian followed by the record bytes."""
    return zlib.crc32(data, zlib.crc32(_SEQ.pack(seq)))
