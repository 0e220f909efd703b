"""An independent reader written from docs/LOGFILE_FORMAT.md and docs/EVIDENCE.md alone.

It does not use smartlogger.logfile to decode anything: it parses the example file whose bytes are
printed in the spec, checks the footer hash, the hash chain, the device signature, and compares the
decoded values with what the spec says the file holds. Only at the end is the printed example
compared with the code's ``example_file()`` so the document cannot drift from the code.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SPEC = Path(__file__).resolve().parents[1] / "docs" / "LOGFILE_FORMAT.md"


def spec_example_bytes() -> bytes:
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("## Example file"):]
    block = section[section.index("```hex") + 6:]
    block = block[:block.index("```")]
    out = bytearray()
    for line in block.strip().splitlines():
        offset, hexpart = line.split(":", 1)
        assert int(offset, 16) == len(out)
        out += bytes.fromhex(hexpart)
    return bytes(out)


class Cursor:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def fixed(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def raw(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data)
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def str8(self) -> str:
        return self.raw(self.fixed("B")).decode("utf-8")

    def str16(self) -> str:
        return self.raw(self.fixed("H")).decode("utf-8")

    def leb128(self) -> int:
        value = shift = 0
        while True:
            byte: int = self.fixed("B")
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value


def read_samples(c: Cursor) -> tuple[list[int], list[int]]:
    assert c.fixed("B") == 1  # codec
    count = c.fixed("I")
    channels = []
    for _ in range(2 if count else 0):
        first = c.fixed("i")
        mode = c.fixed("B")
        groups = (count - 1 + 31) // 32
        if mode == 0:
            table = c.raw((groups + 1) // 2)
            widths = [(table[g // 2] >> (4 * (g % 2))) & 0xF for g in range(groups)]
        else:
            widths = list(c.raw(groups))
        sizes = [min(32, count - 1 - 32 * g) for g in range(groups)]
        nbits = sum(w * n for w, n in zip(widths, sizes, strict=True))
        stream = int.from_bytes(c.raw((nbits + 7) // 8), "little")
        values, bit = [first], 0
        for w, n in zip(widths, sizes, strict=True):
            for _ in range(n):
                z = (stream >> bit) & ((1 << w) - 1)
                bit += w
                values.append(values[-1] + ((z >> 1) if z % 2 == 0 else -((z + 1) >> 1)))
        channels.append(values)
    return (channels[0], channels[1]) if channels else ([], [])


def read_config(c: Cursor) -> dict[str, Any]:
    chem, cells = c.fixed("B"), c.fixed("B")
    volts = [c.fixed("i") for _ in range(4)]
    temps = [c.fixed("h") for _ in range(4)]
    rated = c.fixed("d")
    float_rate, dis_rate, position = c.fixed("I"), c.fixed("I"), c.fixed("H")
    return {"chemistry": chem, "cells": cells, "volts": volts, "temps": temps, "rated_ah": rated,
            "rates": (float_rate, dis_rate), "position": position, "label": c.str8(),
            "test_id": c.str8()}


def read_record(data: bytes) -> dict[str, Any]:
    c = Cursor(data)
    kind = c.fixed("B")
    if kind == 0x01:
        start, interval = c.fixed("q"), c.fixed("I")
        mv, dc = read_samples(c)
        rec: dict[str, Any] = {"type": "SampleBlock", "start_ms": start, "interval_ms": interval,
                               "mv": mv, "dc": dc}
    elif kind == 0x02:
        rec = {"type": "Event", "t_ms": c.fixed("q"), "kind": c.fixed("B"), "quantity": c.fixed("B"),
               "side": c.fixed("B"), "value": c.fixed("q")}
    elif kind == 0x03:
        rec = {"type": "ConfigChange", "t_ms": c.fixed("q"), "config_seq": c.fixed("I"),
               "config": read_config(c)}
    elif kind == 0x04:
        rec = {"type": "ClockSet", "old_ms": c.fixed("q"), "new_ms": c.fixed("q")}
    else:
        raise AssertionError(f"record type {kind} not in the example")
    assert c.pos == len(data), "record must fill its bytes"
    return rec


def read_file(data: bytes) -> dict[str, Any]:
    assert data[:8] == b"\x89SLOG\r\n\x1a" and data[8] == 2
    c = Cursor(data, 12)
    out: dict[str, Any] = {"streams": [], "attestations": []}
    while True:
        at = c.pos
        kind, length = c.fixed("B"), c.fixed("I")
        body = Cursor(c.raw(length))
        if kind == 0x01:
            out["serial"] = body.str8()
            out["generation"] = body.fixed("B")
            out["firmware"] = body.str8()
            out["markers"] = body.fixed("B")
            out["created_ms"] = body.fixed("q")
            out["label"] = body.str8()
            out["position"] = body.fixed("H")
            out["test"] = {body.str8(): body.str16() for _ in range(body.fixed("B"))}
            out["configs"] = [read_record(body.raw(body.leb128())) for _ in range(body.fixed("H"))]
        elif kind == 0x02:
            assert body.fixed("B") == 1
            cert = {"serial": body.str8(), "generation": body.fixed("B"), "firmware": body.str8(),
                    "markers": body.fixed("B"), "device_key": body.raw(32), "issuer_kind": body.fixed("B"),
                    "issuer_key_id": body.raw(8), "issued_ms": body.fixed("q")}
            signed_len = body.pos
            cert["signature"] = body.raw(64)
            cert["body"] = body.data[:signed_len]
            out["certificate"] = cert
        elif kind == 0x03:
            stream = {"stream": body.fixed("B"), "anchor_seq": body.fixed("Q"), "anchor": body.raw(32),
                      "records": []}
            seq = stream["anchor_seq"]
            for _ in range(body.fixed("I")):
                seq += body.leb128()
                length_r = body.leb128()
                crc = body.fixed("I")
                raw = body.raw(length_r)
                stream["records"].append({"seq": seq, "crc": crc, "raw": raw, **read_record(raw)})
            out["streams"].append(stream)
        elif kind == 0x04:
            phone = body.fixed("q")
            start = body.pos
            att: dict[str, Any] = {"phone_ms": phone, "serial": body.str8(), "counter": body.fixed("I"),
                                   "device_ms": body.fixed("q")}
            att["nonce"] = body.raw(body.fixed("B"))
            att["streams"] = [(body.fixed("Q"), body.fixed("Q"), body.fixed("Q"), body.raw(32))
                              for _ in range(2)]
            att["body"] = body.data[start:body.pos]
            att["signature"] = body.raw(64)
            out["attestations"].append(att)
        elif kind == 0xFF:
            out["footer"] = struct.unpack_from("<III", body.data, 0)
            assert hashlib.sha256(data[:at]).digest() == body.data[12:44]
            assert c.pos == len(data)
            return out
        assert body.pos == length or kind not in (1, 2, 3, 4), f"section {kind:#x} not fully read"


def test_spec_example_decodes_with_the_independent_reader() -> None:
    f = read_file(spec_example_bytes())
    assert (f["serial"], f["generation"], f["firmware"], f["markers"]) == ("SIM-0001", 2, "2.1.0", 1)
    assert (f["label"], f["position"], f["test"]) == ("B07", 7, {"site": "Plant A"})
    cfg = f["configs"][0]["config"]
    assert cfg["volts"] == [9900, 10800, 14100, 14700] and cfg["temps"] == [0, 50, 350, 450]
    assert (cfg["chemistry"], cfg["cells"], cfg["rated_ah"], cfg["rates"]) == (1, 6, 100.0, (60, 1))
    main, summary = f["streams"]
    kinds = [r["type"] for r in main["records"]]
    assert kinds == ["Event", "ClockSet", "SampleBlock"]
    assert main["records"][0]["kind"] == 8 and main["records"][0]["t_ms"] == 1_767_225_600_000
    assert main["records"][1]["new_ms"] - main["records"][1]["old_ms"] == 2_500
    block = main["records"][2]
    assert block["mv"] == [12731, 12730, 12732, 12729, 12729] and block["dc"] == [215, 215, 216, 216, 216]
    assert (block["start_ms"], block["interval_ms"]) == (1_767_225_604_000, 1000)
    assert [r["type"] for r in summary["records"]] == ["ConfigChange"]
    assert f["footer"] == (3, 1, 1)


def test_spec_example_chain_crc_and_signature() -> None:
    import zlib

    f = read_file(spec_example_bytes())
    att = f["attestations"][0]
    assert att["nonce"] == bytes.fromhex("00112233445566778899aabbccddeeff") and att["counter"] == 1
    for index, stream in enumerate(f["streams"]):
        suffix = b"" if index == 0 else b"/summary"
        h = hashlib.sha256(b"smartlogger-chain-v1\x00" + f["serial"].encode() + suffix).digest()
        assert stream["anchor_seq"] == 0 and stream["anchor"] == h
        for rec in stream["records"]:
            seq = struct.pack("<Q", rec["seq"])
            assert zlib.crc32(seq + rec["raw"]) == rec["crc"]
            h = hashlib.sha256(h + seq + rec["raw"]).digest()
        oldest, from_seq, next_seq, head = att["streams"][index]
        assert (oldest, from_seq, next_seq) == (0, 0, len(stream["records"]))
        assert head == h
    cert = f["certificate"]
    device = Ed25519PublicKey.from_public_bytes(cert["device_key"])
    device.verify(att["signature"], b"smartlogger-pull-v1\x00" + att["body"])  # raises if invalid
    # the certificate is issued by the TEST authority, whose key comes from the documented seed
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    test_key = Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"smartlogger test authority v1").digest()).public_key()
    raw = test_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert cert["issuer_kind"] == 2 and cert["issuer_key_id"] == hashlib.sha256(raw).digest()[:8]
    test_key.verify(cert["signature"], b"smartlogger-cert-v1\x00" + cert["body"])


def test_spec_example_is_what_the_code_writes() -> None:
    from smartlogger.testing.logfile_examples import example_file

    assert spec_example_bytes() == example_file()
    assert re.search(r"total 796 bytes", SPEC.read_text()) and len(example_file()) == 796
