"""Evidence: authorities, device certificates and signed pull attestations (Ed25519).

Owns who may vouch for a logger and what a logger signs:

- an ``Authority`` (manufacturer production root, or the separate TEST authority
  for simulated loggers) signs a ``Certificate`` binding a logger identity to its
  Ed25519 device key (``provision_device``);
- at every pull the device signs a ``PullAttestation``: its pull counter, its
  clock, the phone's nonce and, for both log streams, the oldest sequence it
  still holds, the first sequence it sent, its next sequence and its chain head
  (``sign_pull`` / ``sign_store_pull``).

The production root's private key is not in this repository: only
``PRODUCTION_ROOT_PUBLIC_KEY`` is. Tests create a throwaway production authority
(``new_authority``) and pass it as the trust root. The test authority is
derived from the documented seed ``TEST_AUTHORITY_SEED`` so that simulated logs
are reproducible; it certifies only SIMULATED/REPLAYED identities and the
production root never does, so a simulated log cannot verify as hardware evidence.

Does not own the container (``logfile.format``, which also builds a whole pull's
logfile: ``pull_logfile``) or the verification policy (``logfile.verify``). Byte layouts: docs/EVIDENCE.md.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from smartlogger.errors import LogfileError, SmartLoggerError
from smartlogger.model import Generation, LoggerIdentity, Record
from smartlogger.wire import ByteReader, str8

AuthorityKind = Literal["production", "test"]

#: Public key of the manufacturer's production root (Ed25519, raw 32 bytes). The private key
#: is held offline by the manufacturer and is not part of this repository.
PRODUCTION_ROOT_PUBLIC_KEY: Final = bytes.fromhex(
    "0488d3cdcb87e8910b69d60494e9a1a44310c2aac44f59bf9d738f70f1d87d69")
#: The test authority's private key is SHA-256 of this seed (documented in docs/EVIDENCE.md).
TEST_AUTHORITY_SEED: Final = b"smartlogger test authority v1"

_CERT_DOMAIN: Final = b"smartlogger-cert-v1\x00"
_PULL_DOMAIN: Final = b"smartlogger-pull-v1\x00"
_KIND_CODE: Final[dict[str, int]] = {"production": 1, "test": 2}
_KIND_OF: Final[dict[int, AuthorityKind]] = {1: "production", 2: "test"}
SIGNATURE_LEN: Final = 64
KEY_LEN: Final = 32
#: Stream "oldest"/"from" value meaning "the device did not attest it".
NOT_ATTESTED: Final = (1 << 64) - 1
NONCE_MIN, NONCE_MAX = 8, 64
STREAMS: Final = 2  # 0 main, 1 summary


class EvidenceError(SmartLoggerError, ValueError):
    """A key, certificate or attestation cannot be made as asked."""

    exit_code = 2


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> bytes:
    """The 8-byte identifier of a public key: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:8]


def fingerprint(public_key: bytes) -> str:
    """A human-readable key fingerprint: SHA-256 of the raw key, hex, in groups of 4."""
    digest = hashlib.sha256(public_key).hexdigest()[:32]
    return ":".join(digest[i:i + 4] for i in range(0, 32, 4))


def _verify_sig(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- authorities


@dataclass(frozen=True)
class Authority:
    """A certificate issuer. ``private_key`` is None for a trust root known by public key only."""

    kind: AuthorityKind
    public_key: bytes
    private_key: Ed25519PrivateKey | None = field(default=None, compare=False, repr=False)
    name: str = ""

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)

    @property
    def can_sign(self) -> bool:
        return self.private_key is not None

    def public_only(self) -> Authority:
        """The same authority without its private key (what a verifier holds)."""
        return replace(self, private_key=None)


def production_root() -> Authority:
    """The manufacturer's production trust root (public key only)."""
    return Authority("production", PRODUCTION_ROOT_PUBLIC_KEY, None, "smartlogger production root")


def test_authority() -> Authority:
    """The TEST authority for simulated loggers, derived from ``TEST_AUTHORITY_SEED``."""
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(TEST_AUTHORITY_SEED).digest())
    return Authority("test", _raw_public(key.public_key()), key, "smartlogger TEST authority")


# Not a test for pytest to collect.
test_authority.__test__ = False  # type: ignore[attr-defined]


