"""verify_logfile: the verdict on real signed pulls and on every kind of tampering."""

from __future__ import annotations

import collections
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartlogger.device.store import MemoryStore
from smartlogger.logfile.evidence import (
    default_trust,
    new_authority,
    production_root,
    provision_device,
    simulated_credentials,
    test_authority,
)
from smartlogger.logfile.format import build_logfile, pull_logfile, read_logfile
from smartlogger.logfile.gen1 import write_gen1
from smartlogger.logfile.verify import verify_logfile
from smartlogger.model import ClockSet, Event, EventKind, Generation, LoggerIdentity
from smartlogger.testing.logfile_examples import (
    example_identity,
    example_pulls,
    float_trace,
    sample_blocks,
)
from smartlogger.testing.tamper import KINDS, TamperCase, detected, tamper_cases


@lru_cache(maxsize=1)
def pulls() -> tuple[bytes, bytes, bytes]:
    older, latest, _ = example_pulls("SIM-0001", capacity=12)
    _, other, _ = example_pulls("SIM-0002", capacity=12, seed=9)
    return older, latest, other


def test_a_genuine_simulated_pull_is_simulated_never_verified() -> None:
    _, latest, _ = pulls()
    rep = verify_logfile(latest, expected_nonce=bytes(range(16, 32)))
    assert rep.status == "simulated" and rep.exit_code == 6 and rep.problems == []
    assert not rep.verified and rep.intact and not rep.accepted() and rep.accepted(allow_simulated=True)
    assert rep.verdict.startswith("NOT EVIDENCE (SIMULATED)") and "SIM-0001" in rep.verdict
    assert rep.authority == "test" and rep.markers == ("SIMULATED",)
    assert rep.freshness == "checked"
    main = rep.streams[0]
    # the ring kept 12 records: everything below the attested oldest seq was overwritten
    assert main.records == 12 and main.first_seq == main.oldest_on_device == main.next_seq - 12 > 0
    assert rep.streams[1].records == 3 and rep.streams[1].oldest_on_device == 0
    assert [c["config_seq"] for c in rep.config_changes] == [1]
    assert rep.latest_pull is not None and rep.latest_pull["counter"] == 2
    assert rep.latest_pull["offset_ms"] == 2_100


def test_simulated_pull_is_simulated_whatever_the_trust_list() -> None:
    # The TEST authority is always recognised (its key is public): a consistent simulated file is
    # named simulated, not tampered, and no trust list makes it verified.
    _, latest, _ = pulls()
    for trust in ([production_root()], [new_authority("production").public_only()], default_trust()):
        rep = verify_logfile(latest, trust=trust)
        assert rep.status == "simulated" and rep.problems == [], trust


def test_a_forged_simulated_file_for_a_chosen_serial_is_not_evidence() -> None:
    # The attack of issue 17: anyone can sign a SIMULATED file for any serial with the test
    # authority's documented key; verify must never exit 0 for it.
    ident = LoggerIdentity("ACME-2024-000123", Generation.GEN2, "2.1.0", simulated=True)
    store = MemoryStore(serial=ident.serial)
    mv, dc = float_trace(120)
    for block in sample_blocks(0, 60_000, mv, dc, 60):
        store.append(block)
    data = pull_logfile(simulated_credentials(ident), ident, store, device_ms=10_000_000)
    rep = verify_logfile(data)
    assert rep.status == "simulated" and rep.exit_code != 0 and not rep.verified
    assert "SIMULATED" in rep.verdict and "ACME-2024-000123" in rep.verdict


def test_a_replayed_logger_is_named_replayed_not_simulated() -> None:
    ident = LoggerIdentity("REP-0001", Generation.GEN2, "2.1.0", replayed=True)
    store = MemoryStore(serial=ident.serial)
    store.append(Event(0, EventKind.POWER_ON))
    rep = verify_logfile(pull_logfile(simulated_credentials(ident), ident, store, device_ms=1))
    assert rep.status == "simulated" and rep.markers == ("REPLAYED",)
    assert "REPLAYED logger" in rep.verdict and "SIMULATED logger" not in rep.verdict
    assert any("REPLAYED logger" in w for w in rep.warnings)
    assert not any("SIMULATED" in w for w in rep.warnings)


def test_real_logger_with_a_throwaway_production_root() -> None:
    prod = new_authority("production")
    ident = LoggerIdentity("SL2-000777", Generation.GEN2, "2.1.0")
    cred = provision_device(ident, prod)
    store = MemoryStore(capacity=4, serial=ident.serial)
    mv, dc = float_trace(600)
    for block in sample_blocks(0, 60_000, mv, dc, 60):
        store.append(block)
    store.append(ClockSet(36_000_000, 36_004_000))
    data = pull_logfile(cred, ident, store, device_ms=36_010_000, phone_ms=36_006_000,
                        nonce=b"\x01" * 16)
    rep = verify_logfile(data, trust=[prod.public_only()], expected_nonce=b"\x01" * 16)
    assert rep.status == "verified", rep.problems
    assert rep.exit_code == 0 and rep.accepted() and rep.verdict.startswith("VERIFIED EVIDENCE")
    assert "latest pull requested" in rep.verdict
    assert rep.authority == "production" and rep.warnings == []
    assert rep.streams[0].oldest_on_device == 7  # 11 records, ring of 4
    assert rep.clock_jumps[0]["jump_ms"] == 4_000
    # the default trust (real production root + test authority) does not know this throwaway root
    assert verify_logfile(data).status == "tampered"


