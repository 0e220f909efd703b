"""Compact sample encoding: fixed-rate voltage/temperature samples in about half a byte each.

Owns the byte layout of the *sample payload* inside a ``SampleBlock`` record
(``logfile.records`` adds the record type, start time and interval around it)
and its vectorised numpy encoder and decoder. Does not own timestamps: samples
are taken at a fixed interval, so the i-th sample's time is implied.

Layout (all integers little-endian; specified byte-exact in docs/LOGFILE_FORMAT.md)::

    payload  = codec:u8 (=1) | count:u32 | channel(mv) | channel(dc)     (channels absent if count == 0)
    channel  = first:i32 | mode:u8 | widths | packed
    widths   = one bit width per group of GROUP (=32) consecutive deltas;
               mode 0: 4 bits per group, two per byte, first group in the low nibble
               mode 1: 1 byte per group (needed only when some width exceeds 15)
    packed   = the zig-zag deltas, each in its group's width, concatenated LSB-first
               into one bit stream, zero-padded to a whole byte

``delta[i] = v[i+1] - v[i]`` and ``zigzag(d) = 2d`` for ``d >= 0``, ``-2d - 1`` otherwise,
so small changes of either sign take few bits (prior art: Sprintz's delta +
zig-zag + per-block bit packing; FastPFor's frames). A group whose deltas are
all zero (a steady temperature) costs only its 4-bit width.

Values are int32 (mV, dC); a delta of two int32 values needs at most 33 bits.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from smartlogger.errors import LogfileError

#: Version of this sample codec; the first byte of every payload.
CODEC_V1: Final = 1
#: Deltas per bit-width group.
GROUP: Final = 32
#: Largest sample count of one block. Bounds the memory a hostile count can claim
#: (about 50 MB of temporaries while decoding) and is far above any flash block.
MAX_BLOCK_SAMPLES: Final = 1 << 20
#: Widest zig-zag delta: the difference of two int32 values.
MAX_WIDTH: Final = 33

_I32_MIN: Final = -(1 << 31)
_I32_MAX: Final = (1 << 31) - 1
_HEAD = struct.Struct("<BI")  # codec:u8, count:u32
_CH_HEAD = struct.Struct("<iB")  # first:i32, mode:u8

Int32Array = npt.NDArray[np.int32]
_Bytes = bytes | bytearray | memoryview


def encode_samples(mv: Sequence[int] | npt.ArrayLike, dc: Sequence[int] | npt.ArrayLike) -> bytes:
    """The payload bytes for equal-length mV and dC sample sequences (int32 range)."""
    mv_a = _as_int64(mv, "mv")
    dc_a = _as_int64(dc, "dc")
    if mv_a.shape != dc_a.shape:
        raise ValueError(f"mv has {mv_a.size} samples but dc has {dc_a.size}")
    n = int(mv_a.size)
    if n > MAX_BLOCK_SAMPLES:
        raise ValueError(f"{n} samples exceed the block limit of {MAX_BLOCK_SAMPLES}")
    parts = [_HEAD.pack(CODEC_V1, n)]
    if n:
        parts.append(encode_channel(mv_a))
        parts.append(encode_channel(dc_a))
    return b"".join(parts)


def read_head(data: _Bytes, offset: int = 0) -> tuple[int, int]:
    """Check the payload head at ``offset``: ``(sample count, offset of the first channel)``.

    The head is codec:u8 and count:u32; a known codec and at most ``MAX_BLOCK_SAMPLES``
    are required, so a caller can bound the decode before doing it. Raises
    ``LogfileError`` with the byte offset of the bad field.
    """
    size = len(data)
    if offset + _HEAD.size > size:
        raise LogfileError(f"sample payload header needs {_HEAD.size} bytes, "
                           f"{max(0, size - offset)} left", offset=offset)
    codec, n = _HEAD.unpack_from(data, offset)
    if codec != CODEC_V1:
        raise LogfileError(f"unknown sample codec {codec} (this reader knows codec {CODEC_V1})",
                           offset=offset)
    if n > MAX_BLOCK_SAMPLES:
        raise LogfileError(f"sample count {n} exceeds the block limit {MAX_BLOCK_SAMPLES}",
                           offset=offset + 1)
    return int(n), offset + _HEAD.size


def decode_samples(data: _Bytes, offset: int = 0) -> tuple[Int32Array, Int32Array, int]:
    """Decode a payload starting at ``offset``: ``(mv, dc, end offset)``.

    Raises ``LogfileError`` with the byte offset of the first bad field.
    """
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    n, pos = read_head(buf, offset)
    if n == 0:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty.copy(), pos
    mv, pos = decode_channel(buf, pos, n, "mv")
    dc, pos = decode_channel(buf, pos, n, "dc")
    return mv, dc, pos


# --------------------------------------------------------------------------- one channel


def encode_channel(values: npt.NDArray[np.int64]) -> bytes:
    """One channel (``first | mode | widths | packed``) for a non-empty int64 array in int32 range."""
    n = int(values.size)
    first = int(values[0])
    deltas = np.diff(values)
    zz = ((deltas << 1) ^ (deltas >> 63)).astype(np.uint64)
    if zz.size == 0:
        return _CH_HEAD.pack(first, 0)
    bitlen = _bit_length(zz)
    group_starts = np.arange(0, zz.size, GROUP)
    widths = np.maximum.reduceat(bitlen, group_starts).astype(np.uint8)
    mode = 1 if int(widths.max()) > 15 else 0
    table = widths.tobytes() if mode else _pack_nibbles(widths)
    packed = _pack_bits(zz, widths, n - 1)
    return _CH_HEAD.pack(first, mode) + table + packed


class _Layout(NamedTuple):
    """A channel's header and width table, read and checked (``_channel_layout``)."""

    first: int
    mode: int
    pos: int  # offset of the packed deltas
    table_len: int
    ngroups: int
    ndelta: int
    w64: npt.NDArray[np.int64]  # each group's bit width
    counts: npt.NDArray[np.int64]  # each group's number of deltas
    nbytes: int  # bytes of packed deltas