def new_authority(kind: AuthorityKind = "production", *, seed: bytes | None = None,
                  name: str = "") -> Authority:
    """A fresh authority (e.g. a throwaway production root for tests). ``seed``: 32 bytes."""
    key = Ed25519PrivateKey.from_private_bytes(seed) if seed is not None else Ed25519PrivateKey.generate()
    return Authority(kind, _raw_public(key.public_key()), key, name or f"{kind} authority")


def default_trust() -> tuple[Authority, ...]:
    """What a verifier trusts by default: the production root and the test authority."""
    return (production_root(), test_authority().public_only())


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certificate:
    """An authority's statement that ``device_key`` belongs to logger ``identity``."""

    identity: LoggerIdentity
    device_key: bytes  # raw Ed25519 public key, 32 bytes
    issuer_kind: AuthorityKind
    issuer_key_id: bytes  # key_id() of the issuing authority, 8 bytes
    issued_ms: int  # ms since epoch, 1 ms
    signature: bytes = b""

    def body(self) -> bytes:
        """The signed part (everything but the signature)."""
        ident = self.identity
        markers = (1 if ident.simulated else 0) | (2 if ident.replayed else 0)
        return (bytes([1]) + str8(ident.serial) + bytes([int(ident.generation)])
                + str8(ident.firmware) + bytes([markers]) + self.device_key
                + bytes([_KIND_CODE[self.issuer_kind]]) + self.issuer_key_id
                + struct.pack("<q", self.issued_ms))

    def to_bytes(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, offset: int = 0, end: int | None = None) -> Certificate:
        r = ByteReader(data, offset, end)
        version = r.u8("certificate version")
        if version != 1:
            raise LogfileError(f"certificate version {version} is not 1", offset=r.pos - 1)
        identity = read_identity(r, "certificate")
        device_key = r.take(KEY_LEN, "certificate device key")
        at = r.pos
        kind = r.u8("certificate issuer kind")
        if kind not in _KIND_OF:
            raise LogfileError(f"certificate issuer kind {kind} is not 1 or 2", offset=at)
        issuer = r.take(8, "certificate issuer key id")
        issued_ms = r.i64("certificate issued_ms")
        signature = r.take(SIGNATURE_LEN, "certificate signature")
        r.expect_end("the certificate")
        return cls(identity, device_key, _KIND_OF[kind], issuer, issued_ms, signature)

    def check(self, trust: Sequence[Authority]) -> tuple[Authority | None, str]:
        """``(issuing authority, "")`` if trusted and valid, else ``(None, reason)``."""
        for auth in trust:
            if auth.key_id != self.issuer_key_id:
                continue
            if auth.kind != self.issuer_kind:
                return None, f"issuer kind {self.issuer_kind} does not match the trusted {auth.kind} key"
            if not _verify_sig(auth.public_key, self.signature, _CERT_DOMAIN + self.body()):
                return None, f"certificate signature does not verify against the {auth.kind} authority"
            marked = self.identity.simulated or self.identity.replayed
            if auth.kind == "production" and marked:
                return None, "a SIMULATED/REPLAYED logger's certificate under the production root"
            if auth.kind == "test" and not marked:
                return None, "the test authority certified a logger without a SIMULATED marker"
            return auth, ""
        return None, f"issuer {self.issuer_key_id.hex()} is not a trusted authority"


def read_identity(r: ByteReader, what: str) -> LoggerIdentity:
    """``serial:str8 generation:u8 firmware:str8 markers:u8`` (bit 0 SIMULATED, bit 1 REPLAYED)."""
    at = r.pos
    serial = r.str8(f"{what} serial", 32)
    gen = r.u8(f"{what} generation")
    firmware = r.str8(f"{what} firmware", 32)
    markers_at = r.pos
    markers = r.u8(f"{what} markers")
    if markers & ~3:
        raise LogfileError(f"{what} markers 0x{markers:02x} has unknown bits", offset=markers_at)
    if gen not in (1, 2):
        raise LogfileError(f"{what} generation {gen} is not 1 or 2", offset=at + 1 + len(serial))
    try:
        return LoggerIdentity(serial, Generation(gen), firmware, bool(markers & 1), bool(markers & 2))
    except SmartLoggerError as err:
        raise LogfileError(f"{what} identity is invalid: {err}", offset=at) from None


