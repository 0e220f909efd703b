"""Verification of a logfile: is it the logger's own, complete, unaltered log at its latest pull?

Owns the verdict and the report (``verify_logfile`` -> ``VerifyReport``): the
certificate against the trust roots, every pull signature, the hash chain of
both streams from the file's anchors to the signed heads, sequence continuity,
truncation at either end beyond what the ring explains, identity splices, and
the freshness of the pull (an older pull presented as the latest). It also
lists what a reader of the log needs to know: overwritten range, configuration
changes, clock jumps.

Detection rests on the chain and the device signature; the unsigned per-record
CRC and the footer hash only help to *name* the damaged record (an adversary who
recomputes them still breaks the chain). See docs/EVIDENCE.md.

"Latest" is established in two ways: the caller passes the nonce the phone
chose for the pull it expects (``expected_nonce``), or the highest device pull
counter it has seen for this logger (``min_pull_counter``; the counter is signed
and only grows). Without either, the report says freshness is unchecked.

The statuses (docs/EVIDENCE.md): ``verified`` only for a logger certified by a
trusted *production* authority with every check passed; ``simulated`` for a
consistent file of a SIMULATED/REPLAYED logger (certified by the TEST authority,
whose key is public: never evidence); ``unsigned``, ``tampered``, ``unreadable``.
Each has its own exit code; ``VerifyReport.verdict`` says it in a sentence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Final, Literal

from smartlogger.errors import LogfileError
from smartlogger.logfile import chain
from smartlogger.logfile.container import Logfile, LogStream
from smartlogger.logfile.evidence import (
    NOT_ATTESTED,
    Authority,
    PullAttestation,
    default_trust,
    fingerprint,
)
from smartlogger.logfile.format import read_logfile
from smartlogger.logfile.records import RecordType
from smartlogger.logfile.trust import with_test_authority
from smartlogger.model import ClockSet, ConfigChange

Status = Literal["verified", "simulated", "unsigned", "tampered", "unreadable"]

#: CLI exit code per status (``smartlogger logfile verify``). Only hardware evidence exits 0;
#: ``--allow-simulated`` also accepts ``simulated``.
EXIT_CODES: Final[dict[str, int]] = {"verified": 0, "unsigned": 3, "unreadable": 4, "tampered": 5,
                                     "simulated": 6}
#: The statuses of a file whose content is intact (it may be used, with its status shown).
INTACT: Final = ("verified", "simulated", "unsigned")


@dataclass(frozen=True)
class Problem:
    """One finding that makes a file fail verification.

    ``kind``: file_hash, certificate, identity_mismatch, signature, attestation_order,
    stale_pull, anchor, crc, missing_records, reordered, chain, truncated_start,
    truncated_end, extra_records, unreadable.
    """

    kind: str
    message: str
    stream: int | None = None
    seq: int | None = None
    offset: int | None = None


@dataclass
class StreamReport:
    stream: int
    name: str
    first_seq: int  # seq of the first record in the file (the anchor)
    next_seq: int  # one past the newest record in the file
    records: int
    oldest_on_device: int | None  # attested oldest seq; everything below was overwritten/reset
    attested_next_seq: int | None  # next_seq the latest pull signed
    chain_intact: bool


@dataclass
class VerifyReport:
    """The verdict and what a reader of the log needs to know."""

    status: Status
    serial: str = ""
    generation: int = 0
    firmware: str = ""
    markers: tuple[str, ...] = ()
    format_version: str = ""
    sha256: str = ""
    signed: bool = False
    authority: str | None = None  # "production" or "test" (simulated: never hardware evidence)
    device_key: str | None = None  # fingerprint of the device key
    certificate_valid: bool | None = None
    signatures_valid: bool | None = None
    chain_intact: bool | None = None
    freshness: str = "unchecked"  # "checked" when expected_nonce/min_pull_counter was given
    latest_pull: dict[str, Any] | None = None
    streams: list[StreamReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config_changes: list[dict[str, Any]] = field(default_factory=list)
    clock_jumps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """Hardware evidence: a trusted production certificate and every check passed."""
        return self.status == "verified"

    @property
    def intact(self) -> bool:
        """The content is the logger's own (verified, simulated or unsigned): usable, status shown."""
        return self.status in INTACT

    @property
    def provenance(self) -> str:
        """What kind of logger the file claims: "SIMULATED", "REPLAYED", both, or "hardware"."""
        return " + ".join(self.markers) if self.markers else "hardware"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def accepted(self, *, allow_simulated: bool = False) -> bool:
        """Does a caller asking for evidence (or, with ``allow_simulated``, also simulated data) take it?"""
        return self.status == "verified" or (allow_simulated and self.status == "simulated")

    @property
    def verdict(self) -> str:
        """The verdict in one sentence a lawyer can read (first line of ``logfile verify``)."""
        who = f"logger {self.serial}" if self.serial else "the logger"
        if self.status == "verified":
            pull = f" at its pull #{self.latest_pull['counter']}" if self.latest_pull else ""
            fresh = ("; it is the latest pull requested" if self.freshness == "checked" else
                     "; whether a newer pull exists was not checked")
            return (f"VERIFIED EVIDENCE: the complete, unaltered log of {who} as the logger signed "
                    f"it{pull}, with a device key certified by the manufacturer's production root{fresh}.")
        if self.status == "simulated":
            kind = {"SIMULATED": "a SIMULATED logger (the simulator)",
                    "REPLAYED": "a REPLAYED logger (a recorded trace fed through the firmware model)"}
            what = " and ".join(kind[m] for m in self.markers if m in kind) or "a simulated logger"
            return (f"NOT EVIDENCE (SIMULATED): an intact log of {who}, {what}, certified by the TEST "
                    "authority whose key is public: anyone can make such a file; it does not come "
                    "from real logger hardware.")
        if self.status == "unsigned":
            why = ("a generation-1 logger cannot sign" if self.generation == 1 else
                   "the file carries no certificate and no signed pull")
            return (f"NOT EVIDENCE (UNSIGNED): a readable log of {who}, but nothing signed it ({why}): "
                    "its completeness and integrity cannot be proven.")
        if self.status == "tampered":
            kinds = sorted(self.problem_kinds())
            untrusted = kinds == ["certificate"] and self.certificate_valid is False
            why = ("its certificate is not from a trusted authority" if untrusted else
                   f"it fails {len(self.problems)} check(s) ({', '.join(kinds)})")
            return (f"NOT EVIDENCE (TAMPERED): the file claims to be the log of {who} but {why}: "
                    "it is not the logger's unaltered log.")
        first = self.problems[0].message if self.problems else "not a logfile"
        return f"NOT EVIDENCE (UNREADABLE): the file cannot be read as a logfile: {first}."

    def problem_kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["markers"] = list(self.markers)
        out["verified"] = self.verified
        out["verdict"] = self.verdict
        return out


