"""The record hash chain: one definition used by the device and by ``verify``.

``h[seq] = SHA-256(h[seq-1] || seq as u64 little-endian || record bytes)``
where record bytes are the canonical encoding from ``logfile.records``.
The chain starts at ``genesis(serial)``, so records spliced in from another
logger never chain. A signed pull attests ``h`` at the newest record.
"""

from __future__ import annotations

import hashlib
import struct

HASH_LEN = 32


def genesis(serial: str) -> bytes:
    """The chain value before a logger's first record (seq 0)."""
    return hashlib.sha256(b"smartlogger-chain-v1\x00" + serial.encode("ascii")).digest()


_SEQ = struct.Struct("<Q")


def chain_next(prev: bytes, seq: int, record_bytes: bytes) -> bytes:
    """The chain value after appending record ``seq`` whose canonical bytes are ``record_bytes``."""
    return hashlib.sha256(b"".join((prev, _SEQ.pack(seq), record_bytes))).digest()