def write_identity(identity: LoggerIdentity) -> bytes:
    markers = (1 if identity.simulated else 0) | (2 if identity.replayed else 0)
    return (str8(identity.serial) + bytes([int(identity.generation)]) + str8(identity.firmware)
            + bytes([markers]))


@dataclass
class DeviceCredentials:
    """What provisioning leaves in a logger: its private key, certificate and pull counter.

    ``pull_counter`` is the number of pulls signed so far; it only grows and is signed
    into every attestation, so a verifier can tell which of two pulls is the later one.
    """

    identity: LoggerIdentity
    private_key: Ed25519PrivateKey = field(repr=False)
    certificate: Certificate
    pull_counter: int = 0

    @property
    def public_key(self) -> bytes:
        return self.certificate.device_key


def provision_device(identity: LoggerIdentity, authority: Authority, *, issued_ms: int = 0,
                     seed: bytes | None = None) -> DeviceCredentials:
    """Give a logger a device key and a certificate from ``authority``.

    Simulated/replayed identities only from the test authority, real ones only from a
    production authority. ``seed`` (32 bytes) makes the device key reproducible.
    """
    if authority.private_key is None:
        raise EvidenceError(f"the {authority.kind} authority's private key is not available here")
    marked = identity.simulated or identity.replayed
    if authority.kind == "production" and marked:
        raise EvidenceError(f"{identity.serial} is SIMULATED/REPLAYED: only the test authority "
                            "may certify it")
    if authority.kind == "test" and not marked:
        raise EvidenceError(f"{identity.serial} has no SIMULATED marker: the test authority "
                            "certifies simulated loggers only")
    if identity.generation is not Generation.GEN2:
        raise EvidenceError(f"{identity.serial} is generation 1: gen-1 loggers have no keys")
    device = (Ed25519PrivateKey.from_private_bytes(seed) if seed is not None
              else Ed25519PrivateKey.generate())
    unsigned = Certificate(identity, _raw_public(device.public_key()), authority.kind,
                           authority.key_id, issued_ms)
    signature = authority.private_key.sign(_CERT_DOMAIN + unsigned.body())
    return DeviceCredentials(identity, device, replace(unsigned, signature=signature))


def simulated_credentials(identity: LoggerIdentity) -> DeviceCredentials:
    """Reproducible test-authority credentials for a simulated logger (key seeded by serial)."""
    seed = hashlib.sha256(TEST_AUTHORITY_SEED + b"/device/" + identity.serial.encode()).digest()
    return provision_device(identity, test_authority(), seed=seed)


# --------------------------------------------------------------------------- pull attestations


@dataclass(frozen=True)
class StreamState:
    """What the device attests about one stream at a pull."""

    oldest_seq: int  # oldest record still on the device (everything below was overwritten/reset)
    from_seq: int  # first record sent in this pull
    next_seq: int  # sequence the next record will get
    head: bytes  # chain value after record next_seq - 1 (32 bytes)

    def pack(self) -> bytes:
        return struct.pack("<QQQ", self.oldest_seq, self.from_seq, self.next_seq) + self.head


@dataclass(frozen=True)
class PullAttestation:
    """A device-signed statement about its log at one pull.

    ``phone_ms`` is the phone's clock when it received the attestation; it is not
    signed (the device cannot vouch for the phone) but travels with it in the logfile.
    """

    serial: str
    counter: int  # device pull counter, 1 for the first pull
    device_ms: int  # device clock at signing, ms since epoch
    nonce: bytes  # chosen by the phone, 8..64 bytes
    streams: tuple[StreamState, ...]  # (main, summary)
    signature: bytes = b""
    phone_ms: int | None = None

    def body(self) -> bytes:
        return (str8(self.serial) + struct.pack("<Iq", self.counter, self.device_ms)
                + bytes([len(self.nonce)]) + self.nonce
                + b"".join(s.pack() for s in self.streams))

    def signed_message(self) -> bytes:
        return _PULL_DOMAIN + self.body()

    def verify_signature(self, device_key: bytes) -> bool:
        return _verify_sig(device_key, self.signature, self.signed_message())

    def to_bytes(self) -> bytes:
        """``phone_ms:i64 (INT64_MIN = unknown) | body | signature``."""
        phone = self.phone_ms if self.phone_ms is not None else -(1 << 63)
        return struct.pack("<q", phone) + self.body() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, offset: int = 0,
                   end: int | None = None) -> PullAttestation:
        r = ByteReader(data, offset, end)
        phone = r.i64("attestation phone_ms")
        serial = r.str8("attestation serial", 32)
        counter = r.u32("attestation counter")
        device_ms = r.i64("attestation device_ms")
        at = r.pos
        n = r.u8("attestation nonce length")
        if not NONCE_MIN <= n <= NONCE_MAX:
            raise LogfileError(f"attestation nonce length {n} is outside {NONCE_MIN}..{NONCE_MAX}",
                               offset=at)
        nonce = r.take(n, "attestation nonce")
        streams = []
        for i in range(STREAMS):
            oldest = r.u64(f"attestation stream {i} oldest_seq")
            from_seq = r.u64(f"attestation stream {i} from_seq")
            next_seq = r.u64(f"attestation stream {i} next_seq")
            head = r.take(32, f"attestation stream {i} head")
            streams.append(StreamState(oldest, from_seq, next_seq, head))
        signature = r.take(SIGNATURE_LEN, "attestation signature")
        r.expect_end("the attestation")
        return cls(serial, counter, device_ms, nonce, tuple(streams), signature,
                   None if phone == -(1 << 63) else phone)