def verify_logfile(
    source: bytes | bytearray | memoryview | str | os.PathLike[str] | Logfile,
    *,
    trust: Sequence[Authority] | None = None,
    expected_nonce: bytes | None = None,
    min_pull_counter: int | None = None,
) -> VerifyReport:
    """Verify a logfile (bytes, path or an already read ``Logfile``); never raises on bad input.

    ``trust``: authorities to accept (default: the production root; ``logfile.trust`` reads
    a trust file). The built-in TEST authority is always recognised, so a consistent file
    of a simulated logger gets ``simulated``; it only ever vouches for SIMULATED/REPLAYED
    loggers, and ``simulated`` is never ``verified``.
    """
    if isinstance(source, Logfile):
        lf = source
    else:
        try:
            lf = read_logfile(source, check_hash=False, decode=False)
        except LogfileError as err:
            return VerifyReport("unreadable", problems=[Problem("unreadable", err.message,
                                                                offset=err.offset)])
        except OSError as err:
            return VerifyReport("unreadable", problems=[Problem("unreadable", str(err))])
    roots = with_test_authority(trust if trust is not None else default_trust())
    return _Verifier(lf, roots, expected_nonce, min_pull_counter).run()


def _type_name(code: int) -> str:
    try:
        return RecordType(code).name.lower()
    except ValueError:
        return f"type 0x{code:02x}"


