"""The record hash chain: one definition used by the device and by ``verify``.

``h[seq] = SHA-256(h[seq-1] || seq as u64 little-endian || record bytes)``
where record bytes are the canonical encoding from ``logfile.records``.
Each stream of a logger has its own chain, starting at ``stream_genesis(serial,
stream)``: ``genesis(serial)`` for the main stream (0) and ``genesis(serial +
"/summary")`` for the summary stream (1), so records spliced in from another logger
or another stream never chain. A signed pull attests ``h`` at the newest record.
The device (``device.store``, ``device.blackbox``), the field tool (``field.ble``)
and the logfile reader and verifier all take the genesis from here.
"""

from __future__ import annotations

import hashlib
import struct

HASH_LEN = 32


def genesis(serial: str) -> bytes:
    """The chain value before a logger's first record (seq 0)."""
    return hashlib.sha256(b"smartlogger-chain-v1\x00" + serial.encode("ascii")).digest()


def stream_genesis(serial: str, stream: int) -> bytes:
    """The chain value before seq 0 of ``stream`` (0 main, 1 summary) of logger ``serial``."""
    if stream not in (0, 1):
        raise ValueError(f"a logger has streams 0 (main) and 1 (summary), not {stream}")
    return genesis(serial if stream == 0 else serial + "/summary")


_SEQ = struct.Struct("<Q")


def chain_next(prev: bytes, seq: int, record_bytes: bytes) -> bytes:
    """The chain value after appending record ``seq`` whose canonical bytes are ``record_bytes``."""
    return hashlib.sha256(b"".join((prev, _SEQ.pack(seq), record_bytes))).digest()