def sign_pull(credentials: DeviceCredentials, heads: Sequence[tuple[int, bytes]], nonce: bytes,
              device_ms: int, *, oldest_seqs: Sequence[int] | None = None,
              from_seqs: Sequence[int] | None = None, phone_ms: int | None = None) -> PullAttestation:
    """Sign a pull on the device: ``heads`` is ``(next_seq, chain head)`` of (main, summary).

    ``oldest_seqs`` (the device's oldest available seq per stream) lets a verifier tell
    ring overwrite from truncation; without it the start of the log is "not attested".
    ``from_seqs`` is the first seq sent per stream (default: the oldest). Increments the
    device's pull counter.
    """
    if len(heads) != STREAMS:
        raise EvidenceError(f"a pull attests {STREAMS} streams (main, summary), got {len(heads)}")
    if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise EvidenceError(f"the phone's nonce must be {NONCE_MIN}..{NONCE_MAX} bytes, "
                            f"got {len(nonce)}")
    oldest = list(oldest_seqs) if oldest_seqs is not None else [NOT_ATTESTED] * STREAMS
    froms = list(from_seqs) if from_seqs is not None else list(oldest)
    states = []
    for i, (next_seq, head) in enumerate(heads):
        if len(head) != 32:
            raise EvidenceError(f"stream {i} chain head must be 32 bytes")
        if oldest[i] != NOT_ATTESTED and not oldest[i] <= froms[i] <= next_seq:
            raise EvidenceError(f"stream {i}: need oldest {oldest[i]} <= from {froms[i]} <= "
                                f"next {next_seq}")
        states.append(StreamState(oldest[i], froms[i], next_seq, head))
    credentials.pull_counter += 1
    unsigned = PullAttestation(credentials.identity.serial, credentials.pull_counter, device_ms,
                               bytes(nonce), tuple(states), b"", phone_ms)
    return replace(unsigned, signature=credentials.private_key.sign(unsigned.signed_message()))


class ChainedStore(Protocol):
    """The part of ``device.store.LogStore`` a pull needs (duck-typed: logfile never imports device)."""

    def chain_anchor(self, stream: int = 0) -> tuple[int, bytes]: ...

    def chain_head(self, stream: int = 0) -> tuple[int, bytes]: ...

    def records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]: ...

    def summary_records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]: ...


def sign_store_pull(credentials: DeviceCredentials, store: ChainedStore, nonce: bytes,
                    device_ms: int, *, from_seqs: Sequence[int] | None = None,
                    phone_ms: int | None = None) -> PullAttestation:
    """Sign a pull of ``store`` with everything attested (device side of a BLE pull)."""
    heads = [store.chain_head(s) for s in range(STREAMS)]
    oldest = [store.chain_anchor(s)[0] for s in range(STREAMS)]
    froms = [max(o, f) for o, f in zip(oldest, from_seqs, strict=True)] if from_seqs else oldest
    return sign_pull(credentials, heads, nonce, device_ms, oldest_seqs=oldest, from_seqs=froms,
                     phone_ms=phone_ms)


def new_nonce() -> bytes:
    """A fresh 16-byte phone nonce."""
    return os.urandom(16)