def _channel_layout(buf: _Bytes, offset: int, n: int, name: str) -> _Layout:
    """The header, width table, sizes and padding of the channel of ``n`` samples at ``offset``,
    checked in this order (the decoders' first checks, shared by ``decode_channel`` and the
    piecewise decoder)."""
    size = len(buf)
    if offset + _CH_HEAD.size > size:
        raise LogfileError(f"{name} channel header needs {_CH_HEAD.size} bytes, "
                           f"{max(0, size - offset)} left", offset=offset)
    first, mode = _CH_HEAD.unpack_from(buf, offset)
    pos = offset + _CH_HEAD.size
    ndelta = n - 1
    ngroups = -(-ndelta // GROUP)
    if mode == 0:
        table_len = (ngroups + 1) // 2
    elif mode == 1:
        table_len = ngroups
    else:
        raise LogfileError(f"{name} width-table mode {mode} is not 0 or 1", offset=offset + 4)
    if pos + table_len > size:
        raise LogfileError(f"{name} width table needs {table_len} bytes for {n} samples, "
                           f"{size - pos} left", offset=pos)
    raw = np.frombuffer(buf, dtype=np.uint8, count=table_len, offset=pos)
    if mode == 0:
        widths = np.empty(table_len * 2, dtype=np.uint8)
        widths[0::2] = raw & 0x0F
        widths[1::2] = raw >> 4
        if ngroups % 2 and widths[-1] != 0:
            raise LogfileError(f"{name} width table: unused last nibble is not zero",
                               offset=pos + table_len - 1)
        widths = widths[:ngroups]
    else:
        widths = raw
        bad = np.flatnonzero(widths > MAX_WIDTH)
        if bad.size:
            g = int(bad[0])
            raise LogfileError(f"{name} group {g} has bit width {int(widths[g])} > {MAX_WIDTH}",
                               offset=pos + g)
        if ngroups and int(widths.max()) <= 15:
            raise LogfileError(f"{name} uses byte-wide widths (mode 1) although all fit a nibble; "
                               "not canonical", offset=offset + 4)
    pos += table_len
    counts = np.full(ngroups, GROUP, dtype=np.int64)
    if ngroups:
        counts[-1] = ndelta - GROUP * (ngroups - 1)
    w64 = widths.astype(np.int64)
    total_bits = int(np.dot(w64, counts)) if ngroups else 0
    nbytes = (total_bits + 7) // 8
    if pos + nbytes > size:
        raise LogfileError(f"{name} packed deltas need {nbytes} bytes, {size - pos} left",
                           offset=pos)
    if total_bits % 8:
        last = buf[pos + nbytes - 1]
        if last >> (total_bits % 8):
            raise LogfileError(f"{name} padding bits of the last packed byte are not zero",
                               offset=pos + nbytes - 1)
    return _Layout(first, mode, pos, table_len, ngroups, ndelta, w64, counts, nbytes)


def decode_channel(buf: _Bytes, offset: int, n: int, name: str = "channel") -> tuple[Int32Array, int]:
    """Decode one channel of ``n >= 1`` samples at ``offset``: ``(values, end offset)``."""
    first, mode, pos, table_len, ngroups, ndelta, w64, counts, nbytes = _channel_layout(buf, offset, n, name)
    zz = _unpack_bits(buf, pos, nbytes, np.repeat(w64, counts))
    if ngroups:
        # Canonical: each width is exactly the bit length of its group's largest value, so
        # one sample sequence has one encoding (the chain hashes these bytes).
        actual = _bit_length(np.maximum.reduceat(zz, np.arange(0, ndelta, GROUP)))
        wrong = np.flatnonzero(actual != w64)
        if wrong.size:
            g = int(wrong[0])
            raise LogfileError(f"{name} group {g} declares width {int(w64[g])} but its largest "
                               f"delta needs {int(actual[g])} bits; not canonical",
                               offset=pos - table_len + (g if mode else g // 2))
    pos += nbytes
    # un-zig-zag, then integrate; int64 cannot overflow for 2**20 deltas of < 2**33.
    deltas = (zz >> np.uint64(1)).astype(np.int64) ^ -(zz & np.uint64(1)).astype(np.int64)
    out = np.empty(n, dtype=np.int64)
    out[0] = first
    np.cumsum(deltas, out=out[1:])
    out[1:] += first
    if ndelta and (int(out.min()) < _I32_MIN or int(out.max()) > _I32_MAX):
        bad_i = int(np.flatnonzero((out < _I32_MIN) | (out > _I32_MAX))[0])
        raise LogfileError(f"{name} sample {bad_i} decodes to {int(out[bad_i])}, outside int32",
                           offset=offset)
    return out.astype(np.int32), pos


# --------------------------------------------------------------------------- one large payload, in pieces

#: Bit-width groups decoded per piece by ``decode_samples_chunked`` (2**18 deltas: ~15 MB of temporaries).
CHUNK_GROUPS: Final = 1 << 13


def decode_samples_chunked(data: _Bytes, offset: int = 0, *,
                           chunk_groups: int = CHUNK_GROUPS) -> tuple[Int32Array, Int32Array, int]:
    """``decode_samples`` (same values, same errors) a piece of ``chunk_groups`` bit-width groups at a
    time: the temporaries follow the piece, not the payload (a block of ``MAX_BLOCK_SAMPLES``
    samples decoded at once needs ~110 MB; in pieces, its 8 MB of output and ~15 MB)."""
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    n, pos = read_head(buf, offset)
    mv = np.empty(n, dtype=np.int32)
    dc = np.empty(n, dtype=np.int32)
    if n == 0:
        return mv, dc, pos
    pos = _decode_channel_into(buf, pos, n, "mv", mv, chunk_groups)
    pos = _decode_channel_into(buf, pos, n, "dc", dc, chunk_groups)
    return mv, dc, pos


def _decode_channel_into(buf: _Bytes, offset: int, n: int, name: str, out: Int32Array, chunk_groups: int) -> int:
    """``decode_channel`` into ``out`` piece by piece; returns the end offset. The checks are made
    in ``decode_channel``'s order: header, widths, sizes and padding first; then every group's
    canonical width before any value's range (a range error found early is raised at the end)."""
    first, mode, pos, table_len, ngroups, _, w64, counts, nbytes = _channel_layout(buf, offset, n, name)
    group_bits = w64 * counts
    bit_at = np.concatenate(([0], np.cumsum(group_bits)))  # first bit of each group
    out[0] = first
    value = first  # the last value decoded (int64 arithmetic, as decode_channel's)
    range_error: LogfileError | None = None
    for g0 in range(0, ngroups, chunk_groups):
        g1 = min(g0 + chunk_groups, ngroups)
        b0 = int(bit_at[g0])
        byte0 = b0 // 8
        piece_bytes = (int(bit_at[g1]) - byte0 * 8 + 7) // 8
        per_value = np.repeat(w64[g0:g1], counts[g0:g1])
        # _unpack_bits reads from a byte boundary: lead with the piece's bit offset in its first byte
        lead = b0 - byte0 * 8
        zz = _unpack_bits(buf, pos + byte0, piece_bytes, np.concatenate(([lead], per_value)))[1:] \
            if lead else _unpack_bits(buf, pos + byte0, piece_bytes, per_value)
        actual = _bit_length(np.maximum.reduceat(zz, np.arange(0, zz.size, GROUP)))
        wrong = np.flatnonzero(actual != w64[g0:g1])
        if wrong.size:
            g = g0 + int(wrong[0])
            raise LogfileError(f"{name} group {g} declares width {int(w64[g])} but its largest "
                               f"delta needs {int(actual[g - g0])} bits; not canonical",
                               offset=pos - table_len + (g if mode else g // 2))
        if range_error is not None:
            continue
        deltas = (zz >> np.uint64(1)).astype(np.int64) ^ -(zz & np.uint64(1)).astype(np.int64)
        vals = np.cumsum(deltas)
        vals += value
        d0 = g0 * GROUP
        if int(vals.min()) < _I32_MIN or int(vals.max()) > _I32_MAX:
            k = int(np.flatnonzero((vals < _I32_MIN) | (vals > _I32_MAX))[0])
            range_error = LogfileError(f"{name} sample {d0 + k + 1} decodes to {int(vals[k])}, outside int32",
                                       offset=offset)
            continue
        out[d0 + 1:d0 + 1 + vals.size] = vals
        value = int(vals[-1])
    if range_error is not None:
        raise range_error
    return pos + nbytes


# --------------------------------------------------------------------------- bit tricks


def _as_int64(values: Sequence[int] | npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, not {arr.dtype}")
    out = arr.astype(np.int64)
    if out.size and (int(out.min()) < _I32_MIN or int(out.max()) > _I32_MAX):
        raise ValueError(f"{name} values must fit int32")
    return out


def _bit_length(zz: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Vectorised ``int.bit_length`` for values below 2**53 (exact in float64)."""
    _, exp = np.frexp(zz.astype(np.float64))
    return exp.astype(np.int64)  # frexp(0) gives exponent 0


def _pack_nibbles(widths: npt.NDArray[np.uint8]) -> bytes:
    w = widths if widths.size % 2 == 0 else np.append(widths, np.uint8(0))
    return (w[0::2] | (w[1::2] << 4)).astype(np.uint8).tobytes()


def _pack_bits(zz: npt.NDArray[np.uint64], widths: npt.NDArray[np.uint8], nvalues: int) -> bytes:
    """Concatenate the values LSB-first at their group widths into a zero-padded byte string."""
    per_value = np.repeat(widths.astype(np.int64), GROUP)[:nvalues]
    ends = np.cumsum(per_value)
    total_bits = int(ends[-1])
    nbytes = (total_bits + 7) // 8
    if nbytes == 0:
        return b""
    starts = ends - per_value
    # A value of <= 33 bits shifted by <= 7 spans at most 5 bytes; the bit ranges of
    # different values never overlap, so summing byte contributions equals OR-ing them.
    shifted = zz << (starts & 7).astype(np.uint64)
    base = starts >> 3
    out = np.zeros(nbytes + 5, dtype=np.float64)
    for k in range(5):
        part = ((shifted >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.float64)
        out += np.bincount(base + k, weights=part, minlength=nbytes + 5)
    return out[:nbytes].astype(np.uint8).tobytes()


def _unpack_bits(buf: _Bytes, pos: int, nbytes: int,
                 per_value: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The values of the given bit widths packed LSB-first in ``buf[pos:pos+nbytes]``."""
    if per_value.size == 0:
        return np.zeros(0, dtype=np.uint64)
    padded = np.zeros(nbytes + 8, dtype=np.uint8)
    padded[:nbytes] = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=pos)
    # An unaligned little-endian u64 at every byte offset (stride 1): one gather per value.
    words = np.ndarray(shape=(nbytes + 1,), dtype="<u8", buffer=padded.data, strides=(1,))
    starts = np.cumsum(per_value) - per_value
    got = words[starts >> 3] >> (starts & 7).astype(np.uint64)
    masks = (np.uint64(1) << per_value.astype(np.uint64)) - np.uint64(1)
    result: npt.NDArray[np.uint64] = got & masks
    return result


# --------------------------------------------------------------------------- many payloads at once

_NIBBLE_SUM: Final = bytes((b & 0x0F) + (b >> 4) for b in range(256))
_MASKS: Final = (np.uint64(1) << np.arange(64, dtype=np.uint64)) - np.uint64(1)


def decode_many(buf: _Bytes, offsets: Sequence[int]) -> tuple[Int32Array, Int32Array,
                                                                npt.NDArray[np.int64], list[int]]:
    """Decode the payloads starting at ``offsets`` in ``buf`` in one vectorised pass.

    Returns ``(mv, dc, counts, ends)``: all samples concatenated in payload order, the sample
    count and the end offset of each payload. Per payload only its headers are parsed in
    Python; the bit unpacking, integration and canonical-form checks run once over all of
    them, so thousands of small flash-sized blocks decode as fast as one large block.
    Raises ``LogfileError`` with the absolute offset in ``buf``, like ``decode_samples``.
    """
    data = bytes(buf)
    size = len(data)
    # per channel: first value, sample count, table offset, mode, groups, packed offset, bits
    firsts: list[int] = []
    ns: list[int] = []
    tables: list[int] = []
    modes: list[int] = []
    bits: list[int] = []
    packed: list[int] = []
    counts: list[int] = []
    ends: list[int] = []
    for offset in offsets:
        n, pos = read_head(data, offset)
        counts.append(n)
        for name in ("mv", "dc") if n else ():
            if pos + _CH_HEAD.size > size:
                raise LogfileError(f"{name} channel header needs {_CH_HEAD.size} bytes, "
                                   f"{max(0, size - pos)} left", offset=pos)
            first, mode = _CH_HEAD.unpack_from(data, pos)
            ndelta = n - 1
            ngroups = -(-ndelta // GROUP)
            tpos = pos + _CH_HEAD.size
            if mode == 0:
                tlen = (ngroups + 1) // 2
            elif mode == 1:
                tlen = ngroups
            else:
                raise LogfileError(f"{name} width-table mode {mode} is not 0 or 1", offset=pos + 4)
            if tpos + tlen > size:
                raise LogfileError(f"{name} width table needs {tlen} bytes for {n} samples, "
                                   f"{size - tpos} left", offset=tpos)
            table = data[tpos:tpos + tlen]
            if ngroups:
                if mode == 0:
                    last_w = (table[-1] >> 4) if ngroups % 2 == 0 else (table[-1] & 0x0F)
                    wsum = sum(table.translate(_NIBBLE_SUM))
                else:
                    last_w = table[-1]
                    wsum = sum(table)
                total = GROUP * wsum - (GROUP * ngroups - ndelta) * last_w
            else:
                total = 0
            ppos = tpos + tlen
            nbytes = (total + 7) // 8
            if ppos + nbytes > size:
                raise LogfileError(f"{name} packed deltas need {nbytes} bytes, {size - ppos} left",
                                   offset=ppos)
            firsts.append(first)
            ns.append(n)
            tables.append(tpos)
            modes.append(mode)
            bits.append(total)
            packed.append(ppos)
            pos = ppos + nbytes
        ends.append(pos)
    mv, dc = _decode_channels(data, firsts, ns, tables, modes, bits, packed)
    return mv, dc, np.array(counts, dtype=np.int64), ends


def _decode_channels(data: bytes, firsts: list[int], ns: list[int], tables: list[int],
                     modes: list[int], bits: list[int], packed: list[int]) -> tuple[Int32Array, Int32Array]:
    if not ns:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty.copy()
    n = np.array(ns, dtype=np.int64)
    ndelta = n - 1
    ngroups = (ndelta + GROUP - 1) // GROUP
    mode = np.array(modes, dtype=np.int64)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    # widths of every group of every channel, read straight from the tables
    gbase = np.cumsum(ngroups) - ngroups
    total_groups = int(ngroups.sum())
    gidx = np.arange(total_groups, dtype=np.int64) - np.repeat(gbase, ngroups)
    gmode = np.repeat(mode, ngroups)
    bytepos = np.repeat(np.array(tables, dtype=np.int64), ngroups) + np.where(gmode == 0, gidx // 2, gidx)
    shift = np.where(gmode == 0, (gidx % 2) * 4, 0)
    widths = (padded[bytepos].astype(np.int64) >> shift) & np.where(gmode == 0, 0x0F, 0xFF)
    chan_of_group = np.repeat(np.arange(n.size), ngroups)
    bad = np.flatnonzero(widths > MAX_WIDTH)
    if bad.size:
        g = int(bad[0])
        raise LogfileError(f"group {int(gidx[g])} has bit width {int(widths[g])} > {MAX_WIDTH}",
                           offset=int(bytepos[g]))
    wide = mode == 1
    if wide.any():
        gmax = np.zeros(n.size, dtype=np.int64)
        np.maximum.at(gmax, chan_of_group, widths)
        bad_c = np.flatnonzero(wide & (gmax <= 15) & (ngroups > 0))
        if bad_c.size:
            c = int(bad_c[0])
            raise LogfileError("byte-wide widths (mode 1) although all fit a nibble; not canonical",
                               offset=tables[c] - 1)
    odd_last = (mode == 0) & (ngroups % 2 == 1)
    if odd_last.any():
        last_bytes = padded[np.array(tables, dtype=np.int64)[odd_last] + ngroups[odd_last] // 2]
        nz = np.flatnonzero(last_bytes >> 4)
        if nz.size:
            c = int(np.flatnonzero(odd_last)[nz[0]])
            raise LogfileError("width table: unused last nibble is not zero",
                               offset=tables[c] + int(ngroups[c]) // 2)
    # values: widths per value, absolute bit starts in the buffer, one unaligned gather each
    gcount = np.minimum(GROUP, np.repeat(ndelta, ngroups) - gidx * GROUP)
    per_value = np.repeat(widths.astype(np.uint8), gcount)
    vbase = np.cumsum(ndelta) - ndelta
    excl = np.cumsum(per_value, dtype=np.int64)
    excl -= per_value
    chan_bits0 = excl[np.minimum(vbase, max(per_value.size - 1, 0))] if per_value.size else vbase
    # absolute bit position = position inside the channel's stream + the stream's first bit
    starts = excl + np.repeat(np.array(packed, dtype=np.int64) * 8 - chan_bits0, ndelta)
    # An unaligned little-endian u64 at every byte offset, copied into one contiguous array first:
    # gathering from the stride-1 view directly is about twice as slow.
    words = np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded.data, strides=(1,)).copy()
    zz = (words[starts >> 3] >> (starts & 7).astype(np.uint64)) & _MASKS[per_value]
    # canonical: each width is the bit length of its group's largest value; padding bits are 0
    if total_groups:
        gstart = np.cumsum(gcount) - gcount
        actual = _bit_length(np.maximum.reduceat(zz, gstart))
        wrong = np.flatnonzero(actual != widths)
        if wrong.size:
            g = int(wrong[0])
            raise LogfileError(f"group {int(gidx[g])} declares width {int(widths[g])} but its largest "
                               f"delta needs {int(actual[g])} bits; not canonical", offset=int(bytepos[g]))
    bits_a = np.array(bits, dtype=np.int64)
    rem = bits_a % 8
    has_pad = np.flatnonzero(rem)
    if has_pad.size:
        last = padded[np.array(packed, dtype=np.int64)[has_pad] + bits_a[has_pad] // 8]
        nz = np.flatnonzero(last >> rem[has_pad].astype(np.uint8))
        if nz.size:
            c = int(has_pad[nz[0]])
            raise LogfileError("padding bits of the last packed byte are not zero",
                               offset=packed[c] + bits[c] // 8)
    z = zz.view(np.int64)  # < 2**33: the same bits either way
    deltas = (z >> 1) ^ -(z & 1)
    # Segmented running sum in one cumsum: each channel's first step jumps from the previous
    # channel's last value to its own first value. (Modulo 2**64 for hostile input: values are
    # exact whenever they are in int32, which is checked below.)
    steps = np.empty(int(n.sum()), dtype=np.int64)
    cstart = np.cumsum(n) - n
    is_first = np.zeros(steps.size, dtype=bool)
    is_first[cstart] = True
    steps[~is_first] = deltas
    first_a = np.array(firsts, dtype=np.int64)
    totals = np.zeros(n.size, dtype=np.int64)  # per channel: sum of its deltas
    has_delta = ndelta > 0
    if has_delta.any():
        totals[has_delta] = np.add.reduceat(deltas, vbase[has_delta])
    last = first_a + totals
    steps[cstart] = first_a - np.concatenate(([0], last[:-1]))
    values = np.cumsum(steps)
    out_of_range = (values < _I32_MIN) | (values > _I32_MAX)
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range)[0])
        c = int(np.searchsorted(cstart, i, side="right") - 1)
        raise LogfileError(f"sample {i - int(cstart[c])} decodes to {int(values[i])}, outside int32",
                           offset=tables[c] - 5)
    is_mv = np.repeat(np.arange(n.size) % 2 == 0, n)
    v32 = values.astype(np.int32)
    return v32[is_mv], v32[~is_mv]
