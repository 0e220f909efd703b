"""Trust lists: which certificate authorities a verifier accepts, as a TOML file.

Owns the trust-list file (``load_trust`` / ``trust_toml``) and the rule that the
TEST authority is always *recognised* (``with_test_authority``): its private key is
public (docs/EVIDENCE.md), so a certificate from it proves only "this claims to be a
simulated logger". Recognising it lets ``verify`` name a consistent simulated file
``simulated`` instead of calling it tampered; it never makes such a file evidence.

The file (``smartlogger logfile trust`` prints the default one)::

    [[authority]]
    kind = "production"            # "production" (hardware roots) or "test"
    name = "ACME production root 2026"
    public_key = "0488d3cd..."     # Ed25519 public key, raw 32 bytes, 64 hex digits

Does not own certificates or the verdict (``logfile.evidence``, ``logfile.verify``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from smartlogger.errors import InputFileError
from smartlogger.logfile.evidence import Authority, default_trust, test_authority

#: Environment variable naming a trust file for every command that verifies (CLI ``--trust``).
TRUST_ENV = "SMARTLOGGER_TRUST_FILE"
_KINDS = ("production", "test")


def load_trust(path: str | os.PathLike[str]) -> tuple[Authority, ...]:
    """The authorities listed in the TOML trust file ``path``; ``InputFileError`` names what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise InputFileError(str(p), f"cannot read the trust list: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise InputFileError(str(p), "the trust list is not UTF-8 text") from None
    return parse_trust(text, str(p))


def parse_trust(text: str, where: str = "trust list") -> tuple[Authority, ...]:
    """The authorities of a trust list given as TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputFileError(where, f"not TOML: {err}") from None
    entries = doc.get("authority")
    if not isinstance(entries, list) or not entries:
        raise InputFileError(where, "no [[authority]] entries: a trust list names at least one authority")
    out: list[Authority] = []
    for i, entry in enumerate(entries, 1):
        what = f"authority #{i}"
        if not isinstance(entry, dict):
            raise InputFileError(where, f"{what} is not a table", column="authority")
        unknown = sorted(set(entry) - {"kind", "name", "public_key"})
        if unknown:
            raise InputFileError(where, f"{what}: unknown key(s) {', '.join(unknown)}", column=unknown[0])
        kind = entry.get("kind")
        if kind not in _KINDS:
            raise InputFileError(where, f"{what}: kind must be one of {', '.join(_KINDS)}, got {kind!r}",
                                 column="kind")
        key_hex = entry.get("public_key")
        if not isinstance(key_hex, str):
            raise InputFileError(where, f"{what}: public_key (64 hex digits) is missing", column="public_key")
        try:
            key = bytes.fromhex(key_hex.replace(":", "").strip())
        except ValueError:
            raise InputFileError(where, f"{what}: public_key is not hex", column="public_key") from None
        if len(key) != 32:
            raise InputFileError(where, f"{what}: public_key must be 32 bytes (64 hex digits), got {len(key)}",
                                 column="public_key")
        try:
            Ed25519PublicKey.from_public_bytes(key)
        except ValueError:
            raise InputFileError(where, f"{what}: public_key is not an Ed25519 public key",
                                 column="public_key") from None
        name = entry.get("name", "")
        if not isinstance(name, str):
            raise InputFileError(where, f"{what}: name must be text", column="name")
        if kind == "production" and key == test_authority().public_key:
            # Its private key is public: as a hardware root it would let anyone make "evidence".
            raise InputFileError(where, f"{what}: the TEST authority's key cannot be a production root",
                                 column="public_key")
        out.append(Authority(kind, key, None, name or f"{kind} authority"))
    return tuple(out)


def with_test_authority(trust: Iterable[Authority]) -> tuple[Authority, ...]:
    """``trust`` plus the built-in TEST authority (public key only), if it is not listed already."""
    out = tuple(trust)
    test = test_authority().public_only()
    if not any(a.key_id == test.key_id for a in out):
        out += (test,)
    return out


def trust_toml(authorities: Sequence[Authority] | None = None) -> str:
    """A trust list file for ``authorities`` (default: the production root and the TEST authority)."""
    lines = ["# smartlogger trust list: the certificate authorities `logfile verify --trust` accepts.",
             "# Only a logger certified by a \"production\" authority can give verified evidence;",
             "# the TEST authority's key is public: its loggers are simulated, never evidence.", ""]
    for a in authorities if authorities is not None else default_trust():
        name = a.name.replace("\\", "\\\\").replace('"', '\\"')
        lines += ["[[authority]]", f'kind = "{a.kind}"', f'name = "{name}"',
                  f'public_key = "{a.public_key.hex()}"', ""]
    return "\n".join(lines)


def trust_from_env() -> tuple[Authority, ...] | None:
    """The trust list named by ``SMARTLOGGER_TRUST_FILE``, or None when it is not set."""
    path = os.environ.get(TRUST_ENV)
    return load_trust(path) if path else None