def test_unsigned_and_gen1_and_unreadable_have_their_own_status() -> None:
    ident = example_identity("SIM-0003")
    store = MemoryStore(serial=ident.serial)
    store.append(Event(0, EventKind.POWER_ON))
    unsigned = verify_logfile(pull_logfile(None, ident, store, device_ms=1))
    assert unsigned.status == "unsigned" and unsigned.exit_code == 3
    assert unsigned.verdict.startswith("NOT EVIDENCE (UNSIGNED)")
    g1 = LoggerIdentity("G1-0001", Generation.GEN1, "1.0")
    gen1 = verify_logfile(write_gen1(g1, [Event(0, EventKind.POWER_ON)]))
    assert gen1.status == "unsigned" and gen1.generation == 1
    bad = verify_logfile(b"\x89SLOG\r\n\x1a\x02")
    assert bad.status == "unreadable" and bad.exit_code == 4 and bad.problems[0].offset == 9
    assert bad.verdict.startswith("NOT EVIDENCE (UNREADABLE)")


def _corpus() -> list[TamperCase]:
    older, latest, other = pulls()
    return list(tamper_cases(latest, other=other, older_pull=older, positions=5, seed=3))


def test_every_tamper_kind_is_in_the_corpus_and_detected() -> None:
    trust = default_trust()
    found: collections.Counter[str] = collections.Counter()
    missed = []
    for case in _corpus():
        found[case.kind] += 1
        if not detected(case, lambda data, **kw: verify_logfile(data, trust=trust, **kw)):
            missed.append((case.kind, case.where))
    assert set(found) == set(KINDS)
    assert missed == []


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("delete", "missing_records"),
        ("reorder", "chain"),
        ("truncate_start", "truncated_start"),
        ("truncate_end", "truncated_end"),
        ("splice", "chain"),
        ("relabel", "identity_mismatch"),
        ("forged_certificate", "certificate"),
        ("stale_pull", "stale_pull"),
        ("modify", "chain"),
    ],
)
def test_tampering_is_named(kind: str, problem: str) -> None:
    case = next(c for c in _corpus() if c.kind == kind)
    rep = verify_logfile(case.data, expected_nonce=case.expected_nonce)
    assert rep.status == "tampered" and rep.exit_code == 5
    assert rep.verdict.startswith("NOT EVIDENCE (TAMPERED)")
    assert problem in rep.problem_kinds(), (case.where, rep.problems)


def test_bit_flip_names_the_record_and_byte() -> None:
    _, latest, _ = pulls()
    lf = read_logfile(latest)
    target = lf.streams[0].records[3]
    flipped = bytearray(latest)
    flipped[target.offset + 20] ^= 0x10
    rep = verify_logfile(bytes(flipped))
    assert rep.status == "tampered"
    kinds = rep.problem_kinds()
    assert "file_hash" in kinds
    named = [p for p in rep.problems if p.kind in ("crc", "unreadable") or p.seq == target.seq]
    assert named and named[0].seq in (None, target.seq)


def test_min_pull_counter_catches_an_old_pull() -> None:
    older, _, _ = pulls()
    assert verify_logfile(older, min_pull_counter=1).status == "simulated"
    rep = verify_logfile(older, min_pull_counter=2)
    assert rep.status == "tampered" and "stale_pull" in rep.problem_kinds()


def test_verify_accepts_a_path(tmp_path: Path) -> None:
    _, latest, _ = pulls()
    path = tmp_path / "b07.slog"
    path.write_bytes(latest)
    assert verify_logfile(str(path)).status == "simulated"
    assert verify_logfile(str(path) + ".missing").status == "unreadable"


def test_simulated_credentials_are_reproducible() -> None:
    ident = example_identity("SIM-0042")
    assert simulated_credentials(ident).public_key == simulated_credentials(ident).public_key
    assert simulated_credentials(ident).certificate.check([test_authority()])[0] is not None


def test_stripped_certificate_or_signatures_are_tampering() -> None:
    _, latest, _ = pulls()
    lf = read_logfile(latest)
    from smartlogger.testing.tamper import rebuild

    no_cert = build_logfile(lf.identity, None, [[(r.seq, r.data) for r in st.records] for st in lf.streams],
                            [(st.anchor_seq, st.anchor_hash) for st in lf.streams], lf.attestations,
                            lf.metadata)
    rep = verify_logfile(no_cert)
    assert rep.status == "tampered" and "certificate" in rep.problem_kinds()
    rep = verify_logfile(rebuild(lf, attestations=[]))
    assert rep.status == "tampered" and "signature" in rep.problem_kinds()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_verify_never_raises_on_damaged_files(data: st.DataObject) -> None:
    _, latest, _ = pulls()
    raw = bytearray(latest)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    rep = verify_logfile(bytes(raw))
    assert rep.status in ("tampered", "unreadable") or bytes(raw) == latest