class _Verifier:
    def __init__(self, lf: Logfile, trust: tuple[Authority, ...], expected_nonce: bytes | None,
                 min_pull_counter: int | None) -> None:
        self.lf = lf
        self.trust = trust
        self.expected_nonce = expected_nonce
        self.min_pull_counter = min_pull_counter
        ident = lf.identity
        self.report = VerifyReport(
            "verified", ident.serial, int(ident.generation), ident.firmware, ident.markers,
            f"{lf.version[0]}.{lf.version[1]}", lf.sha256, lf.signed)

    def problem(self, kind: str, message: str, *, stream: int | None = None, seq: int | None = None,
                offset: int | None = None) -> None:
        self.report.problems.append(Problem(kind, message, stream, seq, offset))

    def run(self) -> VerifyReport:
        lf, rep = self.lf, self.report
        if not lf.footer_ok:
            self.problem("file_hash", lf.footer_problem)
        device_key = self._check_certificate()
        attestations = self._check_attestations(device_key)
        latest = attestations[-1] if attestations else None
        intact = True
        for st in lf.streams:
            intact &= self._check_stream(st, attestations, latest)
        rep.chain_intact = intact
        self._collect_history()
        if latest is not None:
            rep.latest_pull = {
                "counter": latest.counter, "nonce": latest.nonce.hex(), "device_ms": latest.device_ms,
                "phone_ms": latest.phone_ms,
                "offset_ms": None if latest.phone_ms is None else latest.device_ms - latest.phone_ms,
            }
            self._check_freshness(latest)
        if lf.certificate is None and lf.attestations:
            self.problem("certificate", "the file carries signed pulls but no device certificate: "
                         "certificate removed?")
        if lf.certificate is not None and not lf.attestations:
            self.problem("signature", "the file carries a device certificate but no signed pull: "
                         "signatures removed?")
        if lf.generation1:
            rep.warnings.append("generation-1 logfile: gen-1 loggers cannot sign; integrity not provable")
        if rep.problems:
            rep.status = "tampered"
        elif not lf.signed:
            rep.status = "unsigned"
        elif rep.authority != "production":
            rep.status = "simulated"
        return rep

    # ---------------------------------------------------------------- identity and signatures

    def _check_certificate(self) -> bytes | None:
        lf, rep = self.lf, self.report
        cert = lf.certificate
        if cert is None:
            return None
        rep.device_key = fingerprint(cert.device_key)
        auth, reason = cert.check(self.trust)
        rep.certificate_valid = auth is not None
        if auth is None:
            self.problem("certificate", f"certificate not trusted: {reason}")
            return None
        rep.authority = auth.kind
        ci, fi = cert.identity, lf.identity
        if (ci.serial, ci.generation, ci.simulated, ci.replayed) != (
                fi.serial, fi.generation, fi.simulated, fi.replayed):
            self.problem("identity_mismatch",
                         f"the certificate is for {ci.serial} {list(ci.markers)} but the file claims "
                         f"{fi.serial} {list(fi.markers)}")
        if auth.kind == "test":
            what = " and ".join(ci.markers) or "SIMULATED"
            rep.warnings.append(f"certified by the TEST authority: a {what} logger, not hardware evidence")
        return cert.device_key

    def _check_attestations(self, device_key: bytes | None) -> list[PullAttestation]:
        lf, rep = self.lf, self.report
        if not lf.attestations:
            return []
        good = True
        for att in lf.attestations:
            if att.serial != lf.identity.serial:
                self.problem("identity_mismatch",
                             f"pull #{att.counter} was signed by {att.serial}, not {lf.identity.serial}")
                good = False
            if device_key is not None and not att.verify_signature(device_key):
                self.problem("signature", f"pull #{att.counter} signature does not verify with the "
                                          "device key")
                good = False
        counters = [a.counter for a in lf.attestations]
        if any(b <= a for a, b in pairwise(counters)):
            self.problem("attestation_order", f"pull counters {counters} do not strictly increase")
        rep.signatures_valid = good and device_key is not None
        return sorted(lf.attestations, key=lambda a: a.counter)

    def _check_freshness(self, latest: PullAttestation) -> None:
        rep = self.report
        if self.expected_nonce is not None:
            rep.freshness = "checked"
            if latest.nonce != self.expected_nonce:
                seen = [a.counter for a in self.lf.attestations if a.nonce == self.expected_nonce]
                detail = (f"it holds that pull only as #{seen[0]}, not as the latest" if seen else
                          "the expected pull is not in the file")
                self.problem("stale_pull", f"the latest pull in the file (#{latest.counter}, nonce "
                             f"{latest.nonce.hex()}) is not the expected one ({self.expected_nonce.hex()}); "
                             f"{detail}: an older pull presented as the latest")
        if self.min_pull_counter is not None:
            rep.freshness = "checked"
            if latest.counter < self.min_pull_counter:
                self.problem("stale_pull", f"the latest pull in the file is #{latest.counter}, but pull "
                             f"#{self.min_pull_counter} of this logger is already known: an older pull "
                             "presented as the latest")

    # ---------------------------------------------------------------- the chain of one stream

    def _check_stream(self, st: LogStream, attestations: list[PullAttestation],
                      latest: PullAttestation | None) -> bool:
        sid, name = st.stream, st.name
        problems_before = len(self.report.problems)
        serial = self.lf.identity.serial
        if st.anchor_seq == 0 and st.anchor_hash != chain.stream_genesis(serial, sid):
            self.problem("anchor", f"{name} stream starts at seq 0 but its anchor is not the genesis of "
                         f"{serial}: records of another logger?", stream=sid, offset=st.offset)
        # chain values the device signed, by the seq of the record they follow
        signed_at: dict[int, list[PullAttestation]] = {}
        for att in attestations:
            signed_at.setdefault(att.streams[sid].next_seq, []).append(att)
        for att in signed_at.get(st.anchor_seq, []):
            if att.streams[sid].head != st.anchor_hash:
                self.problem("chain", f"{name} stream anchor does not match pull #{att.counter}'s head",
                             stream=sid, offset=st.offset)
        h = st.anchor_hash
        expected = st.anchor_seq
        for raw in st.records:
            if raw.seq > expected:
                self.problem("missing_records", f"{name} stream: records {expected}..{raw.seq - 1} are "
                             "missing (deleted)", stream=sid, seq=expected, offset=raw.offset)
            elif raw.seq < expected:
                self.problem("reordered", f"{name} stream: record seq {raw.seq} follows seq "
                             f"{expected - 1} (reordered or inserted)", stream=sid, seq=raw.seq,
                             offset=raw.offset)
            if not raw.crc_ok:
                self.problem("crc", f"{name} stream: record seq {raw.seq} ({_type_name(raw.record_type)}) "
                             "was altered (its CRC does not match)", stream=sid, seq=raw.seq,
                             offset=raw.offset)
            h = chain.chain_next(h, raw.seq, raw.data)
            expected = max(expected, raw.seq + 1)
            for att in signed_at.get(raw.seq + 1, []):
                if att.streams[sid].head != h:
                    self.problem("chain", f"{name} stream: records up to seq {raw.seq} do not hash to "
                                 f"the head signed at pull #{att.counter}: records altered, inserted, "
                                 "removed or spliced from another logger", stream=sid, seq=raw.seq,
                                 offset=raw.offset)
        file_next = expected
        oldest: int | None = None
        att_next: int | None = None
        if latest is not None:
            state = latest.streams[sid]
            att_next = state.next_seq
            if state.oldest_seq != NOT_ATTESTED:
                oldest = state.oldest_seq
            if state.from_seq == NOT_ATTESTED:
                self.report.warnings.append(f"{name} stream: the device did not attest where its log "
                                            "starts; truncation at the start cannot be excluded")
            elif st.anchor_seq > state.from_seq:
                self.problem("truncated_start", f"{name} stream: the file starts at seq {st.anchor_seq} "
                             f"but the device sent from seq {state.from_seq} (oldest kept "
                             f"{state.oldest_seq}): records {state.from_seq}..{st.anchor_seq - 1} removed",
                             stream=sid, seq=state.from_seq, offset=st.offset)
            if file_next < state.next_seq:
                self.problem("truncated_end", f"{name} stream: the file ends at seq {file_next - 1} but "
                             f"the device signed up to seq {state.next_seq - 1}: records "
                             f"{file_next}..{state.next_seq - 1} removed", stream=sid, seq=file_next)
            elif file_next > state.next_seq:
                self.problem("extra_records", f"{name} stream: records {state.next_seq}..{file_next - 1} "
                             f"follow the head signed at the latest pull #{latest.counter}: inserted",
                             stream=sid, seq=state.next_seq)
        self.report.streams.append(StreamReport(sid, name, st.anchor_seq, file_next, len(st.records),
                                                oldest, att_next,
                                                len(self.report.problems) == problems_before))
        return len(self.report.problems) == problems_before

    # ---------------------------------------------------------------- what a reader needs to know

    def _collect_history(self) -> None:
        rep = self.report
        seen: set[bytes] = set()
        for st in self.lf.streams:
            for raw in st.records:
                if raw.record_type not in (RecordType.CONFIG_CHANGE, RecordType.CLOCK_SET) or \
                        raw.data in seen:
                    continue
                rec = raw.record
                if isinstance(rec, ConfigChange):
                    seen.add(raw.data)
                    rep.config_changes.append({
                        "stream": st.name, "seq": raw.seq, "t_ms": rec.t_ms, "config_seq": rec.seq,
                        "block_label": rec.config.block_label, "float_rate_s": rec.config.float_rate_s,
                        "discharge_rate_s": rec.config.discharge_rate_s,
                        "v_low_alarm_mv": rec.config.thresholds.v_low_alarm_mv})
                elif isinstance(rec, ClockSet):
                    seen.add(raw.data)
                    rep.clock_jumps.append({"stream": st.name, "seq": raw.seq, "old_ms": rec.old_ms,
                                            "new_ms": rec.new_ms, "jump_ms": rec.new_ms - rec.old_ms})
