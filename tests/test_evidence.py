"""Authorities, device certificates and pull attestations (smartlogger.logfile.evidence)."""

from __future__ import annotations

import hashlib

import pytest

from smartlogger.logfile.evidence import (
    NOT_ATTESTED,
    PRODUCTION_ROOT_PUBLIC_KEY,
    TEST_AUTHORITY_SEED,
    Certificate,
    EvidenceError,
    PullAttestation,
    new_authority,
    production_root,
    provision_device,
    sign_pull,
    simulated_credentials,
    test_authority,
)
from smartlogger.model import Generation, LoggerIdentity

REAL = LoggerIdentity("SL2-000123", Generation.GEN2, "2.1.0")
SIM = LoggerIdentity("SIM-0001", Generation.GEN2, "2.1.0", simulated=True)
HEADS = [(5, bytes(range(32))), (0, bytes(32))]


def test_test_authority_is_reproducible_from_the_documented_seed() -> None:
    a, b = test_authority(), test_authority()
    assert a.public_key == b.public_key and a.kind == "test"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(TEST_AUTHORITY_SEED).digest())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == a.public_key


def test_production_root_has_no_private_key_here() -> None:
    root = production_root()
    assert root.public_key == PRODUCTION_ROOT_PUBLIC_KEY and not root.can_sign
    with pytest.raises(EvidenceError, match="private key is not available"):
        provision_device(REAL, root)


def test_simulated_only_from_the_test_authority_and_real_only_from_production() -> None:
    prod = new_authority("production")
    with pytest.raises(EvidenceError, match="only the test authority"):
        provision_device(SIM, prod)
    with pytest.raises(EvidenceError, match="simulated loggers only"):
        provision_device(REAL, test_authority())
    with pytest.raises(EvidenceError, match="generation 1"):
        provision_device(LoggerIdentity("G1-0001", Generation.GEN1, "1.0"), prod)


def test_certificate_round_trip_and_trust() -> None:
    prod = new_authority("production")
    cred = provision_device(REAL, prod, issued_ms=1_700_000_000_000)
    raw = cred.certificate.to_bytes()
    cert = Certificate.from_bytes(raw)
    assert cert == cred.certificate
    auth, reason = cert.check([prod.public_only()])
    assert auth is not None and auth.kind == "production" and reason == ""
    # not trusted by anyone else, including the real production root and the test authority
    assert cert.check([production_root(), test_authority()])[0] is None
    forged = Certificate.from_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert "does not verify" in forged.check([prod])[1]


def test_simulated_certificate_never_passes_a_production_root() -> None:
    sim_cred = simulated_credentials(SIM)
    assert sim_cred.certificate.check([test_authority()])[0] is not None
    # even a production root that shares the test authority's key id refuses marked loggers
    evil = test_authority().__class__("production", test_authority().public_key)
    auth, reason = sim_cred.certificate.check([evil])
    assert auth is None and "issuer kind" in reason


def test_sign_pull_counts_and_verifies() -> None:
    cred = simulated_credentials(SIM)
    a1 = sign_pull(cred, HEADS, b"n" * 16, 1000, oldest_seqs=[2, 0], phone_ms=900)
    a2 = sign_pull(cred, HEADS, b"m" * 16, 2000, oldest_seqs=[2, 0])
    assert (a1.counter, a2.counter) == (1, 2)
    assert a1.verify_signature(cred.public_key)
    back = PullAttestation.from_bytes(a1.to_bytes())
    assert back == a1 and back.phone_ms == 900
    assert back.streams[0].oldest_seq == 2 and back.streams[0].from_seq == 2
    # phone_ms is not signed: changing it keeps the signature valid, changing a head does not
    assert PullAttestation(**{**back.__dict__, "phone_ms": 1}).verify_signature(cred.public_key)
    st = back.streams[0].__class__(2, 2, 5, bytes(32))
    assert not PullAttestation(**{**back.__dict__, "streams": (st, back.streams[1])}).verify_signature(
        cred.public_key)


def test_sign_pull_validates_inputs() -> None:
    cred = simulated_credentials(SIM)
    with pytest.raises(EvidenceError, match="nonce"):
        sign_pull(cred, HEADS, b"short", 0)
    with pytest.raises(EvidenceError, match="2 streams"):
        sign_pull(cred, HEADS[:1], b"n" * 16, 0)
    with pytest.raises(EvidenceError, match="oldest"):
        sign_pull(cred, HEADS, b"n" * 16, 0, oldest_seqs=[9, 0])
    unattested = sign_pull(cred, HEADS, b"n" * 16, 0)
    assert unattested.streams[0].oldest_seq == NOT_ATTESTED
