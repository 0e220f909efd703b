"""The file store seam: immutable blobs named by their SHA-256 (logfiles, report workbooks).

Owns the ``FileStore`` protocol and ``LocalFileStore`` (a directory with one level of
fan-out by the first two hex digits, as git's object store; writes via a temporary file
and ``os.replace`` so a crash never leaves a half blob under a real name). Content addressing makes ``put`` idempotent: the
same bytes twice are stored once, which is also what lets two organisations
upload the same file without sharing any database row.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from smartlogger.errors import StoreError

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class FileStore(Protocol):
    """Where blob bytes live. ``sha256`` is lower-case hex of the bytes."""

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256 (hex). Storing existing bytes again is a no-op."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes named ``sha256``; ``StoreError`` if absent or damaged."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...


class LocalFileStore:
    """A ``FileStore`` in a local directory: ``root/ab/abcd...`` (256 fan-out directories).

    Stores written by earlier builds used two levels (``root/ab/cd/abcd...``): those blobs are
    still found, served and deleted where they are; new blobs go to the one-level path. (Two
    levels made almost every upload to a young store create one or two directories, which cost
    more than writing the blob; 256 directories hold millions of blobs on ext4 or XFS.)
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # Fan-out directories known to exist: saves a mkdir system call per put. (A directory
        # removed behind our back makes mkstemp fail with FileNotFoundError; put then retries.)
        self._dirs: set[Path] = set()

    def _path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):
            raise StoreError(f"{sha256!r} is not a SHA-256 hex name")
        return self.root / sha256[:2] / sha256

    def _legacy_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _found(self, sha256: str) -> Path | None:
        """Where the blob is (one-level path first, then the legacy two-level one), or None."""
        path = self._path(sha256)
        if path.exists():
            return path
        legacy = self._legacy_path(sha256)
        return legacy if legacy.exists() else None

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self._found(digest) is not None:
            return digest
        path = self._path(digest)
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except FileNotFoundError:
            self._dirs.discard(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                # One fsync per new blob, before the database row that names it is committed: a
                # receipt must never name bytes a crash can lose. (Known blobs return above.)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        path = self._found(sha256)
        if path is None:
            raise StoreError(f"blob {sha256} is not in the file store")
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted between the lookup and the read
            raise StoreError(f"blob {sha256} is not in the file store") from None
        # Evidence: never hand out bytes that no longer match their name.
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"blob {sha256} is damaged in the file store (hash mismatch)")
        return data

    def exists(self, sha256: str) -> bool:
        return self._found(sha256) is not None

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)
        self._legacy_path(sha256).unlink(missing_ok=True)
