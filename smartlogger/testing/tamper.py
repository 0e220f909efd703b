"""The tamper corpus: every way of altering a logfile that ``verify`` must catch.

Owns the catalogue of attacks used by the tests and by benchmarks/logfile.py
(``tamper_cases``/``tamper_detected``). Each attack is done the way a careful
forger would: the file is rebuilt with correct framing, per-record CRCs and
footer hash, so only the device-signed chain and attestations can give it away.
Raw bit flips are the exception (accidental damage). Not used by the product
at run time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from smartlogger.logfile import chain
from smartlogger.logfile.container import Logfile
from smartlogger.logfile.evidence import Authority, Certificate, new_authority
from smartlogger.logfile.format import build_logfile, read_logfile
from smartlogger.logfile.records import encode_record
from smartlogger.model import LoggerIdentity, SampleBlock

#: Every tamper kind the corpus produces.
KINDS = ("bitflip", "modify", "delete", "insert", "reorder", "truncate_start", "truncate_end",
         "splice", "relabel", "forged_certificate", "forged_head", "stale_pull")


@dataclass(frozen=True)
class TamperCase:
    kind: str
    where: str  # human description of the position
    data: bytes
    expected_nonce: bytes | None = None  # for stale_pull: the nonce of the real latest pull


def rebuild(lf: Logfile, streams: list[list[tuple[int, bytes]]] | None = None,
            anchors: list[tuple[int, bytes]] | None = None, *, identity: LoggerIdentity | None = None,
            certificate: Certificate | None = None, attestations: list[object] | None = None) -> bytes:
    """``lf`` written again with the given parts replaced (correct CRCs and footer)."""
    s = streams if streams is not None else [[(r.seq, r.data) for r in st.records] for st in lf.streams]
    a = anchors if anchors is not None else [(st.anchor_seq, st.anchor_hash) for st in lf.streams]
    return build_logfile(identity or lf.identity, certificate or lf.certificate,
                         s, a, attestations if attestations is not None else lf.attestations,  # type: ignore[arg-type]
                         lf.metadata)


def _records(lf: Logfile, stream: int) -> list[tuple[int, bytes]]:
    return [(r.seq, r.data) for r in lf.streams[stream].records]


def _with_stream(lf: Logfile, stream: int, recs: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    out = [_records(lf, s) for s in range(len(lf.streams))]
    out[stream] = recs
    return out


def tamper_cases(original: bytes, *, other: bytes, older_pull: bytes | None = None,
                 positions: int = 5, seed: int = 1) -> Iterator[TamperCase]:
    """Tampered variants of ``original`` (a signed logfile with >= 3 main records).

    ``other``: a logfile of another logger (source for splices and relabelling).
    ``older_pull``: the same logger's file from an earlier pull (stale-pull case).
    """
    rng = random.Random(seed)
    lf = read_logfile(original)
    ot = read_logfile(other)
    main = _records(lf, 0)
    n = len(main)
    picks = sorted({0, n - 1, *(rng.randrange(n) for _ in range(max(0, positions - 2)))})

    for _ in range(positions * 4):
        bit = rng.randrange(len(original) * 8)
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield TamperCase("bitflip", f"bit {bit}", bytes(flipped))

    for k in picks:
        seq, raw = main[k]
        rec = lf.streams[0].records[k].record
        if isinstance(rec, SampleBlock) and len(rec):
            mv = list(rec.mv)
            mv[len(mv) // 2] += 1  # one millivolt: the smallest meaningful change
            forged = encode_record(SampleBlock.of(rec.start_ms, rec.interval_ms, mv, list(rec.dc)))
        else:
            forged = raw[:-1] + bytes([raw[-1] ^ 1])
        yield TamperCase("modify", f"seq {seq}",
                         rebuild(lf, _with_stream(lf, 0, [*main[:k], (seq, forged), *main[k + 1:]])))
        yield TamperCase("delete", f"seq {seq}",
                         rebuild(lf, _with_stream(lf, 0, main[:k] + main[k + 1:])))
        # a deletion with the later records renumbered so no seq is missing
        renum = main[:k] + [(s - 1, r) for s, r in main[k + 1:]]
        yield TamperCase("delete", f"seq {seq} renumbered", rebuild(lf, _with_stream(lf, 0, renum)))
        ins = main[:k] + [(seq, raw)] + [(s + 1, r) for s, r in main[k:]]
        yield TamperCase("insert", f"copy of seq {seq}", rebuild(lf, _with_stream(lf, 0, ins)))
        if k + 1 < n:
            swapped = [*main[:k], (seq, main[k + 1][1]), (main[k + 1][0], raw), *main[k + 2:]]
            yield TamperCase("reorder", f"seq {seq}<->{seq + 1}", rebuild(lf, _with_stream(lf, 0, swapped)))
        ot_main = {s: r for s, r in _records(ot, 0)}
        if seq in ot_main and ot_main[seq] != raw:
            spliced = [*main[:k], (seq, ot_main[seq]), *main[k + 1:]]
            yield TamperCase("splice", f"seq {seq} from {ot.identity.serial}",
                             rebuild(lf, _with_stream(lf, 0, spliced)))

    for m in sorted({1, max(1, n // 3), n - 1}):
        # drop the oldest m records and re-anchor at the chain value after them
        h = lf.streams[0].anchor_hash
        for s, r in main[:m]:
            h = chain.chain_next(h, s, r)
        anchors = [(main[m][0], h), (lf.streams[1].anchor_seq, lf.streams[1].anchor_hash)]
        yield TamperCase("truncate_start", f"first {m} records",
                         rebuild(lf, _with_stream(lf, 0, main[m:]), anchors))
        yield TamperCase("truncate_end", f"last {m} records",
                         rebuild(lf, _with_stream(lf, 0, main[:n - m])))

    yield TamperCase("relabel", f"serial -> {ot.identity.serial}", rebuild(lf, identity=ot.identity))
    yield TamperCase("relabel", "SIMULATED marker removed",
                     rebuild(lf, identity=replace(lf.identity, simulated=False, replayed=False)))
    yield TamperCase("splice", f"whole log of {ot.identity.serial} under this header",
                     rebuild(ot, identity=lf.identity))
    if lf.certificate is not None:
        fake: Authority = new_authority(lf.certificate.issuer_kind, seed=bytes(32))
        assert fake.private_key is not None
        cert = replace(lf.certificate, issuer_key_id=_trusted_key_id(lf))
        forged_cert = replace(cert, signature=fake.private_key.sign(b"smartlogger-cert-v1\x00" + cert.body()))
        yield TamperCase("forged_certificate", "re-signed by an untrusted key",
                         rebuild(lf, certificate=forged_cert))
    if lf.attestations:
        att = lf.attestations[-1]
        st0 = replace(att.streams[0], head=bytes(32))
        yield TamperCase("forged_head", f"pull #{att.counter} main head zeroed",
                         rebuild(lf, attestations=[*lf.attestations[:-1],
                                                   replace(att, streams=(st0, *att.streams[1:]))]))
        yield TamperCase("forged_head", "attestations removed", rebuild(lf, attestations=[]))
    if older_pull is not None and lf.attestations:
        yield TamperCase("stale_pull", "older pull presented as the latest", older_pull,
                         expected_nonce=lf.attestations[-1].nonce)


def _trusted_key_id(lf: Logfile) -> bytes:
    assert lf.certificate is not None
    return lf.certificate.issuer_key_id


def detected(case: TamperCase, verify: Callable[..., object]) -> bool:
    """Did ``verify`` (``verify_logfile`` with the caller's trust) call this case tampered or unreadable?

    Not "anything but verified": the corpus is built from a simulated logger's file, whose genuine
    status is ``simulated``; a case counts as caught only when verify rejects its content.
    """
    report = verify(case.data, expected_nonce=case.expected_nonce)
    return getattr(report, "status", "") in ("tampered", "unreadable")
