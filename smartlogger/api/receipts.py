"""Chain-of-custody receipts: what the server received, from whom and when, signed by its key.

Owns the server's Ed25519 key (a PEM file, created on first start) and the
receipt format. A receipt body is canonical JSON (sorted keys, no spaces,
UTF-8) of::

    {"type": "smartlogger.receipt/1", "organisation_id", "sha256" (hex), "size" (bytes),
     "uploaded_at" (ISO 8601 UTC, ms resolution), "uploader": {"id", "email"},
     "serial" (the logger's), "server_key" (hex SHA-256 of the raw public key)}

and the signature is Ed25519 over exactly those bytes (hex in the API). Anyone
with the server's public key (``GET /api/server-key``) can check a receipt
offline with ``verify_receipt``.

Every web host of one deployment must sign with the same key: with an object store
(several hosts) the key comes from configuration (``SERVER_KEY``, the PEM text, or
``SERVER_KEY_PATH``, a file the deployment puts on each host; ``new_key_pem`` makes one) and
is never created by a host on its own (``server_key_from_config``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from smartlogger.errors import ConfigError

RECEIPT_TYPE = "smartlogger.receipt/1"


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class ServerKey:
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, body: dict[str, Any]) -> str:
        return self.private.sign(canonical(body)).hex()


def key_from_pem(pem: str | bytes, *, source: str = "SERVER_KEY") -> ServerKey:
    """The server key in ``pem`` (PKCS#8 PEM, unencrypted); ``ConfigError`` naming ``source`` if not."""
    try:
        key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(source, f"not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(source, "not an Ed25519 private key")
    return ServerKey(key)


def new_key_pem() -> str:
    """A new server key as PKCS#8 PEM text (``smartlogger admin server-key``)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def server_key_from_config(pem: str | None, path: str | os.PathLike[str], *, may_create: bool) -> ServerKey:
    """The receipt key: ``pem`` (configuration) if given, else the file at ``path``.

    ``may_create``: only a single-host deployment (a folder store) creates the file on first start;
    hosts sharing an object store would each create their own key and sign receipts that the others'
    public key does not check, so they must be given one.
    """
    if pem and pem.strip():
        return key_from_pem(pem)
    if may_create:
        return load_or_create_key(path)
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("SERVER_KEY", f"no server key: every host of a deployment on an object store signs "
                                        f"receipts with the same key; set SMARTLOGGER_SERVER_KEY (the PEM) or "
                                        f"SMARTLOGGER_SERVER_KEY_PATH (a file; {p} does not exist). Make one "
                                        f"with `smartlogger admin server-key`") from None
    except OSError as err:
        raise ConfigError("SERVER_KEY_PATH", f"{p}: {err.strerror}") from None
    return key_from_pem(data, source="SERVER_KEY_PATH")


def load_or_create_key(path: str | os.PathLike[str]) -> ServerKey:
    """The server key at ``path`` (PKCS#8 PEM); created with mode 0600 if missing."""
    p = Path(path)
    if p.exists():
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{p}: not an Ed25519 private key")
        return ServerKey(key)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    p.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: if two workers start at once, exactly one creates the key, the other reads it.
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(p)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return ServerKey(key)


def verify_receipt(body: dict[str, Any], signature_hex: str, public_key: bytes | str) -> bool:
    """True if ``signature_hex`` is the server's signature of ``body``.

    ``public_key`` is the raw 32-byte key or its PEM text.
    """
    if isinstance(public_key, str):
        pub = serialization.load_pem_public_key(public_key.encode())
        if not isinstance(pub, Ed25519PublicKey):
            return False
    else:
        pub = Ed25519PublicKey.from_public_bytes(public_key)
    try:
        pub.verify(bytes.fromhex(signature_hex), canonical(body))
    except (InvalidSignature, ValueError):
        return False
    return True
