"""Generation-1 files: written by the gen-1 profile, read transparently, flagged unsigned."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from smartlogger.device.store import MemoryStore
from smartlogger.errors import LogfileError
from smartlogger.logfile.convert import load_events, load_samples
from smartlogger.logfile.format import read_logfile
from smartlogger.logfile.gen1 import gen1_logfile_from_store, write_gen1
from smartlogger.logfile.verify import verify_logfile
from smartlogger.model import Event, EventKind, Generation, LoggerIdentity, SampleBlock, gen1_config

G1 = LoggerIdentity("G1-00042", Generation.GEN1, "1.3")

# The exact bytes of a small gen-1 file: 2 runs (3 + 1 samples at 10 s) and one event.
EXAMPLE = bytes.fromhex(
    "534c4731" "01" "47312d303030343200000000" "312e330000000000" "00" "0a00" "0200"
    "e803000000000000" "03000000" "0032fa00" "ff31fa00" "fe31fb00"
    "b0ad010000000000" "01000000" "f42ffb00"
    "0100" "a086010000000000" "03" "ac260000"
)
EXAMPLE += struct.pack("<I", zlib.crc32(EXAMPLE))


def _records() -> list[SampleBlock | Event]:
    return [
        SampleBlock.of(1000, 10_000, [12800, 12799, 12798], [250, 250, 251]),
        Event(100_000, EventKind.ENTER_ALARM, value=9900),
        SampleBlock.of(110_000, 10_000, [12276], [251]),
    ]


def test_writer_produces_the_specified_bytes() -> None:
    assert write_gen1(G1, _records()) == EXAMPLE


def test_reader_accepts_gen1_transparently() -> None:
    lf = read_logfile(EXAMPLE)
    assert lf.generation1 and lf.version == (1, 0) and not lf.signed
    assert lf.identity == G1
    assert lf.config_history[0].config == gen1_config()
    t, mv, dc = load_samples(lf)
    assert t.tolist() == [1000, 11000, 21000, 110_000]
    assert mv.tolist() == [12800, 12799, 12798, 12276] and dc.dtype == np.int16
    assert [e.kind for e in load_events(lf)] == [EventKind.ENTER_ALARM]
    rep = verify_logfile(EXAMPLE)
    assert rep.status == "unsigned" and rep.chain_intact and "generation-1" in rep.warnings[0]


def test_contiguous_blocks_merge_into_one_run_and_store_export() -> None:
    store = MemoryStore()
    store.append(SampleBlock.of(0, 10_000, [1, 2], [3, 4]))
    store.append(SampleBlock.of(20_000, 10_000, [5], [6]))
    data = gen1_logfile_from_store(G1, store)
    assert struct.unpack_from("<H", data, 28)[0] == 1  # one run
    assert load_samples(read_logfile(data))[1].tolist() == [1, 2, 5]


def test_writer_refuses_what_gen1_cannot_hold() -> None:
    with pytest.raises(ValueError, match="fixed rate"):
        write_gen1(G1, [SampleBlock.of(0, 10_000, [1], [1]), SampleBlock.of(5, 5_000, [1], [1])])
    with pytest.raises(ValueError, match="generation 2"):
        write_gen1(LoggerIdentity("SL2-1", Generation.GEN2, "2"), [])


def test_damaged_gen1_files() -> None:
    with pytest.raises(LogfileError, match="CRC-32"):
        read_logfile(EXAMPLE[:44] + bytes([EXAMPLE[44] ^ 1]) + EXAMPLE[45:])
    assert verify_logfile(EXAMPLE[:44] + bytes([EXAMPLE[44] ^ 1]) + EXAMPLE[45:]).status == "tampered"
    with pytest.raises(LogfileError) as info:
        read_logfile(EXAMPLE[:-10])
    assert info.value.offset is not None
    huge = bytearray(EXAMPLE)
    huge[38:42] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(LogfileError, match="declares 4294967280 samples") as info:
        read_logfile(bytes(huge))
    assert info.value.offset == 38
