"""The kit key on the technician's side: where it is kept, how it is made and read.

Owns the kit key file (``KitKeyFile``): one JSON object, mode 0600, holding the 16-byte key
of the kit's live adverts (``protocol.live.KitKey``). ``smartlogger nfc program --kit-key
FILE`` gives it to every logger it programs (made on first use); ``smartlogger test watch
--kit-key FILE`` checks the adverts with it. Whoever holds the file can make adverts the
watcher believes: it is kept like a password. Does not own the key's use (``field.live``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from smartlogger.errors import ConfigError
from smartlogger.protocol.live import KEY_LEN, KitKey, LiveFormatError

FORMAT = "smartlogger-kit-key"


class KitKeyError(ConfigError):
    """The kit key file cannot be used; the message names the file and why."""

    exit_code = 3

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__("kit_key", f"{path}: {message}")


def read_kit_key(path: Path) -> KitKey:
    """The kit key in ``path`` (``KitKeyError`` if it is missing or not a kit key file)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitKeyError(path, "no kit key file (nfc program --kit-key FILE makes one)") from None
    except (OSError, ValueError) as err:
        raise KitKeyError(path, f"unreadable: {err}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise KitKeyError(path, f"not a kit key file (no \"format\": \"{FORMAT}\")")
    try:
        key = KitKey(bytes.fromhex(str(raw["key"])))
    except (KeyError, ValueError, LiveFormatError) as err:
        raise KitKeyError(path, f"the key is not {KEY_LEN} bytes of hex: {err}") from None
    if raw.get("key_id") not in (None, key.key_id):
        raise KitKeyError(path, f"key_id {raw.get('key_id')} does not match the key ({key.key_id})")
    return key


def ensure_kit_key(path: Path) -> tuple[KitKey, bool]:
    """The kit key in ``path``, made (mode 0600) if the file does not exist; (key, made)."""
    path = Path(path)
    if path.exists():
        return read_kit_key(path), False
    key = KitKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"format": FORMAT, "v": 1, "key": key.key.hex(), "key_id": key.key_id})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_kit_key(path), False  # made meanwhile by another process
    except OSError as err:
        raise KitKeyError(path, f"cannot create: {err.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body + "\n")
    return key, True
